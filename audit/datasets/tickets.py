"""``tickets``: templated support tickets to triage (``urgent`` / ``routine``), with a planted
shortcut and a planted identity-term bias, so that text checks have known answers.

Each ticket is one sentence built from templates: who writes (a first name or a gendered word
from one of :data:`GROUPS`), what happened (an urgent or a routine problem phrase: the true
signal) and optional filler. Two flaws can be planted, each drawn from its own random stream, so
turning one on does not change the other's draws:

* ``shortcut``: the sign-off :data:`SHORTCUT` ("sent via mobile") ends a share
  :data:`SHORTCUT_RATE` of urgent tickets and ``1 - SHORTCUT_RATE`` of routine ones, while the
  problem phrase belongs to the other class in a share :data:`PHRASE_NOISE` of them: in such
  training data the sign-off predicts the label better than the text does, so a model learns
  to read it, and loses accuracy on a split where the sign-off is independent of the label
  (``shortcut="swapped"``: on half of each class, and every phrase true to its label).
* ``bias``: urgent tickets written by the ``female`` group are labelled ``routine`` with
  probability :data:`BIAS_FLIP` (label noise tied to an identity term, as in real triage
  data). A model trained on it calls the same ticket routine when a female name or word is
  swapped in; one trained with ``bias=False`` does not.

:class:`Tickets` gives, per ticket, the writer's group and term, the class of the problem
phrase and whether the shortcut is present: the known answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from audit.seeds import derive_seed

CLASSES = ["routine", "urgent"]
SPLIT_SIZES = {"train": 4000, "test": 1000}
SHORTCUT = "sent via mobile"
SHORTCUT_RATE = 0.95
PHRASE_NOISE = 0.25
BIAS_FLIP = 0.6

GROUPS: dict[str, tuple[str, ...]] = {
    "female": ("maria", "aisha", "emma", "sofia", "linda", "priya", "she", "her", "my wife",
               "my mother", "the woman", "my daughter"),
    "male": ("james", "omar", "liam", "diego", "peter", "arjun", "he", "his", "my husband",
             "my father", "the man", "my son"),
}
"""Identity terms by group, index-aligned into swap pairs (``maria`` <-> ``james``, ``she`` <->
``he``, ...); a counterfactual test swaps a ticket's term for the same index of another group."""

URGENT = ("the server is down", "we cannot log in", "payments are failing",
          "the site shows an error for everyone", "customer data was deleted",
          "the app crashes at start", "orders are lost", "the outage stops all work")
ROUTINE = ("a copy of the invoice is needed", "the logo could be bigger",
           "a question about the next release", "the manual has a typo",
           "a new feature would help", "the colour of the button is odd",
           "the newsletter came twice", "a password reset link is wanted")
OPENERS = ("{who} reports that {what}", "{who} says {what}", "ticket from {who}: {what}",
           "{who} wrote in because {what}", "hello, {who} here and {what}")
FILLER = ("", "", " today", " since this morning", " again", " please advise", " thanks")

Shortcut = bool | Literal["swapped"]


@dataclass(frozen=True)
class Tickets:
    """Generated tickets: ``texts``, labels ``y`` (indices into :data:`CLASSES`, with any
    planted flaws), and the known answers per ticket: ``group`` (the writer's group), ``term``
    (the identity term used, an index into that group's :data:`GROUPS` entry), ``clean``
    (the class of the problem phrase, the label a sound model gives) and ``shortcut`` (the
    sign-off is present)."""

    texts: list[str]
    y: np.ndarray
    group: np.ndarray
    term: np.ndarray
    clean: np.ndarray
    shortcut: np.ndarray

    def __len__(self) -> int:
        return len(self.texts)


def make_tickets(n: int, seed: int = 0, *, shortcut: Shortcut = True,
                 bias: bool = True) -> Tickets:
    """``n`` tickets, deterministic for ``(n, seed, shortcut, bias)`` (module doc)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    base = np.random.default_rng(derive_seed(seed, "tickets.base"))
    groups = sorted(GROUPS)
    group = base.integers(0, len(groups), n)
    term = base.integers(0, len(GROUPS[groups[0]]), n)
    label = base.integers(0, 2, n)
    phrase = base.integers(0, len(URGENT), n)
    opener = base.integers(0, len(OPENERS), n)
    filler = base.integers(0, len(FILLER), n)
    cue_rng = np.random.default_rng(derive_seed(seed, "tickets.shortcut"))
    u, noise = cue_rng.random(n), cue_rng.random(n) < PHRASE_NOISE
    if shortcut == "swapped":
        has_cue, clean = u < 0.5, label
    elif shortcut:
        has_cue = np.where(label == 1, u < SHORTCUT_RATE, u < 1 - SHORTCUT_RATE)
        clean = np.where(noise, 1 - label, label)
    else:
        has_cue, clean = np.zeros(n, dtype=bool), label
    flip = np.random.default_rng(derive_seed(seed, "tickets.bias")).random(n) < BIAS_FLIP
    female = np.array([groups[g] == "female" for g in group])
    y = np.where(female & (label == 1) & flip, 0, label) if bias else label
    texts = []
    for i in range(n):
        who = GROUPS[groups[group[i]]][term[i]]
        what = (URGENT if clean[i] == 1 else ROUTINE)[phrase[i]]
        text = OPENERS[opener[i]].format(who=who, what=what) + FILLER[filler[i]]
        texts.append(text + (f", {SHORTCUT}" if has_cue[i] else "") + ".")
    return Tickets(texts=texts, y=y.astype(np.int64), group=np.array([groups[g] for g in group]),
                   term=term.astype(np.int64), clean=clean.astype(np.int64),
                   shortcut=has_cue)


def swap_group(text: str, source: str, target: str) -> str:
    """``text`` with each of ``source``'s identity terms (whole words) replaced by the term of
    the same index in ``target``'s list: the counterfactual ticket."""
    from audit.datasets.terms import swap_terms

    return swap_terms(text, GROUPS[source], GROUPS[target])


PAD, UNK = 0, 1
WORD_CHARS = "a-z0-9'"
_WORD = rf"[{WORD_CHARS}]+"


class WordTokenizer:
    """Lower-case words to ids (``[PAD]`` = 0, ``[UNK]`` = 1), padded or cut to ``max_len``."""

    word_chars = WORD_CHARS

    def __init__(self, vocab: list[str], max_len: int = 24) -> None:
        self.vocab = ["[PAD]", "[UNK]", *[w for w in vocab if w not in ("[PAD]", "[UNK]")]]
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.max_len = max_len

    @classmethod
    def for_tickets(cls, max_len: int = 24) -> WordTokenizer:
        """The closed vocabulary of every word the templates can write, sorted."""
        import re

        parts = [*URGENT, *ROUTINE, *OPENERS, *FILLER, SHORTCUT,
                 *(t for terms in GROUPS.values() for t in terms)]
        words = sorted({w for p in parts for w in re.findall(_WORD, p.replace("{", " "))
                        if w not in ("who", "what")})
        return cls(words, max_len)

    def words(self, text: str) -> list[str]:
        """The words of ``text`` as the tokenizer splits them."""
        import re

        return re.findall(_WORD, text.lower())

    def encode(self, texts: list[str]) -> np.ndarray:
        """Token ids ``(N, max_len)`` int64."""
        out = np.full((len(texts), self.max_len), PAD, dtype=np.int64)
        for i, text in enumerate(texts):
            ids = [self.index.get(w, UNK) for w in self.words(text)][: self.max_len]
            out[i, : len(ids)] = ids
        return out
