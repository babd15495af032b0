"""Reading a CSV of decisions a user already has (``audit fairness``): one row per decision with
the true label, the prediction, optionally a score (probability of the favourable outcome) and
the sensitive columns. :mod:`audit.apps.predictions` audits it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from audit.errors import DataError, UsageError
from audit.fairness.groups import sensitive_frame

_TRUE = {"1", "1.0", "true", "yes", "y", "t"}
_FALSE = {"0", "0.0", "false", "no", "n", "f"}


@dataclass
class Predictions:
    """Decisions read from a predictions file: 0/1 labels (1 = favourable) and groups."""

    y_true: np.ndarray
    y_pred: np.ndarray
    score: np.ndarray | None
    sensitive: pd.DataFrame
    positive: str
    negative: str
    columns: list[str]


def _to_binary(values: pd.Series, column: str, pos_label: str | None, path: Path
               ) -> tuple[np.ndarray, str, str]:
    text = values.astype("string").str.strip()
    if text.isna().any() or (text == "").any():
        row = int(np.flatnonzero((text.isna() | (text == "")).to_numpy())[0])
        raise DataError(f"{path}: column {column!r} is empty in row {row + 2}; every row needs "
                        "a label")
    raw = text.astype(str).to_numpy()
    seen = sorted(set(raw.tolist()))
    if pos_label is not None:
        others = [v for v in seen if v != pos_label]
        negative = others[0] if len(others) == 1 else f"not {pos_label}"
        return (raw == pos_label).astype(np.int64), pos_label, negative
    if {v.lower() for v in seen} <= _TRUE | _FALSE:
        out = np.array([v.lower() in _TRUE for v in raw.tolist()], dtype=np.int64)
        return out, "1", "0"
    shown = ", ".join(repr(v) for v in seen[:6]) + (" …" if len(seen) > 6 else "")
    numeric = pd.to_numeric(pd.Series(seen), errors="coerce").notna().all()
    hint = ("these look like scores: pass them with --score and a 0/1 decision column with "
            "--y-pred" if numeric else "pass --pos-label VALUE naming the favourable outcome")
    raise DataError(f"{path}: column {column!r} holds {shown}, not 0/1 labels; {hint}")


def read_predictions(path: Path, *, y_true: str, y_pred: str, sensitive: list[str],
                     score: str | None = None, pos_label: str | None = None) -> Predictions:
    """Read and validate a predictions CSV; :class:`DataError` names any problem in one line."""
    from audit.datasets.tabular import read_csv

    if not path.exists():
        raise DataError(f"predictions file not found: {path}")
    if path.is_dir():
        raise DataError(f"{path} is a directory; pass a CSV file of predictions")
    frame = read_csv(path)
    wanted = [y_true, y_pred, *([score] if score else []), *sensitive]
    missing = [c for c in dict.fromkeys(wanted) if c not in frame.columns]
    if missing:
        shown = ", ".join(map(str, list(frame.columns)[:25]))
        fix = ("; pass --sensitive COLUMN naming one of them"
               if any(c in sensitive for c in missing) else "")
        raise DataError(f"{path}: column(s) {', '.join(missing)} not found; columns are "
                        f"{shown}{fix}")
    if not sensitive:
        raise UsageError("name the sensitive column(s) with --sensitive COL[,COL]")
    yt, positive, negative = _to_binary(frame[y_true], y_true, pos_label, path)
    yp, _, _ = _to_binary(frame[y_pred], y_pred, pos_label, path)
    if pos_label is not None:
        true_values = set(frame[y_true].astype(str).str.strip())
        pred_values = set(frame[y_pred].astype(str).str.strip())
        if pos_label not in true_values | pred_values:
            shown = ", ".join(sorted(true_values | pred_values)[:6])
            raise DataError(f"{path}: --pos-label {pos_label!r} occurs in neither {y_true!r} nor "
                            f"{y_pred!r}; values are {shown}")
        # more than two labels (a multi-class model): the favourable one against the rest,
        # as the fairness check does with positive_class
        strange = sorted(pred_values - true_values - {pos_label})
        if strange and len(true_values) >= 2:
            raise DataError(f"{path}: {y_pred!r} holds {strange[0]!r}, which is not a label of "
                            f"{y_true!r} ({', '.join(sorted(true_values))})")
    s = None
    if score:
        col = pd.to_numeric(frame[score], errors="coerce")
        bad = col.isna() | (col < 0) | (col > 1)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"{path}: score column {score!r} must be a probability in [0, 1]; "
                            f"row {row + 2} has {frame[score].iloc[row]!r}")
        s = col.to_numpy(dtype=np.float64)
    return Predictions(y_true=yt, y_pred=yp, score=s,
                       sensitive=sensitive_frame(frame, sensitive, where=str(path)),
                       positive=positive, negative=negative,
                       columns=[c for c in (y_pred, score) if c])
