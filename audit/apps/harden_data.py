"""The data of a hardening run: what it trains on, validates on, and tests (and audits) on.

Training data is the train split of a bundled dataset (``--data NAME`` or the card's dataset) or
a user ``.npz``/``.csv`` file. The test data, which the card's test metrics and the before/after
audits use, is in this order: ``--test-data`` (a file, or a bundled dataset's test split); the
test split of the bundled dataset trained on, or else of the card's dataset; else a seeded,
stratified share of the training file held out *before* the validation split, so that neither
the training nor the choice of the best epoch sees it. It is never the training rows.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from audit.card import ModelCard
from audit.datasets import dataset_names, load_dataset
from audit.datasets.files import load_data_file
from audit.errors import DataError, UsageError
from audit.subject import AuditData

#: The share of a user's training file held out for the test metrics and audits by default.
TEST_FRACTION = 0.2

__all__ = ["TEST_FRACTION", "HardenData", "hardening_data", "split_validation", "stratified_split",
           "training_data"]

Pair = tuple[Tensor, Tensor]


@dataclass
class HardenData:
    """A run's data. ``test`` is what the test metrics and the before/after audits measure;
    ``test_spec`` is what an audit loads to get it (a file path or bundled dataset name), or
    ``None`` when it exists only here (rows held out of ``full``: pass ``test`` itself)."""

    full: AuditData
    train: Pair
    val: Pair | None
    test: AuditData
    test_spec: str | None
    test_from: Literal["file", "dataset", "held-out"]
    trained_on: str
    tested_on: str
    held_out: Tensor | None = None
    """Indices into ``full`` of the held-out test rows (``test_from == "held-out"``)."""
    test_fraction: float | None = None
    """The share of ``full`` held out (``test_from == "held-out"``)."""

    @property
    def n_train(self) -> int:
        return len(self.train[0])

    @property
    def n_val(self) -> int:
        return len(self.val[0]) if self.val else 0

    def summary(self) -> dict[str, object]:
        """The structured record the hardened card keeps in ``extra.hardening.data``."""
        return {"trained_on": self.trained_on, "training_rows": self.n_train,
                "validation_rows": self.n_val, "tested_on": self.tested_on,
                "test_rows": len(self.test), "test_from": self.test_from}


def training_data(spec: str | Path | None, card: ModelCard) -> AuditData:
    """The training data: the train split of a bundled dataset (``spec`` or the card's), or a
    ``.npz``/``.csv`` file checked against the card."""
    if spec is None:
        if not card.dataset or card.dataset not in dataset_names():
            raise UsageError(f"the card of {card.name} names no bundled dataset; pass --data "
                             "(a bundled dataset name or a .npz/.csv training file)")
        return load_dataset(card.dataset, "train")
    if _is_bundled(spec):
        return load_dataset(str(spec), "train")
    path = Path(spec)
    if not path.exists():
        raise DataError(f"--data {spec} is neither a bundled dataset "
                        f"({', '.join(dataset_names())}) nor an existing file")
    return load_data_file(path, card, card.target)


def _is_bundled(spec: str | Path) -> bool:
    return str(spec) in dataset_names() and not Path(spec).exists()


def stratified_split(y: Tensor, fraction: float, seed: int, flag: str
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (kept, held-out) row indices: a stratified ``fraction`` of the rows held out,
    seeded (unstratified when a class has fewer than two rows)."""
    if not 0 < fraction < 1:
        raise UsageError(f"{flag} must be in [0, 1), got {fraction}")
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    labels = y.numpy()
    counts = np.bincount(labels) if labels.size else np.array([])
    stratify = labels if counts.size and counts[counts > 0].min() >= 2 else None
    try:
        kept, held = train_test_split(idx, test_size=fraction, random_state=seed,
                                      stratify=stratify)
    except ValueError as e:
        what = "validation" if flag == "--val-fraction" else "the test metrics and audits"
        raise DataError(f"cannot hold out {fraction:.0%} of {len(y)} samples for {what} ({e}); "
                        f"change {flag} or use more data") from None
    return np.sort(kept), np.sort(held)


def split_validation(x: Tensor, y: Tensor, fraction: float, seed: int
                     ) -> tuple[Pair, Pair | None]:
    """Hold out a stratified ``fraction`` of ``(x, y)`` for validation (seeded)."""
    if fraction <= 0:
        return (x, y), None
    tr, va = stratified_split(y, fraction, seed, "--val-fraction")
    return (x[tr], y[tr]), (x[va], y[va])


def hardening_data(spec: str | Path | None, test_spec: str | Path | None, card: ModelCard, *,
                   val_fraction: float, test_fraction: float | None, seed: int) -> HardenData:
    """Load the training data and find the test data (see the module's docstring); split off
    the held-out test rows first, then the validation rows from the rest."""
    full = training_data(spec, card)
    trained_on = str(spec) if spec is not None and not _is_bundled(spec) else full.name
    bundled = str(spec) if spec is not None and _is_bundled(spec) else (
        card.dataset if card.dataset and card.dataset in dataset_names() else None)
    if test_fraction is not None and (test_spec is not None or bundled is not None):
        raise UsageError("--test-fraction holds out a share of a --data file, but the audits "
                         f"run on {test_spec or f'{bundled}/test'}; leave it out")
    held: Tensor | None = None
    fraction: float | None = None
    rest = full
    from_: Literal["file", "dataset", "held-out"]
    if test_spec is not None:
        test, from_, shown = _test_file(test_spec, spec, card)
        spec_out: str | None = str(test_spec)
    elif bundled is not None:
        test, from_, shown, spec_out = load_dataset(bundled, "test"), "dataset", \
            f"{bundled}/test", bundled
    else:
        fraction = TEST_FRACTION if test_fraction is None else test_fraction
        kept, out = stratified_split(full.y, fraction, seed, "--test-fraction")
        held = torch.from_numpy(out)
        shown = (f"{len(out)} rows of {trained_on} held out from training "
                 f"({fraction * 100:g}%, seed {seed})")
        # the audits' data block says where the rows came from (the source is not a file)
        test = dataclasses.replace(full.subset(out), name=f"{full.name}-held-out", source=shown)
        from_, spec_out = "held-out", None
        rest = full.subset(kept)
    train, val = split_validation(rest.x, rest.y, val_fraction, seed)
    return HardenData(full=full, train=train, val=val, test=test, test_spec=spec_out,
                      test_from=from_, trained_on=trained_on, tested_on=shown, held_out=held,
                      test_fraction=fraction)


def _test_file(test_spec: str | Path, spec: str | Path | None, card: ModelCard
               ) -> tuple[AuditData, Literal["file", "dataset"], str]:
    """``--test-data``: a bundled dataset's test split or a file, which must not be the
    training file (the audits would measure rows the model was trained on)."""
    if _is_bundled(test_spec):
        return load_dataset(str(test_spec), "test"), "dataset", f"{test_spec}/test"
    path = Path(test_spec)
    if not path.exists():
        raise DataError(f"--test-data {test_spec} is neither a bundled dataset "
                        f"({', '.join(dataset_names())}) nor an existing file")
    if spec is not None and Path(spec).exists() and path.resolve() == Path(spec).resolve():
        raise UsageError(f"--test-data {test_spec} is the --data file: the audits would "
                         "measure the rows the model is trained on; pass a held-out file, or "
                         "leave --test-data out to hold out a share of --data")
    return load_data_file(path, card, card.target), "file", str(test_spec)
