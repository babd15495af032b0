"""Settings of the ``slices`` check (``[checks.slices]`` in ``audit.toml``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from audit.errors import ConfigError

__all__ = ["QUICK", "SlicesParams"]

QUICK: dict[str, Any] = {"max_conditions": 2, "carry": 10, "reliance_rows": 1000}
"""``--quick`` overrides."""


@dataclass
class SlicesParams:
    """Settings of the slices check."""

    quick: ClassVar[dict[str, Any]] = QUICK
    sample_caps: ClassVar[dict[str, str]] = {
        "reliance_rows": "rows the proxy reliance is measured on"}
    scaled: ClassVar[dict[str, int]] = {"reliance_rows": 500}
    """Budget fields shrunk, down to these floors, for a model costlier than the defaults
    are sized for (:mod:`audit.cost`)."""

    max_conditions: int = 2  # conditions per rule (3: triples extend the best pairs)
    min_support: float = 0.02  # a slice holds at least this share of rows (or, >= 1, rows)
    bins: int = 4  # quantile bins of a numeric column
    carry: int = 20  # best rules of the discovery half tested on the confirmation half
    alpha: float = 0.05  # false discovery rate of the confirmed slices
    clusters: int = 8  # k-means clusters of the model's embeddings (images)
    gap_medium: float = 0.1  # a confirmed slice's error gap above this: medium, below: low
    gap_high: float = 0.3  # ... whose whole 95% interval is above this: high
    shown: int = 10  # slices listed in the table
    findings: int = 5  # distinct confirmed slices raised as findings (the rest: in the table)
    overlap: float = 0.5  # a slice sharing this share of rows (Jaccard) with a worse one is
    # the same slice said again: folded into that one's finding
    gallery: int = 3  # image slices shown with their saliency overlays
    train_data: str | None = None  # training data for the bias audit (default: the card's)
    strong_auc: float = 0.7  # a feature predicting a sensitive attribute this well is a proxy
    reliance: float = 0.01  # share of predictions a feature flips when permuted: relied on
    reliance_rows: int = 4000  # audit rows the reliance is measured on (seeded subset)
    min_group: int = 30  # groups smaller than this are shown, not tested

    def __post_init__(self) -> None:
        where = "[checks.slices]"
        if self.max_conditions not in (1, 2, 3):
            raise ConfigError(f"{where} max_conditions must be 1, 2 or 3")
        if not 0 < self.alpha < 1 or not 0.5 < self.strong_auc < 1:
            raise ConfigError(f"{where} alpha must be in (0, 1) and strong_auc in (0.5, 1)")
        if self.min_support <= 0 or self.bins < 2 or self.carry < 1 or self.clusters < 2:
            raise ConfigError(f"{where} min_support > 0, bins >= 2, carry >= 1, clusters >= 2")
        if not 0 <= self.gap_medium <= self.gap_high <= 1:
            raise ConfigError(f"{where} need 0 <= gap_medium <= gap_high <= 1")
