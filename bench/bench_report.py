"""How long re-rendering a saved result takes, against reading its JSON in the same run.

    python bench/bench_report.py [reports/digits-cnn.json ...]

For each result file: best-of-N wall time of ``json.loads`` of the file's text (the reference:
the least any renderer must do), of ``load_result`` (read + JSON Schema validation), and of the
HTML, Markdown and JUnit renderers on the parsed document; printed with their ratio to
``json.loads``. The target is that ``audit report`` (load + validate + render HTML) of the
default digits-cnn result takes well under a second.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from audit.report.junit import render_junit
from audit.report.markdown import render_markdown
from audit.report.render import load_result, render_html

ROOT = Path(__file__).resolve().parents[1]


def best_of(fn: Callable[[], Any], repeat: int = 7) -> float:
    """Best wall time of ``repeat`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    doc = json.loads(text)
    html = render_html(doc)
    ref = best_of(lambda: json.loads(text))
    rows = [
        ("json.loads (reference)", ref),
        ("load_result (read + schema)", best_of(lambda: load_result(path))),
        ("render_html", best_of(lambda: render_html(doc))),
        ("render_markdown", best_of(lambda: render_markdown(doc))),
        ("render_junit", best_of(lambda: render_junit(doc))),
        ("audit report = load + html", best_of(lambda: render_html(load_result(path)))),
    ]
    figures = sum(len(s["figures"]) for s in doc["sections"])
    print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: "
          f"JSON {len(text) / 1e6:.2f} MB, HTML {len(html.encode()) / 1e6:.2f} MB, "
          f"{len(doc['sections'])} sections, {figures} figures")
    for name, t in rows:
        print(f"  {name:30s} {t * 1000:9.2f} ms   {t / ref:7.1f}x json.loads")


def main(argv: list[str]) -> None:
    paths = [Path(p) for p in argv] or sorted((ROOT / "reports").glob("*.json"))
    for p in paths:
        bench(p.resolve())


if __name__ == "__main__":
    main(sys.argv[1:])
