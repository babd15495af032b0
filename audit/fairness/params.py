"""Settings and thresholds of the fairness check (``[checks.fairness]`` in audit.toml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

QUICK: dict[str, Any] = {"n_boot": 200}
"""What ``--quick`` changes: fewer bootstrap resamples."""


@dataclass
class FairnessParams:
    """Settings and thresholds of the fairness check (``[checks.fairness]`` in audit.toml)."""

    quick: ClassVar[dict[str, Any]] = QUICK

    sensitive: list[str] = field(default_factory=list)
    """Sensitive columns; empty: ``--sensitive``, else the data's, else the card's."""
    positive_class: str = ""
    """The favourable class (name or index); empty: the second class of a binary model."""
    intersectional: bool = True
    """Also assess the intersection of all sensitive columns (e.g. sex × race)."""
    min_group_size: int = 30
    """A group's rate enters a disparity only when its denominator has this many rows."""
    max_groups: int = 40
    """Groupings with more groups are skipped with a finding (a continuous column?)."""
    n_boot: int = 1000
    """Bootstrap resamples for the confidence intervals (0: none)."""
    ci_level: float = 0.95
    """Confidence level of the bootstrap intervals."""
    alpha: float = 0.05
    """A gap is distinguishable from zero when the test of equal rates gives p < alpha."""
    gap_low: float = 0.05
    """Demographic-parity, equalized-odds or accuracy difference at or above: low."""
    gap_medium: float = 0.10
    """... at or above: medium (accuracy gaps stay at most medium)."""
    gap_high: float = 0.20
    """... at or above: high."""
    four_fifths: float = 0.8
    """Demographic-parity ratio below this fails the four-fifths rule (medium)."""
    ratio_high: float = 0.5
    """Demographic-parity ratio below this is high."""
    calibration_medium: float = 0.05
    """Calibration difference (spread of mean score − observed rate) at or above: medium."""
    calibration_bins: int = 10
    """Equal-width score bins of the per-group expected calibration error (ECE)."""


