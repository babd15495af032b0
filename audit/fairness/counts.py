"""Confusion counts per group and the rates and spreads computed from them (one pass of
``np.bincount`` for all groups, and for a batch of bootstrap resamples at once)."""

from __future__ import annotations

import numpy as np


def confusion(cells: np.ndarray, groups: int, weights: np.ndarray | None = None,
              batch: int = 1) -> np.ndarray:
    """Counts (batch, groups, y, ŷ) from flat cell ids ``b*4G + g*4 + 2y + ŷ``."""
    c = np.bincount(cells.ravel(), weights=None if weights is None else weights.ravel(),
                    minlength=batch * groups * 4)
    return c.astype(np.float64).reshape(batch, groups, 2, 2)


def num_den(c: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Numerator and denominator of each rate from counts ``(..., 2, 2)`` indexed (y, ŷ)."""
    tn, fp, fn, tp = c[..., 0, 0], c[..., 0, 1], c[..., 1, 0], c[..., 1, 1]
    n = tn + fp + fn + tp
    return {"selection_rate": (fp + tp, n), "true_positive_rate": (tp, tp + fn),
            "false_positive_rate": (fp, fp + tn), "precision": (tp, tp + fp),
            "accuracy": (tp + tn, n)}


def rates_from_counts(c: np.ndarray) -> dict[str, np.ndarray]:
    """Each rate from confusion counts ``(..., 2, 2)`` indexed (y, ŷ); NaN where a group has no
    members, 0 where only the rate's denominator is empty (scikit-learn's convention)."""
    out = {}
    present = c.sum(axis=(-1, -2)) > 0
    for key, (num, den) in num_den(c).items():
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
        out[key] = np.where(present, r, np.nan)
    return out


def spread(values: np.ndarray, kind: str) -> np.ndarray:
    """max − min (difference) or min / max (ratio) over the last axis, ignoring NaN."""
    finite = np.isfinite(values)
    some = finite.any(axis=-1)
    hi = np.where(some, np.max(np.where(finite, values, -np.inf), axis=-1), np.nan)
    lo = np.where(some, np.min(np.where(finite, values, np.inf), axis=-1), np.nan)
    if kind == "difference":
        return hi - lo
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(hi != 0, lo / np.where(hi != 0, hi, 1.0), np.nan)


def worst(per_rate: list[np.ndarray], kind: str) -> np.ndarray:
    """The worst case over rates (largest difference, smallest ratio), ignoring NaN."""
    if len(per_rate) == 1:
        return per_rate[0]
    stacked = np.stack(per_rate)
    finite = np.isfinite(stacked)
    if kind == "difference":
        out = np.max(np.where(finite, stacked, -np.inf), axis=0)
    else:
        out = np.min(np.where(finite, stacked, np.inf), axis=0)
    return np.where(finite.any(axis=0), out, np.nan)
