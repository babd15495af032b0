"""Image slices as clusters of the model's own embeddings (Domino-style): k-means on the input
of the classification head (:class:`audit.drift.embeddings.Embedder`), each cluster's error
rate tested against the rest.

The clusters are found without looking at the errors, so no half of the data needs to be
held out for confirmation: each cluster's exact one-sided test (Fisher's, hypergeometric: a
z-test raised 9.5% false alarms over 200 null repeats of 8 clusters of 75 rows),
Benjamini-Hochberg adjusted over the ``k`` clusters, keeps the false discovery rate at
``alpha``.
"""

from __future__ import annotations

import numpy as np

from audit.drift.features import benjamini_hochberg
from audit.slices.search import SliceResult
from audit.stats import exact_worse_p, newcombe_difference

__all__ = ["cluster_labels", "cluster_slices", "group_slices"]


def cluster_labels(embeddings: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """k-means labels of standardised embeddings (fewer clusters than ``k`` for tiny data)."""
    from sklearn.cluster import KMeans

    z = np.asarray(embeddings, np.float64)
    z = (z - z.mean(axis=0)) / np.maximum(z.std(axis=0), 1e-8)
    k = max(1, min(k, len(z) // 10))
    return KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(z)


def group_slices(labels: np.ndarray, failed: np.ndarray, names: dict[int, str], *,
                 alpha: float = 0.05, min_size: int = 10) -> list[SliceResult]:
    """One :class:`SliceResult` per labelled group of rows (groups chosen without the errors,
    so all rows serve as confirmation), confirmed first by gap."""
    failed = np.asarray(failed, bool)
    n, total = len(failed), int(failed.sum())
    raw: list[tuple[str, int, int]] = []
    for g in np.unique(labels):
        m = labels == g
        size = int(m.sum())
        if size >= min_size and n - size > 0:
            raw.append((names.get(int(g), f"group {g}"), size, int(failed[m].sum())))
    ps = np.array([exact_worse_p(e, s, total - e, n - s) for _, s, e in raw])
    adj = benjamini_hochberg(ps) if len(ps) else ps
    out = []
    for (rule, size, errs), p, pa in zip(raw, ps, adj, strict=True):
        gap, lo, hi = newcombe_difference(errs, size, total - errs, n - size)
        out.append(SliceResult(rule=rule, conditions=(), size=size, errors=errs,
                               rate=errs / size, rest_rate=(total - errs) / (n - size), gap=gap,
                               ci_low=lo, ci_high=hi, p_value=float(p), p_adjusted=float(pa),
                               confirmed=bool(pa < alpha), discovery_rate=errs / size,
                               discovery_size=size))
    return sorted(out, key=lambda s: (not s.confirmed, -s.gap))


def cluster_slices(embeddings: np.ndarray, failed: np.ndarray, *, k: int = 8,
                   alpha: float = 0.05, seed: int = 0
                   ) -> tuple[list[SliceResult], dict[str, np.ndarray]]:
    """The clusters as slices, and each cluster's rows by its rule."""
    labels = cluster_labels(embeddings, k, seed)
    count = int(labels.max()) + 1
    names = {i: f"embedding cluster {i + 1} of {count}" for i in range(count)}
    members = {names[i]: labels == i for i in range(count)}
    return group_slices(labels, failed, names, alpha=alpha), members
