"""Mitigation aimed at one slice of the rows (a rule such as ``age < 25 and hours_per_week >=
50``, as the slices check writes it) rather than at a sensitive group, and how it is judged:

- :class:`SliceReweighing` raises the slice's share of the training loss;
- :func:`slice_gap` measures the slice's error rate against the rest's, with Newcombe's 95%
  interval for the difference, the number the slices check reported and the mitigation should
  lower.

The rows of a slice come in as a boolean mask (the rule is read and applied by the caller,
:func:`audit.slices.conditions.parse_rule`), so this module needs no slice machinery.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audit.errors import DataError
from audit.stats import newcombe_difference

__all__ = ["SliceGap", "SliceReweighing", "slice_gap"]


@dataclass
class SliceReweighing:
    """Inverse-frequency upweighting of one slice: in the weighted training loss the slice
    carries ``share`` of the total (default half: the slice and the rest weigh the same, the
    group-balanced weighting that is a strong baseline for the worst group's error, Idrissi et
    al. 2022), the rest ``1 - share``. Slice rows get ``share / p``, the others ``(1 - share) /
    (1 - p)``, ``p`` the slice's fraction of the rows; the mean weight stays 1, so the learning
    rate means what it did.

    Why not Kamiran & Calders on slice x label (``w = P(s) P(y) / P(s, y)``): those weights sum
    to ``n P(s)`` inside the slice, its share of the loss unchanged; they make the label
    independent of slice membership (moving the slice's base rate, what :class:`Reweighing`
    does for groups), while a weak slice needs the model to fit it better.
    """

    share: float = 0.5
    weight_in_: float = 1.0
    weight_out_: float = 1.0

    def fit(self, in_slice: np.ndarray, what: str = "the slice") -> SliceReweighing:
        """Weights from the slice's mask over the training rows; :class:`DataError` when it
        holds no row, every row, or already at least ``share`` of them."""
        if not 0.0 < self.share < 1.0:
            raise ValueError(f"share must be in (0, 1), got {self.share}")
        m = np.asarray(in_slice, dtype=bool)
        n, k = len(m), int(m.sum())
        if k == 0 or k == n:
            raise DataError(f"{what} holds {'no' if k == 0 else 'every'} training row; "
                            "reweighing needs rows inside and outside it")
        p = k / n
        if p >= self.share:
            raise DataError(f"{what} holds {p:.0%} of the training rows, already at least the "
                            f"{self.share:.0%} share reweighing by slice gives it; pick a "
                            "narrower rule")
        self.weight_in_ = self.share / p
        self.weight_out_ = (1.0 - self.share) / (1.0 - p)
        return self

    def sample_weight(self, in_slice: np.ndarray) -> np.ndarray:
        """One weight per row."""
        return np.where(np.asarray(in_slice, dtype=bool), self.weight_in_,
                        self.weight_out_).astype(np.float64)

    def fit_transform(self, in_slice: np.ndarray, what: str = "the slice") -> np.ndarray:
        """Fit and return the training weights."""
        return self.fit(in_slice, what).sample_weight(in_slice)


@dataclass(frozen=True)
class SliceGap:
    """A slice's error rate against the rest's on one variant's decisions: ``gap`` = error
    inside − error outside, with Newcombe's hybrid score 95% interval (``ci_low``,
    ``ci_high``)."""

    rule: str
    rows: int
    error: float
    rest_error: float
    gap: float
    ci_low: float
    ci_high: float


def slice_gap(rule: str, in_slice: np.ndarray, wrong: np.ndarray) -> SliceGap:
    """The gap of the rows in ``in_slice`` given which decisions are ``wrong``."""
    m = np.asarray(in_slice, dtype=bool)
    w = np.asarray(wrong, dtype=bool)
    k1, n1 = int(w[m].sum()), int(m.sum())
    k2, n2 = int(w[~m].sum()), int((~m).sum())
    d, lo, hi = newcombe_difference(k1, n1, k2, n2)
    return SliceGap(rule, n1, k1 / n1 if n1 else float("nan"),
                    k2 / n2 if n2 else float("nan"), d, lo, hi)
