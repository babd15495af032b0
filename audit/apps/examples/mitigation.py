"""The mitigation example of ``audit examples``: ``reports/adult-mlp-mitigation.html`` (+ .json,
.md, .csv), the output of ``audit mitigate adult-mlp``."""

from __future__ import annotations

from pathlib import Path

from audit.apps.examples.registry import (
    Example,
    ExampleContext,
    register_example,
    relative_model_path,
)
from audit.io import atomic_write_text
from audit.report.formats_csv import table_csv
from audit.report.markdown import render_markdown
from audit.report.render import write_report

NAME = "adult-mlp-mitigation"


def make(ctx: ExampleContext) -> list[Path]:
    """Run ``audit mitigate adult-mlp`` and write its report under ``ctx.out_dir``."""
    from audit.apps.mitigate import mitigate  # trains models: only when run

    html_path = ctx.out_dir / f"{NAME}.html"
    result = mitigate("adult-mlp", seed=ctx.seed, n_boot=50 if ctx.quick else 200,
                      command=f"audit mitigate adult-mlp --seed {ctx.seed} --out "
                              f"{html_path.as_posix()}")
    relative_model_path(result)
    html, json_path = write_report(result, html_path)
    md_path = html.with_suffix(".md")
    atomic_write_text(md_path, render_markdown(result))
    table = next(t for s in result.sections if s.check == "mitigation" for t in s.tables)
    csv_path = html.with_suffix(".csv")
    atomic_write_text(csv_path, table_csv(table))
    ctx.results[NAME] = result
    return [html, json_path, md_path, csv_path]


register_example(Example(name=NAME,
                         description="adult-mlp: bias mitigation, fairness gap against accuracy",
                         make=make))
