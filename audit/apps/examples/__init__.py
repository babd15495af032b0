"""Regenerate the example reports in ``reports/`` with one command: ``audit examples``.

Every bundled model (``audit.loading.bundled_models()``) is audited with the default checks and
the given seed, and written as ``reports/<name>.html`` + ``.json`` + ``.md``. Every bundled
model whose card names a bundled ``parent`` (a hardened model made by ``audit harden`` from
``digits-cnn`` says ``"parent": {"name": "digits-cnn", ...}``) also gets a before/after
comparison, ``reports/<parent>-vs-<name>.html`` + ``.md``, with no extra code, unless a
registered extra example (which runs first) already compared the two. ``reports/README.md``
indexes them all. Progress is shown with rich on stderr.

Adding any other example: in a module listed in ``_EXAMPLE_MODULES`` of
:mod:`audit.apps.examples.registry` (as :mod:`audit.apps.examples.mitigation` is), call::

    from audit.apps.examples import Example, ExampleContext, register_example

    def make(ctx: ExampleContext) -> list[Path]:
        before = ctx.audit("digits-cnn", "digits-cnn")          # or reuse ctx.results[...]
        after = ctx.audit(hardened_model_folder, "digits-cnn-hardened")
        return ctx.diff(before, after, "hardening-digits-cnn", ("before", "after"))

    register_example(Example("hardening-digits-cnn", "digits-cnn before/after hardening",
                             make, after_models=True))
"""

from audit.apps.examples.regenerate import (
    ExampleOutcome,
    index_markdown,
    parent_name,
    planned_examples,
    regenerate_examples,
)
from audit.apps.examples.registry import (
    Example,
    ExampleContext,
    ProgressFn,
    extra_examples,
    register_example,
    relative_model_path,
)

__all__ = [
    "Example",
    "ExampleContext",
    "ExampleOutcome",
    "ProgressFn",
    "extra_examples",
    "index_markdown",
    "parent_name",
    "planned_examples",
    "regenerate_examples",
    "register_example",
    "relative_model_path",
]
