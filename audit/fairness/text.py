"""Small formatters shared by the fairness findings and section texts."""

from __future__ import annotations

import math

from audit.fairness.metrics import Disparity


def pct(v: float) -> str:
    """``12.3%``, or an en dash for a value that could not be measured."""
    return "–" if not math.isfinite(v) else f"{v:.1%}"


def interval_text(lo: float, hi: float) -> str:
    """A bootstrap interval in words."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "no interval"
    return f"95% CI {lo:.3f}–{hi:.3f}"


def ci_text(d: Disparity) -> str:
    """The bootstrap interval of a disparity in words."""
    return interval_text(d.ci_low, d.ci_high)


def scope_text(d: Disparity) -> str:
    """``over 3 of 5 groups`` when ``d`` leaves groups out, else empty."""
    return f"over {d.groups_compared} of {d.groups_total} groups" if d.partial else ""


def left_out_text(d: Disparity, min_group_size: int, limit: int = 8) -> str:
    """Which groups ``d`` leaves out and why (empty when none): ``left out (fewer than 30 rows
    in a rate's denominator): a (12 rows), b (4 actual positives for the TPR)``."""
    if not d.partial:
        return ""
    items = list(d.left_out.items())
    shown = ", ".join(f"{k} ({v})" for k, v in items[:limit])
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return (f"left out (fewer than {min_group_size} rows in a rate's denominator): "
            f"{shown}{more}")


def all_groups_text(d: Disparity) -> str:
    """``d``'s value over every group, as Fairlearn computes it (empty when none is left
    out): ``over all 5 groups, as Fairlearn computes it: 0.073 (95% CI 0.010–0.200)``."""
    if not d.partial:
        return ""
    value = f"{d.all_groups:.3f}" if math.isfinite(d.all_groups) else "not measurable"
    return (f"over all {d.groups_total} groups, as Fairlearn computes it: {value} "
            f"({interval_text(d.all_ci_low, d.all_ci_high)})")


def slug(text: str) -> str:
    """A grouping or column name as an id part (``sex_x_race`` -> ``sex-x-race``)."""
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def rounded(v: float, digits: int = 4) -> float | None:
    """``v`` rounded for a table cell; ``None`` (an empty cell) when not finite."""
    return round(float(v), digits) if math.isfinite(v) else None
