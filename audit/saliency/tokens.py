"""Token attributions for text classifiers that take token ids ``(N, L)``, and ERASER's
faithfulness metrics for them (DeYoung et al. 2020, "ERASER: A Benchmark to Evaluate
Rationalized NLP Models").

A deleted token is replaced by the pad id: the models this applies to mask pad positions out
(the Hugging Face wrapper builds its attention mask from the pad id), so a pad is "no token".

* :func:`occlusion` (leave-one-out): the drop in the target's probability when one token is
  deleted, for every token.
* :func:`integrated_gradients`: captum's ``LayerIntegratedGradients`` on the embedding layer
  from an all-pad baseline, summed over the embedding dimension (Sundararajan et al. 2017, as
  captum and transformers-interpret apply it to text).
* :func:`lime_words`: LIME's text explainer (the ``lime`` package) per word position, its
  perturbed sentences classified in batches; words are split the way the tokenizer splits
  them, so position ``j`` is token ``j``.
* :func:`eraser`: comprehensiveness (the probability lost when the top-k tokens are deleted)
  and sufficiency (lost when only they are kept), averaged over k = 1, 5, 10, 20, 50% of the
  tokens (ERASER's AOPC bins), for a method's scores and for random scores from one seed.
* :func:`randomisation_sanity`: how much a method's scores change when the model's weights are
  re-drawn (Adebayo et al. 2018).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn

BINS = (0.01, 0.05, 0.1, 0.2, 0.5)
"""ERASER's shares of the tokens kept or deleted, averaged into one number (AOPC)."""


def _probabilities(model: nn.Module, ids: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Class probabilities ``(N, C)`` on the CPU, in batches, without gradients."""
    with torch.no_grad():
        out = [torch.softmax(model(ids[i:i + batch]).float(), dim=1).cpu() for i in
               range(0, len(ids), batch)]
    return torch.cat(out)


def _proba(model: nn.Module, ids: torch.Tensor, target: torch.Tensor,
           batch: int = 256) -> torch.Tensor:
    return _probabilities(model, ids, batch).gather(1, target[:, None].cpu())[:, 0]


def occlusion(model: nn.Module, ids: torch.Tensor, target: torch.Tensor, *, pad: int = 0,
              batch: int = 256) -> torch.Tensor:
    """Leave-one-out scores ``(N, L)``: p(target | ids) - p(target | ids without token j);
    0 at pad positions."""
    n, length = ids.shape
    base = _proba(model, ids, target, batch)
    scores = torch.zeros(n, length)
    real = ids != pad
    for j in range(length):
        rows = torch.nonzero(real[:, j])[:, 0]
        if not len(rows):
            continue
        cut = ids[rows].clone()
        cut[:, j] = pad
        scores[rows, j] = base[rows] - _proba(model, cut, target[rows], batch)
    return scores


def integrated_gradients(model: nn.Module, embedding: nn.Module, ids: torch.Tensor,
                         target: torch.Tensor, *, pad: int = 0, steps: int = 32,
                         batch: int = 64) -> torch.Tensor:
    """Integrated Gradients ``(N, L)`` of the target's logit with respect to the output of
    ``embedding`` (the token embedding layer), from the all-pad input, summed over the
    embedding dimension; 0 at pad positions."""
    from captum.attr import LayerIntegratedGradients

    lig = LayerIntegratedGradients(model, embedding)
    parts = []
    for i in range(0, len(ids), batch):
        x, t = ids[i:i + batch], target[i:i + batch]
        attr = lig.attribute(x, baselines=torch.full_like(x, pad), target=t, n_steps=steps,
                             internal_batch_size=batch)
        parts.append(attr.sum(dim=-1).detach().cpu())
    return torch.cat(parts) * (ids != pad)


class WordTokenizer(Protocol):
    """What :func:`lime_words` needs of a tokenizer: one id per run of ``word_chars`` (a
    regex character class body, e.g. ``a-z0-9'``) in the lower-cased text, in order."""

    word_chars: str

    def encode(self, texts: list[str]) -> np.ndarray: ...


def lime_words(model: nn.Module, tokenizer: WordTokenizer, texts: list[str],
               target: torch.Tensor, *, samples: int = 500, seed: int = 0,
               length: int | None = None, batch: int = 256) -> torch.Tensor:
    """LIME weights ``(N, length)`` of each word position for the target class (LIME's
    ``LimeTextExplainer(bow=False)``, removed words deleted rather than masked, seeded per
    sentence from ``seed``); 0 beyond a sentence's words."""
    from lime.lime_text import LimeTextExplainer

    def classify(batch_texts: list[str]) -> np.ndarray:
        ids = torch.from_numpy(tokenizer.encode(list(batch_texts)))
        return _probabilities(model, ids, batch).numpy()

    width = length or int(tokenizer.encode(texts[:1]).shape[1])
    scores = torch.zeros(len(texts), width)
    # separators are whatever is not a word character, so LIME's features are the tokenizer's
    # words, in order
    split = rf"[^{tokenizer.word_chars}]+"
    for i, text in enumerate(texts):
        explainer = LimeTextExplainer(bow=False, split_expression=split, mask_string="",
                                      random_state=seed + i)
        label = int(target[i])
        exp = explainer.explain_instance(text.lower(), classify, labels=(label,),
                                         num_features=width, num_samples=samples)
        for feature, weight in exp.as_map()[label]:
            if feature < width:
                scores[i, feature] = float(weight)
    return scores


@dataclass(frozen=True)
class Eraser:
    """ERASER's metrics of one set of scores (AOPC over :data:`BINS`): higher
    comprehensiveness and lower sufficiency mean a more faithful explanation."""

    comprehensiveness: float
    sufficiency: float
    random_comprehensiveness: float
    random_sufficiency: float


def _top_mask(scores: torch.Tensor, real: torch.Tensor, share: float) -> torch.Tensor:
    """The top ``share`` of each row's real tokens by score (at least one)."""
    k = (real.sum(dim=1).float() * share).ceil().clamp(min=1).long()
    ranked = torch.where(real, scores, torch.full_like(scores, -torch.inf))
    order = ranked.argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(scores.shape[1]).expand_as(order))
    return (rank < k[:, None]) & real


def _aopc(model: nn.Module, ids: torch.Tensor, target: torch.Tensor, scores: torch.Tensor,
          pad: int, bins: Sequence[float]) -> tuple[float, float]:
    real = ids != pad
    base = _proba(model, ids, target)
    comp, suff = [], []
    for share in bins:
        top = _top_mask(scores, real, share)
        comp.append((base - _proba(model, ids.masked_fill(top, pad), target)).mean())
        suff.append((base - _proba(model, ids.masked_fill(real & ~top, pad), target)).mean())
    return float(torch.stack(comp).mean()), float(torch.stack(suff).mean())


def eraser(model: nn.Module, ids: torch.Tensor, target: torch.Tensor, scores: torch.Tensor,
           *, pad: int = 0, seed: int = 0, bins: Sequence[float] = BINS) -> Eraser:
    """Comprehensiveness and sufficiency of ``scores`` ``(N, L)`` and of uniform random scores
    (seeded), on the model's probability of ``target``."""
    rand = torch.rand(scores.shape, generator=torch.Generator().manual_seed(seed))
    c, s = _aopc(model, ids, target, scores, pad, bins)
    rc, rs = _aopc(model, ids, target, rand, pad, bins)
    return Eraser(c, s, rc, rs)


def randomisation_sanity(attribute: Callable[[nn.Module], torch.Tensor], model: nn.Module,
                         ids: torch.Tensor, *, pad: int = 0, seed: int = 0) -> float:
    """Adebayo et al.'s model-randomisation test for token attributions: the mean Spearman
    correlation, over each text's real tokens, between ``attribute(model)`` and
    ``attribute(randomised copy)`` (every parameter re-drawn,
    :func:`audit.saliency.metrics.randomize_parameters`). Near 0: the attributions depend on
    what the model learned; near 1: they would look the same for any model."""
    from scipy.stats import spearmanr

    from audit.saliency.metrics import randomize_parameters

    a, b = attribute(model), attribute(randomize_parameters(model, seed))
    rhos = []
    for i in range(len(ids)):
        real = (ids[i] != pad).numpy()
        x, y = a[i].numpy()[real], b[i].numpy()[real]
        if len(x) > 2 and x.std() > 0 and y.std() > 0:
            rhos.append(float(spearmanr(x, y).statistic))
    return float(np.mean(rhos)) if rhos else float("nan")
