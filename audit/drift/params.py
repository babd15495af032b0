"""Settings of the ``drift`` check (``[checks.drift]`` in ``audit.toml``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from audit.errors import ConfigError

__all__ = ["QUICK", "DriftParams"]

QUICK: dict[str, Any] = {"mmd_permutations": 200, "mmd_max_samples": 500,
                         "c2st_max_rows": 2000, "bootstrap": 100}
"""``--quick`` overrides (coarser p-values and intervals, same tests)."""


@dataclass
class DriftParams:
    """Settings of the drift check."""

    quick: ClassVar[dict[str, Any]] = QUICK
    sample_caps: ClassVar[dict[str, str]] = {
        "c2st_max_rows": "rows per side of the classifier two-sample test",
        "mmd_max_samples": "embeddings per side of the MMD test"}
    scaled: ClassVar[dict[str, int]] = {"mmd_max_samples": 256}
    """Budget fields shrunk, down to these floors, for a model costlier than the defaults
    are sized for (:mod:`audit.cost`)."""

    alpha: float = 0.05  # level of every test; per-column tests after Benjamini-Hochberg
    power: float = 0.8  # power at which the minimal detectable effects are stated
    psi_bins: int = 10  # reference-quantile bins of a numeric column's PSI
    psi_medium: float = 0.25  # a drifted column with PSI above this makes the finding medium
    dataset_share: float = 0.5  # drifted share of columns that is dataset drift (medium)
    c2st_max_rows: int = 5000  # rows per side of the classifier two-sample test
    c2st_auc_medium: float = 0.6  # a significant held-out AUC above this: medium, else low
    mmd_permutations: int = 1000  # permutations of the MMD test
    mmd_max_samples: int = 1000  # embeddings per side in the MMD test (seeded subset)
    bootstrap: int = 200  # bootstrap rounds of the label-free accuracy interval
    max_accuracy_drop: float = 0.05  # accuracy this far below the reference's: a finding
    weak_power_sd: float = 0.5  # no drift found, but a mean shift this large (in standard
    # deviations) could have been missed: a coverage note

    def __post_init__(self) -> None:
        where = "[checks.drift]"
        for name in ("alpha", "power", "dataset_share", "max_accuracy_drop"):
            v = getattr(self, name)
            if not 0 < v < 1:
                raise ConfigError(f"{where} {name} must be in (0, 1), got {v}")
        if not 0.5 <= self.c2st_auc_medium <= 1:
            raise ConfigError(f"{where} c2st_auc_medium must be in [0.5, 1], got "
                              f"{self.c2st_auc_medium}")
        for name in ("psi_bins", "c2st_max_rows", "mmd_permutations", "mmd_max_samples",
                     "bootstrap"):
            if getattr(self, name) < 2:
                raise ConfigError(f"{where} {name} must be >= 2, got {getattr(self, name)}")
        if self.psi_medium <= 0 or self.weak_power_sd <= 0:
            raise ConfigError(f"{where} psi_medium and weak_power_sd must be > 0")
