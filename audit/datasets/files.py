"""User data files: ``.npz`` with arrays ``x`` and ``y``; ``.csv`` with a target column; image
folders and CSVs of image paths (:mod:`audit.datasets.folders`).

Every loader checks the data against the model's card (per-sample shape, value range, finite
values, label range) and raises :class:`DataError` with a one-line message naming the problem.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from audit.card import ModelCard
from audit.errors import DataError
from audit.subject import UNLABELLED, AuditData

CsvLoader = Callable[..., AuditData]
"""``(path, card, target, sensitive, *, labels=True) -> AuditData``; with ``labels=False`` a
file without its label column loads unlabelled (every label :data:`UNLABELLED`)."""
# Tabular loaders that know a card's encoding register here (keyed by card.dataset or "*").
CSV_LOADERS: dict[str, CsvLoader] = {}


def load_data_file(path: Path, card: ModelCard, target: str | None = None,
                   sensitive: list[str] | None = None, *, labels: bool = True) -> AuditData:
    """Load and validate a user data file for ``card``'s model. ``labels=False`` accepts a
    file without labels (an .npz without ``y``, a CSV without the target column): its labels
    are :data:`~audit.subject.UNLABELLED`, and values outside the card's input range are let
    through (data from production, for the drift check, which reports them). A directory is an
    image folder and a CSV for an image model lists image files (:mod:`audit.datasets.folders`)."""
    if not path.exists():
        raise DataError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    if path.is_dir() or (suffix == ".csv" and card.input.kind == "image"):
        from audit.datasets.folders import load_image_csv, load_image_folder

        data = (load_image_folder(path, card, labels=labels) if path.is_dir()
                else load_image_csv(path, card, target, sensitive=sensitive, labels=labels))
    elif suffix == ".npz":
        data = _load_npz(path, card, labels)
    elif suffix == ".csv":
        from audit.datasets import dataset_names

        dataset_names()  # imports the dataset modules, which register their CSV loaders
        loader = CSV_LOADERS.get(card.dataset or "", CSV_LOADERS.get("*", load_numeric_csv))
        data = loader(path, card, target or card.target, sensitive, labels=labels)
    else:
        raise DataError(f"unsupported data file {path.name}; use .npz (arrays x, y), .csv "
                        "with --target COLUMN, or a folder of class sub-folders of images")
    validate_against_card(data, card, check_range=labels)
    return data


def _load_npz(path: Path, card: ModelCard, labels: bool = True) -> AuditData:
    from audit.store import read_npz_rows

    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
            missing = {"x", "y"} - keys
            if not labels and "x" in keys and "y" not in keys:
                missing = set()
            if missing:
                raise DataError(f"{path} lacks array(s) {', '.join(sorted(missing))}; save with "
                                "np.savez(path, x=inputs, y=labels)")
            # x is the large array: mapped or streamed from the file, not loaded whole
            streamed = read_npz_rows(path, "x", str(path))
            x_arr = None if streamed is not None else npz["x"]
            y = npz["y"] if "y" in keys else None
            masks = npz["masks"] if "masks" in keys else None
    except DataError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{path} is not a readable .npz file ({str(e)[:120]}); object arrays "
                        "are refused because they need pickle") from None
    if streamed is not None:
        x, x_dtype = streamed
        x_shape = tuple(x.shape)
    else:
        assert x_arr is not None
        if not np.issubdtype(x_arr.dtype, np.number):
            raise DataError(f"{path}: x must be numeric (got {x_arr.dtype})")
        x, x_dtype, x_shape = None, x_arr.dtype, x_arr.shape
    if y is None:
        y = np.full(x_shape[:1], UNLABELLED, np.int64)
    if y.dtype.kind in "US" and y.ndim == 1:  # class names (np.array(["cat", ...])): no pickle
        y = _labels(y.astype(str), card.classes, path, "y", names_only=True)
    if not np.issubdtype(x_dtype, np.number) or not np.issubdtype(y.dtype, np.number):
        raise DataError(f"{path}: x must be numeric and y class indices or class names "
                        f"(got {x_dtype}, {y.dtype})")
    if y.ndim != 1:
        raise DataError(f"{path}: y must be 1-D class indices, got shape {y.shape}")
    if x_shape[:1] != y.shape:
        raise DataError(f"{path}: x has {x_shape[0] if len(x_shape) else 0} rows but y has "
                        f"{len(y)}")
    if np.issubdtype(y.dtype, np.floating) and (
            not np.all(np.isfinite(y)) or not np.all(y == np.round(y))):
            raise DataError(f"{path}: y must hold integer class indices (found non-integers, "
                            "NaN or inf)")
    extras: dict[str, object] = {}
    if masks is not None:  # optional object masks (N, H, W) for the saliency check
        if len(x_shape) != 4 or masks.shape != (x_shape[0], *x_shape[2:]):
            raise DataError(f"{path}: masks must have shape (N, H, W) = "
                            f"{(x_shape[0], *x_shape[2:])}, got {masks.shape}")
        extras["masks"] = torch.from_numpy(masks.astype(bool))
    if x is None:
        assert x_arr is not None
        x = torch.from_numpy(np.ascontiguousarray(x_arr, np.float32))
    return AuditData(name=path.stem, x=x, y=torch.from_numpy(y.astype(np.int64)),
                     kind=card.input.kind, classes=list(card.classes),
                     feature_names=card.input.feature_names, source=str(path), extras=extras)


def load_numeric_csv(path: Path, card: ModelCard, target: str | None,
                     sensitive: list[str] | None, *, labels: bool = True) -> AuditData:
    """A CSV of numeric feature columns (the card's ``feature_names``, or all but the target)
    and an integer or class-name target column (optional with ``labels=False``), read a chunk
    of rows at a time (the features spill to disk when large, :mod:`audit.store`)."""
    import pandas as pd

    from audit.datasets.tabular import read_csv_chunks
    from audit.store import RowWriter

    if not target and labels:
        raise DataError(f"{path}: pass --target COLUMN naming the label column")
    writer: RowWriter | None = None
    frames: list[pd.DataFrame] = []
    ys: list[np.ndarray] = []
    features: list[str] = []
    for frame in read_csv_chunks(path):
        if writer is None:
            labelled = bool(target) and target in frame.columns
            if labels and not labelled:
                raise DataError(f"{path}: target column {target!r} not found; columns are "
                                f"{', '.join(map(str, frame.columns[:20]))}")
            features = card.input.feature_names or [
                c for c in frame.columns if c != target and c not in (sensitive or [])]
            missing = [c for c in features if c not in frame.columns]
            if missing:
                raise DataError(f"{path}: missing feature column(s) {', '.join(missing[:10])}")
            writer = RowWriter((len(features),), str(path))
        non_numeric = [c for c in features if not pd.api.types.is_numeric_dtype(frame[c])]
        if non_numeric:
            raise DataError(f"{path}: non-numeric column(s) {', '.join(non_numeric[:10])}; "
                            "this model takes numeric features only")
        ys.append(_labels(frame[target].to_numpy(), card.classes, path, str(target))
                  if labelled else np.full(len(frame), UNLABELLED, np.int64))
        writer.append(frame[features].to_numpy(dtype=np.float32))
        frames.append(frame)
    assert writer is not None  # read_csv_chunks raises on a file without rows
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return AuditData(name=path.stem, x=writer.finish(), y=torch.from_numpy(np.concatenate(ys)),
                     kind="tabular", classes=list(card.classes), feature_names=list(features),
                     source=str(path), extras={"frame": frame, "sensitive": sensitive or []})


def _labels(values: np.ndarray, classes: list[str], path: Path, column: str,
            names_only: bool = False) -> np.ndarray:
    """Map class names or integer indices in ``column`` to indices into ``classes``
    (``names_only``: names, as a string array holds)."""
    as_text = [str(v).strip() for v in values]
    if all(v in classes for v in as_text):
        lookup = {c: i for i, c in enumerate(classes)}
        return np.array([lookup[v] for v in as_text], dtype=np.int64)
    try:
        if names_only:
            raise ValueError("class names expected")
        num = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        unknown = sorted({v for v in as_text if v not in classes})
        shown = ", ".join(repr(c) for c in classes[:10]) + (
            f" (+{len(classes) - 10} more)" if len(classes) > 10 else "")
        what = "array" if names_only else "column"
        raise DataError(f"{path}: {what} {column!r} holds unknown label(s) "
                        f"{', '.join(unknown[:5])}"
                        + (f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else "")
                        + f"; the card's classes are {shown}") from None
    if not np.all(np.isfinite(num)) or not np.all(num == np.round(num)):
        raise DataError(f"{path}: column {column!r} must hold class indices or names")
    return num.astype(np.int64)


def validate_against_card(data: AuditData, card: ModelCard, tol: float = 1e-4, *,
                          check_range: bool = True) -> None:
    """Shape, range, finiteness and label checks; one-line :class:`DataError` on failure.
    ``check_range=False`` accepts values outside the card's input range (production data
    whose drift is being measured)."""
    where = data.source or data.name
    if len(data) == 0:
        raise DataError(f"{where} holds no samples")
    shape = tuple(data.x.shape[1:])
    if shape != tuple(card.input.shape):
        raise DataError(f"{where}: samples have shape {shape} but the model's card expects "
                        f"{tuple(card.input.shape)}; reshape the data or fix the card's "
                        "input.shape")
    bad, xmin, xmax = _scan(data.x)
    if bad:
        raise DataError(f"{where}: {bad} sample(s) contain NaN or inf; clean or drop them")
    lo, hi = card.input.range
    if check_range and (xmin < lo - tol or xmax > hi + tol):
        raise DataError(f"{where}: values span [{xmin:.4g}, {xmax:.4g}] but the card's "
                        f"input.range is [{lo:g}, {hi:g}]; scale the data (e.g. divide pixels "
                        "by 255) or fix the card")
    n_cls = len(card.classes)
    if len(data.y) != len(data):
        raise DataError(f"{where}: {len(data)} samples but {len(data.y)} labels")
    ymin, ymax = int(data.y.min()), int(data.y.max())
    if ymin == ymax == UNLABELLED:
        return  # data without labels (loaded with labels=False)
    if ymin < 0 or ymax >= n_cls:
        raise DataError(f"{where}: labels span {ymin}..{ymax} but the model has {n_cls} classes "
                        f"(0..{n_cls - 1})")


def _scan(x: torch.Tensor) -> tuple[int, float, float]:
    """Samples with a NaN or inf, and the min and max of ``x``, a chunk of rows at a time
    (a mapped ``x`` is never copied whole)."""
    from audit.store import chunks

    bad, xmin, xmax = 0, float("inf"), float("-inf")
    for block in chunks(x):
        finite = torch.isfinite(block)
        if not bool(finite.all()):
            bad += int((~finite).reshape(len(block), -1).any(dim=1).sum())
            continue
        xmin, xmax = min(xmin, float(block.min())), max(xmax, float(block.max()))
    return bad, xmin, xmax
