"""Small formatters shared by the fairness findings and section texts."""

from __future__ import annotations

import math

from audit.fairness.metrics import Disparity


def pct(v: float) -> str:
    """``12.3%``, or an en dash for a value that could not be measured."""
    return "–" if not math.isfinite(v) else f"{v:.1%}"


def ci_text(d: Disparity) -> str:
    """The bootstrap interval of a disparity in words."""
    if not (math.isfinite(d.ci_low) and math.isfinite(d.ci_high)):
        return "no interval"
    return f"95% CI {d.ci_low:.3f}–{d.ci_high:.3f}"


def slug(text: str) -> str:
    """A grouping or column name as an id part (``sex_x_race`` -> ``sex-x-race``)."""
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def rounded(v: float, digits: int = 4) -> float | None:
    """``v`` rounded for a table cell; ``None`` (an empty cell) when not finite."""
    return round(float(v), digits) if math.isfinite(v) else None
