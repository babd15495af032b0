"""A global surrogate for a text classifier: a sparse (L1) logistic regression on binary
bag-of-words features, fitted to the model's predicted classes on one seeded half of the texts
and scored on the other half (agreement and probability R^2 with bootstrap intervals, as the
image and tabular surrogates are); its largest weights are the words the model's decisions
most follow."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from audit.surrogate.model import Fidelity, bootstrap_fidelity


@dataclass(frozen=True)
class TextSurrogate:
    """Fidelity on held-out texts, the vocabulary size, the words with non-zero weight, and
    the top words per class as (word, weight), largest absolute weight first (for two
    classes one list, positive weights pointing to class 1)."""

    fidelity: Fidelity
    vocabulary: int
    nonzero: int
    top_words: list[list[tuple[str, float]]]


def text_surrogate(proba: Callable[[list[str]], np.ndarray], texts: Sequence[str], *,
                   word_chars: str = "a-z0-9'", C: float = 0.5, top: int = 10,
                   seed: int = 0) -> TextSurrogate:
    """Fit and score the surrogate (module doc); ``proba`` maps texts to the model's class
    probabilities ``(N, K)``, ``word_chars`` is the tokenizer's word character class and
    ``C`` the inverse L1 strength."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    texts = list(texts)
    if len(texts) < 20:
        raise ValueError(f"a text surrogate needs at least 20 texts, got {len(texts)}")
    p_model = proba(texts)
    pred = p_model.argmax(1)
    order = np.random.default_rng(seed).permutation(len(texts))
    fit, held = order[: len(texts) // 2], order[len(texts) // 2:]
    vec = CountVectorizer(token_pattern=rf"[{word_chars}]+", lowercase=True, binary=True)
    x = vec.fit_transform(texts)
    words = vec.get_feature_names_out()
    classes = np.unique(pred[fit])
    if len(classes) < 2:  # the model gives one class on the fitted half: a constant surrogate
        p_sur = np.zeros_like(p_model[held])
        p_sur[:, int(classes[0])] = 1.0
        match = (pred[held] == classes[0]).astype(float)
        return TextSurrogate(bootstrap_fidelity(match, p_model[held], p_sur, random_state=seed),
                             len(words), 0, [])
    clf = LogisticRegression(l1_ratio=1.0, C=C, solver="liblinear", random_state=seed)
    clf.fit(x[fit], pred[fit])
    p_sur = np.zeros_like(p_model[held])
    p_sur[:, clf.classes_] = clf.predict_proba(x[held])
    match = (clf.predict(x[held]) == pred[held]).astype(float)
    coef = clf.coef_
    lists = []
    for row in coef:
        best = np.argsort(-np.abs(row), kind="stable")[:top]
        lists.append([(str(words[j]), float(row[j])) for j in best if row[j] != 0])
    return TextSurrogate(bootstrap_fidelity(match, p_model[held], p_sur, random_state=seed),
                         len(words), int((coef != 0).any(axis=0).sum()), lists)
