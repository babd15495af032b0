"""What the drift check measured, as typed values (judged by :mod:`audit.drift.findings`,
reported by :mod:`audit.drift.section`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from audit.drift.cbpe import AccuracyEstimate
from audit.drift.features import FeatureDrift
from audit.drift.twosample import ClassifierTest, MMDResult

__all__ = ["DriftEvaluation"]


@dataclass
class DriftEvaluation:
    """Reference against current data: per-column tests (tabular), whole-set tests, the
    model's predictions and representation, and the accuracy estimated without labels."""

    reference: str  # names of the two data sets, for the report
    current: str
    kind: str  # "tabular" or "image"
    n_reference: int
    n_current: int
    features: list[FeatureDrift] = field(default_factory=list)  # raw columns (tabular)
    classifier: ClassifierTest | None = None
    classifier_on: str = ""  # what the domain classifier saw
    classifier_p_adjusted: float = 1.0  # in the check's Benjamini-Hochberg family
    mmd: MMDResult | None = None
    mmd_p_adjusted: float = 1.0
    embedding: str = ""  # which representation MMD compared
    embedding_note: str = ""
    predictions: list[FeatureDrift] = field(default_factory=list)  # class and confidence
    class_shares: list[tuple[str, float, float]] = field(default_factory=list)
    confidence_reference: np.ndarray = field(default_factory=lambda: np.empty(0))
    confidence_current: np.ndarray = field(default_factory=lambda: np.empty(0))
    accuracy: AccuracyEstimate | None = None
    out_of_range: float = 0.0  # share of current rows with an input outside the card's range
    out_of_range_columns: list[tuple[str, float]] = field(default_factory=list)
    """(column, share of current rows outside the range), largest first."""
    input_range: tuple[float, float] = (0.0, 1.0)
    notes: list[str] = field(default_factory=list)

    @property
    def drifted(self) -> list[FeatureDrift]:
        """Columns that drifted after Benjamini-Hochberg, strongest first."""
        return sorted((f for f in self.features if f.drifted), key=lambda f: f.p_adjusted)

    @property
    def drift_share(self) -> float:
        """Share of the tested columns that drifted (nan without columns)."""
        return len(self.drifted) / len(self.features) if self.features else float("nan")

    def prediction(self, column: str) -> FeatureDrift | None:
        """The drift of ``predicted class`` or ``confidence``."""
        return next((f for f in self.predictions if f.column == column), None)
