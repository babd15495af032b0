"""The typed result of certifying a model: per noise level, what CERTIFY and PREDICT said for
each sample. Everything the findings, the section and the figures read, nothing they would
have to recompute (no model, no noise)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from audit.certified.smoothing import ABSTAIN, max_radius
from audit.stats import clopper_pearson

__all__ = ["CertifiedEvaluation", "Rate", "SigmaCertification", "rate"]


@dataclass(frozen=True)
class Rate:
    """``k`` of ``n`` samples, with its exact (Clopper-Pearson) 95% interval."""

    k: int
    n: int
    ci_low: float
    ci_high: float

    @property
    def value(self) -> float:
        return self.k / self.n if self.n else 0.0

    def metrics(self, name: str) -> dict[str, float]:
        """``name``, ``name_ci_low`` and ``name_ci_high``."""
        return {name: self.value, f"{name}_ci_low": self.ci_low, f"{name}_ci_high": self.ci_high}

    def text(self) -> str:
        """``91.2% (95% CI 87.0%-94.5%)``."""
        return f"{self.value:.1%} (95% CI {self.ci_low:.1%}-{self.ci_high:.1%})"


def rate(mask: NDArray[np.bool_] | list[bool]) -> Rate:
    """The share of ``True`` in ``mask`` as a :class:`Rate`."""
    m = np.asarray(mask, dtype=bool)
    k, n = int(m.sum()), int(m.size)
    lo, hi = clopper_pearson(k, n) if n else (0.0, 1.0)
    return Rate(k=k, n=n, ci_low=lo, ci_high=hi)


@dataclass
class SigmaCertification:
    """CERTIFY and PREDICT at noise level ``sigma`` (input units) on the same samples.

    ``y``: true classes; ``prediction``/``radius``: CERTIFY's class (``ABSTAIN`` = -1) and
    certified L2 radius; ``predict``: PREDICT's class (``ABSTAIN`` = -1); ``n0``, ``n``,
    ``alpha``: the sampling budget; ``seconds``/``forwards``: the cost.
    """

    sigma: float
    y: NDArray[np.int64]
    prediction: NDArray[np.int64]
    radius: NDArray[np.float64]
    predict: NDArray[np.int64]
    n0: int
    n: int
    alpha: float
    seconds: float = 0.0
    forwards: int = 0

    @property
    def samples(self) -> int:
        return len(self.y)

    @property
    def max_radius(self) -> float:
        """The largest radius this budget can certify (see :func:`max_radius`)."""
        return max_radius(self.sigma, self.n, self.alpha)

    def certified(self, radius: float) -> NDArray[np.bool_]:
        """Per sample: certified with the true class at L2 radius at least ``radius``."""
        return (self.prediction == self.y) & (self.radius >= radius)

    def certified_accuracy(self, radius: float) -> Rate:
        """Share of samples certified correct at ``radius`` (abstentions count as wrong)."""
        return rate(self.certified(radius))

    def curve(self, radii: NDArray[np.float64]) -> NDArray[np.float64]:
        """Certified accuracy at each of ``radii``."""
        return np.array([self.certified(float(r)).mean() if self.samples else 0.0
                         for r in radii])

    @property
    def smoothed_accuracy(self) -> Rate:
        """PREDICT's accuracy (abstentions count as wrong)."""
        return rate(self.predict == self.y)

    @property
    def abstentions(self) -> Rate:
        """Share of samples CERTIFY abstained on."""
        return rate(self.prediction == ABSTAIN)

    @property
    def predict_abstentions(self) -> Rate:
        """Share of samples PREDICT abstained on."""
        return rate(self.predict == ABSTAIN)

    def median_radius(self) -> float:
        """Median certified radius of the samples certified correct (0 when none)."""
        ok = self.certified(0.0)
        return float(np.median(self.radius[ok])) if ok.any() else 0.0


@dataclass
class CertifiedEvaluation:
    """What the certified check measured on ``samples`` samples (the same ones at every
    sigma): ``base_correct`` says where the base model, without noise, is right; ``indices``
    are the samples' rows in the audited data (``data_size`` rows, hash ``data_sha256``),
    for paired comparisons of two models."""

    samples: int
    base_correct: NDArray[np.bool_]
    sigmas: list[SigmaCertification]
    radii: list[float]
    kind: str = "image"
    bounds: tuple[float, float] = (0.0, 1.0)
    card_metrics: dict[str, Any] = field(default_factory=dict)
    card_sigmas: list[float] = field(default_factory=list)
    indices: NDArray[np.int64] | None = None
    data_sha256: str = ""
    data_size: int = 0

    @property
    def base_accuracy(self) -> Rate:
        return rate(self.base_correct)

    def best(self, radius: float) -> SigmaCertification:
        """The sigma with the highest certified accuracy at ``radius`` (ties: the smaller)."""
        return max(self.sigmas, key=lambda s: (s.certified(radius).sum(), -s.sigma))
