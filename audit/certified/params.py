"""Settings of the ``certified`` check, where its noise levels come from, and how sigmas and
radii are named in metric keys."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from audit.errors import ConfigError
from audit.subject import Subject

__all__ = ["CARD_KEY", "QUICK", "CertifiedParams", "card_sigmas", "key", "sigmas_of"]

CARD_KEY = "smoothing_sigmas"
"""The card field holding the noise levels a model was trained for: ``robustness.
smoothing_sigmas`` (a list of numbers in input units), which ``audit harden --method
smoothing`` writes."""


QUICK: dict[str, Any] = {"max_samples": 100, "n0": 50, "n": 400}
"""``--quick`` overrides (certificates stop at a smaller radius: see the reading)."""


@dataclass
class CertifiedParams:
    """Settings of the certified check (``[checks.certified]`` in ``audit.toml``)."""

    quick: ClassVar[dict[str, Any]] = QUICK
    sample_caps: ClassVar[dict[str, str]] = {"max_samples": "samples certified"}
    scaled: ClassVar[dict[str, int]] = {"max_samples": 20, "n0": 20, "n": 100}
    """Budget fields shrunk, down to these floors, for a model costlier than the defaults
    are sized for (:mod:`audit.cost`)."""

    sigmas: list[float] | None = None
    """Gaussian noise levels in input units (default: the card's robustness.smoothing_sigmas;
    none known: the check is skipped)."""
    radii: list[float] = field(default_factory=lambda: [0.25, 0.5, 1.0])
    """L2 radii of the table and the metrics (input units)."""
    max_samples: int = 500  # seeded subset of the data above this
    n0: int = 100  # CERTIFY's selection draws per sample
    n: int = 1000  # CERTIFY's estimation draws per sample (PREDICT reuses them)
    alpha: float = 0.001  # failure probability of each certificate
    batch_size: int = 8192  # noisy inputs per forward
    curve_points: int = 60  # points of the curve table
    abstain_medium: float = 0.2  # CERTIFY abstaining on more than this share: medium
    abstain_high: float = 0.5  # ... on more than this share: high
    noise_gap: float = 0.1  # smoothed accuracy this far below the base model's: medium

    def __post_init__(self) -> None:
        where = "[checks.certified]"
        if self.sigmas is not None and not all(math.isfinite(s) and s > 0
                                               for s in self.sigmas):
            raise ConfigError(f"{where} sigmas must be positive numbers, got {self.sigmas}")
        if not all(math.isfinite(r) and r >= 0 for r in self.radii):
            raise ConfigError(f"{where} radii must be numbers >= 0, got {self.radii}")
        if self.n0 < 1 or self.n < 1 or self.max_samples < 1 or self.batch_size < 1:
            raise ConfigError(f"{where} n0, n, max_samples and batch_size must be >= 1")
        if not 0 < self.alpha < 1:
            raise ConfigError(f"{where} alpha must be in (0, 1), got {self.alpha}")


def key(v: float) -> str:
    """How a sigma or radius appears in metric names: ``certified_accuracy_sigma_0.25_l2_0.5``."""
    return f"{v:g}"


def card_sigmas(subject: Subject) -> list[float]:
    """The noise levels of the card's ``robustness.smoothing_sigmas`` (empty when absent)."""
    raw = (subject.card.robustness or {}).get(CARD_KEY)
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        raw = [raw]
    if not isinstance(raw, list):
        return []
    return [float(s) for s in raw
            if isinstance(s, int | float) and not isinstance(s, bool) and s > 0]


def sigmas_of(p: CertifiedParams, subject: Subject) -> list[float]:
    """The sigmas to certify at, sorted: the settings', else the card's."""
    chosen = p.sigmas if p.sigmas is not None else card_sigmas(subject)
    return sorted({float(s) for s in chosen})
