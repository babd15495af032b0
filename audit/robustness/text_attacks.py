"""Behavioural attacks on text classifiers: a greedy search over word edits under a budget of
edited words, as TextAttack's greedy recipes search (Morris et al. 2020), with the edits as one
class each (:class:`TextEdit`).

For each text the search makes up to ``budget`` edits; at each step it tries every candidate
edit of every word not edited yet and keeps the one that lowers the probability of the true
class most, stopping as soon as the predicted class changes (a success). The number of edits a
success took gives the curve: the success rate at each budget ``1..budget``, with Wilson
intervals, like the image attacks' epsilon curves.

Edits (a word is a run of the tokenizer's word characters):

* :class:`CharTypo`: one keyboard-style typo in a word (swap two neighbouring letters, drop
  one, or double one), seeded;
* :class:`WordDeletion`: drop the word;
* :class:`WordInsertion`: insert one of a list of neutral words before it;
* :class:`WordSwap`: replace it with one of its neighbours (synonyms the user lists, or the
  nearest words in the model's embedding space, :func:`embedding_neighbours`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from audit.stats import wilson

ProbaFn = Callable[[list[str]], np.ndarray]


class TextEdit(ABC):
    """One kind of edit: the candidate word lists made by editing word ``i``."""

    name = "edit"

    @abstractmethod
    def candidates(self, words: list[str], i: int, rng: np.random.Generator) -> list[list[str]]:
        """Every edited version of ``words`` this edit makes at position ``i``."""


class CharTypo(TextEdit):
    """A swap of two neighbouring letters, a dropped letter or a doubled letter (``tries``
    seeded draws per word)."""

    name = "typo"

    def __init__(self, tries: int = 3) -> None:
        self.tries = tries

    def candidates(self, words: list[str], i: int, rng: np.random.Generator) -> list[list[str]]:
        w = words[i]
        if len(w) < 2:
            return []
        out = []
        for _ in range(self.tries):
            j = int(rng.integers(0, len(w) - 1))
            kind = int(rng.integers(0, 3))
            new = (w[:j] + w[j + 1] + w[j] + w[j + 2:] if kind == 0 else
                   w[:j] + w[j + 1:] if kind == 1 else w[:j + 1] + w[j] + w[j + 1:])
            if new != w:
                out.append([*words[:i], new, *words[i + 1:]])
        return out


class WordDeletion(TextEdit):
    """Drop the word."""

    name = "deletion"

    def candidates(self, words: list[str], i: int, rng: np.random.Generator) -> list[list[str]]:
        return [[*words[:i], *words[i + 1:]]] if len(words) > 1 else []


class WordInsertion(TextEdit):
    """Insert a neutral word before the word."""

    name = "insertion"

    def __init__(self, fillers: Sequence[str] = ("really", "just", "also", "now")) -> None:
        self.fillers = list(fillers)

    def candidates(self, words: list[str], i: int, rng: np.random.Generator) -> list[list[str]]:
        return [[*words[:i], f, *words[i:]] for f in self.fillers]


class WordSwap(TextEdit):
    """Replace the word with one of its neighbours."""

    name = "swap"

    def __init__(self, neighbours: Mapping[str, Sequence[str]]) -> None:
        self.neighbours = {k: list(v) for k, v in neighbours.items()}

    def candidates(self, words: list[str], i: int, rng: np.random.Generator) -> list[list[str]]:
        return [[*words[:i], n, *words[i + 1:]] for n in self.neighbours.get(words[i], [])]


def embedding_neighbours(weight: np.ndarray, vocab: Sequence[str], k: int = 5,
                         skip: int = 2) -> dict[str, list[str]]:
    """Each word's ``k`` nearest words by cosine similarity of the rows of an embedding
    matrix ``weight`` (vocab x dim); the first ``skip`` ids (pad, unknown) are neither."""
    w = weight[skip:].astype(np.float64)
    w /= np.linalg.norm(w, axis=1, keepdims=True).clip(min=1e-12)
    sim = w @ w.T
    np.fill_diagonal(sim, -np.inf)
    near = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    words = list(vocab)[skip:]
    return {words[i]: [words[j] for j in row] for i, row in enumerate(near)}


@dataclass(frozen=True)
class TextAttackResult:
    """Per text: the edits a success took (``-1``: not flipped within the budget) and the
    edited text; the success curve over budgets with its intervals."""

    edit: str
    budget: int
    edits: np.ndarray
    adversarial: list[str]

    def curve(self, conf: float = 0.95) -> list[tuple[int, float, float, float]]:
        """(budget, success rate, low, high) for budgets ``1..budget``."""
        n = len(self.edits)
        out = []
        for b in range(1, self.budget + 1):
            k = int(((self.edits >= 1) & (self.edits <= b)).sum())
            lo, hi = wilson(k, n, conf)
            out.append((b, k / n if n else math.nan, lo, hi))
        return out


def greedy_attack(proba: ProbaFn, texts: Sequence[str], labels: Sequence[int],
                  edit: TextEdit, *, budget: int = 3, seed: int = 0,
                  split: Callable[[str], list[str]] | None = None) -> TextAttackResult:
    """Attack every text (module doc); texts already misclassified count as failures with 0
    edits (they are not attacked). ``split`` turns a text into words (default: whitespace
    words, lower-cased); the edited words are joined with spaces."""
    split = split or (lambda t: t.lower().split())
    edits = np.full(len(texts), -1, dtype=np.int64)
    adversarial = list(texts)
    start = proba(list(texts)).argmax(1)
    for n, (text, label) in enumerate(zip(texts, labels, strict=True)):
        if start[n] != label:
            edits[n] = 0
            continue
        rng = np.random.default_rng([seed, n])
        words, touched = split(text), set[int]()
        for step in range(1, budget + 1):
            options = [(i, c) for i in range(len(words)) if i not in touched
                       for c in edit.candidates(words, i, rng)]
            if not options:
                break
            p = proba([" ".join(c) for _, c in options])
            best = int(np.argmin(p[:, label]))
            i, new = options[best]
            touched = _shifted(touched, i, len(new) - len(words))
            words = new
            if int(p[best].argmax()) != label:
                edits[n], adversarial[n] = step, " ".join(words)
                break
    return TextAttackResult(edit.name, budget, edits, adversarial)


def _shifted(touched: set[int], i: int, delta: int) -> set[int]:
    """The edited positions after an edit at ``i`` that changed the word count by ``delta``:
    a deleted word leaves nothing to protect, an inserted one is itself edited."""
    if delta < 0:
        return {j - (j > i) for j in touched if j != i}
    if delta > 0:
        return {j + (j >= i) for j in touched} | {i}
    return touched | {i}
