"""The data side of ``audit card --init``: a ``.npz`` or ``.csv`` file read into the model's
input, its value range, a CSV's target column and encoder skeleton, and columns whose names look
like protected attributes. :mod:`audit.apps.card_init` runs the model on what this reads."""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from audit.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

    from audit.datasets.tabular import TabularEncoder

TARGET_NAMES = ("target", "label", "y", "class")
"""Column names taken as the target of a CSV without ``--target`` (else its last column)."""

_PROTECTED = {"sex", "gender", "race", "ethnicity", "ethnic", "religion", "religious",
              "nationality", "citizenship", "native", "marital", "age", "agegroup",
              "disability", "disabled", "pregnancy", "pregnant", "orientation", "caste"}
_ID_NAMES = ("id", "index", "row", "row_id", "uid", "uuid")
MAX_GROUPS = 20
"""A column with more distinct values than this does not split rows into groups to compare."""


@dataclass(frozen=True)
class Note:
    """One card field and how it was inferred (or what the user must write into it)."""

    key: str
    text: str


@dataclass
class InitData:
    """A data file as the model takes it, with what reading it inferred."""

    x: np.ndarray                      # the model's input, float32
    labels: np.ndarray                 # integer indices or class names
    kind: str
    raw: np.ndarray | None = None      # the array as stored (its dtype gives the range)
    frame: pd.DataFrame | None = None
    encoder: TabularEncoder | None = None
    notes: list[Note] = field(default_factory=list)


def infer_range(x: np.ndarray) -> tuple[tuple[float, float], str, bool]:
    """The value range of inputs like ``x``: (range, how it was inferred, whether it is only the
    observed min/max)."""
    if x.dtype == np.uint8:
        return (0.0, 255.0), "uint8 values", False
    lo, hi = float(x.min()), float(x.max())
    seen = f"observed {lo:.4g}..{hi:.4g}"
    if lo >= 0.0 and hi <= 1.0:
        return (0.0, 1.0), f"values within [0, 1]; {seen}", False
    if lo >= -1.0 and hi <= 1.0:
        return (-1.0, 1.0), f"values within [-1, 1], some negative; {seen}", False
    if lo >= 0.0 and hi <= 255.0:
        return (0.0, 255.0), f"values within [0, 255], some above 1; {seen}", False
    return (lo, hi if hi > lo else lo + 1.0), f"the {seen} values: no usual range fits", True


def suggest_sensitive(frame: pd.DataFrame, target: str | None) -> list[str]:
    """Columns whose names look like protected attributes (sex, race, age, marital status...)."""
    out = []
    for col in frame.columns:
        words = re.sub(r"([a-z])([A-Z])", r"\1 \2", str(col)).lower()
        tokens = set(re.split(r"[^a-z]+", words))
        if col != target and (tokens & _PROTECTED or words.replace(" ", "") in _PROTECTED):
            out.append(str(col))
    return out


def sensitive_columns(frame: pd.DataFrame, target: str | None
                      ) -> tuple[list[str], list[str], list[str]]:
    """Columns that look like protected attributes, those of them with few enough values to
    compare as groups, and a warning for each of the others."""
    suggested = suggest_sensitive(frame, target)
    usable = [c for c in suggested if frame[c].nunique(dropna=False) <= MAX_GROUPS]
    why = [f"column {c!r} looks like a protected attribute but holds {frame[c].nunique()} "
           "distinct values; bin it into groups (e.g. age bands) to use it as sensitive"
           for c in suggested if c not in usable]
    return suggested, usable, why


def read_data(path: Path, target: str | None) -> InitData:
    """Read ``path`` (``.npz`` with x, y or ``.csv``); one-line :class:`DataError` when it
    cannot be read."""
    if not path.exists():
        raise DataError(f"data file not found: {path}")
    if path.is_dir():
        raise DataError(f"--data {path} is a directory; pass a .npz or .csv file")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _read_npz(path)
    if suffix == ".csv":
        return _read_csv(path, target)
    raise DataError(f"unsupported data file {path.name}; use .npz (arrays x, y) or .csv")


def _read_npz(path: Path) -> InitData:
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not {"x", "y"} <= set(npz.files):
                raise DataError(f"{path} needs arrays x and y (has {', '.join(npz.files)}); "
                                "save with np.savez(path, x=inputs, y=labels)")
            x, y = npz["x"], npz["y"]
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{path} is not a readable .npz file ({str(e)[:120]})") from None
    if not np.issubdtype(x.dtype, np.number) or x.ndim < 2:
        raise DataError(f"{path}: x must be a numeric array of shape (N, ...), got {x.dtype} "
                        f"{x.shape}")
    if y.ndim != 1 or len(y) != len(x) or not len(x):
        raise DataError(f"{path}: y must be 1-D with one label per row of x (x {x.shape}, y "
                        f"{y.shape})")
    if not np.issubdtype(y.dtype, np.number):
        raise DataError(f"{path}: y holds {y.dtype} labels, but .npz labels are class "
                        "indices: save names, y = np.unique(labels, return_inverse=True) and "
                        "y instead, and list the names in the card's classes")
    xf = np.ascontiguousarray(x, np.float32)
    if not np.isfinite(xf).all():
        raise DataError(f"{path}: x holds NaN or inf; clean or drop those samples")
    kind = "image" if x.ndim in (3, 4) else "tabular"
    return InitData(x=xf, labels=y, kind=kind, raw=x)


def _read_csv(path: Path, target: str | None) -> InitData:
    import pandas as pd

    from audit.datasets.tabular import TabularEncoder, read_csv

    frame = read_csv(path)
    cols = [str(c) for c in frame.columns]
    how = "from --target"
    if target is None:
        named = [c for c in cols if c.lower() in TARGET_NAMES]
        target, how = (named[0], "its name") if named else (cols[-1], "the last column; "
                                                            "pass --target if another")
    if target not in cols:
        raise DataError(f"{path}: target column {target!r} not found; columns are "
                        f"{', '.join(cols[:20])}")
    labels = frame[target].astype("string").str.strip().str.rstrip(".")
    if labels.isna().any():
        row = int(np.flatnonzero(labels.isna().to_numpy())[0])
        raise DataError(f"{path}: target column {target!r} is empty in row {row + 1}")
    # identifiers are not features: a row index pandas wrote, an id column, or text with a
    # distinct value in every row
    dropped = [c for c in cols if c != target and (
        c.lower() in _ID_NAMES or c.startswith("Unnamed:") or (
            len(frame) > 20 and not pd.api.types.is_numeric_dtype(frame[c])
            and frame[c].nunique() == len(frame)))]
    features = [c for c in cols if c != target and c not in dropped]
    numeric = [c for c in features if pd.api.types.is_numeric_dtype(frame[c])
               and not pd.api.types.is_bool_dtype(frame[c])]
    categorical = [c for c in features if c not in numeric]
    if not numeric and not categorical:
        raise DataError(f"{path}: no feature columns besides the target {target!r}")
    encoder = TabularEncoder.fit(frame, numeric, categorical, target=target, dropped=dropped)
    x = encoder.transform(frame, where=str(path))
    notes = [Note("target", f"{target} ({how})"),
             Note("extra.encoder", f"{len(numeric)} numeric column(s) min-max scaled over "
                                   f"this file's range, {len(categorical)} categorical one(s) "
                                   f"one-hot in sorted order -> {x.shape[1]} features")]
    if dropped:
        notes.append(Note("extra.encoder.dropped", ", ".join(dropped) + " (identifiers, not "
                                                                       "features)"))
    values = labels.to_numpy(dtype=str)
    try:
        num = values.astype(np.float64)
        lab: np.ndarray = num.astype(np.int64) if np.all(num == np.round(num)) else values
    except ValueError:
        lab = values
    return InitData(x=x, labels=lab, kind="tabular", frame=frame, encoder=encoder, notes=notes)
