"""Fairness commands: ``audit fairness`` (a predictions file, no model) and ``audit mitigate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from audit.cli.common import (
    FailOn,
    command_line,
    err_console,
    exit_with_verdict,
    out_console,
    safe_name,
    split,
)
from audit.cli.outputs import (
    NO_OUTPUTS,
    Outputs,
    check_audit_options,
    finish_audit,
    format_options,
)
from audit.errors import UsageError


def _floats(value: str | None, option: str) -> list[float] | None:
    if value is None:
        return None
    try:
        out = [float(v) for v in split(value) or []]
    except ValueError:
        raise UsageError(f"{option} takes comma-separated numbers, got {value!r}") from None
    if not out or any(v < 0 for v in out):
        raise UsageError(f"{option} takes non-negative numbers, got {value!r}")
    return out


@format_options("brief")
def fairness_cmd(
    predictions: Annotated[Path, typer.Argument(metavar="PREDICTIONS.csv", help=(
        "CSV with one row per decision: true label, prediction, optional score, sensitive "
        "columns."))],
    y_true: Annotated[str, typer.Option("--y-true", help="Column of true labels (0/1, or "
                                                         "any values with --pos-label).")],
    y_pred: Annotated[str, typer.Option("--y-pred", help="Column of predicted labels.")],
    sensitive: Annotated[str, typer.Option(help="Comma-separated sensitive columns; their "
                                                "intersection is assessed too.")],
    score: Annotated[str | None, typer.Option(help="Column of scores: probability of the "
                                                   "favourable outcome (for calibration).")
                     ] = None,
    pos_label: Annotated[str | None, typer.Option("--pos-label", help=(
        "Value of the label columns that is the favourable outcome (default: labels are "
        "0/1 and 1 is favourable)."))] = None,
    out: Annotated[Path | None, typer.Option(help="HTML report path; the JSON result is "
                                                  "written beside it (default: reports/"
                                                  "<file>-fairness.html).")] = None,
    fail_on: FailOn = None,
    config: Annotated[Path | None, typer.Option(help="audit.toml; [checks.fairness] sets "
                                                     "thresholds and bootstrap size.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the bootstrap (default 0).")
                    ] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Fewer bootstrap resamples.")
                     ] = False,
    outputs: Outputs = NO_OUTPUTS,  # becomes --md, --junit, ... (one per format)
) -> None:
    """Audit the fairness of predictions you already have (no model needed): group metrics,
    disparities with intervals, findings; writes the same HTML and JSON as 'audit run'."""
    from audit.apps.predictions import audit_predictions
    cols = split(sensitive)
    if not cols:
        raise UsageError("--sensitive needs at least one column name")
    check_audit_options(fail_on, out, outputs)
    result = audit_predictions(predictions, y_true=y_true, y_pred=y_pred, sensitive=cols,
                               score=score, pos_label=pos_label, config=config, seed=seed,
                               quick=quick or None, fail_on=fail_on, command=command_line())
    default = Path("reports") / f"{safe_name(predictions.stem)}-fairness.html"
    raise finish_audit(result, out or default, outputs, announce=False)


def mitigate_cmd(
    model: Annotated[str, typer.Argument(help="Bundled model name, model folder, or checkpoint "
                                              "file (its card must name the architecture, or "
                                              "pass --arch).")],
    arch: Annotated[str | None, typer.Option(help="Architecture 'module:Class' for a "
                                                  "state-dict checkpoint (and for retraining)."
                                             )] = None,
    card: Annotated[Path | None, typer.Option(help="card.json describing the model (default: "
                                                   "beside the checkpoint).")] = None,
    positive_class: Annotated[str | None, typer.Option("--positive-class", help=(
        "The favourable class (name or index; default: [checks.fairness] positive_class, else "
        "a binary model's second class); needed for more than two classes."))] = None,
    data: Annotated[str | None, typer.Option(help="Bundled dataset: trains on its train "
                                                  "split, measures on its test split "
                                                  "(default: the card's dataset).")] = None,
    train: Annotated[str | None, typer.Option(help="Training CSV (with --eval) instead of a "
                                                   "bundled dataset.")] = None,
    evaluate: Annotated[str | None, typer.Option("--eval", help="Held-out CSV to measure "
                                                                "on.")] = None,
    target: Annotated[str | None, typer.Option(help="Label column of the CSV files.")
                      ] = None,
    sensitive: Annotated[str | None, typer.Option(help="Comma-separated sensitive columns to "
                                                       "measure (default: the data's or "
                                                       "card's).")] = None,
    groups: Annotated[str | None, typer.Option(help="Columns whose intersection the "
                                                    "mitigations act on (default: all "
                                                    "sensitive columns).")] = None,
    methods: Annotated[str | None, typer.Option(help=(
        "Comma-separated: reweighing, reweighing-slice (needs --slice), correlation-remover, "
        "penalty-dp, penalty-eo, thresholds-dp, thresholds-eo (default: reweighing, the "
        "penalties and thresholds, plus reweighing-slice with --slice)."))] = None,
    slices: Annotated[list[str] | None, typer.Option("--slice", metavar="RULE", help=(
        "A slice as the slices check writes it, e.g. \"age < 25 and sex == 'Male'\" "
        "(repeatable): reweighing-slice upweights its training rows, and the table shows its "
        "error gap to the rest for every variant."))] = None,
    alphas: Annotated[str | None, typer.Option(help="Strengths of correlation-remover, in "
                                                    "[0, 1] (default 1: full "
                                                    "decorrelation).")] = None,
    lambdas: Annotated[str | None, typer.Option(help="Penalty weights λ (default "
                                                     "0.1,0.3,1,3).")] = None,
    tols: Annotated[str | None, typer.Option(help="Tolerances of thresholds-dp (default 0,0.05; "
                                                  "equalized odds is always exact).")
                    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs (default: the recipe's).")
                      ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (default: the recipe's).")] = None,
    n_boot: Annotated[int, typer.Option("--n-boot", help="Bootstrap resamples per variant.")
                      ] = 200,
    out: Annotated[Path | None, typer.Option(help="HTML report (JSON and the table as CSV are "
                                                  "written beside it; default reports/"
                                                  "<model>-mitigation.html).")] = None,
    config: Annotated[Path | None, typer.Option(help="audit.toml ([checks.fairness]).")
                      ] = None,
    fail_on: FailOn = None,
) -> None:
    """Retrain or post-process a model with each bias mitigation (reweighing, reweighing by
    slice, correlation remover, fairness penalty for each λ, group thresholds) and report
    fairness gap against accuracy, each compared with your model on the same data: a table, a
    trade-off plot and your model's fairness audit."""
    from audit.apps.mitigate import (
        DEFAULT_ALPHAS,
        DEFAULT_LAMBDAS,
        DEFAULT_TOLS,
        METHODS,
        default_methods,
        mitigate,
    )
    from audit.io import atomic_write_text
    from audit.report.formats_csv import table_csv
    from audit.report.render import write_report
    check_audit_options(fail_on, out, NO_OUTPUTS)
    if n_boot < 0:
        raise UsageError("--n-boot must be 0 or more")
    if epochs is not None and epochs < 1:
        raise UsageError("--epochs must be at least 1")
    rules = list(slices or [])
    chosen = split(methods) or default_methods(rules)
    unknown = [m for m in chosen if m not in METHODS]
    if unknown:
        raise UsageError(f"unknown method(s) {', '.join(unknown)}; use {', '.join(METHODS)}")

    def progress(text: str) -> None:
        err_console.print(f"mitigate: {text}", highlight=False, markup=False)

    result = mitigate(model, arch=arch, card=str(card) if card else None,
                      positive_class=positive_class, data=data, train=train,
                      evaluate=evaluate, target=target,
                      sensitive=split(sensitive), groups=split(groups),
                      methods=chosen, lambdas=_floats(lambdas, "--lambdas") or DEFAULT_LAMBDAS,
                      tols=_floats(tols, "--tols") or DEFAULT_TOLS,
                      alphas=_floats(alphas, "--alphas") or DEFAULT_ALPHAS, slices=rules,
                      epochs=epochs, seed=seed,
                      n_boot=n_boot, config=str(config) if config else None, fail_on=fail_on,
                      command=command_line(), progress=progress)
    target_html = out or Path("reports") / f"{safe_name(result.model['name'])}-mitigation.html"
    html, json_path = write_report(result, target_html)
    table = next(t for s in result.sections if s.check == "mitigation" for t in s.tables)
    csv_path = html.with_suffix(".csv")
    atomic_write_text(csv_path, table_csv(table))
    mit = next(s for s in result.sections if s.check == "mitigation")
    out_console.print(mit.summary, highlight=False, markup=False)
    out_console.print(f"report: {html}\nresult: {json_path}\ntable: {csv_path}",
                      highlight=False, markup=False)
    raise exit_with_verdict(result)


def register(app: typer.Typer) -> None:
    """Add ``fairness`` and ``mitigate`` to the ``audit`` command line."""
    app.command("fairness")(fairness_cmd)
    app.command("mitigate")(mitigate_cmd)
