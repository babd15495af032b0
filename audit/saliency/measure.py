"""Measuring explanations of images: choose the explainers, explain a seeded sample, score each
method's faithfulness and sanity, and (with object masks) localisation and reliance outside the
object. The result is an :class:`~audit.saliency.evaluation.ImageEvaluation`; no thresholds
are applied here except to choose which maps the shortcut test pools.

Every explainer runs under a torch seed derived from its name, before and after the parameter
randomisation, so a method's maps do not depend on which other methods run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from audit.budget import Budget, BudgetExhausted, Stop, counted
from audit.distributed import current
from audit.errors import ConfigError
from audit.saliency.base import ExplainContext, Explainer
from audit.saliency.evaluation import (
    Explained,
    FeatureVis,
    ImageEvaluation,
    LayerChoice,
    Localisation,
    MethodScore,
    Selection,
)
from audit.saliency.featvis import ActivationMaximisation
from audit.saliency.layers import find_target_layer, unavailable_reason
from audit.saliency.metrics import (
    Faithfulness,
    ProbaFn,
    faithfulness,
    random_maps,
    randomize_parameters,
    spearman_rows,
)
from audit.saliency.registry import explainer_for, explainer_names, title_of
from audit.saliency.settings import SaliencyParams
from audit.saliency.shortcut import localise, masks_of, measure_shortcut
from audit.subject import Subject, derive_seed


def probabilities(subject: Subject) -> ProbaFn:
    """The subject's class probabilities, batched and without gradients."""
    return lambda x: torch.softmax(subject.logits(x), dim=1)


def validate(p: SaliencyParams) -> None:
    """Raise :class:`ConfigError` for unknown methods or too few samples or steps."""
    known = explainer_names()
    unknown = [m for m in p.methods if m not in known]
    if unknown or not p.methods:
        bad = ", ".join(unknown) or "(empty)"
        raise ConfigError(f"[checks.saliency] methods: unknown {bad}; choose from "
                          f"{', '.join(known)}")
    if p.samples < 2 or p.deletion_steps < 2:
        raise ConfigError("[checks.saliency] samples and deletion_steps must be >= 2")


@dataclass(frozen=True)
class ImageSample:
    """The explained images: the first ``n`` are scored, the rest are extra misclassified
    samples for the galleries."""

    x: torch.Tensor
    y: torch.Tensor
    target: torch.Tensor  # the predicted class: what each map explains
    n: int
    masks: torch.Tensor | None
    baseline: torch.Tensor  # the data's mean colour (1, C, 1, 1)


def image_sample(subject: Subject, p: SaliencyParams) -> ImageSample:
    """A seeded sample of the audit images plus up to ``gallery`` misclassified ones."""
    data = subject.data
    rng = subject.rng("saliency.samples")
    n_all = len(data)
    eval_idx = np.sort(rng.choice(n_all, size=min(p.samples, n_all), replace=False))
    pred_all = subject.data_pred
    wrong_pool = np.setdiff1d(np.flatnonzero((pred_all != data.y).numpy()), eval_idx)
    wrong_extra = np.sort(rng.choice(wrong_pool, size=min(p.gallery, len(wrong_pool)),
                                     replace=False)) if len(wrong_pool) else np.array([], int)
    idx = np.concatenate([eval_idx, wrong_extra]).astype(np.int64)
    sub = data.subset(idx)
    return ImageSample(x=sub.x, y=sub.y, target=pred_all[torch.as_tensor(idx)],
                       n=len(eval_idx), masks=masks_of(sub.extras.get("masks"), sub.x),
                       baseline=data.x.mean(dim=(0, 2, 3), keepdim=True)[0])


def select_image(subject: Subject, p: SaliencyParams, x: torch.Tensor) -> Selection:
    """The requested explainers for images; those needing a layer are dropped when the model
    has no spatial one."""
    chosen = [(m, explainer_for(m, "image")) for m in p.methods]
    probe = x[:1].to(subject.device)
    reasons = {cls: cls.unavailable(subject.model, probe) for _, cls in chosen if cls}
    methods = [cls for _, cls in chosen if cls is not None and reasons[cls] is None]
    other = tuple(title_of(m) for m, cls in chosen if cls is None)
    unavailable = tuple((cls.title, why) for cls, why in reasons.items() if why is not None)
    if not any(cls.needs_layer for cls in methods):
        return Selection("image", tuple(methods), not_for_kind=other, unavailable=unavailable)
    info = find_target_layer(subject.model, probe, p.layer)
    if info is None:
        return Selection("image", tuple(c for c in methods if not c.needs_layer),
                         no_layer=tuple(c.title for c in methods if c.needs_layer),
                         no_layer_reason=unavailable_reason(subject.model) or "",
                         not_for_kind=other, unavailable=unavailable)
    layer = LayerChoice(info.name, info.shape, automatic=p.layer is None, layout=info.layout)
    return Selection("image", tuple(methods), not_for_kind=other, layer=layer,
                     unavailable=unavailable)


Stops = list[tuple[type[Explainer], str]]
"""Explainers a budget stopped, with the budget (evaluations or time)."""


def budgets_for(methods: Sequence[type[Explainer]], p: SaliencyParams) -> dict[str, Budget]:
    """One budget per method, shared by its maps and its sanity rerun."""
    return {c.name: Budget(p.explainer_evaluations, p.explainer_seconds) for c in methods}


UNIT = 8
"""Samples explained per unit of work: each unit runs under its own seed, so a distributed
audit (:mod:`audit.distributed`) splits the units over its ranks and explains every sample as
one process does."""


def explain_each(methods: Sequence[type[Explainer]], model: nn.Module, ctx: ExplainContext,
                 x: torch.Tensor, target: torch.Tensor, seed: int, signed: bool = False,
                 budgets: dict[str, Budget] | None = None
                 ) -> tuple[dict[str, torch.Tensor], Stops]:
    """Each method's maps (or, with ``signed``, raw attributions) under its own torch seed,
    within its budget, in units of :data:`UNIT` samples; a method its budget stops (in any
    unit) has no maps and is listed in the stops."""
    out: dict[str, torch.Tensor] = {}
    stops: Stops = []
    for cls in methods:
        torch.manual_seed(derive_seed(seed, f"saliency.{cls.name}"))
        explainer = cls.build(model, ctx)
        budget = (budgets or {}).get(cls.name)

        def one(_: int, sl: slice, explainer: Explainer = explainer,
                budget: Budget | None = budget) -> torch.Tensor | Stop:
            xs, ts = x[sl], target[sl]
            try:
                with counted(model, budget, len(xs)):
                    r = explainer.attribute(xs, ts) if signed else explainer.explain(xs, ts)
                return r.detach().cpu()  # gathered over ranks on the CPU
            except BudgetExhausted as stop:
                return stop.reason

        parts = current().map(one, len(x), UNIT, seeded=True) if len(x) else [one(0, slice(0))]
        stopped = [r for r in parts if not isinstance(r, torch.Tensor)]
        if stopped:
            stops.append((cls, stopped[0]))
        else:
            out[cls.name] = torch.cat([r for r in parts if isinstance(r, torch.Tensor)])
    return out, stops


class AllStopped(Exception):
    """Every selected explainer was stopped by its budget: nothing is left to score."""

    def __init__(self, sel: Selection) -> None:
        super().__init__("every explainer stopped at its budget")
        self.selection = sel


def without(sel: Selection, stops: Stops, where: str) -> Selection:
    """``sel`` less the stopped methods (``where``: the maps), or only noting them (the sanity
    rerun: the method keeps its scores but has no sanity value)."""
    if not stops:
        return sel
    gone = {c for c, _ in stops}
    noted = sel.stopped + tuple((c.title, why, where) for c, why in stops)
    methods = sel.methods if where != "maps" else tuple(c for c in sel.methods if c not in gone)
    if not methods:
        raise AllStopped(replace(sel, methods=methods, stopped=noted))
    return replace(sel, methods=methods, stopped=noted)


def sanity(subject: Subject, p: SaliencyParams, methods: Sequence[type[Explainer]],
           ctx: ExplainContext, x: torch.Tensor, target: torch.Tensor,
           maps: dict[str, torch.Tensor], budgets: dict[str, Budget] | None = None
           ) -> tuple[dict[str, float], dict[str, torch.Tensor], str | None, Stops]:
    """Rank correlation of each method's maps with those of a randomised copy of the model:
    (rho per method, the random model's maps, why the model could not be randomised, the
    methods their budget stopped on the rerun)."""
    k = min(p.sanity_samples, len(x))
    if k < 2:
        return {}, {}, None, []
    try:
        rmodel = randomize_parameters(subject.model, derive_seed(subject.seed,
                                                                  "saliency.randomize"))
    except Exception as e:  # e.g. a TorchScript model that cannot be copied
        return {}, {}, type(e).__name__, []
    rmaps, stops = explain_each(methods, rmodel, ctx, x[:k], target[:k], subject.seed,
                                budgets=budgets)
    # a constant map of the random model (e.g. Grad-CAM all zero) shares no ranking
    rho = {m: float(torch.nan_to_num(spearman_rows(maps[m][:k], r), nan=0.0).mean())
           for m, r in rmaps.items()}
    return rho, rmaps, None, stops


def method_scores(methods: Sequence[type[Explainer]], faith: dict[str, Faithfulness],
                  random: Faithfulness, rho: dict[str, float]) -> list[MethodScore]:
    """Faithfulness, gain over the random order and sanity per method, in method order."""
    return [MethodScore(c.name, c.title, faith[c.name], faith[c.name].score - random.score,
                        rho.get(c.name)) for c in methods]


def measure_image(subject: Subject, p: SaliencyParams, sample: ImageSample,
                  sel: Selection) -> ImageEvaluation:
    """Explain ``sample`` with the selected methods and measure the explanations."""
    proba = probabilities(subject)
    lo, hi = subject.card.input.range
    ctx = ExplainContext(settings=p, baseline=sample.baseline,
                         noise=p.smoothgrad_noise * (hi - lo),
                         seed=derive_seed(subject.seed, "saliency.lime"),
                         batch_size=subject.batch_size,
                         gradient_batch=max(8, subject.batch_size // 4),
                         layer=None if sel.layer is None else sel.layer.name,
                         layer_layout=None if sel.layer is None else sel.layer.layout)
    x, target, n = sample.x, sample.target, sample.n
    budgets = budgets_for(sel.methods, p)
    maps, stops = explain_each(sel.methods, subject.model, ctx, x, target, subject.seed,
                               budgets=budgets)
    sel = without(sel, stops, "maps")
    gen = subject.generator("saliency.faithfulness")
    rand = faithfulness(proba, x[:n], target[:n], random_maps((n, *x.shape[2:]), gen),
                        sample.baseline, p.deletion_steps, gen)
    faith = {m: faithfulness(proba, x[:n], target[:n], v[:n], sample.baseline,
                             p.deletion_steps, gen) for m, v in maps.items()}
    rho, rmaps, error, stops = sanity(subject, p, sel.methods, ctx, x, target, maps, budgets)
    sel = without(sel, stops, "sanity rerun")
    scores = method_scores(sel.methods, faith, rand, rho)
    loc: dict[str, Localisation] | None = None
    area = shortcut = None
    if sample.masks is not None:
        masks = sample.masks[:n]
        area, loc = localise(maps, masks)
        shortcut = measure_shortcut(subject, p, scores, maps, masks, loc, x[:n], proba)
    return ImageEvaluation(
        selection=sel, samples=n, scores=scores, random=rand, sanity_error=error,
        localisation=loc, object_area_share=area, shortcut=shortcut,
        featvis=feature_visualisation(subject, p) if p.featvis else None,
        explained=_explained(subject, p, sample, maps, rmaps))


def _explained(subject: Subject, p: SaliencyParams, sample: ImageSample,
               maps: dict[str, torch.Tensor], rmaps: dict[str, torch.Tensor]) -> Explained:
    classes = subject.card.classes
    y, target, n = sample.y, sample.target, sample.n
    correct = [i for i in range(n) if int(target[i]) == int(y[i])][: p.gallery]
    wrong = [i for i in range(len(y)) if int(target[i]) != int(y[i])][: p.gallery]
    return Explained(x=sample.x, value_range=subject.card.input.range,
                     true=[classes[int(v)] for v in y], pred=[classes[int(v)] for v in target],
                     masks=sample.masks, maps=maps, random_maps=rmaps, show=correct + wrong,
                     n_correct=len(correct))


def feature_visualisation(subject: Subject, p: SaliencyParams) -> FeatureVis:
    """Seeded activation maximisation of up to ``featvis_classes`` classes."""
    classes = subject.card.classes
    k = min(len(classes), p.featvis_classes)
    fv = ActivationMaximisation(subject.model, tuple(subject.data.x.shape[1:]),
                                subject.card.input.range, steps=p.featvis_steps,
                                seed=derive_seed(subject.seed, "saliency.featvis"))
    res = fv.visualise(list(range(k)))
    return FeatureVis(classes=list(classes[:k]), images=res.images,
                      probabilities=res.probabilities.tolist(),
                      mean_probability=float(res.probabilities.mean()))
