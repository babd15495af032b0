"""The hardening example for ``audit examples``: digits-cnn before and after ``audit harden``
(the bundled digits-cnn-robust), compared side by side with the report's diff renderer."""

from __future__ import annotations

from pathlib import Path

from audit.report.examples import Example, ExampleContext, register_example

BEFORE, AFTER = "digits-cnn", "digits-cnn-robust"
NAME = "hardening-digits-cnn"


def make(ctx: ExampleContext) -> list[Path]:
    """Audit both models (reusing results already computed in this run) and write
    ``hardening-digits-cnn.html`` + ``.md``."""
    before = ctx.audit(BEFORE, BEFORE)
    after = ctx.audit(AFTER, AFTER)
    return ctx.diff(before, after, NAME, (f"{BEFORE} (before)", f"{AFTER} (after)"))


register_example(Example(NAME, "digits-cnn before/after PGD adversarial training "
                               "(audit harden, L-inf eps 0.1)", make, after_models=True))
