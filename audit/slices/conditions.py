"""Boolean conditions on the raw columns of a table, the atoms of a slice rule (torch-free).

:func:`make_conditions` turns each column into a few :class:`Condition` s; a slice is a
conjunction of them (:mod:`audit.slices.search`). :func:`rule_text` and :func:`parse_rule`
write and read such a conjunction (``age < 25 and sex == 'Male'``), exactly round-tripping.

Decisions:

* Kind: bool, object, string and category dtypes are categorical, and so is a numeric
  column with at most ``bins`` distinct values (0/1 flags, small counts): its values are
  clearer as ``children == 2`` than as bins. Other numeric columns are binned. Dates and
  durations are refused (convert them to numbers first).
* Numeric bins: edges at the ``i / bins`` quantiles (``i = 1 .. bins - 1``) of the column's
  non-missing values, each moved to the "roundest" number (fewest significant digits) among
  those splitting the data within +-``0.1 / bins`` of the quantile's share, and among those
  to the one whose share below it is nearest ``i / bins``; so integer data gets its exact
  split (``age < 25``, not ``age < 24.75``) and continuous data a readable one
  (``fnlwgt < 180000``). A quantile on a tie (40 hours a week) keeps the tied value as its
  edge, and one at the minimum (a mass of zeros) moves just above it, so
  ``capital_gain < 100`` means "no gain". The edges are computed without the failures, so
  choosing them leaks nothing into a later test.
* Per numeric column with edges ``e_1 < .. < e_m``: the one-sided ``x < e_j`` and
  ``x >= e_j`` for every edge and the interior bins ``e_j <= x < e_j+1``; the outer bins are
  the one-sided forms at ``e_1`` and ``e_m``.
* Categorical: ``col == value`` for each value with at least ``min_support`` rows.
* Missing (NaN, None, NA; +-inf for numeric columns): ``col is missing`` when at least
  ``min_support`` rows are; a missing value satisfies no other condition of its column.
"""

from __future__ import annotations

import ast
import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from audit.errors import DataError

__all__ = ["Condition", "Op", "make_conditions", "parse_rule", "rule_text"]

Op = Literal["<", ">=", "range", "==", "missing"]
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_RESERVED = frozenset({"and", "is", "missing", "inf", "nan", "True", "False"})


def _num_text(v: float) -> str:
    # integers print without ".0"; other floats as repr, which reads back exactly
    if float(v).is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(float(v))


def _value_text(v: Any) -> str:
    if isinstance(v, bool | np.bool_):
        return str(bool(v))
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        return _num_text(float(v))
    return repr(str(v))


def _column_text(name: str) -> str:
    return name if _IDENT.match(name) and name not in _RESERVED else f"`{name}`"


@dataclass(frozen=True)
class Condition:
    """``column op values``: ``<`` and ``>=`` hold one edge, ``range`` two (``lo <= x < hi``),
    ``==`` one value, ``missing`` none."""

    column: str
    op: Op
    values: tuple[Any, ...] = ()

    def text(self) -> str:
        """The condition as :func:`parse_rule` reads it: ``25 <= age < 38``."""
        col = _column_text(self.column)
        if self.op == "missing":
            return f"{col} is missing"
        if self.op == "range":
            lo, hi = self.values
            return f"{_num_text(lo)} <= {col} < {_num_text(hi)}"
        if self.op == "==":
            return f"{col} == {_value_text(self.values[0])}"
        return f"{col} {self.op} {_num_text(self.values[0])}"

    def mask(self, frame: pd.DataFrame) -> np.ndarray:
        """The rows of ``frame`` that satisfy the condition (missing values satisfy only
        ``is missing``)."""
        if self.column not in frame.columns:
            raise DataError(f"the data has no column {self.column!r} (condition "
                            f"{self.text()}); check the column names")
        s = frame[self.column]
        if self.op == "==":
            return np.asarray((s == self.values[0]).to_numpy(dtype=bool, na_value=False))
        numeric = ptypes.is_numeric_dtype(s.dtype) and not ptypes.is_bool_dtype(s.dtype)
        if self.op == "missing":
            if numeric:
                return ~np.isfinite(s.to_numpy(dtype=float, na_value=np.nan))
            return np.asarray(s.isna().to_numpy(dtype=bool))
        if not numeric:
            raise DataError(f"condition {self.text()} compares numbers, but column "
                            f"{self.column!r} holds {s.dtype}")
        x = s.to_numpy(dtype=float, na_value=np.nan)
        with np.errstate(invalid="ignore"):  # NaN compares False: missing is in no bin
            if self.op == "<":
                return np.asarray(x < self.values[0])
            if self.op == ">=":
                return np.asarray((x >= self.values[0]) & np.isfinite(x))
            return np.asarray((x >= self.values[0]) & (x < self.values[1]))


def rule_text(conditions: Sequence[Condition]) -> str:
    """The conjunction as text: ``age < 25 and hours_per_week >= 50``."""
    return " and ".join(c.text() for c in conditions)


# --- reading rules back ------------------------------------------------------------------

_TOKEN = re.compile(r"""\s*(?:(?P<col>`[^`]+`)|(?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
                    |(?P<op><=|>=|==|<)|(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?
                    |[-+]?inf|nan)(?![A-Za-z0-9_])|(?P<word>[A-Za-z_][A-Za-z0-9_]*))""",
                    re.VERBOSE)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text.rstrip()):
        m = _TOKEN.match(text, pos)
        if m is None or m.lastgroup is None:
            raise ValueError(f"cannot read rule {text!r} at {text[pos:]!r}")
        out.append((m.lastgroup, m.group(m.lastgroup)))
        pos = m.end()
    return out


def _parse_one(tok: list[tuple[str, str]], rule: str) -> Condition:
    kinds = [k for k, _ in tok]
    vals = [v for _, v in tok]

    def col(i: int) -> str:
        if kinds[i] not in ("col", "word"):
            raise ValueError(f"expected a column name in {rule!r}, got {vals[i]!r}")
        return vals[i][1:-1] if kinds[i] == "col" else vals[i]

    if kinds[1:] == ["word", "word"] and vals[1:] == ["is", "missing"]:
        return Condition(col(0), "missing")
    if kinds == ["num", "op", "col", "op", "num"] or kinds == ["num", "op", "word", "op", "num"]:
        if vals[1] != "<=" or vals[3] != "<":
            raise ValueError(f"a range reads 'lo <= column < hi' in {rule!r}")
        return Condition(col(2), "range", (float(vals[0]), float(vals[4])))
    if len(tok) == 3 and vals[1] in ("<", ">="):
        if kinds[2] != "num":
            raise ValueError(f"{vals[1]} needs a number in {rule!r}")
        return Condition(col(0), "<" if vals[1] == "<" else ">=", (float(vals[2]),))
    if len(tok) == 3 and vals[1] == "==":
        raw = vals[2]
        value: Any
        if kinds[2] == "str":
            value = ast.literal_eval(raw)
        elif kinds[2] == "num":
            value = float(raw) if any(c in raw for c in ".eEin") else int(raw)
        elif raw in ("True", "False"):
            value = raw == "True"
        else:
            raise ValueError(f"cannot read the value {raw!r} in {rule!r}; quote strings")
        return Condition(col(0), "==", (value,))
    raise ValueError(f"cannot read the condition {' '.join(vals)!r} in {rule!r}")


def parse_rule(text: str) -> tuple[Condition, ...]:
    """The conditions of a rule written by :func:`rule_text` (``and`` between conditions;
    strings quoted, odd column names in backticks)."""
    tok = _tokens(text)
    parts: list[list[tuple[str, str]]] = [[]]
    for t in tok:
        if t == ("word", "and"):
            parts.append([])
        else:
            parts[-1].append(t)
    if not tok or any(len(p) < 3 for p in parts):
        raise ValueError(f"cannot read rule {text!r}")
    return tuple(_parse_one(p, text) for p in parts)


# --- making conditions -------------------------------------------------------------------

def _roundest(lo: float, hi: float, x: np.ndarray, share: float) -> float:
    """The number ``e`` in ``(lo, hi]`` with the fewest significant digits whose share of
    sorted ``x`` below it is nearest ``share``."""
    top = math.floor(math.log10(max(abs(lo), abs(hi), 1e-300))) + 1
    for d in range(top, top - 17, -1):
        step = 10.0 ** d
        first, last = math.floor(lo / step) + 1, math.floor(hi / step)
        if first <= last:
            # the coarsest step with a candidate has few of them (else a coarser one had one);
            # round once more so 0.1 * 3 reads 0.3
            cands = np.array([float(f"{i * step:.15g}") for i in range(first, last + 1)])
            below = np.searchsorted(x, cands, side="left") / len(x)
            return float(cands[int(np.argmin(np.abs(below - share)))])
    return hi


def _edges(x: np.ndarray, bins: int) -> list[float]:
    """Readable quantile edges of the sorted finite values ``x`` (module docstring)."""
    w = 0.1 / bins
    edges: list[float] = []
    for i in range(1, bins):
        p = i / bins
        lo, hi = np.quantile(x, [max(p - w, 0.0), min(p + w, 1.0)])
        if lo == hi:
            # a tie: the split can only fall just below or just above the tied value
            if lo > x[0]:
                edges.append(float(lo))
                continue
            above = x[np.searchsorted(x, lo, side="right"):]
            if not len(above):
                continue
            hi = above[0]
        edges.append(_roundest(float(lo), float(hi), x, p))
    inside = sorted({e for e in edges if x[0] < e <= x[-1]})
    return inside


def _is_categorical(column: str, s: pd.Series, bins: int) -> bool:
    if ptypes.is_datetime64_any_dtype(s.dtype) or ptypes.is_timedelta64_dtype(s.dtype):
        raise DataError(f"column {column!r} holds dates or durations ({s.dtype}); convert it "
                        f"to numbers or leave it out with columns=")
    if ptypes.is_bool_dtype(s.dtype) or not ptypes.is_numeric_dtype(s.dtype):
        return True
    x = s.to_numpy(dtype=float, na_value=np.nan)
    return len(np.unique(x[np.isfinite(x)])) <= bins


def _python(v: Any) -> Any:
    # numpy scalars to Python ones, so the value prints and compares plainly
    return v.item() if isinstance(v, np.generic) else v


def _column_conditions(name: str, s: pd.Series, bins: int, support: int) -> list[Condition]:
    out: list[Condition] = []
    if _is_categorical(name, s, bins):
        counts = s.value_counts(dropna=True)
        out += [Condition(name, "==", (_python(v),)) for v, c in counts.items()
                if c >= support]
        missing = int(s.isna().sum())
    else:
        x = s.to_numpy(dtype=float, na_value=np.nan)
        finite = np.isfinite(x)
        missing = int((~finite).sum())
        edges = _edges(np.sort(x[finite]), bins) if finite.any() else []
        out += [Condition(name, "<", (e,)) for e in edges]
        out += [Condition(name, "range", (a, b)) for a, b in itertools.pairwise(edges)]
        out += [Condition(name, ">=", (e,)) for e in edges]
    if missing >= support:
        out.append(Condition(name, "missing"))
    return out


def make_conditions(frame: pd.DataFrame, columns: Sequence[str] | None = None, *,
                    bins: int = 4, min_support: int = 1) -> list[Condition]:
    """The conditions of each of ``columns`` (default: all) of ``frame``, column by column
    (see the module docstring); a condition holds on at least ``min_support`` rows and not
    on all of them."""
    if bins < 2:
        raise ValueError(f"need bins >= 2, got {bins}")
    names = [str(c) for c in frame.columns] if columns is None else [str(c) for c in columns]
    absent = [c for c in names if c not in frame.columns]
    if absent:
        raise DataError(f"the data has no columns {absent}; check their names")
    n = len(frame)
    out = []
    for name in names:
        for c in _column_conditions(name, frame[name], bins, max(int(min_support), 1)):
            k = int(c.mask(frame).sum())
            if min_support <= k < n:
                out.append(c)
    return out
