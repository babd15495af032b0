"""Plain text from untrusted values: severities and statuses cleaned to known names, numbers
and values formatted compactly, slugs for anchors. Every format's view goes through these, so
no renderer trusts a string from a result."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from audit.display import shorten, shown
from audit.result import SEVERITIES

SEVERITY_ORDER: tuple[str, ...] = tuple(s.value for s in reversed(SEVERITIES))
"""Severities, most severe first (display order)."""
_RANK = {s.value: s.rank for s in SEVERITIES}
STATUSES: tuple[str, ...] = ("fail", "error", "warn", "pass", "skipped")

CATEGORY_LABEL = {"defect": "model defect", "claim": "card claim", "exposure": "exposure",
                  "method": "method limit", "coverage": "coverage"}
"""How the report names the severity policy's categories."""


def severity_rank(severity: Any) -> int:
    """0 for info up to 4 for critical; unknown severities rank as info."""
    return _RANK.get(str(severity), 0)


def clean_severity(severity: Any) -> str:
    """A known severity name (unknown values read as ``info``)."""
    s = str(severity)
    return s if s in _RANK else "info"


def clean_status(status: Any) -> str:
    """A known section status (unknown values read as ``error``)."""
    s = str(status)
    return s if s in STATUSES else "error"


def text(value: Any) -> str:
    """Any value as display text (``None`` is empty), control characters made visible
    (:func:`shown`)."""
    if value is None:
        return ""
    return shown(value if isinstance(value, str) else str(value))


def fmt_number(v: Any, digits: int = 4) -> str:
    """Compact number formatting: ints stay ints, floats get ``digits`` significant digits,
    None/NaN show as an en dash, other values as text."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return "–"
        if v == int(v) and abs(v) < 1e9:
            return str(int(v))
        return f"{v:.{digits}g}"
    return text(v)


def fmt_value(v: Any, limit: int = 600) -> str:
    """A scalar as :func:`fmt_number`; lists and mappings as compact JSON, cut at ``limit``."""
    if v is None or isinstance(v, bool | int | float | str):
        return fmt_number(v)
    try:
        s = shown(json.dumps(v, sort_keys=True, default=str, ensure_ascii=False))
    except (TypeError, ValueError):
        s = text(v)
    return shorten(s, limit)


def as_float(v: Any) -> float | None:
    """A finite float, or None."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def slug(value: Any, limit: int = 48) -> str:
    """An ASCII anchor fragment: letters, digits, ``-`` and ``_``; never empty."""
    s = re.sub(r"[^A-Za-z0-9_]+", "-", text(value)).strip("-").lower()[:limit].strip("-")
    return s or "x"


def compact(v: Any, limit: int = 4000) -> str:
    """A readable one-or-few-line text of a value: lists as ``a, b, c``, a mapping as one
    ``key: value`` line per entry (nested values as compact JSON)."""
    if isinstance(v, dict):
        lines = [f"{text(k)}: {compact(x, 400) if not isinstance(x, dict) else fmt_value(x, 400)}"
                 for k, x in v.items()]
        s = "\n".join(lines)
    elif isinstance(v, list | tuple):
        if all(x is None or isinstance(x, str | int | float | bool) for x in v):
            s = ", ".join(fmt_number(x) for x in v)
        else:
            s = fmt_value(list(v), limit)
    else:
        s = fmt_value(v, limit)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def nice_time(value: Any) -> str:
    """An ISO timestamp as ``2026-01-31 12:00 UTC`` (other text unchanged)."""
    s = text(value)
    m = re.fullmatch(r"(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})(:\d{2}(\.\d+)?)?(\+00:00|Z)?", s)
    if not m:
        return s
    return f"{m.group(1)} {m.group(2)}{' UTC' if m.group(5) else ''}"


def expectation(card: Any, status: str, fail_on: str, requested: list[str] | None = None
                ) -> str:
    """What the card's ``verdict`` expects of its default audit, and whether this audit
    agrees (empty: none); ``requested`` names the checks of an audit that ran only those."""
    v = card.get("verdict") if isinstance(card, dict) else None
    if not isinstance(v, dict) or v.get("expected") not in ("pass", "fail"):
        return ""
    expected, reason = str(v["expected"]), text(v.get("reason", ""))
    said = f"The card expects {expected.upper()} at --fail-on high: {reason}"
    if requested is not None:
        return (f"{said.rstrip('.')} (of its default audit; this one ran only "
                f"{', '.join(requested)}, so the two are not comparable).")
    if fail_on != "high":
        return f"{said} (this audit fails on {fail_on}, so the two are not comparable)."
    agree = ("This audit agrees." if expected == status else
             f"This audit says {status.upper()}: read the findings that decide it.")
    return f"{said.rstrip('.')}. {agree}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def headline(status: str, fail_on: str, failing: int, counts: dict[str, int],
             statuses: list[str]) -> str:
    """One sentence: what fails the audit, what else was found, which checks did not run."""
    above = [f"{counts[s]} {s}" for s in SEVERITY_ORDER
             if counts[s] and severity_rank(s) >= severity_rank(fail_on)]
    below = [f"{counts[s]} {s}" for s in SEVERITY_ORDER
             if counts[s] and severity_rank(s) < severity_rank(fail_on)]
    n_below = sum(counts[s] for s in SEVERITY_ORDER if severity_rank(s) < severity_rank(fail_on))
    notes = []
    for st, word in (("error", "could not run"), ("skipped", "skipped")):
        k = sum(1 for s in statuses if s == st)
        if k:
            notes.append(f"{k} {word}")
    checks = _plural(len(statuses), "check") + (f" ({', '.join(notes)})" if notes else "")
    if failing:
        head = (f"{_plural(failing, 'finding')} at or above {fail_on} "
                f"fail{'s' if failing == 1 else ''} the audit ({', '.join(above)})")
    elif status == "fail":
        head = "The audit failed"
    else:
        head = f"No finding at or above {fail_on}"
    more = "more " if failing else ""
    tail = (f"; {n_below} {more}finding{'s' if n_below != 1 else ''} below {fail_on} "
            f"({', '.join(below)})") if n_below else ""
    return f"{head}{tail}. {checks[0].upper()}{checks[1:]}."
