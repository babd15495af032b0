"""Interval and test statistics for rates (torch-free), and the compact per-sample outcomes
that paired tests read from a result.

Intervals: :func:`clopper_pearson` (exact, from beta quantiles; never narrower than the
nominal coverage) and :func:`wilson` (score interval). :func:`samples_for_halfwidth` says how
many samples would give a +-k interval at an observed rate.

Tests of a change between two rates: :func:`mcnemar_exact` when both were measured on the
same samples (exact binomial test on the discordant pairs), :func:`two_proportion_test`
otherwise (pooled two-proportion z-test, the same p-value as Pearson's chi-square on the 2x2
table without continuity correction). :func:`paired_change` and :func:`unpaired_change` wrap
them into a :class:`RateChange` verdict at ``alpha``.

Per-sample outcomes (``Section.outcomes`` in the result, see
``audit/schema/result.schema.json``): which rows of the audited data were evaluated and, per
rate, which of those samples counted as a success, as little-endian base64 bitsets
(:func:`pack_bits`, :func:`unpack_bits`, :func:`outcomes_block`, :class:`Outcomes`).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import special

__all__ = [
    "ENCODING",
    "Outcomes",
    "RateChange",
    "clopper_pearson",
    "exact_worse_p",
    "mcnemar_exact",
    "newcombe_difference",
    "outcomes_block",
    "p_text",
    "pack_bits",
    "paired_change",
    "proportion_ci",
    "samples_for_halfwidth",
    "two_proportion_test",
    "unpack_bits",
    "unpaired_change",
    "wilson",
]

Method = Literal["clopper-pearson", "wilson"]
ENCODING = "bitset-le-base64"
"""How ``Section.outcomes`` stores its bitsets: numpy ``packbits(bitorder="little")`` bytes
(bit ``i`` of the set is bit ``i % 8`` of byte ``i // 8``), base64 (standard alphabet)."""


def clopper_pearson(k: float, n: int, conf: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval for ``k`` successes in ``n`` trials: the beta
    quantiles ``B(a/2; k, n-k+1)`` and ``B(1-a/2; k+1, n-k)``, 0 and 1 at the edges. ``k``
    may be fractional (a mean of per-sample scores in [0, 1] times ``n``). (nan, nan) for
    ``n == 0``."""
    if n <= 0:
        return (math.nan, math.nan)
    k = min(max(float(k), 0.0), float(n))
    a = 1.0 - conf
    lo = 0.0 if k <= 0 else float(special.betaincinv(k, n - k + 1, a / 2))
    hi = 1.0 if k >= n else float(special.betaincinv(k + 1, n - k, 1 - a / 2))
    return (lo, hi)


def wilson(k: float, n: int, conf: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for ``k`` successes in ``n`` trials; (nan, nan) for ``n == 0``."""
    if n <= 0:
        return (math.nan, math.nan)
    z = float(special.ndtri(1 - (1 - conf) / 2))
    p = min(max(k / n, 0.0), 1.0)
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def proportion_ci(k: float, n: int, conf: float = 0.95,
                  method: Method = "clopper-pearson") -> tuple[float, float]:
    """The ``method`` interval of ``k`` successes in ``n`` trials."""
    return clopper_pearson(k, n, conf) if method == "clopper-pearson" else wilson(k, n, conf)


def _half_width(rate: float, n: int, conf: float, method: Method) -> float:
    lo, hi = proportion_ci(rate * n, n, conf, method)
    return max(rate - lo, hi - rate)


def samples_for_halfwidth(rate: float, half: float = 0.01, conf: float = 0.95,
                          method: Method = "clopper-pearson") -> int:
    """The fewest samples whose interval at the observed ``rate`` reaches at most ``half``
    on either side (e.g. +-1 point: ``half=0.01``); exact search over n (the width at a
    fixed rate shrinks with n)."""
    if not 0 < half < 1 or not math.isfinite(rate):
        raise ValueError(f"need 0 < half < 1 and a finite rate, got {half}, {rate}")
    rate = min(max(rate, 0.0), 1.0)
    lo, hi = 1, 2
    while _half_width(rate, hi, conf, method) > half:
        lo, hi = hi, hi * 2
    while lo < hi:
        mid = (lo + hi) // 2
        if _half_width(rate, mid, conf, method) > half:
            lo = mid + 1
        else:
            hi = mid
    return lo


def newcombe_difference(k1: float, n1: int, k2: float, n2: int, conf: float = 0.95
                        ) -> tuple[float, float, float]:
    """``k1/n1 - k2/n2`` with Newcombe's hybrid score interval (method 10): from the Wilson
    intervals (l1, u1), (l2, u2), ``d - sqrt((p1-l1)² + (u2-p2)²)`` to
    ``d + sqrt((u1-p1)² + (p2-l2)²)``. NaNs when either sample is empty."""
    if n1 <= 0 or n2 <= 0:
        return (math.nan, math.nan, math.nan)
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1, conf)
    l2, u2 = wilson(k2, n2, conf)
    d = p1 - p2
    return (d, d - math.hypot(p1 - l1, u2 - p2), d + math.hypot(u1 - p1, p2 - l2))


def exact_worse_p(k1: int, n1: int, k2: int, n2: int) -> float:
    """Exact one-sided p-value of "``k1/n1`` is above ``k2/n2``": Fisher's exact test, i.e.
    ``P(X >= k1)`` for ``X ~ Hypergeometric(n1 + n2, k1 + k2, n1)``. Valid for the small
    counts where the z-test's normal approximation raises too many alarms."""
    from scipy.stats import hypergeom

    if n1 <= 0 or n2 <= 0:
        return 1.0
    return float(min(1.0, hypergeom.sf(k1 - 1, n1 + n2, k1 + k2, n1)))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided p-value of McNemar's exact test: ``b`` samples right only in A, ``c`` right
    only in B; under no change each discordant pair goes either way with probability 1/2,
    so p = min(1, 2 P(X <= min(b, c))) for X ~ Binomial(b + c, 1/2). 1.0 with no discordant
    pair."""
    n = b + c
    if n == 0:
        return 1.0
    return min(1.0, 2.0 * float(special.bdtr(min(b, c), n, 0.5)))


def two_proportion_test(k1: float, n1: int, k2: float, n2: int) -> float:
    """Two-sided p-value of the pooled two-proportion z-test of ``k1/n1`` against ``k2/n2``
    (independent samples); 1.0 when both rates are 0 or both 1."""
    if n1 <= 0 or n2 <= 0:
        return math.nan
    pooled = (k1 + k2) / (n1 + n2)
    var = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    if var <= 0:
        return 1.0
    z = (k2 / n2 - k1 / n1) / math.sqrt(var)
    return float(special.erfc(abs(z) / math.sqrt(2)))


@dataclass
class RateChange:
    """A test of whether a rate changed from A to B by more than noise.

    ``paired``: McNemar's exact test on the same samples (``only_a``/``only_b``: samples that
    succeed in A only / in B only); otherwise the unpaired two-proportion test.
    """

    a: float
    b: float
    n_a: int
    n_b: int
    p_value: float
    alpha: float
    paired: bool
    only_a: int | None = None
    only_b: int | None = None

    @property
    def method(self) -> str:
        return "McNemar exact (paired)" if self.paired else "two-proportion z-test (unpaired)"

    @property
    def distinguishable(self) -> bool:
        """True when the change is unlikely under no change (``p_value < alpha``)."""
        return bool(math.isfinite(self.p_value) and self.p_value < self.alpha)

    @property
    def verdict(self) -> str:
        """``distinguishable from noise: yes, p=0.0003``."""
        return (f"distinguishable from noise: {'yes' if self.distinguishable else 'no'}, "
                f"p={_fmt_p(self.p_value)}")

    @property
    def evidence(self) -> str:
        """What the test counted, in words."""
        if self.paired:
            return (f"{self.n_a} paired samples: {self.only_a} succeed only in A, "
                    f"{self.only_b} only in B")
        return f"{self.n_a} and {self.n_b} samples, not paired"


def _fmt_p(p: float) -> str:
    if not math.isfinite(p):
        return "n/a"
    return f"{p:.2g}" if p < 0.001 else f"{p:.3f}"


def p_text(p: float) -> str:
    """``p=0.031``, ``p=2.1e-05``, or ``p<1e-300`` for a p-value that underflowed to 0 in
    double precision (a test statistic far out in its tail), never ``p=0``."""
    if math.isfinite(p) and p < 1e-300:
        return "p<1e-300"
    return f"p={_fmt_p(p)}"


def paired_change(a: np.ndarray, b: np.ndarray, alpha: float = 0.05) -> RateChange:
    """McNemar's exact test of per-sample successes ``a`` against ``b`` (same samples)."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"paired outcomes differ in length: {a.shape} vs {b.shape}")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    n = len(a)
    return RateChange(a=float(a.mean()) if n else math.nan, b=float(b.mean()) if n else math.nan,
                      n_a=n, n_b=n, p_value=mcnemar_exact(only_a, only_b), alpha=alpha,
                      paired=True, only_a=only_a, only_b=only_b)


def unpaired_change(a: float, n_a: int, b: float, n_b: int, alpha: float = 0.05) -> RateChange:
    """The two-proportion test of rate ``a`` on ``n_a`` samples against ``b`` on ``n_b``."""
    return RateChange(a=a, b=b, n_a=n_a, n_b=n_b,
                      p_value=two_proportion_test(a * n_a, n_a, b * n_b, n_b), alpha=alpha,
                      paired=False)


def pack_bits(mask: np.ndarray) -> str:
    """A boolean vector as a little-endian base64 bitset (see :data:`ENCODING`)."""
    bits = np.packbits(np.asarray(mask, dtype=bool), bitorder="little")
    return base64.b64encode(bits.tobytes()).decode("ascii")


def unpack_bits(text: str, n: int) -> np.ndarray:
    """The first ``n`` bits of a :func:`pack_bits` string as a boolean vector."""
    raw = np.frombuffer(base64.b64decode(text, validate=True), dtype=np.uint8)
    if len(raw) * 8 < n:
        raise ValueError(f"bitset holds {len(raw) * 8} bits, {n} expected")
    return np.unpackbits(raw, bitorder="little")[:n].astype(bool)


def outcomes_block(data_sha256: str, data_size: int, indices: np.ndarray,
                   rates: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The ``outcomes`` of a section: the rows of the data (of ``data_size`` rows, hash
    ``data_sha256``) that were evaluated, and per rate name the per-sample successes in the
    order of increasing row index (``indices`` must be sorted)."""
    idx = np.asarray(indices, dtype=np.int64)
    if len(idx) and (np.any(np.diff(idx) <= 0) or idx[0] < 0 or idx[-1] >= data_size):
        raise ValueError("indices must be increasing row numbers of the data")
    member = np.zeros(data_size, dtype=bool)
    member[idx] = True
    out: dict[str, str] = {}
    for name, ok in rates.items():
        ok = np.asarray(ok, dtype=bool)
        if ok.shape != (len(idx),):
            raise ValueError(f"outcomes of {name}: {ok.shape[0]} values for {len(idx)} samples")
        out[name] = pack_bits(ok)
    return {"encoding": ENCODING, "data_sha256": data_sha256, "data_size": int(data_size),
            "samples": len(idx), "indices": pack_bits(member), "rates": out}


@dataclass
class Outcomes:
    """A section's per-sample outcomes, read back from its JSON ``outcomes`` block."""

    data_sha256: str
    data_size: int
    samples: int
    indices: str
    rates: dict[str, str]

    @classmethod
    def read(cls, block: Any) -> Outcomes | None:
        """The outcomes of a JSON block, or None when it is absent or not understood."""
        if not isinstance(block, dict) or block.get("encoding") != ENCODING:
            return None
        try:
            return cls(str(block["data_sha256"]), int(block["data_size"]),
                       int(block["samples"]), str(block["indices"]),
                       {str(k): str(v) for k, v in dict(block["rates"]).items()})
        except (KeyError, TypeError, ValueError):
            return None

    def pairs_with(self, other: Outcomes) -> str | None:
        """None when both were measured on the same samples of the same data, else why not."""
        if self.data_sha256 != other.data_sha256:
            return "different data (sha256)"
        if self.data_size != other.data_size or self.indices != other.indices:
            return "different samples of the data"
        return None

    def rate(self, name: str) -> np.ndarray | None:
        """Per-sample successes of rate ``name``, or None when not recorded."""
        text = self.rates.get(name)
        return None if text is None else unpack_bits(text, self.samples)

    def row_indices(self) -> np.ndarray:
        """The evaluated rows of the data, increasing."""
        return np.nonzero(unpack_bits(self.indices, self.data_size))[0]
