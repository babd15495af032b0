"""The arrays a fairness assessment takes, validated: a wrong one is a one-line
:class:`~audit.errors.DataError` that says what it holds and how to fix it."""

from __future__ import annotations

import numpy as np

from audit.errors import DataError


def binary_labels(name: str, values: np.ndarray) -> np.ndarray:
    """``values`` as 0/1 integers; :class:`DataError` names what else it holds."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise DataError(f"{name} must be one value per row, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr.astype(np.int64)
    try:
        num = arr.astype(np.float64)
    except (TypeError, ValueError):
        bad = sorted({str(v) for v in arr.tolist()})[:5]
        raise DataError(f"{name} must hold 0/1 labels, found {', '.join(bad)}; name the "
                        "favourable value with --pos-label") from None
    if not np.isfinite(num).all():
        raise DataError(f"{name} has {int((~np.isfinite(num)).sum())} missing or non-finite "
                        "value(s); remove those rows first")
    bad_vals = sorted(set(np.unique(num).tolist()) - {0.0, 1.0})
    if bad_vals:
        shown = ", ".join(f"{v:g}" for v in bad_vals[:5])
        raise DataError(f"{name} must hold 0/1 labels, found {shown}; name the favourable value "
                        "with --pos-label")
    return num.astype(np.int64)


def sample_weights(sample_weight: np.ndarray | None, n: int) -> np.ndarray | None:
    """Row weights as floats (``None``: unweighted), checked to be one per row, finite, >= 0."""
    w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if w is not None and (w.shape != (n,) or not np.isfinite(w).all() or (w < 0).any()):
        raise DataError("sample_weight must be one finite, non-negative number per row")
    return w


def scores(score: np.ndarray | None, n: int) -> np.ndarray | None:
    """Probabilities of the favourable class, checked to be one per row in [0, 1]."""
    if score is None:
        return None
    s = np.asarray(score, dtype=np.float64)
    if s.shape != (n,):
        raise DataError(f"score must be one value per row, got shape {s.shape}")
    if not np.isfinite(s).all() or (s < 0).any() or (s > 1).any():
        raise DataError("score must be probabilities of the favourable class in [0, 1]; "
                        "found values outside it or missing")
    return s
