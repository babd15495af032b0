"""``audit drift``: compare current data with a labelled reference through the model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from audit.cli.common import (
    EXIT_CODES_HELP,
    DeviceOpt,
    FailOn,
    ShowProgress,
    TrustCheckpoint,
    command_line,
    safe_name,
    show_progress,
    split,
)
from audit.cli.outputs import NO_OUTPUTS, Outputs, check_audit_options, finish_audit, format_options


@format_options("audit")
def drift_cmd(
    model: Annotated[str, typer.Argument(help="Bundled model name, model folder, or checkpoint "
                                              "file.")],
    reference: Annotated[str, typer.Option(help="Labelled data the model is known to work on: "
                                                "a .npz/.csv file or a bundled dataset "
                                                "(NAME, NAME:train or NAME:test).")],
    current: Annotated[str, typer.Option(help="The data to compare (production data): a "
                                              ".npz/.csv file, labels optional, or a bundled "
                                              "dataset.")],
    out: Annotated[Path | None, typer.Option(help="HTML report path; the JSON result and a "
                                                  "Markdown report are written beside it "
                                                  "(default: reports/<model>-drift.html).")
                   ] = None,
    fail_on: FailOn = None,
    seed: Annotated[int | None, typer.Option(help="Seed (default 0).")] = None,
    config: Annotated[Path | None, typer.Option(help="audit.toml ([checks.drift] settings).")
                      ] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Fewer permutations and bootstrap "
                                                        "rounds.")] = False,
    target: Annotated[str | None, typer.Option(help="Label column of the CSV files (optional "
                                                    "in --current).")] = None,
    sensitive: Annotated[str | None, typer.Option(help="Comma-separated sensitive columns, "
                                                       "tested for drift too.")] = None,
    arch: Annotated[str | None, typer.Option(help="Architecture 'module:Class' or "
                                                  "'file.py:Class' for a state dict.")] = None,
    card: Annotated[Path | None, typer.Option(help="card.json describing the model.")] = None,
    trust_checkpoint: TrustCheckpoint = False,
    device: DeviceOpt = "auto",
    progress: ShowProgress = True,
    outputs: Outputs = NO_OUTPUTS,
) -> None:
    """Compare current data with a reference through the model: per-column drift, a
    domain-classifier test, MMD on the model's embeddings, prediction drift and accuracy
    estimated without labels."""
    from audit.runner import run_audit

    check_audit_options(fail_on, out, outputs)
    result = run_audit(
        model, data=current, reference=reference, labels=False, checks=["drift"],
        config=config, seed=seed, quick=quick or None, fail_on=fail_on, target=target,
        sensitive=split(sensitive), arch=arch, card=card, trust_checkpoint=trust_checkpoint,
        progress=show_progress(progress), command=command_line(), device=device)
    html = out or Path("reports") / f"{safe_name(result.model['name'])}-drift.html"
    if outputs.get("md") is None:
        outputs = {**outputs, "md": html.with_suffix(".md")}
    raise finish_audit(result, html, outputs)


def register(app: typer.Typer) -> None:
    """Add ``drift`` to the ``audit`` command line."""
    app.command("drift", epilog=EXIT_CODES_HELP)(drift_cmd)
