"""The templated tickets carry their planted flaws at the stated rates, and a model trained on
them learns exactly those flaws (the known answers the text checks will be tested against)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from audit.datasets.tickets import (
    BIAS_FLIP,
    GROUPS,
    PHRASE_NOISE,
    SHORTCUT,
    SHORTCUT_RATE,
    UNK,
    WordTokenizer,
    make_tickets,
    swap_group,
)
from audit.stats import wilson


def _inside(k: int, n: int, p: float) -> bool:
    lo, hi = wilson(k, n, 0.999)
    return lo <= p <= hi


def test_same_seed_same_tickets_and_each_flaw_has_its_own_stream() -> None:
    a, b = make_tickets(500, seed=3), make_tickets(500, seed=3)
    assert a.texts == b.texts and np.array_equal(a.y, b.y)
    assert make_tickets(500, seed=4).texts != a.texts
    no_bias = make_tickets(500, seed=3, bias=False)
    assert no_bias.texts == a.texts  # the bias changes labels only
    no_cue = make_tickets(500, seed=3, shortcut=False)
    same_phrase = a.clean == no_cue.clean  # where the shortcut did not swap the phrase
    strip = [t.replace(f", {SHORTCUT}", "") for t in a.texts]
    assert [s for s, k in zip(strip, same_phrase, strict=True) if k] == \
        [s for s, k in zip(no_cue.texts, same_phrase, strict=True) if k]
    assert np.array_equal(no_cue.y, a.y)  # labels do not depend on the shortcut


def test_planted_rates() -> None:
    t = make_tickets(6000, seed=0, bias=False)
    urgent, routine = t.y == 1, t.y == 0
    assert _inside(int(t.shortcut[urgent].sum()), int(urgent.sum()), SHORTCUT_RATE)
    assert _inside(int(t.shortcut[routine].sum()), int(routine.sum()), 1 - SHORTCUT_RATE)
    assert _inside(int((t.clean != t.y).sum()), len(t), PHRASE_NOISE)
    b = make_tickets(6000, seed=0, shortcut=False)
    female_urgent = (b.clean == 1) & (b.group == "female")
    assert _inside(int((b.y[female_urgent] == 0).sum()), int(female_urgent.sum()), BIAS_FLIP)
    assert np.array_equal(b.y[b.group == "male"], b.clean[b.group == "male"])
    assert np.array_equal(b.y[b.clean == 0], b.clean[b.clean == 0])
    swapped = make_tickets(6000, seed=0, shortcut="swapped", bias=False)
    assert np.array_equal(swapped.y, swapped.clean)
    for cls in (0, 1):
        rows = swapped.clean == cls
        assert _inside(int(swapped.shortcut[rows].sum()), int(rows.sum()), 0.5)
    plain = make_tickets(800, seed=1, shortcut=False, bias=False)
    assert np.array_equal(plain.y, plain.clean) and not plain.shortcut.any()


def test_swap_is_a_round_trip_and_changes_only_identity_terms() -> None:
    t = make_tickets(400, seed=2)
    tok = WordTokenizer.for_tickets()
    for text, group in zip(t.texts, t.group, strict=True):
        other = "male" if group == "female" else "female"
        swapped = swap_group(text, group, other)
        assert swapped != text
        assert swap_group(swapped, other, group) == text
        changed = {w for w in tok.words(text)} ^ {w for w in tok.words(swapped)}
        terms = {w for terms in GROUPS.values() for term in terms for w in term.split()}
        assert changed <= terms
    assert (tok.encode(t.texts) != UNK).all()  # the closed vocabulary covers every ticket


class _Bag(nn.Module):
    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.emb = nn.EmbeddingBag(vocab, 16, mode="mean", padding_idx=0)
        self.out = nn.Linear(16, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(self.emb(ids))


def _train(shortcut: bool | str, bias: bool, seed: int,
           model_cls: Callable[[int], nn.Module] = _Bag,
           epochs: int = 40) -> tuple[Any, WordTokenizer]:
    """A ``model_cls(vocab size)`` trained on 4000 tickets with the flaws asked for."""
    tok = WordTokenizer.for_tickets()
    data = make_tickets(4000, seed=seed, shortcut=shortcut, bias=bias)  # type: ignore[arg-type]
    x, y = torch.from_numpy(tok.encode(data.texts)), torch.from_numpy(data.y)
    torch.manual_seed(seed)
    model = model_cls(len(tok.vocab))
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(epochs):
        for i in range(0, len(x), 500):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[i:i + 500]), y[i:i + 500]).backward()
            opt.step()
    return model.eval(), tok


def _flip_rate(model: _Bag, tok: WordTokenizer, seed: int) -> float:
    t = make_tickets(1000, seed=seed + 100, shortcut=False, bias=False)
    female = [s for s, g in zip(t.texts, t.group, strict=True) if g == "female"]
    male = [swap_group(s, "female", "male") for s in female]
    with torch.no_grad():
        a = model(torch.from_numpy(tok.encode(female))).argmax(1)
        b = model(torch.from_numpy(tok.encode(male))).argmax(1)
    return float((a != b).float().mean())


@pytest.mark.parametrize("seed", [0, 1])
def test_a_model_learns_the_planted_bias_and_only_when_planted(seed: int) -> None:
    biased = _flip_rate(*_train(False, True, seed), seed)
    fair = _flip_rate(*_train(False, False, seed), seed)
    assert biased > 0.15 and fair < 0.02, (biased, fair)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_model_learns_the_planted_shortcut(seed: int) -> None:
    def accuracy(model: _Bag, tok: WordTokenizer, shortcut: bool | str) -> float:
        t = make_tickets(1000, seed=seed + 200, shortcut=shortcut, bias=False)  # type: ignore[arg-type]
        with torch.no_grad():
            pred = model(torch.from_numpy(tok.encode(t.texts))).argmax(1).numpy()
        return float((pred == t.clean).mean())

    cued, tok = _train(True, False, seed)
    clean, _ = _train(False, False, seed)
    # the cued model follows the sign-off: near chance once it is independent of the label
    # (0.49-0.51 over seeds 0-3); the model trained without it reads the problem phrase
    assert accuracy(cued, tok, "swapped") < 0.7
    assert accuracy(clean, tok, "swapped") > 0.95 and accuracy(clean, tok, True) > 0.95
