"""Audit commands: ``audit run``, ``audit models``, ``audit report`` and ``audit train``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table as RichTable

from audit.cli.common import (
    EXIT_CODES_HELP,
    AmpOpt,
    DeviceOpt,
    FailOn,
    ShowProgress,
    TrustCheckpoint,
    command_line,
    err_console,
    out_console,
    require_html,
    safe,
    safe_name,
    show_progress,
    split,
)
from audit.cli.outputs import (
    NO_OUTPUTS,
    Outputs,
    check_audit_options,
    check_outputs,
    finish_audit,
    format_options,
    given,
    options_hint,
    write_formats,
)
from audit.errors import EXIT_FINDINGS, AuditError, UsageError

if TYPE_CHECKING:
    from audit.distributed import Distributed


@format_options("audit")
def run_cmd(
    model: Annotated[str, typer.Argument(help="Bundled model name, model folder, or checkpoint "
                                              "file (.safetensors, .pt, .pt2, TorchScript).")],
    data: Annotated[str | None, typer.Option(help="Bundled dataset name or a .npz/.csv file "
                                                  "(default: the card's dataset, test split).")
                    ] = None,
    reference: Annotated[str | None, typer.Option(
        help="Labelled reference data for the drift check (.npz/.csv file or bundled "
             "dataset NAME[:train|:test]); without it the drift check is skipped.")] = None,
    train_data: Annotated[str | None, typer.Option(
        help="Training data for the slices check's bias audit (.csv file or bundled dataset "
             "NAME[:split]; default: the card's dataset's train split).")] = None,
    checks: Annotated[str | None, typer.Option(help="Comma-separated checks to run "
                                                    "(default: every check that applies).")
                      ] = None,
    out: Annotated[Path | None, typer.Option(help="HTML report path; the JSON result is "
                                                  "written beside it (default: "
                                                  "reports/<model>.html).")] = None,
    fail_on: FailOn = None,
    seed: Annotated[int | None, typer.Option(help="Seed for the whole audit (default 0).")
                    ] = None,
    config: Annotated[Path | None, typer.Option(help="audit.toml with checks, parameters "
                                                     "and thresholds.")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Smaller budgets for a fast look.")
                     ] = False,
    samples: Annotated[str | None, typer.Option(
        help="Set every check's sample cap (robustness, certified, saliency, surrogate, "
             "slices, drift) to N, or 'all' for the whole dataset; [checks.NAME] keys win.")
                       ] = None,
    target: Annotated[str | None, typer.Option(help="Label column of a CSV file.")] = None,
    sensitive: Annotated[str | None, typer.Option(help="Comma-separated sensitive columns "
                                                       "for the fairness check.")] = None,
    arch: Annotated[str | None, typer.Option(help="Architecture 'module:Class' for a "
                                                  "state-dict checkpoint.")] = None,
    card: Annotated[Path | None, typer.Option(help="card.json describing the model (input "
                                                   "shape, range, classes).")] = None,
    layer: Annotated[str | None, typer.Option(help="Layer for Grad-CAM (default: the last "
                                                   "layer with a spatial output).")] = None,
    protocol: Annotated[str | None, typer.Option(
        help="Robustness protocol: suite (this tool's attacks, default) or autoattack (also "
             "AutoAttack's standard protocol, comparable with leaderboards).")] = None,
    trust_checkpoint: TrustCheckpoint = False,
    device: DeviceOpt = "auto",
    amp: AmpOpt = False,
    progress: ShowProgress = True,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Save each finished check beside the report (REPORT.partial/) and, "
                         "when an earlier run of the same audit was stopped, continue where "
                         "it stopped.")] = False,
    outputs: Outputs = NO_OUTPUTS,  # becomes --md, --junit, ... (one per format)
) -> None:
    """Audit a model and write an HTML report plus its JSON result."""
    from audit.distributed import init_distributed, using
    from audit.resume import discard_partial, partial_folder
    from audit.runner import run_audit
    from audit.sample_budget import parse_samples

    check_audit_options(fail_on, out, outputs)
    params: dict[str, dict[str, Any]] = {}
    if layer:
        params["saliency"] = {"layer": layer}
    if protocol is not None:
        params["robustness"] = {"protocol": protocol}
    if train_data is not None:
        from audit.slices.measure import check_train_spec

        check_train_spec(train_data)  # a wrong path fails now, not as an errored section
        params["slices"] = {"train_data": train_data}

    def html_for(name: str) -> Path:
        return out or Path("reports") / f"{safe_name(name)}.html"

    partial = (lambda name: partial_folder(html_for(name))) if resume else None
    world = init_distributed()  # torchrun: every rank audits its share, rank 0 writes
    with using(world):
        result = run_audit(
            model, data=data, checks=split(checks), config=config, seed=seed,
            quick=quick or None, samples=parse_samples(samples, "--samples"), fail_on=fail_on,
            target=target, sensitive=split(sensitive),
            arch=arch, card=card, trust_checkpoint=trust_checkpoint, params=params or None,
            progress=show_progress(progress) and world.is_main, command=command_line(),
            reference=reference, device=device, amp=amp, resume=partial)
    if not world.is_main:  # rank 0 alone writes the outputs and ends with the verdict's code
        _leave(world)
        raise typer.Exit(0)
    try:
        html = html_for(result.model["name"])
        if result.run.get("resumed"):
            names = ", ".join(result.run["resumed"])
            err_console.print(f"resumed {len(result.run['resumed'])} finished check(s) from "
                              f"{safe(partial_folder(html))}: {safe(names)}")
        done = finish_audit(result, html, outputs)
        if resume:  # the outputs are written: the partial results are spent
            discard_partial(partial_folder(html))
    finally:
        _leave(world)
    raise done


def _leave(world: Distributed) -> None:
    """Leave a torchrun group once rank 0 has written the outputs (a rank that exits first
    makes torchrun stop the others)."""
    if world.enabled:
        import torch.distributed

        world.barrier()
        torch.distributed.destroy_process_group()


def models_cmd() -> None:
    """List the bundled models with their headline metrics."""
    from audit.card import ModelCard
    from audit.loading import bundled_models

    table = RichTable(title="Bundled models")
    for col in ("name", "architecture", "data", "input", "headline metrics"):
        table.add_column(col)
    found = bundled_models()
    for name, folder in found.items():
        try:
            c = ModelCard.load(folder / "card.json")
        except AuditError as e:
            table.add_row(safe(name), "-", "-", "-", f"[red]invalid card: {safe(e)}[/]")
            continue
        metrics = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                            for k, v in c.metrics.items() if not k.endswith("seconds"))
        table.add_row(safe(name, 60), safe(c.arch.split(":")[-1], 60), safe(c.dataset or "-", 60),
                      safe(f"{c.input.kind} {'x'.join(map(str, c.input.shape))}"),
                      safe(metrics or "-", 400))
    if not found:
        err_console.print("no bundled models found (set AUDIT_MODELS_DIR?)")
    out_console.print(table)


@format_options("render")
def report_cmd(
    result: Annotated[Path, typer.Argument(help="A JSON result written by 'audit run'.")],
    out: Annotated[Path | None, typer.Option(help="HTML file to write.")] = None,
    outputs: Outputs = NO_OUTPUTS,  # becomes --md, --junit, ... (one per format)
    fail_on: Annotated[str | None, typer.Option(
        "--fail-on", help="Judge the result again at this severity: the verdict in every "
                          "format, the JUnit failures and the exit code (1 when a finding "
                          "reaches it) follow it (default: the threshold the audit ran "
                          "with).")] = None,
) -> None:
    """Re-render a saved JSON result as HTML, Markdown and/or JUnit XML."""
    from audit.io import atomic_write_text, check_writable
    from audit.report.render import load_result, render_html
    from audit.result import Severity, rejudged

    if out is None and not given(outputs):
        raise UsageError(f"nothing to write: pass --out X.html, {options_hint()}")
    if out is not None:
        require_html(out)
    if fail_on is not None:
        Severity.parse(fail_on)
    if out is not None:
        check_writable(out)
    check_outputs(outputs)
    doc = load_result(result)
    if fail_on is not None:
        doc = rejudged(doc, Severity.parse(fail_on))
    if out is not None:
        atomic_write_text(out, render_html(doc))
        out_console.print(f"report: {safe(out)}")
    write_formats(doc, outputs, fail_on)
    if fail_on is not None and doc["summary"]["status"] == "fail":
        raise typer.Exit(EXIT_FINDINGS)  # a CI gate at the threshold asked for


def train_cmd(
    name: Annotated[str, typer.Argument(help="Bundled model to reproduce from its recipe.")],
    out: Annotated[Path | None, typer.Option(help="Output folder (default: models/NAME in a "
                                                  "source checkout or $AUDIT_MODELS_DIR; "
                                                  "required for an installed package).")
                   ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (default: the recipe's).")] = None,
) -> None:
    """Reproduce a bundled model from its recipe (writes model.safetensors + card.json)."""
    import time

    from audit.paths import editable_models_dir
    from audit.zoo import get_recipe

    recipe = get_recipe(name)
    default = editable_models_dir()
    if out is None and default is None:
        raise UsageError(f"pass --out DIR: this is an installed package, and its bundled {name} "
                         "is not overwritten (or set AUDIT_MODELS_DIR)")
    target = out or (default or Path()) / name
    start = time.perf_counter()
    with err_console.status(f"training {name} ({recipe.description})"):
        card = recipe.train(target, recipe.default_seed if seed is None else seed, False)
    metrics = ", ".join(f"{k} {v}" for k, v in card.metrics.items())
    out_console.print(f"trained {name} in {time.perf_counter() - start:.1f} s: {metrics}\n"
                      f"wrote {safe(target)}")


def register(app: typer.Typer) -> None:
    """Add ``run``, ``models``, ``report`` and ``train`` to the ``audit`` command line."""
    app.command("run", epilog=EXIT_CODES_HELP)(run_cmd)
    app.command("models")(models_cmd)
    app.command("report")(report_cmd)
    app.command("train")(train_cmd)
