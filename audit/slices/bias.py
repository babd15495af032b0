"""Bias in the training data itself, before any model: who is represented, how often each
group carries the positive label, and whose values are missing.

:func:`training_bias` forms the groups of each sensitive column and of their intersection
exactly as the fairness check does (:func:`audit.fairness.groups.make_groupings`: labels such
as ``Female`` or ``Female, Black`` under the column ``sex × race``, missing sensitive values as
the group ``(missing)``), on the training and the audited rows together so both use the same
labels. Per group it reports:

* **Representation**: the group's share of the training rows and of the audited rows, each with
  a Wilson interval, and the two-proportion z-test of the two shares
  (:func:`audit.stats.two_proportion_test`, which treats the two frames as independent samples).
  A group is *under-represented* when that test rejects at ``alpha`` and its training share is
  below :data:`UNDER_REPRESENTED_RATIO` (four fifths) of its audited share: the four-fifths rule
  of disparate impact, applied to presence in the data rather than to outcomes, so a
  significant but tiny difference on a large data set is not flagged.
* **Base rate**: the share of the group's labelled training rows whose label is ``positive``
  (Wilson interval), the same in the audited data when it has labels, and the gap to the rest
  of the training rows with Newcombe's hybrid score interval (his method 10, built from the two
  Wilson intervals) and the two-proportion test. The gap *differs* when its interval excludes 0.
* **Missingness**: the share of the group's training rows with a missing value in any column
  other than the sensitive ones and the target (NaN, None, an empty string or UCI's ``?``, as
  the tabular encoder counts them) against the rest, with the same interval and test, and per
  column the columns whose missing share differs at ``alpha``.

Tests run only for groups with at least ``min_group`` training rows (and a rest of that size);
smaller groups are listed with their counts and shares, ``tested=False`` and NaN p-values.
Representation is the exception: it is tested when the group has ``min_group`` rows in the two
frames together, since a group almost absent from training is the finding itself. Tests are
per group at ``alpha``, without a correction for the number of groups.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

import numpy as np
import pandas as pd

from audit.errors import DataError
from audit.fairness.groups import Grouping, make_groupings, sensitive_frame
from audit.stats import newcombe_difference, two_proportion_test, wilson

__all__ = ["UNDER_REPRESENTED_RATIO", "ColumnMissing", "GroupBias", "missing_mask",
           "training_bias"]

UNDER_REPRESENTED_RATIO = 0.8
"""A group is under-represented when its training share is below this fraction of its audited
share (and the difference is significant)."""

MISSING_TOKENS = ("?", "")
"""Cell values that mean "unknown" besides NaN/None; the same as the tabular encoder's
``audit.datasets.tabular.MISSING_TOKENS`` (not imported: that module needs torch)."""


@dataclass(frozen=True)
class ColumnMissing:
    """One column whose missing share in a group differs from the rest of the training rows."""

    column: str
    group_share: float
    rest_share: float
    p_value: float


@dataclass(frozen=True)
class GroupBias:
    """One group of one sensitive column, or of their intersection (``column`` is then
    ``sex × race`` and ``group`` ``Female, Black``), in the training and the audited data.

    Shares and rates come with ``_low``/``_high`` bounds at the confidence ``1 - alpha``.
    ``label`` is the class whose base rate is reported.
    """

    group: str
    column: str
    label: str
    n_train: int
    n_audit: int
    tested: bool
    """False when the group has fewer than ``min_group`` training rows: shown, not tested."""
    train_share: float
    train_share_low: float
    train_share_high: float
    audit_share: float
    audit_share_low: float
    audit_share_high: float
    share_p_value: float
    under_represented: bool
    train_base_rate: float
    train_base_rate_low: float
    train_base_rate_high: float
    audit_base_rate: float | None
    audit_base_rate_low: float | None
    audit_base_rate_high: float | None
    base_rate_gap: float
    """Training base rate of the group minus that of the rest of the training rows."""
    base_rate_gap_low: float
    base_rate_gap_high: float
    base_rate_p_value: float
    base_rate_differs: bool
    missing_train: float
    """Share of the group's training rows with a missing value in any non-sensitive column."""
    missing_rest: float
    missing_gap_low: float
    missing_gap_high: float
    missing_p_value: float
    missing_differs: bool
    missing_columns: tuple[ColumnMissing, ...] = ()

    @property
    def representation_ratio(self) -> float:
        """Training share over audited share (NaN when the group is absent from the audit)."""
        return self.train_share / self.audit_share if self.audit_share > 0 else math.nan

    @property
    def missing_gap(self) -> float:
        """Missing share of the group minus that of the rest of the training rows."""
        return self.missing_train - self.missing_rest


def missing_mask(frame: pd.DataFrame) -> pd.DataFrame:
    """True where a cell is missing: NaN/None, or (text columns) empty or ``?`` once stripped."""
    mask = frame.isna()
    for col in frame.columns:
        series = frame[col]
        if not pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            text = series.astype("string").str.strip()
            mask[col] = mask[col] | text.isin(MISSING_TOKENS).fillna(False).astype(bool)
    return mask


def _classes(series: pd.Series) -> list[str]:
    """The distinct non-missing labels as text, numbers in numeric order."""
    values = {str(v).strip() for v in series.dropna().tolist()} - {""}

    def key(v: str) -> tuple[int, float, str]:
        try:
            return (0, float(v), v)
        except ValueError:
            return (1, 0.0, v)

    return sorted(values, key=key)


def _labels(frame: pd.DataFrame, target: str) -> pd.Series:
    """The target as stripped text, missing labels as NA."""
    text = frame[target].astype("string").str.strip()
    return text.where(text != "")


@dataclass(frozen=True)
class _Split:
    """One grouping's codes on the training and the audited rows."""

    grouping: Grouping
    train: np.ndarray
    audit: np.ndarray


def _groupings(train: pd.DataFrame, audit: pd.DataFrame, sensitive: Sequence[str]
               ) -> list[_Split]:
    both = pd.concat([sensitive_frame(train, sensitive, "the training data"),
                      sensitive_frame(audit, sensitive, "the audited data")],
                     ignore_index=True)
    groupings, _, _ = make_groupings(both)
    n = len(train)
    return [_Split(g, g.codes[:n], g.codes[n:]) for g in groupings]


def training_bias(train: pd.DataFrame, audit: pd.DataFrame, sensitive: Sequence[str],
                  target: str, positive: str | None = None, *, min_group: int = 30,
                  alpha: float = 0.05) -> list[GroupBias]:
    """Representation, label base rate and missingness of every sensitive group (see the
    module docstring), training rows ``train`` against audited rows ``audit``.

    ``positive`` is the class whose base rate is reported; by default the last class of a
    binary target (``1``, ``True``, ``>50K``), and for more classes one entry per class and
    group. ``audit`` may lack the target column (its base rates are then None). Groups come per
    grouping (each column, then the intersection), in the fairness check's order.
    """
    if len(train) == 0 or len(audit) == 0:
        raise DataError("training_bias needs rows in both the training and the audited data")
    if target not in train.columns:
        raise DataError(f"target column {target!r} not in the training data; columns are "
                        f"{', '.join(map(str, train.columns[:25]))}")
    labels = _labels(train, target)
    classes = _classes(labels)
    if positive is not None:
        if str(positive) not in classes:
            raise DataError(f"positive class {positive!r} not among the labels of {target!r}: "
                            f"{', '.join(classes[:12])}")
        chosen = [str(positive)]
    else:
        chosen = classes[-1:] if len(classes) <= 2 else classes
    audit_labels = _labels(audit, target) if target in audit.columns else None
    others = [c for c in train.columns if c not in set(sensitive) | {target}]
    miss = missing_mask(train[others]).to_numpy() if others else np.zeros((len(train), 0), bool)
    conf = 1.0 - alpha
    out: list[GroupBias] = []
    for split in _groupings(train, audit, sensitive):
        for label in chosen:
            out.extend(_grouping_bias(split, labels, audit_labels, label, miss, others,
                                      min_group, alpha, conf))
    return out


def _rate(k: float, n: int, conf: float) -> tuple[float, float, float]:
    """``k/n`` and its Wilson interval (NaNs when ``n == 0``)."""
    lo, hi = wilson(float(k), int(n), conf)
    return (float(k) / n if n else math.nan, lo, hi)


@dataclass(frozen=True)
class _Counts:
    """Per-group counts of one grouping (arrays indexed by group code)."""

    train: np.ndarray
    audit: np.ndarray
    labelled: np.ndarray
    positive: np.ndarray
    audit_labelled: np.ndarray | None
    audit_positive: np.ndarray | None
    missing: np.ndarray
    missing_by_column: np.ndarray
    """(groups, columns): training rows with a missing value in each column."""

    @classmethod
    def of(cls, split: _Split, labels: pd.Series, audit_labels: pd.Series | None, label: str,
           miss: np.ndarray) -> _Counts:
        size = split.grouping.size

        def count(codes: np.ndarray, where: np.ndarray) -> np.ndarray:
            return np.bincount(codes[where], minlength=size)

        a_n = a_k = None
        if audit_labels is not None:
            a_n = count(split.audit, audit_labels.notna().to_numpy(dtype=bool))
            a_k = count(split.audit, _is(audit_labels, label))
        by_col = np.stack([count(split.train, miss[:, j]) for j in range(miss.shape[1])],
                          axis=1) if miss.shape[1] else np.zeros((size, 0), np.int64)
        return cls(train=np.bincount(split.train, minlength=size),
                   audit=np.bincount(split.audit, minlength=size),
                   labelled=count(split.train, labels.notna().to_numpy(dtype=bool)),
                   positive=count(split.train, _is(labels, label)),
                   audit_labelled=a_n, audit_positive=a_k,
                   missing=count(split.train, np.asarray(miss.any(axis=1), dtype=bool)),
                   missing_by_column=by_col)


class _Representation(TypedDict):
    train_share: float
    train_share_low: float
    train_share_high: float
    audit_share: float
    audit_share_low: float
    audit_share_high: float
    share_p_value: float
    under_represented: bool


class _BaseRate(TypedDict):
    train_base_rate: float
    train_base_rate_low: float
    train_base_rate_high: float
    audit_base_rate: float | None
    audit_base_rate_low: float | None
    audit_base_rate_high: float | None
    base_rate_gap: float
    base_rate_gap_low: float
    base_rate_gap_high: float
    base_rate_p_value: float
    base_rate_differs: bool


class _Missingness(TypedDict):
    missing_train: float
    missing_rest: float
    missing_gap_low: float
    missing_gap_high: float
    missing_p_value: float
    missing_differs: bool
    missing_columns: tuple[ColumnMissing, ...]


def _is(labels: pd.Series, label: str) -> np.ndarray:
    """True where ``labels`` (text, NA for missing) equals ``label``."""
    return np.asarray((labels == label).fillna(False), dtype=bool)


def _vs_rest(k: np.ndarray, n: np.ndarray, g: int) -> tuple[int, int, int, int]:
    """The group's (k, n) and the rest's (k, n)."""
    return int(k[g]), int(n[g]), int(k.sum() - k[g]), int(n.sum() - n[g])


def _representation(c: _Counts, g: int, tested: bool, alpha: float, conf: float
                    ) -> _Representation:
    n_tr, n_au = int(c.train.sum()), int(c.audit.sum())
    ts, ts_lo, ts_hi = _rate(c.train[g], n_tr, conf)
    as_, as_lo, as_hi = _rate(c.audit[g], n_au, conf)
    p = two_proportion_test(int(c.train[g]), n_tr, int(c.audit[g]), n_au) if tested \
        else math.nan
    return {"train_share": ts, "train_share_low": ts_lo, "train_share_high": ts_hi,
            "audit_share": as_, "audit_share_low": as_lo, "audit_share_high": as_hi,
            "share_p_value": p,
            "under_represented": bool(tested and p < alpha
                                      and ts < UNDER_REPRESENTED_RATIO * as_)}


def _base_rate(c: _Counts, g: int, tested: bool, conf: float) -> _BaseRate:
    k, n, k_rest, n_rest = _vs_rest(c.positive, c.labelled, g)
    br, br_lo, br_hi = _rate(k, n, conf)
    gap, lo, hi = newcombe_difference(k, n, k_rest, n_rest, conf) if tested \
        else (math.nan, math.nan, math.nan)
    audit: tuple[float | None, float | None, float | None] = (None, None, None)
    if c.audit_labelled is not None and c.audit_positive is not None and c.audit_labelled[g]:
        audit = _rate(c.audit_positive[g], int(c.audit_labelled[g]), conf)
    return {"train_base_rate": br, "train_base_rate_low": br_lo, "train_base_rate_high": br_hi,
            "audit_base_rate": audit[0], "audit_base_rate_low": audit[1],
            "audit_base_rate_high": audit[2], "base_rate_gap": gap, "base_rate_gap_low": lo,
            "base_rate_gap_high": hi,
            "base_rate_p_value": two_proportion_test(k, n, k_rest, n_rest) if tested
            else math.nan,
            "base_rate_differs": bool(tested and (lo > 0 or hi < 0))}


def _missingness(c: _Counts, g: int, tested: bool, others: list[str], alpha: float,
                 conf: float) -> _Missingness:
    k, n, k_rest, n_rest = _vs_rest(c.missing, c.train, g)
    _, lo, hi = newcombe_difference(k, n, k_rest, n_rest, conf) if tested \
        else (math.nan, math.nan, math.nan)
    p = two_proportion_test(k, n, k_rest, n_rest) if tested else math.nan
    cols: list[ColumnMissing] = []
    for j, col in enumerate(others if tested else []):
        kj, _, kj_rest, _ = _vs_rest(c.missing_by_column[:, j], c.train, g)
        pj = two_proportion_test(kj, n, kj_rest, n_rest)
        if pj < alpha:
            cols.append(ColumnMissing(col, kj / n, kj_rest / n_rest, pj))
    return {"missing_train": k / n if n else math.nan,
            "missing_rest": k_rest / n_rest if n_rest else math.nan,
            "missing_gap_low": lo, "missing_gap_high": hi, "missing_p_value": p,
            "missing_differs": bool(tested and p < alpha), "missing_columns": tuple(cols)}


def _grouping_bias(split: _Split, labels: pd.Series, audit_labels: pd.Series | None,
                   label: str, miss: np.ndarray, others: list[str], min_group: int,
                   alpha: float, conf: float) -> list[GroupBias]:
    c = _Counts.of(split, labels, audit_labels, label, miss)
    n_train = int(c.train.sum())
    out = []
    for g in range(split.grouping.size):
        tested = bool(c.train[g] >= min_group and n_train - c.train[g] >= min_group)
        share_tested = bool(c.train[g] + c.audit[g] >= min_group)
        out.append(GroupBias(
            group=split.grouping.labels[g], column=split.grouping.name, label=label,
            n_train=int(c.train[g]), n_audit=int(c.audit[g]), tested=tested,
            **_representation(c, g, share_tested, alpha, conf),
            **_base_rate(c, g, tested, conf),
            **_missingness(c, g, tested, others, alpha, conf)))
    return out
