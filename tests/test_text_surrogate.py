"""The text surrogate imitates ticket models faithfully and names the words they follow: the
sign-off for the model that learned the shortcut, problem words for the one that did not."""

from __future__ import annotations

import pytest

from audit.datasets.tickets import make_tickets
from audit.surrogate.text import text_surrogate
from tests.test_counterfactual_text import _proba
from tests.test_tickets import _train
from tests.test_token_attributions import CUE, PHRASE


@pytest.mark.parametrize("shortcut", [True, False])
def test_surrogate_is_faithful_and_names_the_learned_words(shortcut: bool) -> None:
    model, tok = _train(shortcut, False, 0)
    texts = make_tickets(800, seed=400, shortcut=True, bias=False).texts
    s = text_surrogate(_proba(model, tok), texts, seed=0)
    assert s.fidelity.agreement_ci[0] > 0.9, s.fidelity
    assert 0 < s.nonzero < s.vocabulary
    top = [w for w, _ in s.top_words[0][:3]]
    if shortcut:
        assert set(top) & CUE, s.top_words
    else:
        assert set(top) <= PHRASE, s.top_words


def test_too_few_texts_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least 20"):
        text_surrogate(lambda t: None, ["a"] * 5)  # type: ignore[arg-type,return-value]
