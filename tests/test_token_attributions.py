"""Token attributions find the planted answer: the sign-off in a model that learned the
shortcut, the problem phrase in one that did not; ERASER scores them above random."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from audit.datasets.tickets import (
    FILLER,
    GROUPS,
    OPENERS,
    ROUTINE,
    SHORTCUT,
    URGENT,
    WordTokenizer,
    make_tickets,
)
from audit.saliency.tokens import eraser, integrated_gradients, occlusion


class _MeanEmbed(nn.Module):
    """Token embeddings, their mean over the real (non-pad) tokens, a linear head."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, 16, padding_idx=0)
        self.out = nn.Linear(16, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        real = (ids != 0).float()[..., None]
        pooled = (self.emb(ids) * real).sum(1) / real.sum(1).clamp(min=1)
        return self.out(pooled)


def _train(shortcut: bool, seed: int) -> tuple[_MeanEmbed, WordTokenizer]:
    from tests.test_tickets import _train as train

    model, tok = train(shortcut, False, seed, _MeanEmbed, epochs=30)
    return model, tok


def _words(parts: tuple[str, ...] | list[str]) -> set[str]:
    return {w for p in parts for w in re.findall(r"[a-z0-9']+", p.replace("{", " "))}


CUE = _words([SHORTCUT])
PHRASE = _words(URGENT + ROUTINE) - _words(OPENERS + FILLER) - _words(
    [t for terms in GROUPS.values() for t in terms]) - CUE


def _top_words(scores: torch.Tensor, ids: torch.Tensor, tok: WordTokenizer) -> list[str]:
    top = scores.masked_fill(ids == 0, -torch.inf).argmax(dim=1)
    return [tok.vocab[int(ids[i, j])] for i, j in enumerate(top)]


@pytest.mark.parametrize("seed", [0, 1])
def test_attributions_find_the_shortcut_only_where_it_was_learned(seed: int) -> None:
    test = make_tickets(300, seed=seed + 50, shortcut=True, bias=False)
    cued = torch.from_numpy(test.shortcut)
    for shortcut, answer in ((True, CUE), (False, PHRASE)):
        model, tok = _train(shortcut, seed)
        ids = torch.from_numpy(tok.encode(test.texts))
        with torch.no_grad():
            pred = model(ids).argmax(1)
        rows = cued if shortcut else torch.ones(len(ids), dtype=torch.bool)
        for scores in (occlusion(model, ids, pred),
                       integrated_gradients(model, model.emb, ids, pred, steps=16)):
            words = _top_words(scores[rows], ids[rows], tok)
            share = sum(w in answer for w in words) / len(words)
            assert share > 0.8, (shortcut, share, words[:8])


def test_ig_completeness_and_pad_positions() -> None:
    model, tok = _train(False, 0)
    ids = torch.from_numpy(tok.encode(make_tickets(20, seed=9).texts))
    target = torch.ones(len(ids), dtype=torch.long)
    ig = integrated_gradients(model, model.emb, ids, target, steps=64)
    with torch.no_grad():
        gap = model(ids)[:, 1] - model(torch.zeros_like(ids))[:, 1]
    assert torch.allclose(ig.sum(dim=1), gap, atol=0.05 * float(gap.abs().max()))
    assert (ig[ids == 0] == 0).all() and (occlusion(model, ids, target)[ids == 0] == 0).all()


@pytest.mark.parametrize("shortcut", [True, False])
def test_eraser_scores_real_attributions_above_random(shortcut: bool) -> None:
    model, tok = _train(shortcut, 2)
    ids = torch.from_numpy(tok.encode(make_tickets(200, seed=77, shortcut=shortcut,
                                                   bias=False).texts))
    with torch.no_grad():
        pred = model(ids).argmax(1)
    for scores in (occlusion(model, ids, pred),
                   integrated_gradients(model, model.emb, ids, pred, steps=16)):
        e = eraser(model, ids, pred, scores, seed=0)
        assert e.comprehensiveness > e.random_comprehensiveness + 0.05, e
        assert e.sufficiency < e.random_sufficiency - 0.05, e


@pytest.mark.parametrize("shortcut", [True, False])
def test_lime_finds_the_same_answer_and_beats_random(shortcut: bool) -> None:
    from audit.saliency.tokens import lime_words

    model, tok = _train(shortcut, 0)
    test = make_tickets(40, seed=60, shortcut=True, bias=False)
    rows = [i for i in range(len(test)) if test.shortcut[i] or not shortcut]
    texts = [test.texts[i] for i in rows]
    ids = torch.from_numpy(tok.encode(texts))
    with torch.no_grad():
        pred = model(ids).argmax(1)
    scores = lime_words(model, tok, texts, pred, samples=300, seed=0)
    words = _top_words(scores, ids, tok)
    answer = CUE if shortcut else PHRASE
    assert sum(w in answer for w in words) / len(words) > 0.8, words[:8]
    e = eraser(model, ids, pred, scores, seed=0)
    assert e.comprehensiveness > e.random_comprehensiveness + 0.05, e


def test_attributions_change_when_the_weights_are_randomised() -> None:
    from audit.saliency.tokens import randomisation_sanity

    model, tok = _train(True, 0)
    ids = torch.from_numpy(tok.encode(make_tickets(60, seed=8, shortcut=True).texts))
    target = torch.ones(len(ids), dtype=torch.long)
    for method in (lambda m: occlusion(m, ids, target),
                   lambda m: integrated_gradients(m, m.emb, ids, target, steps=16)):
        rho = randomisation_sanity(method, model, ids, seed=1)
        assert abs(rho) < 0.5, rho
    # a "method" that ignores the model fails the test: its scores do not change at all
    same = randomisation_sanity(lambda m: ids.float(), model, ids, seed=1)
    assert same > 0.99
