"""Sensitive attributes as groups: one grouping per sensitive column plus their intersection.

A *grouping* assigns every row to one group: ``sex`` gives the groups ``Female`` and ``Male``;
the intersection ``sex × race`` gives ``Female, White``, ``Male, Black``, ... (only the
combinations that occur, as Fairlearn's ``MetricFrame`` does with several sensitive features).
Labels are sorted the way Fairlearn sorts them. Missing values (NaN, None, empty strings) become
the explicit group ``(missing)`` instead of being dropped: they are reported, not hidden.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from audit.errors import DataError

MISSING = "(missing)"
INTERSECTION = " × "


@dataclass(frozen=True)
class Grouping:
    """Rows assigned to groups: ``codes[i]`` indexes ``labels`` for row ``i``."""

    name: str
    """Display name: a column (``sex``) or an intersection (``sex × race``)."""
    features: tuple[str, ...]
    labels: tuple[str, ...]
    codes: np.ndarray

    @property
    def key(self) -> str:
        """An ASCII name for metric keys and ids (``sex``, ``sex_x_race``)."""
        return "_x_".join(_slug(f) for f in self.features)

    @property
    def size(self) -> int:
        """Number of groups."""
        return len(self.labels)

    def counts(self) -> np.ndarray:
        """Rows per group."""
        return np.bincount(self.codes, minlength=self.size)


def _slug(name: str) -> str:
    s = "".join(c if c.isalnum() or c in "-_" else "-" for c in str(name)).strip("-")
    return s or "feature"


def _column_codes(column: pd.Series) -> tuple[np.ndarray, list[str], int]:
    """Each row's group code in one column, the labels the codes index (sorted by
    :func:`_sort_key`; missing values and empty strings are ``(missing)``) and how many rows
    were missing. Factorised first, so the text work is per distinct value, not per row."""
    raw, uniques = pd.factorize(column, use_na_sentinel=True)
    text = [str(u).strip() for u in uniques]
    mapped = [MISSING if t == "" else t for t in text] + [MISSING]  # last: the NaN sentinel
    labels = sorted(set(mapped), key=_sort_key)
    rank = {label: i for i, label in enumerate(labels)}
    to_code = np.array([rank[m] for m in mapped], dtype=np.int64)
    empty = np.array([t == "" for t in text] + [True])
    raw = np.where(raw < 0, len(text), raw)
    codes = to_code[raw]
    return codes, labels, int(empty[raw].sum())


def _sort_key(label: str) -> tuple[int, int, float, str]:
    """Numbers in numeric order, then text, then ``(missing)`` last."""
    if label == MISSING:
        return (2, 0, 0.0, label)
    try:
        return (0, 0, float(label), label)
    except ValueError:
        return (1, 0, 0.0, label)


def make_groupings(sensitive: pd.DataFrame, *, intersectional: bool = True,
                   max_groups: int = 0) -> tuple[list[Grouping], dict[str, int],
                                                 dict[str, int]]:
    """One :class:`Grouping` per column of ``sensitive`` plus, with two or more columns and
    ``intersectional``, the intersection of all of them.

    Returns (groupings, missing values per column, skipped groupings with their number of
    groups). A grouping with more than ``max_groups`` groups (when ``max_groups > 0``) is left
    out and named in the skipped map: it is most likely a continuous column that needs binning.
    """
    if sensitive.shape[1] == 0:
        raise DataError("no sensitive columns given; name them with --sensitive COL[,COL]")
    columns = [str(c) for c in sensitive.columns]
    if len(set(columns)) != len(columns):
        raise DataError(f"sensitive columns are repeated: {', '.join(columns)}")
    codes: dict[str, np.ndarray] = {}
    labels: dict[str, list[str]] = {}
    missing: dict[str, int] = {}
    for col, name in zip(sensitive.columns, columns, strict=True):
        codes[name], labels[name], missing[name] = _column_codes(sensitive[col])
    groupings: list[Grouping] = []
    skipped: dict[str, int] = {}
    combos: list[tuple[str, ...]] = [(c,) for c in columns]
    if intersectional and len(columns) > 1:
        combos.append(tuple(columns))
    for features in combos:
        name = INTERSECTION.join(features)
        # per-column codes are ranks, so the mixed-radix number orders the combinations like
        # pandas sorts a (Multi)Index: by each feature in turn; only those that occur are kept
        combined = np.zeros(len(sensitive), dtype=np.int64)
        for f in features:
            combined = combined * len(labels[f]) + codes[f]
        uniq, inverse = np.unique(combined, return_inverse=True)
        if max_groups > 0 and len(uniq) > max_groups:
            skipped[name] = len(uniq)
            continue
        names = []
        for value in uniq.tolist():
            parts = []
            for f in reversed(features):
                value, r = divmod(value, len(labels[f]))
                parts.append(labels[f][r])
            names.append(", ".join(reversed(parts)))
        groupings.append(Grouping(name=name, features=features, labels=tuple(names),
                                  codes=inverse.reshape(-1).astype(np.int64)))
    return groupings, missing, skipped


def sensitive_frame(frame: pd.DataFrame, columns: Sequence[str], where: str = "data"
                    ) -> pd.DataFrame:
    """The named sensitive columns of ``frame``; :class:`DataError` names any missing one."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        shown = ", ".join(map(str, list(frame.columns)[:25]))
        raise DataError(f"sensitive column(s) {', '.join(missing)} not in {where}; columns are "
                        f"{shown}")
    return frame[list(columns)].reset_index(drop=True)
