"""scikit-learn's 8x8 handwritten digits, scaled to [0, 1], with a fixed stratified split."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from audit.datasets import register_dataset
from audit.subject import AuditData

CLASSES = [str(i) for i in range(10)]
TEST_SIZE = 0.2
SPLIT_SEED = 0


@lru_cache(maxsize=1)
def _arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=TEST_SIZE, stratify=y, random_state=SPLIT_SEED)
    return x_tr, x_te, y_tr, y_te


@register_dataset("digits")
def load(split: str, seed: int = 0) -> AuditData:
    """1437 train / 360 test images, shape (1, 8, 8), pixels in [0, 1]; ``seed`` is unused
    (the split is fixed so that every audit of a bundled model sees the same test set)."""
    x_tr, x_te, y_tr, y_te = _arrays()
    x, y = (x_tr, y_tr) if split == "train" else (x_te, y_te)
    return AuditData(name=f"digits/{split}", x=torch.from_numpy(x.copy()),
                     y=torch.from_numpy(y.copy()), kind="image", classes=list(CLASSES),
                     source="bundled:digits")
