"""Two-sample tests on whole data sets: kernel MMD with a permutation test, and a classifier
two-sample test (a domain classifier told to separate reference from current rows).

MMD (Gretton et al. 2012) with a Gaussian kernel whose bandwidth is the median pairwise distance
of the pooled sample (the median heuristic, as alibi-detect's default). The statistic is the
biased estimate ``w^T K w`` with ``w = 1/n`` on reference rows and ``-1/m`` on current ones, so
one matrix product scores a whole batch of permutations; the p-value is ``(1 + #{perm >=
observed}) / (1 + permutations)``, exact for any sample size.

The classifier test (Lopez-Paz and Oquab 2017) fits on one half of a balanced sample and
scores the other half: under no drift the held-out scores of both sets are exchangeable, so the
Mann-Whitney U test of current scores above reference scores is a valid test and ``U / (n m)``
is the held-out ROC AUC. Which features separate the sets: the held-out AUC lost when one
feature group's columns are permuted together (one-hot columns of one raw column move as one).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from scipy import stats
from sklearn.metrics import roc_auc_score

__all__ = ["ClassifierTest", "MMDResult", "classifier_test", "mmd_test"]


@dataclass(frozen=True)
class MMDResult:
    """A kernel MMD permutation test of reference against current rows."""

    mmd2: float  # biased MMD^2 estimate
    p_value: float
    threshold: float  # the permutations' (1 - alpha) quantile of MMD^2
    bandwidth: float  # Gaussian kernel bandwidth (median heuristic)
    permutations: int
    n_reference: int
    n_current: int


def _subsample(x: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    return x if len(x) <= cap else x[np.sort(rng.choice(len(x), cap, replace=False))]


def mmd_test(reference: np.ndarray, current: np.ndarray, *, permutations: int = 1000,
             max_samples: int = 1000, alpha: float = 0.05, seed: int = 0,
             device: torch.device | None = None) -> MMDResult:
    """MMD permutation test on ``(n, d)`` and ``(m, d)`` arrays, each sub-sampled (seeded) to
    at most ``max_samples`` rows; runs on ``device`` (default CPU) in float64."""
    rng = np.random.default_rng(seed)
    a = _subsample(np.asarray(reference, np.float64).reshape(len(reference), -1), max_samples,
                   rng)
    b = _subsample(np.asarray(current, np.float64).reshape(len(current), -1), max_samples, rng)
    n, m = len(a), len(b)
    if n < 2 or m < 2:
        raise ValueError(f"MMD needs at least 2 rows on each side, got {n} and {m}")
    z = torch.from_numpy(np.concatenate([a, b])).to(device or "cpu")
    # exact differences, not the |a|^2 + |b|^2 - 2ab shortcut, which loses digits
    d2 = torch.cdist(z, z, compute_mode="donot_use_mm_for_euclid_dist").pow_(2)
    off = d2[~torch.eye(n + m, dtype=torch.bool, device=z.device)]
    med = float(off.median()) if off.numel() else 0.0
    bandwidth = math.sqrt(med / 2) if med > 0 else 1.0
    k = torch.exp(-d2 / (2 * bandwidth * bandwidth))
    w0 = torch.cat([torch.full((n,), 1.0 / n, dtype=k.dtype),
                    torch.full((m,), -1.0 / m, dtype=k.dtype)]).to(k.device)
    observed = float(w0 @ k @ w0)
    gen = torch.Generator().manual_seed(seed)
    null: list[torch.Tensor] = []
    for start in range(0, permutations, 200):  # 200 permutations per product bound memory
        p = min(200, permutations - start)
        perm = torch.argsort(torch.rand(p, n + m, generator=gen), dim=1).to(z.device)
        w = w0[perm]
        null.append(((w @ k) * w).sum(dim=1).cpu())
    stats_null = torch.cat(null).numpy() if null else np.empty(0)
    p_value = (1 + int((stats_null >= observed - 1e-12).sum())) / (1 + len(stats_null))
    threshold = float(np.quantile(stats_null, 1 - alpha)) if len(stats_null) else math.nan
    return MMDResult(observed, p_value, threshold, bandwidth, permutations, n, m)


@dataclass(frozen=True)
class ClassifierTest:
    """A classifier two-sample test: held-out ROC AUC of a reference-vs-current classifier."""

    auc: float
    p_value: float  # one-sided Mann-Whitney U of current scores above reference scores
    classifier: str
    n_train: int
    n_test: int
    importances: list[tuple[str, float]] = field(default_factory=list)
    """(feature group, held-out AUC lost when it is permuted), largest first, positive only."""


def classifier_test(reference: np.ndarray, current: np.ndarray, *,
                    groups: Mapping[str, Sequence[int]] | None = None,
                    model: Literal["boosting", "logistic"] = "boosting", max_rows: int = 5000,
                    repeats: int = 3, top: int = 8, alpha: float = 0.05,
                    seed: int = 0) -> ClassifierTest:
    """Fit a domain classifier on half of a balanced sample (at most ``max_rows`` per side)
    and test its held-out AUC; ``groups`` maps feature names to their column indices for the
    importances, computed only when the test finds a difference at ``alpha`` (what a
    classifier at chance relies on is noise)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    per_side = min(len(reference), len(current), max_rows)
    if per_side < 10:
        raise ValueError(f"the classifier test needs at least 10 rows on each side, got "
                         f"{len(reference)} and {len(current)}")
    a = _subsample(np.asarray(reference, np.float64).reshape(len(reference), -1), per_side, rng)
    b = _subsample(np.asarray(current, np.float64).reshape(len(current), -1), per_side, rng)
    x = np.concatenate([a, b])
    y = np.r_[np.zeros(len(a), np.int64), np.ones(len(b), np.int64)]
    order = rng.permutation(len(x))
    half = len(x) // 2
    train, test = order[:half], order[half:]
    if model == "boosting":
        clf = HistGradientBoostingClassifier(max_iter=100, early_stopping=False,
                                             random_state=seed)
        name = "gradient-boosted trees (scikit-learn HistGradientBoosting)"
    else:
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        name = "logistic regression on standardised features"
    clf.fit(x[train], y[train])
    xt, yt = x[test], y[test]
    scores = clf.predict_proba(xt)[:, 1]
    if len(np.unique(yt)) < 2:
        return ClassifierTest(0.5, 1.0, name, len(train), len(test))
    auc = float(roc_auc_score(yt, scores))
    p_value = float(stats.mannwhitneyu(scores[yt == 1], scores[yt == 0],
                                       alternative="greater").pvalue)
    importances: list[tuple[str, float]] = []
    for gname, cols in (groups or {}).items() if p_value < alpha else ():
        idx = list(cols)
        drops = []
        for _ in range(repeats):
            shuffled = xt.copy()
            shuffled[:, idx] = xt[rng.permutation(len(xt))][:, idx]
            drops.append(auc - float(roc_auc_score(yt, clf.predict_proba(shuffled)[:, 1])))
        drop = float(np.mean(drops))
        if drop > 0:
            importances.append((gname, drop))
    importances.sort(key=lambda t: -t[1])
    return ClassifierTest(auc, p_value, name, len(train), len(test), importances[:top])
