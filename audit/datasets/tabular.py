"""Encoding tabular data for a model, and reading user CSV files with the model's own encoding.

A :class:`TabularEncoder` turns a pandas DataFrame of raw columns into the float32 matrix a
tabular model takes: numeric columns min-max scaled to ``[0, 1]`` with the training range (values
outside it are clipped), categorical columns one-hot encoded. It is fitted on the training split,
saved as JSON in the model card (``extra["encoder"]``), and read back to encode user CSV files
the same way. Encoded feature names are ``age`` for numeric columns and ``workclass=Private``
for one-hot columns; :meth:`TabularEncoder.feature` folds an encoded feature back into its column
so that explanations can say ``workclass == Private`` and give numbers in the data's own units.

Missing values: in categorical columns, empty cells, NaN and the token ``?`` (UCI's marker) all
become the explicit category ``missing``, which gets its own one-hot column when it occurs in the
training data. Numeric columns must be complete: a missing or non-numeric value is a
:class:`DataError` naming the column and the row.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from audit.errors import DataError
from audit.subject import UNLABELLED, AuditData

if TYPE_CHECKING:
    import pandas as pd

    from audit.card import ModelCard

MISSING = "missing"
MISSING_TOKENS = ("?", "")
ENCODER_VERSION = 1


@dataclass(frozen=True)
class FeatureInfo:
    """What one encoded feature means: its raw column, kind and (one-hot) category, or the
    numeric column's training range used for scaling."""

    name: str
    column: str
    kind: Literal["numeric", "onehot"]
    category: str | None = None
    low: float = 0.0
    high: float = 1.0

    def to_raw(self, value: float) -> float:
        """A scaled value (or threshold) of a numeric feature in the column's own units."""
        return self.low + float(value) * (self.high - self.low)

    def condition(self, threshold: float, above: bool, digits: int = 4) -> str:
        """Readable text of ``feature > threshold`` (``above``) or ``<= threshold`` in raw terms:
        ``age > 42.5`` or ``sex == Male`` / ``sex != Male`` for a one-hot feature."""
        if self.kind == "onehot" and 0.0 <= threshold < 1.0:
            return f"{self.column} {'==' if above else '!='} {self.category}"
        raw = self.to_raw(threshold) if self.kind == "numeric" else threshold
        return f"{self.column} {'>' if above else '<='} {format_number(raw, digits)}"


def format_number(value: float, digits: int = 4) -> str:
    """A number with ``digits`` significant digits, without scientific notation for usual sizes."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    mag = math.floor(math.log10(abs(value)))
    decimals = max(0, digits - 1 - mag)
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


class TabularEncoder:
    """Min-max scaling of numeric columns and one-hot encoding of categorical ones.

    ``numeric`` maps column to its (low, high) training range; ``categorical`` maps column to its
    categories in a fixed order. ``columns`` is the order of the raw columns in the encoding.
    """

    def __init__(self, columns: list[str], numeric: dict[str, tuple[float, float]],
                 categorical: dict[str, list[str]], target: str | None = None,
                 dropped: list[str] | None = None) -> None:
        self.columns = list(columns)
        self.numeric = {k: (float(v[0]), float(v[1])) for k, v in numeric.items()}
        self.categorical = {k: [str(c) for c in v] for k, v in categorical.items()}
        self.target = target
        self.dropped = list(dropped or [])
        unknown = [c for c in self.columns if c not in self.numeric and c not in self.categorical]
        if unknown:
            raise ValueError(f"columns without a kind: {unknown}")
        self.features: list[FeatureInfo] = []
        for col in self.columns:
            if col in self.numeric:
                lo, hi = self.numeric[col]
                self.features.append(FeatureInfo(col, col, "numeric", None, lo, hi))
            else:
                for cat in self.categorical[col]:
                    self.features.append(FeatureInfo(f"{col}={cat}", col, "onehot", cat))

    @classmethod
    def fit(cls, frame: pd.DataFrame, numeric: list[str], categorical: list[str], *,
            target: str | None = None, dropped: list[str] | None = None) -> TabularEncoder:
        """Learn ranges and categories from ``frame`` (the training split); the column order is
        the frame's."""
        chosen = set(numeric) | set(categorical)
        columns = [c for c in frame.columns if c in chosen]
        nums: dict[str, tuple[float, float]] = {}
        for c in numeric:
            values = frame[c].astype(float)
            nums[c] = (float(values.min()), float(values.max()))
        cats: dict[str, list[str]] = {}
        for c in categorical:
            values = _categories(frame[c])
            cats[c] = sorted(set(values.tolist()), key=lambda v: (v == MISSING, v))
        return cls(columns, nums, cats, target=target, dropped=dropped)

    @property
    def feature_names(self) -> list[str]:
        """Names of the encoded features, in model input order."""
        return [f.name for f in self.features]

    def feature(self, index: int) -> FeatureInfo:
        """What encoded feature ``index`` means."""
        return self.features[index]

    def transform(self, frame: pd.DataFrame, where: str = "data", *,
                  first_row: int = 0) -> np.ndarray:
        """Encode ``frame`` into float32 ``(N, F)`` in ``[0, 1]``; raises :class:`DataError` for
        missing columns, non-numeric or missing numbers, and categories unseen in training
        (rows numbered from ``first_row`` + 1: the frame may be one chunk of a file)."""
        import pandas as pd

        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise DataError(f"{where}: missing column(s) {', '.join(missing[:10])}; the model "
                            f"needs {', '.join(self.columns)}")
        blocks: list[np.ndarray] = []
        for col in self.columns:
            if col in self.numeric:
                values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64)
                bad = ~np.isfinite(values)
                if bad.any():
                    row = int(np.flatnonzero(bad)[0])
                    raise DataError(f"{where}: column {col!r} must be numeric; row "
                                    f"{first_row + row + 1} "
                                    f"holds {frame[col].iloc[row]!r} ({int(bad.sum())} bad "
                                    "value(s) in all)")
                lo, hi = self.numeric[col]
                scaled = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
                blocks.append(np.clip(scaled, 0.0, 1.0).astype(np.float32)[:, None])
            else:
                cats = self.categorical[col]
                values = _categories(frame[col]).to_numpy()
                lookup = {c: i for i, c in enumerate(cats)}
                idx = np.array([lookup.get(v, -1) for v in values], dtype=np.int64)
                if (idx < 0).any():
                    unknown = sorted({str(v) for v, i in zip(values, idx, strict=True) if i < 0})
                    raise DataError(f"{where}: column {col!r} holds unknown categor"
                                    f"{'y' if len(unknown) == 1 else 'ies'} "
                                    f"{', '.join(map(repr, unknown[:5]))}; known: "
                                    f"{', '.join(cats[:12])}{' ...' if len(cats) > 12 else ''}")
                onehot = np.zeros((len(values), len(cats)), dtype=np.float32)
                onehot[np.arange(len(values)), idx] = 1.0
                blocks.append(onehot)
        return np.concatenate(blocks, axis=1)

    def decode(self, x: np.ndarray) -> pd.DataFrame:
        """Encoded rows back to raw columns: numbers in their own units, each categorical column
        as its most active one-hot category (exact for encoded data)."""
        import pandas as pd

        x = np.asarray(x, dtype=np.float64)
        out: dict[str, Any] = {}
        j = 0
        for col in self.columns:
            if col in self.numeric:
                out[col] = [self.features[j].to_raw(v) for v in x[:, j]]
                j += 1
            else:
                k = len(self.categorical[col])
                out[col] = [self.categorical[col][i] for i in x[:, j : j + k].argmax(axis=1)]
                j += k
        return pd.DataFrame(out)

    def to_dict(self) -> dict[str, Any]:
        """JSON form stored in the model card under ``extra["encoder"]``."""
        return {"version": ENCODER_VERSION, "columns": self.columns,
                "numeric": {k: list(v) for k, v in self.numeric.items()},
                "categorical": self.categorical, "target": self.target,
                "dropped": self.dropped, "missing": MISSING,
                "scaling": "min-max to [0, 1] over the training range, clipped"}

    @classmethod
    def from_dict(cls, d: Any, where: str = "card extra.encoder") -> TabularEncoder:
        """Parse :meth:`to_dict`'s form; :class:`DataError` when it is malformed."""
        try:
            return cls(list(d["columns"]), {k: (v[0], v[1]) for k, v in d["numeric"].items()},
                       dict(d["categorical"]), target=d.get("target"),
                       dropped=d.get("dropped"))
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            raise DataError(f"{where} is malformed ({type(e).__name__}: {e}); it needs "
                            "columns, numeric and categorical") from None


def _categories(series: pd.Series) -> pd.Series:
    """Categorical values as stripped strings, with empty, NaN and ``?`` mapped to MISSING."""
    text = series.astype("string").str.strip()
    return text.fillna(MISSING).where(~text.isin(MISSING_TOKENS), MISSING).astype(str)


def list_columns(frame: pd.DataFrame, limit: int = 25) -> str:
    """The frame's column names for a message: ``a, b, c and 3 more``."""
    names = [str(c) for c in frame.columns]
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more"
                                       if len(names) > limit else "")


def missing_sensitive(missing: list[str], where: str, frame: pd.DataFrame) -> DataError:
    """The one error for sensitive columns the data does not hold (``where`` names who
    asked and the data, e.g. "named by --sensitive not in test.csv")."""
    return DataError(f"sensitive column(s) {', '.join(missing)} {where}; its columns are "
                     f"{list_columns(frame)}; pass --sensitive COLUMN naming one of them")


def card_encoder(card: ModelCard) -> TabularEncoder | None:
    """The encoder stored in ``card.extra["encoder"]``, or ``None`` when the card has none."""
    spec = card.extra.get("encoder")
    return None if spec is None else TabularEncoder.from_dict(spec)


CSV_CHUNK_ROWS = 50_000
"""Rows read, encoded and spilled (:mod:`audit.store`) at a time from a CSV file."""


def read_csv_chunks(path: Path, chunk_rows: int | None = None,
                    **kwargs: Any) -> Iterator[pd.DataFrame]:
    """``path`` in frames of ``chunk_rows`` rows (column names stripped), so that no stage holds
    more than one chunk's temporaries; one-line :class:`DataError` if not readable or empty."""
    import pandas as pd

    try:
        reader = pd.read_csv(path, chunksize=chunk_rows or CSV_CHUNK_ROWS, **kwargs)
        got = False
        with reader:
            for chunk in reader:
                chunk.columns = [str(c).strip() for c in chunk.columns]
                got = got or len(chunk) > 0
                yield chunk
    except (ValueError, OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path} is not a readable CSV file ({str(e).splitlines()[0][:120]})") \
            from None
    if not got:
        raise DataError(f"{path} holds no data rows")


def read_csv(path: Path) -> pd.DataFrame:
    """Read a CSV file, stripping spaces after delimiters; one-line :class:`DataError` if not
    readable."""
    import pandas as pd

    return pd.concat(list(read_csv_chunks(path, skipinitialspace=True)), ignore_index=True)


def load_encoded_csv(path: Path, card: ModelCard, target: str | None,
                     sensitive: list[str] | None, *, labels: bool = True) -> AuditData:
    """A user CSV of raw columns, encoded with the card's ``extra["encoder"]``, a chunk of
    rows at a time (the encoded rows spill to disk when large, :mod:`audit.store`).

    Falls back to :func:`audit.datasets.files.load_numeric_csv` when the card has no encoder.
    Labels are class names (a trailing ``.`` as in UCI's test file is ignored) or indices.
    """
    import pandas as pd

    from audit.datasets.files import _labels, load_numeric_csv
    from audit.store import RowWriter

    encoder = card_encoder(card)
    if encoder is None:
        return load_numeric_csv(path, card, target, sensitive, labels=labels)
    target = target or card.target or encoder.target
    if not target and labels:
        raise DataError(f"{path}: pass --target COLUMN naming the label column")
    writer = RowWriter((len(encoder.feature_names),), str(path))
    frames: list[pd.DataFrame] = []
    ys: list[np.ndarray] = []
    for frame in read_csv_chunks(path, skipinitialspace=True):
        first = writer.rows
        if target and target in frame.columns:
            names = frame[target].astype("string").str.strip().str.rstrip(".")
            if names.isna().any():
                row = int(np.flatnonzero(names.isna().to_numpy())[0])
                raise DataError(f"{path}: target column {target!r} is empty in row "
                                f"{first + row + 1}")
            frame[target] = names.astype(str)
            ys.append(_labels(frame[target].to_numpy(), card.classes, path, target))
        elif labels:
            raise DataError(f"{path}: target column {target!r} not found; columns are "
                            f"{', '.join(map(str, frame.columns[:20]))}")
        else:
            ys.append(np.full(len(frame), UNLABELLED, np.int64))
        writer.append(encoder.transform(frame, where=str(path), first_row=first))
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    sens = list(sensitive) if sensitive else [c for c in card.sensitive if c in frame.columns]
    return AuditData(name=path.stem, x=writer.finish(), y=torch.from_numpy(np.concatenate(ys)),
                     kind="tabular", classes=list(card.classes),
                     feature_names=encoder.feature_names, source=str(path),
                     extras={"frame": frame, "encoder": encoder, "sensitive": sens})
