"""Render the JSON result as a self-contained HTML report (Jinja2, autoescape on).

The HTML makes no network request and runs no script: a Content-Security-Policy forbids both,
figures are ``data:`` images, CSS is inlined, and every user string is escaped by Jinja2.
``write_report`` writes it with the JSON result beside it; the other formats are in
:mod:`audit.report.formats` (``write_outputs`` is re-exported here).
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape

from audit.display import shorten, shown
from audit.errors import DataError, OutputError
from audit.io import atomic_write_text
from audit.report.formats import as_document, get_format, write_outputs
from audit.report.view import SEVERITY_ORDER, build_view, fmt_number
from audit.result import AuditResult

__all__ = ["as_document", "fmt_number", "load_result", "render_html",
           "result_json", "validate_result", "word_breaks", "write_outputs", "write_report"]


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("audit", "report/templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_shown,
    )
    env.filters["num"] = fmt_number
    env.filters["wbr"] = word_breaks
    env.filters["clip"] = clip
    return env


def _shown(value: Any) -> Any:
    """Every string a template prints has its control characters made visible (strings
    built by the view already have; labels and such from elsewhere get it here)."""
    return shown(value) if isinstance(value, str) and not isinstance(value, Markup) else value


_LONG_WORD = re.compile(r"(\S{41,})")


def clip(value: Any, limit: int = 160, word: int = 80) -> Markup:
    """Escaped text cut at ``limit`` characters, and each word cut at ``word`` characters,
    with an ellipsis and the whole text in the ``title`` tooltip; words longer than 40
    characters get break opportunities every 20. A 5000-character class name must not make a
    table 40,000 px wide, nor a cell 50 lines tall; sentences keep every word."""
    full = shown(str(value))
    # split() with a group alternates text and long words: odd items are the long words
    pieces = _LONG_WORD.split(shorten(full, limit))
    pieces[1::2] = [shorten(w, word) for w in pieces[1::2]]
    body = "".join("<wbr>".join(str(escape(piece[i:i + 20])) for i in range(0, len(piece), 20))
                   if k % 2 else str(escape(piece)) for k, piece in enumerate(pieces))
    if "".join(pieces) == full:
        return Markup(body)
    return Markup(f'<span class="clipped" title="{escape(full)}">{body}</span>')


def word_breaks(value: Any) -> Markup:
    """Escaped text with break opportunities after ``.``, ``_`` and ``/`` (long metric names
    wrap at their parts instead of mid-word)."""
    text = str(escape(value))
    for ch in "._/":
        text = text.replace(ch, ch + "<wbr>")
    return Markup(text)


@lru_cache(maxsize=1)
def _css() -> str:
    return (resources.files("audit") / "report" / "static" / "report.css").read_text("utf-8")


def render_html(result: AuditResult | dict[str, Any]) -> str:
    """The HTML report of a result (an :class:`AuditResult` or its JSON dict).

    One self-contained file: inlined CSS and ``data:`` images, no script, and a
    Content-Security-Policy that forbids network requests and scripts.
    """
    view = build_view(as_document(result))
    template = _env().get_template("report.html.j2")
    return template.render(v=view, css=_css(), severities=SEVERITY_ORDER)


def result_json(result: AuditResult | dict[str, Any]) -> str:
    """The JSON text of a result (stable key order)."""
    return json.dumps(as_document(result), indent=1, sort_keys=False, allow_nan=False) + "\n"


def write_report(result: AuditResult | dict[str, Any], out: str | Path) -> tuple[Path, Path]:
    """Write ``out`` (HTML) and the JSON result beside it (same name, ``.json``), atomically.

    Returns (html_path, json_path).
    """
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise OutputError(f"--out {out} must end in .html (the JSON result is written beside "
                          "it)")
    json_path = out.with_suffix(get_format("json").suffix)
    doc = as_document(result)
    html = get_format("html").render(doc)
    text = get_format("json").render(doc)
    atomic_write_text(json_path, text)
    atomic_write_text(out, html)
    return out, json_path


def load_result(path: str | Path) -> dict[str, Any]:
    """Read and validate a saved JSON result against the published schema."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"result file not found: {p}") from None
    except IsADirectoryError:
        raise DataError(f"{p} is a directory; pass the .json result written by 'audit run'") \
            from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {p}: {e}") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{p} is not valid JSON (line {e.lineno}: {e.msg})") from None
    validate_result(doc, str(p))
    return doc


@lru_cache(maxsize=1)
def result_schema() -> dict[str, Any]:
    """The published JSON Schema of the result (``audit/schema/result.schema.json``)."""
    text = (resources.files("audit") / "schema" / "result.schema.json").read_text("utf-8")
    return json.loads(text)


def validate_result(doc: Any, where: str = "result") -> None:
    """Raise :class:`DataError` naming the first place where ``doc`` breaks the schema."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(result_schema())
    error = next(iter(sorted(validator.iter_errors(doc), key=lambda e: list(e.path))), None)
    if error is not None:
        loc = "/".join(str(x) for x in error.absolute_path) or "(top level)"
        raise DataError(f"{where} is not an audit result: at {loc}: {error.message[:200]}")
