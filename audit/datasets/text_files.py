"""Text data files: a ``.csv`` or ``.jsonl`` with a text column and a label column
(``--text COL --target COL``). The texts stay strings (they are user data, escaped wherever
they are shown); labels are class names or indices, as for tabular files. Every problem is a
:class:`DataError` naming the file, the line and the fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audit.errors import DataError
from audit.subject import UNLABELLED

TEXT_COLUMNS = ("text", "sentence", "review", "content", "body")


@dataclass
class TextData:
    """Texts, labels (indices into ``classes``; :data:`~audit.subject.UNLABELLED` without a
    label column) and the file's other columns (``frame``, e.g. sensitive attributes)."""

    name: str
    texts: list[str]
    y: np.ndarray
    classes: list[str]
    source: str
    frame: Any = None
    extras: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)


def _jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    try:
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as e:
                    raise DataError(f"{path}: line {n} is not JSON ({str(e)[:80]}); each line "
                                    "must be one object like {\"text\": ..., \"label\": ...}") \
                        from None
                if not isinstance(row, dict):
                    raise DataError(f"{path}: line {n} is a JSON {type(row).__name__}, not an "
                                    "object with named fields")
                rows.append(row)
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text; save it as UTF-8") from None
    return rows


def load_text_file(path: Path, classes: list[str], text: str | None = None,
                   target: str | None = None, *, labels: bool = True) -> TextData:
    """Read ``path`` (``.csv`` or ``.jsonl``); ``text`` defaults to the first of
    :data:`TEXT_COLUMNS` present, ``target`` is required when ``labels``."""
    import pandas as pd

    from audit.datasets.files import _labels

    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        frame = pd.DataFrame(_jsonl(path))
    elif suffix == ".csv":
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (ValueError, OSError, UnicodeDecodeError) as e:
            raise DataError(f"{path} is not a readable CSV file "
                            f"({str(e).splitlines()[0][:120]})") from None
    else:
        raise DataError(f"unsupported text data file {path.name}; use .csv or .jsonl with a "
                        "text column and a label column")
    if frame.empty:
        raise DataError(f"{path} holds no rows")
    columns = [str(c) for c in frame.columns]
    col = text or next((c for c in TEXT_COLUMNS if c in columns), None)
    if col is None or col not in columns:
        raise DataError(f"{path}: no text column {col or ''!s}; pass --text COLUMN (columns "
                        f"are {', '.join(columns[:20])})")
    values = frame[col]
    bad = [i for i, v in enumerate(values) if not isinstance(v, str) or not v.strip()]
    if bad:
        raise DataError(f"{path}: the text in row {bad[0] + 1} of column {col!r} is empty or "
                        f"not a string ({len(bad)} such row(s)); drop or fill them")
    if target is not None and target not in columns:
        raise DataError(f"{path}: label column {target!r} not found; columns are "
                        f"{', '.join(columns[:20])}")
    if labels and target is None:
        raise DataError(f"{path}: pass --target COLUMN naming the label column")
    y = (_labels(frame[target].astype(str).to_numpy(), classes, path, target)
         if target is not None else np.full(len(frame), UNLABELLED, np.int64))
    return TextData(name=path.stem, texts=[str(v) for v in values], y=y, classes=list(classes),
                    source=str(path),
                    frame=frame.drop(columns=[c for c in (col, target) if c]).reset_index(
                        drop=True))
