"""Tabular LIME's background is bounded: at most BACKGROUND_ROWS rows, a seeded subset."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from audit.card import ModelCard
from audit.saliency import tabular
from audit.subject import AuditData, Subject


def _subject(n: int, seed: int) -> Subject:
    card = ModelCard.from_dict({
        "name": "t", "arch": "tests:T", "input": {"shape": [3], "range": [0, 1]},
        "classes": ["a", "b"]})
    x = torch.arange(n * 3, dtype=torch.float32).reshape(n, 3)
    data = AuditData(name="t", x=x, y=torch.zeros(n, dtype=torch.int64), kind="tabular",
                     classes=["a", "b"])
    return Subject(model=nn.Linear(3, 2), card=card, data=data, model_info={}, seed=seed)


def test_background_is_every_row_up_to_the_bound_then_a_seeded_subset(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tabular, "BACKGROUND_ROWS", 50)
    small = _subject(50, seed=0)
    assert tabular.background_rows(small) is small.data.x
    big = _subject(400, seed=0)
    bg = tabular.background_rows(big)
    assert bg.shape == (50, 3)
    rows = (bg[:, 0] / 3).long()
    assert torch.equal(rows, rows.unique())  # distinct rows, in data order
    assert torch.equal(bg, tabular.background_rows(_subject(400, seed=0)))  # seeded
    assert not torch.equal(bg, tabular.background_rows(_subject(400, seed=1)))
