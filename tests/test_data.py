"""Data: bundled digits, user .npz files, and checks against the model's card."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audit.card import ModelCard
from audit.datasets import dataset_names, load_dataset
from audit.datasets.files import load_data_file
from audit.errors import DataError
from audit.loading import load_model


@pytest.fixture(scope="module")
def card() -> ModelCard:
    c = load_model("digits-cnn").card
    assert c is not None
    return c


def test_digits_split_is_fixed_and_stratified() -> None:
    tr, te = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert len(tr) == 1437 and len(te) == 360
    assert te.x.shape[1:] == (1, 8, 8)
    assert float(te.x.min()) >= 0.0 and float(te.x.max()) <= 1.0
    counts = np.bincount(te.y.numpy(), minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37
    assert load_dataset("digits", "test").sha256 == te.sha256
    assert tr.sha256 != te.sha256
    assert "digits" in dataset_names()


def test_unknown_dataset_and_split() -> None:
    with pytest.raises(DataError, match="unknown dataset 'mnist'"):
        load_dataset("mnist")
    with pytest.raises(DataError, match="unknown split"):
        load_dataset("digits", "validation")


def _npz(tmp_path: Path, **arrays: np.ndarray) -> Path:
    p = tmp_path / "d.npz"
    np.savez(p, **arrays)
    return p


def test_npz_round_trip(tmp_path: Path, card: ModelCard) -> None:
    te = load_dataset("digits", "test")
    p = _npz(tmp_path, x=te.x.numpy()[:50], y=te.y.numpy()[:50])
    d = load_data_file(p, card)
    assert len(d) == 50 and d.kind == "image"
    assert d.sha256 == te.subset(list(range(50))).sha256


@pytest.mark.parametrize(("arrays", "message"), [
    ({"x": np.zeros((4, 1, 8, 8), np.float32)}, "lacks array"),
    ({"x": np.zeros((4, 64), np.float32), "y": np.zeros(4, int)}, r"shape \(64,\) but"),
    ({"x": np.full((4, 1, 8, 8), 255.0, np.float32), "y": np.zeros(4, int)},
     r"values span \[255, 255\].*divide pixels by 255"),
    ({"x": np.full((4, 1, 8, 8), np.nan, np.float32), "y": np.zeros(4, int)}, "NaN or inf"),
    ({"x": np.zeros((4, 1, 8, 8), np.float32), "y": np.array([0, 1, 2, 10])},
     r"labels span 0\.\.10 but the model has 10 classes"),
    ({"x": np.zeros((4, 1, 8, 8), np.float32), "y": np.zeros(3, int)}, "4 rows but y has 3"),
    ({"x": np.zeros((4, 1, 8, 8), np.float32), "y": np.array([0.5, 1, 2, 3])},
     "integer class indices"),
    ({"x": np.zeros((0, 1, 8, 8), np.float32), "y": np.zeros(0, int)}, "no samples"),
])
def test_npz_errors(tmp_path: Path, card: ModelCard, arrays: dict[str, np.ndarray],
                    message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_data_file(_npz(tmp_path, **arrays), card)


def test_npz_object_arrays_refused(tmp_path: Path, card: ModelCard) -> None:
    p = tmp_path / "obj.npz"
    np.savez(p, x=np.array([object()], dtype=object), y=np.zeros(1))
    with pytest.raises(DataError, match="need pickle"):
        load_data_file(p, card)


def test_other_file_errors(tmp_path: Path, card: ModelCard) -> None:
    with pytest.raises(DataError, match="not found"):
        load_data_file(tmp_path / "missing.npz", card)
    with pytest.raises(DataError, match="is a directory"):
        load_data_file(tmp_path, card)
    (tmp_path / "d.parquet").write_bytes(b"x")
    with pytest.raises(DataError, match="unsupported data file"):
        load_data_file(tmp_path / "d.parquet", card)
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_data_file(tmp_path / "bad.npz", card)
