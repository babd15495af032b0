"""Sample budgets in the open: ``--samples N`` (or ``all``) sets every cap on how many rows of
the data a check uses, and each section gets a table of the samples its numbers rest on with
the widest interval a rate on that many samples can have.

A check's ``Params`` names its caps in ``sample_caps`` (field -> what it counts); a new check
declares them there and needs no edit here. Keys the user set in ``[checks.NAME]`` (or
``params=``) win over ``--samples``: the more specific setting is the one meant."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from audit.errors import ConfigError
from audit.result import Table
from audit.stats import samples_for_halfwidth, wilson

__all__ = ["Samples", "parse_samples", "sample_caps", "samples_table", "with_samples"]

Samples = int | Literal["all"] | None
"""``None``: each check's own caps; an integer: every cap set to it; ``"all"``: the data."""


def parse_samples(value: Any, where: str) -> Samples:
    """``--samples`` / ``[audit] samples``: a positive integer or ``"all"``."""
    if value is None or value == "all":
        return value
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}: samples must be a positive integer or 'all', got "
                          f"{value!r}")
    return value


def sample_caps(params: Any) -> dict[str, str]:
    """The fields of ``params`` that cap how many data rows its check uses."""
    return dict(getattr(type(params), "sample_caps", {}))


def with_samples(params: Any, samples: Samples, user_set: set[str], available: int) -> Any:
    """``params`` with every sample cap not in ``user_set`` set to ``samples`` (``"all"``:
    ``available``, the rows of the audited data)."""
    if samples is None:
        return params
    n = available if samples == "all" else samples
    changes = {k: max(n, 1) for k in sample_caps(params) if k not in user_set}
    return dataclasses.replace(params, **changes) if changes else params


def samples_table(params: Any, available: int, conf: float = 0.95) -> Table:
    """What the section's numbers rest on: per cap, the samples used (the cap or the data,
    whichever is smaller), the worst-case half-width of a rate on them (Wilson at 50%), and
    the samples that would halve it."""
    caps = sample_caps(params) or {"": "every row of the audited data"}
    rows: list[list[Any]] = []
    for key, what in caps.items():
        n = min(int(getattr(params, key)), available) if key else available
        lo, hi = wilson(n / 2, n, conf) if n else (0.0, 1.0)
        rows.append([what, f"{key} = {getattr(params, key)}" if key else "none", n, available,
                     f"±{(hi - lo) / 2:.1%}", 4 * n])
    return Table(
        id="samples", title="Samples behind these numbers",
        columns=["what", "cap", "samples", "of rows", f"widest {conf:.0%} CI",
                 "to halve it"],
        rows=rows,
        caption="Each rate of this section rests on at most these many samples; the widest "
                "interval is that of a rate of 50% (the section's tables give each rate's own); "
                f"±1 point needs {samples_for_halfwidth(0.5, 0.01, conf, 'wilson')} samples. "
                "Raise every cap with --samples N (or all), or one with its key in "
                "[checks.NAME] of audit.toml.")
