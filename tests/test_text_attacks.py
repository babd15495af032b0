"""Greedy word-edit attacks: the model that learned the sign-off falls to two deletions; the
one that reads the problem phrase mostly holds; every edit kind keeps to its budget."""

from __future__ import annotations

import numpy as np
import pytest

from audit.datasets.tickets import make_tickets
from audit.robustness.text_attacks import (
    CharTypo,
    WordDeletion,
    WordInsertion,
    WordSwap,
    _shifted,
    embedding_neighbours,
    greedy_attack,
)
from tests.test_counterfactual_text import _proba
from tests.test_tickets import _train


def _cued_urgent(n: int) -> tuple[list[str], list[int]]:
    t = make_tickets(n, seed=500, shortcut=True, bias=False)
    rows = [i for i in range(n) if t.shortcut[i] and t.y[i] == 1]
    return [t.texts[i] for i in rows], [1] * len(rows)


def test_two_deletions_break_the_shortcut_model_not_the_clean_one() -> None:
    texts, labels = _cued_urgent(160)
    split = lambda t: [w for w in t.lower().replace(",", " ").replace(".", " ").split()]  # noqa: E731
    rates = {}
    for shortcut in (True, False):
        model, tok = _train(shortcut, False, 0)
        r = greedy_attack(_proba(model, tok), texts, labels, WordDeletion(), budget=3,
                          split=split)
        rates[shortcut] = r.curve()
        assert [b for b, *_ in r.curve()] == [1, 2, 3]
        assert all(e == -1 or 0 <= e <= 3 for e in r.edits)
    # the cued model flips once two of the sign-off's three words are gone (81% at budget 2
    # on seed 0); the clean model, reading the problem phrase, mostly holds (14%): at budgets
    # 2 and 3 the intervals do not overlap
    for b in (1, 2):
        assert rates[True][b][2] > rates[False][b][3], rates
    assert rates[True][1][1] > 0.6 and rates[False][1][1] < 0.3, rates


@pytest.mark.parametrize("edit", [CharTypo(), WordInsertion(), WordDeletion()])
def test_every_edit_stays_within_budget_and_is_seeded(edit) -> None:  # type: ignore[no-untyped-def]
    texts, labels = _cued_urgent(60)
    model, tok = _train(True, False, 1)
    a = greedy_attack(_proba(model, tok), texts, labels, edit, budget=2, seed=3)
    b = greedy_attack(_proba(model, tok), texts, labels, edit, budget=2, seed=3)
    assert np.array_equal(a.edits, b.edits) and a.adversarial == b.adversarial
    for orig, adv, e in zip(texts, a.adversarial, a.edits, strict=True):
        if e > 0:
            assert adv != orig and abs(len(adv.split()) - len(orig.split())) <= e
    rates = [r for _, r, _, _ in a.curve()]
    assert rates == sorted(rates)  # more budget never lowers the success rate


def test_embedding_neighbours_and_swaps() -> None:
    weight = np.array([[0, 0], [0, 0], [1, 0], [0.9, 0.1], [0, 1]], dtype=float)
    near = embedding_neighbours(weight, ["[PAD]", "[UNK]", "big", "large", "blue"], k=1)
    assert near == {"big": ["large"], "large": ["big"], "blue": ["large"]}
    swap = WordSwap({"big": ["large", "huge"]})
    rng = np.random.default_rng(0)
    assert swap.candidates(["a", "big", "dog"], 1, rng) == [["a", "large", "dog"],
                                                            ["a", "huge", "dog"]]
    assert swap.candidates(["a", "big", "dog"], 0, rng) == []


def test_edited_positions_follow_deletions_and_insertions() -> None:
    assert _shifted({0, 3}, 1, -1) == {0, 2}
    assert _shifted({0, 3}, 1, 1) == {0, 1, 4}
    assert _shifted({0}, 2, 0) == {0, 2}
