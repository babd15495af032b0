"""Counterfactual fairness for text: the planted identity-term bias is flagged, with intervals,
and a model trained without it is not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audit.datasets.terms import mentions, swap_terms
from audit.datasets.tickets import GROUPS, make_tickets
from audit.fairness.counterfactual import counterfactual_gaps
from tests.test_tickets import _train


def test_swaps_are_whole_word_one_pass_and_keep_capitals() -> None:
    assert swap_terms("He said she was there.", ["he", "she"], ["she", "he"]) == \
        "She said he was there."
    assert swap_terms("the theme", ["he"], ["she"]) == "the theme"
    assert swap_terms("Ask my wife, my wifey", ["my wife"], ["my husband"]) == \
        "Ask my husband, my wifey"
    assert mentions("Maria wrote", ["maria"]) and not mentions("Mariana wrote", ["maria"])
    with pytest.raises(ValueError, match="differ in length"):
        swap_terms("x", ["a", "b"], ["c"])


def _proba(model: torch.nn.Module, tok):  # type: ignore[no-untyped-def]
    def fn(texts: list[str]) -> np.ndarray:
        with torch.no_grad():
            return torch.softmax(model(torch.from_numpy(tok.encode(texts))), 1).numpy()
    return fn


@pytest.mark.parametrize("seed", [0, 3])
def test_planted_bias_is_flagged_and_a_fair_model_is_not(seed: int) -> None:
    texts = make_tickets(600, seed=seed + 300, shortcut=False, bias=False).texts
    gaps = {}
    for bias in (True, False):
        model, tok = _train(False, bias, seed)
        gaps[bias] = {(g.source, g.target): g for g in
                      counterfactual_gaps(_proba(model, tok), texts, GROUPS, positive=1)}
    biased, fair = gaps[True][("female", "male")], gaps[False][("female", "male")]
    assert biased.n == fair.n > 250  # about half the tickets are written by the female group
    # swapping a female writer for a male one makes the ticket more urgent, beyond noise
    assert biased.flip_low > 0.2 and biased.shift_low > 0.1 and biased.p_value < 1e-6
    assert biased.material()
    back = gaps[True][("male", "female")]
    assert back.shift_high < -0.1 and back.flip_low > 0.2
    # the model trained without the bias: no flips, and a shift within a hair of 0
    assert fair.flips == 0 and fair.flip_high < 0.02 and abs(fair.shift) < 0.02
    # its shifts of ~1e-5 can be significant (the model is deterministic), but not material
    assert not fair.material()


def test_pairs_without_mentions_report_n_zero() -> None:
    gaps = counterfactual_gaps(lambda t: np.full((len(t), 2), 0.5), ["nothing here"],
                               {"a": ["alpha"], "b": ["beta"]}, positive=1)
    assert [(g.source, g.target, g.n) for g in gaps] == [("a", "b", 0), ("b", "a", 0)]
