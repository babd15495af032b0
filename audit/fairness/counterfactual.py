"""Counterfactual fairness for text: swap identity terms and measure how the prediction moves.

For each ordered pair of groups (``female -> male``, ``male -> female``, ...), every text that
mentions a term of the source group is rewritten with the terms of the target group at the same
index (:func:`audit.datasets.terms.swap_terms`), and the model classifies both. Per pair:

* how often the predicted class changes (``flip_rate``), with its Wilson interval;
* how much the probability of the ``positive`` class moves (``shift`` = swapped - original,
  mean over the texts, and the mean absolute shift), with a t interval of the mean and the
  two-sided one-sample t-test p-value against no shift: a shift whose interval holds 0 is not
  told apart from noise, and one below :data:`MIN_SHIFT` is not material
  (:meth:`PairGap.material`).

Term lists are the caller's (a user replaces them); pairs whose source terms no text mentions
are reported with ``n = 0``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from audit.datasets.terms import mentions, swap_terms
from audit.stats import wilson

MIN_SHIFT = 0.01
"""The smallest mean probability shift :meth:`PairGap.material` reports (1 point)."""

ProbaFn = Callable[[list[str]], np.ndarray]
"""Texts to class probabilities ``(N, C)``."""


@dataclass(frozen=True)
class PairGap:
    """What swapping ``source``'s terms for ``target``'s does to the model's predictions."""

    source: str
    target: str
    n: int
    flips: int
    flip_rate: float
    flip_low: float
    flip_high: float
    shift: float
    shift_low: float
    shift_high: float
    abs_shift: float
    p_value: float

    def material(self, min_shift: float = MIN_SHIFT) -> bool:
        """Whether the swap changes predictions in a way worth reporting: a predicted class
        flipped, or the mean shift's interval excludes 0 *and* the shift is at least
        ``min_shift`` (a deterministic model's tiny, consistent shifts are significant on
        any sample of texts, and immaterial)."""
        beyond_noise = not (self.shift_low <= 0.0 <= self.shift_high)
        return self.flips > 0 or (beyond_noise and abs(self.shift) >= min_shift)


def counterfactual_gaps(proba: ProbaFn, texts: Sequence[str],
                        groups: Mapping[str, Sequence[str]], *, positive: int,
                        conf: float = 0.95) -> list[PairGap]:
    """:class:`PairGap` for every ordered pair of ``groups`` (module doc); ``positive`` is the
    index of the class whose probability shift is measured."""
    names = list(groups)
    lengths = {len(groups[g]) for g in names}
    if len(lengths) > 1:
        raise ValueError("every group needs the same number of terms (index-aligned pairs); "
                         f"got {', '.join(f'{g}: {len(groups[g])}' for g in names)}")
    out = []
    for src in names:
        chosen = [t for t in texts if mentions(t, groups[src])]
        originals = proba(chosen) if chosen else np.zeros((0, positive + 1))
        for dst in names:
            if dst == src:
                continue
            swapped = [swap_terms(t, groups[src], groups[dst]) for t in chosen]
            out.append(_gap(src, dst, originals, proba(swapped) if swapped else originals,
                            positive, conf))
    return out


def _gap(src: str, dst: str, before: np.ndarray, after: np.ndarray, positive: int,
         conf: float) -> PairGap:
    n = len(before)
    if n == 0:
        nan = math.nan
        return PairGap(src, dst, 0, 0, nan, nan, nan, nan, nan, nan, nan, nan)
    flips = int((before.argmax(1) != after.argmax(1)).sum())
    lo, hi = wilson(flips, n, conf)
    d = after[:, positive] - before[:, positive]
    mean = float(d.mean())
    sd = float(d.std(ddof=1)) if n > 1 else 0.0
    if n > 1 and sd > 0:
        half = float(stats.t.ppf(0.5 + conf / 2, n - 1)) * sd / math.sqrt(n)
        p = float(stats.ttest_1samp(d, 0.0).pvalue)
    else:
        half, p = 0.0, (1.0 if mean == 0 else 0.0)
    return PairGap(src, dst, n, flips, flips / n, lo, hi, mean, mean - half, mean + half,
                   float(np.abs(d).mean()), p)
