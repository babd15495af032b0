"""Measuring explanations of tabular rows: per-feature attributions of a seeded sample of rows,
a feature ranking across methods, and the same faithfulness and sanity scores as for images
(over features instead of pixels). The result is a
:class:`~audit.saliency.evaluation.TabularEvaluation`."""

from __future__ import annotations

import numpy as np
import torch

from audit.saliency.base import ExplainContext
from audit.saliency.evaluation import Selection, TabularEvaluation
from audit.saliency.measure import (
    budgets_for,
    explain_each,
    method_scores,
    probabilities,
    sanity,
    without,
)
from audit.saliency.metrics import faithfulness, random_maps, spearman_rows
from audit.saliency.registry import default_methods, explainer_for, title_of
from audit.saliency.settings import SaliencyParams
from audit.subject import Subject, derive_seed


def select_tabular(p: SaliencyParams) -> Selection:
    """The requested explainers that apply to rows; the image default list means the tabular
    default (no need to mention the CAMs it cannot run)."""
    names = default_methods("tabular") if p.methods == default_methods("image") else p.methods
    chosen = [(m, explainer_for(m, "tabular")) for m in names]
    return Selection("tabular", tuple(c for _, c in chosen if c is not None),
                     not_for_kind=tuple(title_of(m) for m, c in chosen if c is None))


def feature_names(subject: Subject) -> list[str]:
    """The data's feature names, else the card's, else ``x0, x1, ...``."""
    data = subject.data
    return list(data.feature_names or subject.card.input.feature_names
                or [f"x{i}" for i in range(data.x.shape[1])])


BACKGROUND_ROWS = 20_000
"""LIME's tabular background (column statistics it perturbs from) is at most this many rows, a
seeded subset: its set-up is linear in rows, and more rows no longer move the statistics."""


def background_rows(subject: Subject) -> torch.Tensor:
    """The rows LIME's tabular explainer draws its statistics from (at most
    :data:`BACKGROUND_ROWS`)."""
    x = subject.data.x
    if len(x) <= BACKGROUND_ROWS:
        return x
    rows = subject.rng("saliency.background").choice(len(x), BACKGROUND_ROWS, replace=False)
    return x[torch.as_tensor(np.sort(rows))]


def measure_tabular(subject: Subject, p: SaliencyParams, sel: Selection) -> TabularEvaluation:
    """Attribute a seeded sample of rows with the selected methods and measure them."""
    data = subject.data
    names = feature_names(subject)
    proba = probabilities(subject)
    rng = subject.rng("saliency.samples")
    n = min(p.samples, len(data))
    idx = torch.as_tensor(np.sort(rng.choice(len(data), size=n, replace=False)))
    x, target = data.x[idx], subject.data_pred[idx]
    baseline = data.x.mean(dim=0)
    std = data.x.std(dim=0).clamp(min=1e-6)
    ctx = ExplainContext(settings=p, baseline=baseline,
                         noise=float(p.smoothgrad_noise * std.mean()),
                         seed=derive_seed(subject.seed, "saliency.lime"),
                         background=background_rows(subject),
                         feature_names=names)
    budgets = budgets_for(sel.methods, p)
    signed, stops = explain_each(sel.methods, subject.model, ctx, x, target, subject.seed,
                                 signed=True, budgets=budgets)
    sel = without(sel, stops, "maps")
    maps = {m: v.abs() for m, v in signed.items()}
    gen = subject.generator("saliency.faithfulness")
    rand = faithfulness(proba, x, target, random_maps(tuple(x.shape), gen), baseline,
                        p.deletion_steps, gen)
    faith = {m: faithfulness(proba, x, target, v, baseline, p.deletion_steps, gen)
             for m, v in maps.items()}
    norm = {m: v / v.amax(dim=1, keepdim=True).clamp(min=1e-12) for m, v in maps.items()}
    rho, _, error, stops = sanity(subject, p, sel.methods, ctx, x, target, norm, budgets)
    sel = without(sel, stops, "sanity rerun")
    mean_abs = {m: v.mean(0).numpy() for m, v in maps.items()}
    ranks = np.mean([np.argsort(np.argsort(-v)) for v in mean_abs.values()], axis=0)
    order = np.argsort(ranks, kind="stable")[: p.tabular_top]
    agreement = None
    if len(mean_abs) >= 2:
        a, b = list(mean_abs.values())[:2]
        agreement = float(spearman_rows(torch.from_numpy(a)[None], torch.from_numpy(b)[None])[0])
    return TabularEvaluation(
        selection=sel, samples=n, scores=method_scores(sel.methods, faith, rand, rho),
        random=rand, feature_names=names, order=[int(f) for f in order], mean_rank=ranks,
        mean_abs=mean_abs,
        positive_share={m: [float((v[:, f] > 0).float().mean()) for f in range(v.shape[1])]
                        for m, v in signed.items()},
        rank_agreement=agreement, sanity_error=error)
