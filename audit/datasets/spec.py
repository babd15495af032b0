"""Data named by the user (``--data``, ``--reference``, an ``(x, y)`` pair) as validated
:class:`~audit.subject.AuditData`: a bundled dataset, a file, or arrays in memory."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from audit.card import ModelCard
from audit.datasets import dataset_names, load_dataset
from audit.datasets.files import load_data_file, validate_against_card
from audit.datasets.tabular import missing_sensitive
from audit.errors import DataError, UsageError
from audit.subject import AuditData


def load_data(spec: str | Path | None, card: ModelCard | None, *, target: str | None = None,
              sensitive: Sequence[str] | None = None, seed: int = 0, labels: bool = True,
              split: str = "test") -> AuditData:
    """Data named by ``--data`` (a bundled name, ``name:train``/``name:test``, or a file), or
    the card's dataset's ``split``. ``labels=False`` (production data, for the drift check)
    accepts a file without labels and values outside the card's input range."""
    sens = list(sensitive) if sensitive else None
    bundled = _bundled_spec(spec)
    if spec is None:
        if card is None or not card.dataset:
            raise UsageError("the model's card names no dataset; pass --data (a bundled "
                             f"dataset: {', '.join(dataset_names())}, or a .npz/.csv file)")
        data = load_dataset(card.dataset, split, seed)
    elif bundled is not None:
        data = load_dataset(bundled[0], bundled[1], seed)
    else:
        path = Path(spec)
        if not path.exists() and (path.suffix or len(path.parts) > 1):
            raise DataError(f"data file not found: {spec}")
        if not path.exists():
            raise DataError(f"--data {spec} is neither a bundled dataset "
                            f"({', '.join(dataset_names())}) nor an existing file")
        if card is None:
            raise UsageError("a data file needs the model's card to be read; pass --card "
                             "card.json")
        data = load_data_file(Path(spec), card, target, sens, labels=labels)
    if sens:
        frame = data.extras.get("frame")
        if frame is None:
            raise DataError("--sensitive needs tabular data with named columns (a .csv file "
                            "or a bundled tabular dataset)")
        missing = [c for c in sens if c not in frame.columns]
        if missing:
            raise missing_sensitive(missing, f"not in {data.name}", frame)
        data.extras["sensitive"] = sens
    if card is not None:
        validate_against_card(data, card, check_range=labels)
    return data


def _bundled_spec(spec: str | Path | None) -> tuple[str, str] | None:
    """``(name, split)`` when ``spec`` names a bundled dataset (``digits``, ``adult:train``)
    and no file of that name exists."""
    if spec is None or Path(spec).exists():
        return None
    name, _, split = str(spec).partition(":")
    if name in dataset_names() and split in ("", "train", "test"):
        return name, split or "test"
    return None


def audit_data(data: str | Path | AuditData | tuple[Any, Any] | None,
                card: ModelCard | None, *, target: str | None, sensitive: Sequence[str] | None,
                seed: int, labels: bool = True, split: str = "test") -> AuditData:
    """``--data`` or ``--reference`` as validated :class:`AuditData` (``None``: the card's
    dataset's ``split``)."""
    if isinstance(data, tuple | list):
        return in_memory_data(data, card)
    if isinstance(data, AuditData):
        if card is not None:
            validate_against_card(data, card, check_range=labels)
        return data
    spec = None if data is None else path_or_name(data, "data")
    if card is None:
        assert spec is not None  # build_subject refuses a cardless model without data
        return _load_cardless(Path(spec) if Path(spec).exists() else spec, seed)
    return load_data(spec, card, target=target, sensitive=sensitive, seed=seed, labels=labels,
                     split=split)


def path_or_name(value: object, what: str) -> str | Path:
    if isinstance(value, str | Path):
        return value
    accepted = ("a bundled name, a path, a LoadedModel or a torch.nn.Module" if what == "model"
                else "a bundled name, a path, an AuditData or an (x, y) pair of arrays")
    raise UsageError(f"{what} must be {accepted}, not {type(value).__name__}")


def in_memory_data(xy: tuple[Any, Any] | list[Any], card: ModelCard | None) -> AuditData:
    """An ``(x, y)`` pair of arrays or tensors as :class:`AuditData` (classes from the card,
    else ``"0"`` to the largest label); images when each sample has 2 or more dimensions,
    tabular rows otherwise."""
    if len(xy) != 2:
        raise UsageError(f"data as a pair must be (x, y), got {len(xy)} items")
    try:
        x = torch.as_tensor(np.asarray(xy[0]), dtype=torch.float32)
        y = torch.as_tensor(np.asarray(xy[1])).long().reshape(-1)
    except (TypeError, ValueError) as e:
        raise DataError(f"data (x, y) must be numeric arrays: {e}") from None
    if len(x) != len(y):
        raise DataError(f"data (x, y) differ in length: {len(x)} inputs, {len(y)} labels")
    classes = list(card.classes) if card is not None else \
        [str(int(c)) for c in range(int(y.max()) + 1 if len(y) else 0)]
    data = AuditData(name="in-memory", x=x, y=y, kind="image" if x.ndim >= 3 else "tabular",
                     classes=classes, source="python")
    if card is not None:
        validate_against_card(data, card)
    return data


def _load_cardless(spec: str | Path, seed: int) -> AuditData:
    if isinstance(spec, Path) and spec.suffix.lower() == ".npz":
        import numpy as _np

        with _np.load(spec, allow_pickle=False) as npz:
            if "x" not in npz.files or "y" not in npz.files:
                raise DataError(f"{spec} lacks arrays x and y")
            x, y = npz["x"], npz["y"]
        kind: Literal["image", "tabular"] = "image" if x.ndim >= 3 else "tabular"
        n_cls = int(y.max()) + 1 if y.size else 2
        return AuditData(name=spec.stem, x=torch.from_numpy(_np.asarray(x, _np.float32)),
                         y=torch.from_numpy(_np.asarray(y, _np.int64)), kind=kind,
                         classes=[str(i) for i in range(max(n_cls, 2))], source=str(spec))
    if str(spec) in dataset_names():
        return load_dataset(str(spec), "test", seed)
    raise UsageError("without a card, --data must be a bundled dataset or a .npz file; pass "
                     "--card card.json for CSV data")
