"""The ``saliency`` check: explain the model with several methods and measure the explanations.

Images: Grad-CAM and Grad-CAM++ (on the automatically chosen or ``--layer`` target layer),
Integrated Gradients, SmoothGrad and LIME explain the predicted class of a seeded sample of the
audit data. Every method is scored for faithfulness (deletion/insertion against a random order)
and sanity (rank correlation with the maps of a randomised model); on data with object masks,
for localisation (pointing game, energy in the object) and the model's reliance on evidence
outside the object (saliency outside the masks plus two counterfactuals). A feature
visualisation per class shows what the model responds to.

Tabular rows: LIME (tabular) and Integrated Gradients give per-feature attributions, a
feature-importance table and plot, and the same faithfulness and sanity metrics over features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from audit.checks import Check, register
from audit.errors import ConfigError
from audit.result import Figure, Finding, Section, Severity, Table
from audit.saliency import Explainer
from audit.saliency import figures as figs
from audit.saliency.featvis import ActivationMaximisation
from audit.saliency.gradcam import GradCAM, GradCAMPlusPlus
from audit.saliency.gradients import IntegratedGradientsExplainer, SmoothGrad
from audit.saliency.layers import LayerInfo, find_target_layer
from audit.saliency.lime import LimeImage, LimeTabular
from audit.saliency.metrics import (
    Faithfulness,
    describe_position,
    energy_in_mask,
    faithfulness,
    hotspot_window,
    mask_area,
    object_only_agreement,
    occlusion_change,
    pointing_game,
    random_maps,
    random_window_change,
    randomize_parameters,
    spearman_rows,
)
from audit.subject import Subject, derive_seed

IMAGE_METHODS = ("gradcam", "gradcam++", "integrated-gradients", "smoothgrad", "lime")
TABULAR_METHODS = ("lime", "integrated-gradients", "smoothgrad")
TITLES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "integrated-gradients":
          "Integrated Gradients", "smoothgrad": "SmoothGrad", "lime": "LIME"}


@dataclass
class SaliencyParams:
    """Settings and thresholds of the saliency check."""

    methods: list[str] = field(default_factory=lambda: list(IMAGE_METHODS))  # methods to run
    samples: int = 32  # images (rows) explained and scored, a seeded sample of the data
    layer: str | None = None  # Grad-CAM target layer (--layer); default: traced automatically
    ig_steps: int = 32  # Integrated Gradients steps from the data-mean baseline
    smoothgrad_samples: int = 16  # noisy copies per input for SmoothGrad
    smoothgrad_noise: float = 0.15  # SmoothGrad noise std as a share of the input range
    lime_samples: int = 400  # LIME perturbations per image
    lime_segmentation: Literal["grid", "slic"] = "grid"  # LIME segments: grid cells or SLIC
    lime_cells: int = 8  # grid cells per side (SLIC: cells^2 superpixels)
    lime_tabular_samples: int = 1000  # LIME perturbations per tabular row
    deletion_steps: int = 16  # steps of the deletion/insertion curves
    sanity_samples: int = 12  # inputs explained again with randomised weights
    gallery: int = 4  # correct and misclassified samples shown per method
    featvis: bool = True  # draw the per-class feature visualisation
    featvis_steps: int = 128  # optimisation steps of the feature visualisation
    featvis_classes: int = 20  # at most this many classes are visualised
    shortcut_samples: int = 600  # images with masks used by the counterfactual tests
    occlusion_windows: int = 16  # random background windows occluded as the reference
    faithfulness_gain_medium: float = 0.05  # gain over random below this: medium finding
    sanity_rank_medium: float = 0.5  # Spearman with the randomised model above this: medium
    reliance_medium: float = 0.3  # prediction change outside the object for a medium finding
    reliance_high: float = 0.5  # prediction change outside the object for a high finding
    object_focus_low: float = 1.0  # object focus below this: saliency prefers the background
    tabular_top: int = 15  # features listed in the importance table and plot


METRIC_READING = [
    ["deletion AUC", "Area under the probability of the explained class as the most salient "
     "pixels (features) are replaced by the baseline, most salient first.",
     "Lower is better; compare with the random order's."],
    ["insertion AUC", "The same when the most salient pixels are revealed on the baseline.",
     "Higher is better; compare with the random order's."],
    ["gain over random", "(insertion - deletion) of the method minus that of a random order.",
     "Above 0 the map ranks what matters to the model; near or below 0 it is no better than "
     "chance."],
    ["sanity ρ", "Spearman rank correlation between maps of the trained model and of a copy "
     "with random weights (Adebayo et al., 2018).",
     "Near 0 is good: the map depends on what the model learned. Near 1 the map reflects the "
     "input or architecture, not the model."],
    ["pointing game", "Share of images whose saliency peak lies on the object (within 1 pixel).",
     "Higher is better; needs object masks."],
    ["energy in object", "Share of the total saliency inside the object mask.",
     "Compare with the object's share of the image (a uniform map's value)."],
    ["object focus", "Energy in object divided by the object's area share.",
     "Above 1 the map concentrates on the object; below 1 it prefers the background."],
]


@dataclass
class _Run:
    """What one image run computed, passed between the steps."""

    methods: list[str]
    maps: dict[str, torch.Tensor]
    faith: dict[str, Faithfulness]
    random: Faithfulness
    rho: dict[str, float]
    random_maps: dict[str, torch.Tensor]
    findings: list[Finding]
    figures: list[Figure]
    metrics: dict[str, float]
    notes: list[str]


@register
class SaliencyCheck(Check[SaliencyParams]):
    """Saliency maps with faithfulness, sanity and localisation metrics, and shortcut detection."""

    name = "saliency"
    title = "Explanations (saliency)"
    description = ("Grad-CAM, Grad-CAM++, LIME, Integrated Gradients, SmoothGrad; faithfulness, "
                   "sanity and localisation metrics; shortcut detection; feature visualisation")
    Params = SaliencyParams
    quick: ClassVar[dict[str, Any]] = {
        "samples": 12, "ig_steps": 16, "smoothgrad_samples": 8, "lime_samples": 200,
        "lime_tabular_samples": 400, "deletion_steps": 10, "sanity_samples": 6, "gallery": 3,
        "featvis_steps": 48, "shortcut_samples": 300, "occlusion_windows": 8}

    def applies(self, subject: Subject) -> str | None:
        x = subject.data.x
        if subject.data.kind == "image" and x.ndim != 4:
            return (f"saliency maps need images shaped (C, H, W); the data has per-sample shape "
                    f"{tuple(x.shape[1:])}")
        if subject.data.kind == "tabular" and x.ndim != 2:
            return f"tabular explanations need rows (F,); got {tuple(x.shape[1:])}"
        return None

    def run(self, subject: Subject) -> Section:
        p: SaliencyParams = self.params
        known = IMAGE_METHODS if subject.data.kind == "image" else TABULAR_METHODS
        unknown = [m for m in p.methods if m not in IMAGE_METHODS]
        if unknown or not p.methods:
            bad = ", ".join(unknown) or "(empty)"
            raise ConfigError(f"[checks.saliency] methods: unknown {bad}; choose from "
                              f"{', '.join(IMAGE_METHODS)}")
        if p.samples < 2 or p.deletion_steps < 2:
            raise ConfigError("[checks.saliency] samples and deletion_steps must be >= 2")
        if subject.data.kind == "tabular":
            if list(p.methods) == list(IMAGE_METHODS):  # the default: no need to mention CAMs
                return self._run_tabular(subject, ["lime", "integrated-gradients"], [])
            skipped = [m for m in p.methods if m not in known]
            return self._run_tabular(subject, [m for m in p.methods if m in known], skipped)
        return self._run_image(subject)

    # ----------------------------------------------------------------------------------- images

    def _proba(self, subject: Subject) -> Any:
        return lambda x: torch.softmax(subject.logits(x), dim=1)

    def _run_image(self, subject: Subject) -> Section:
        p: SaliencyParams = self.params
        data, model = subject.data, subject.model
        proba = self._proba(subject)
        rng = subject.rng("saliency.samples")
        n_all = len(data)
        eval_idx = np.sort(rng.choice(n_all, size=min(p.samples, n_all), replace=False))
        pred_all = subject.data_pred
        wrong_pool = np.setdiff1d(np.flatnonzero((pred_all != data.y).numpy()), eval_idx)
        wrong_extra = np.sort(rng.choice(wrong_pool, size=min(p.gallery, len(wrong_pool)),
                                         replace=False)) if len(wrong_pool) else np.array([], int)
        idx = np.concatenate([eval_idx, wrong_extra]).astype(np.int64)
        sub = data.subset(idx)
        x, y = sub.x, sub.y
        target = pred_all[torch.as_tensor(idx)]
        n = len(eval_idx)
        masks = _masks(sub.extras.get("masks"), x)
        baseline = data.x.mean(dim=(0, 2, 3), keepdim=True)[0]
        lo, hi = subject.card.input.range
        findings: list[Finding] = []
        notes: list[str] = []

        methods = list(p.methods)
        layer: LayerInfo | None = None
        if any(m.startswith("gradcam") for m in methods):
            layer = find_target_layer(model, x[:1].to(subject.device), p.layer)
            if layer is None:
                cams = [m for m in methods if m.startswith("gradcam")]
                methods = [m for m in methods if not m.startswith("gradcam")]
                findings.append(Finding(
                    id="saliency.no-spatial-layer", severity=Severity.INFO,
                    title="Grad-CAM skipped: the model has no spatial layer",
                    detail=("No submodule outputs a (C, h, w) feature map (or the model does not "
                            f"support forward hooks), so {', '.join(TITLES[c] for c in cams)} "
                            "cannot run; the other methods explain the model."),
                    recommendation="Pass --layer NAME to name a convolutional layer if the "
                                   "model has one."))
        if not methods:
            return self.section(status="skipped", findings=findings,
                                summary="No applicable saliency method.")

        def make(name: str, mdl: torch.nn.Module) -> Explainer:
            return self._explainer(name, mdl, layer, baseline, hi - lo, subject)

        maps: dict[str, torch.Tensor] = {}
        for m in methods:
            torch.manual_seed(derive_seed(subject.seed, f"saliency.{m}"))
            maps[m] = make(m, model).explain(x, target)

        gen = subject.generator("saliency.faithfulness")
        rand = faithfulness(proba, x[:n], target[:n], random_maps((n, *x.shape[2:]), gen),
                            baseline, p.deletion_steps, gen)
        faith = {m: faithfulness(proba, x[:n], target[:n], maps[m][:n], baseline,
                                 p.deletion_steps, gen) for m in methods}
        rho, rmaps = self._sanity(subject, methods, make, x, target, maps, notes)
        run = _Run(methods=methods, maps=maps, faith=faith, random=rand, rho=rho,
                   random_maps=rmaps, findings=findings, figures=[], metrics={}, notes=notes)
        self._method_findings(run)

        loc_rows: dict[str, list[float]] = {}
        shortcut: dict[str, Any] = {}
        if masks is not None:
            loc_rows = self._localisation(run, masks[:n])
            shortcut = self._shortcut(subject, run, masks[:n], loc_rows, x[:n])
        else:
            notes.append("The data has no object masks, so localisation (pointing game, energy "
                         "in object) and the outside-the-object tests were skipped.")
            findings.append(Finding(
                id="saliency.no-masks", severity=Severity.INFO,
                title="Localisation metrics skipped: the data has no object masks",
                detail=("Pointing game, energy in object and the test for evidence outside the "
                        "object need ground-truth object masks (AuditData.extras['masks'])."),
                recommendation="Audit on data with masks (e.g. an .npz with a 'masks' array) to "
                               "check where the model looks."))

        images = figs.display_images(x, (lo, hi))
        classes = subject.card.classes
        correct = [i for i in range(n) if int(target[i]) == int(y[i])][: p.gallery]
        wrong = [i for i in range(len(x)) if int(target[i]) != int(y[i])][: p.gallery]
        show = correct + wrong
        if shortcut.get("figure") is not None:
            run.figures.append(shortcut["figure"])
        for m in methods:
            run.figures.append(figs.gallery(
                m, TITLES[m], images[show], maps[m][show],
                [classes[int(y[i])] for i in show], [classes[int(target[i])] for i in show],
                None if masks is None else masks[show], len(correct)))
        run.figures.append(figs.curves(faith, TITLES, rand, "pixel"))
        if rmaps:
            k = min(2, len(next(iter(rmaps.values()))))
            run.figures.append(figs.sanity_figure(images[:k], {m: maps[m][:k] for m in rmaps},
                                                  {m: v[:k] for m, v in rmaps.items()},
                                                  TITLES, rho))
        fv_text = ""
        if p.featvis:
            fv_text = self._featvis(subject, run)

        metrics = run.metrics
        _faithfulness_metrics(metrics, n, methods, faith, rand, rho)
        table = self._quality_table(run, loc_rows, "pixel")
        shape = "x".join(map(str, layer.shape)) if layer is not None else ""
        how = "chosen automatically" if p.layer is None else "set by --layer"
        layer_text = (f" Grad-CAM target layer: {layer.name} (output {shape}, {how})."
                      if layer is not None and any(m.startswith("gradcam") for m in methods)
                      else "")
        best = max(methods, key=lambda m: faith[m].score)
        summary = (f"Explained the predicted class of {n} images with "
                   f"{len(methods)} methods.{layer_text} Most faithful: {TITLES[best]} "
                   f"(gain over random {faith[best].score - rand.score:+.2f}). "
                   + (shortcut.get("summary", "") or "")
                   + " ".join(notes))
        return self.section(
            summary=summary.strip(),
            reading=self._reading(p, bool(masks is not None), fv_text),
            metrics=metrics, findings=run.findings, figures=run.figures,
            tables=[table, _reading_table()])

    def _explainer(self, name: str, model: torch.nn.Module, layer: LayerInfo | None,
                   baseline: torch.Tensor, span: float, subject: Subject) -> Explainer:
        p: SaliencyParams = self.params
        bs = max(8, subject.batch_size // 4)
        if name in ("gradcam", "gradcam++"):
            assert layer is not None
            module = dict(model.named_modules())[layer.name]
            cls = GradCAM if name == "gradcam" else GradCAMPlusPlus
            return cls(model, module, batch_size=subject.batch_size)
        if name == "integrated-gradients":
            return IntegratedGradientsExplainer(model, baseline, steps=p.ig_steps, batch_size=bs)
        if name == "smoothgrad":
            return SmoothGrad(model, noise=p.smoothgrad_noise * span,
                              samples=p.smoothgrad_samples, batch_size=bs)
        return LimeImage(model, samples=p.lime_samples, segmentation=p.lime_segmentation,
                         cells=p.lime_cells,
                         hide=baseline, seed=derive_seed(subject.seed, "saliency.lime"))

    def _sanity(self, subject: Subject, methods: list[str], make: Any, x: torch.Tensor,
                target: torch.Tensor, maps: dict[str, torch.Tensor], notes: list[str]
                ) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
        p: SaliencyParams = self.params
        k = min(p.sanity_samples, len(x))
        if k < 2:
            return {}, {}
        try:
            rmodel = randomize_parameters(subject.model, derive_seed(subject.seed,
                                                                      "saliency.randomize"))
        except Exception as e:  # e.g. a TorchScript model that cannot be copied
            notes.append(f"The sanity check was skipped: the model could not be copied and "
                         f"randomised ({type(e).__name__}).")
            return {}, {}
        rho: dict[str, float] = {}
        rmaps: dict[str, torch.Tensor] = {}
        for m in methods:
            torch.manual_seed(derive_seed(subject.seed, f"saliency.{m}"))
            r = make(m, rmodel).explain(x[:k], target[:k])
            rmaps[m] = r
            # a constant map of the random model (e.g. Grad-CAM all zero) shares no ranking
            rho[m] = float(torch.nan_to_num(spearman_rows(maps[m][:k], r), nan=0.0).mean())
        return rho, rmaps

    def _method_findings(self, run: _Run) -> None:
        p: SaliencyParams = self.params
        for m in run.methods:
            gain = run.faith[m].score - run.random.score
            if gain < p.faithfulness_gain_medium:
                run.findings.append(Finding(
                    id=f"saliency.unfaithful.{m}", severity=Severity.MEDIUM,
                    title=f"{TITLES[m]} is barely more faithful than a random map "
                          f"(gain {gain:+.2f})",
                    detail=(f"Deleting pixels in {TITLES[m]}'s order gives deletion AUC "
                            f"{run.faith[m].deletion_auc:.3f} and insertion AUC "
                            f"{run.faith[m].insertion_auc:.3f}, against "
                            f"{run.random.deletion_auc:.3f} and {run.random.insertion_auc:.3f} for "
                            f"a random order (gain {gain:+.3f}, threshold "
                            f"{p.faithfulness_gain_medium})."),
                    evidence={"method": m, "deletion_auc": run.faith[m].deletion_auc,
                              "insertion_auc": run.faith[m].insertion_auc,
                              "random_deletion_auc": run.random.deletion_auc,
                              "random_insertion_auc": run.random.insertion_auc, "gain": gain},
                    recommendation=f"Do not present {TITLES[m]} maps of this model as evidence; "
                                   "prefer the methods with the highest gain in the table."))
            rho = run.rho.get(m)
            if rho is not None and rho >= p.sanity_rank_medium:
                run.findings.append(Finding(
                    id=f"saliency.insensitive.{m}", severity=Severity.MEDIUM,
                    title=f"{TITLES[m]} barely changes when the weights are randomised "
                          f"(ρ={rho:.2f})",
                    detail=(f"Maps of the trained model and of a copy with random weights have "
                            f"mean Spearman rank correlation {rho:.3f} (threshold "
                            f"{p.sanity_rank_medium}): they follow the input and the "
                            "architecture more than what the model learned."),
                    evidence={"method": m, "spearman": rho},
                    recommendation=f"Treat {TITLES[m]} maps as edge detectors, not explanations "
                                   "of this model; rely on methods that pass this check."))

    def _localisation(self, run: _Run, masks: torch.Tensor) -> dict[str, list[float]]:
        area = float(mask_area(masks).mean())
        run.metrics["object_area_share"] = area
        rows: dict[str, list[float]] = {}
        for m in run.methods:
            mp = run.maps[m][: len(masks)]
            pg = float(pointing_game(mp, masks).float().mean())
            energy = float(torch.nanmean(energy_in_mask(mp, masks)))
            focus = energy / area if area > 0 else math.nan
            run.metrics[f"{m}.pointing_game"] = pg
            run.metrics[f"{m}.energy_in_object"] = energy
            run.metrics[f"{m}.object_focus"] = focus
            rows[m] = [pg, energy, focus]
        return rows

    def _shortcut(self, subject: Subject, run: _Run, masks: torch.Tensor,
                  loc: dict[str, list[float]], x_eval: torch.Tensor) -> dict[str, Any]:
        """Saliency outside the object plus two counterfactuals; adds the finding if any."""
        p: SaliencyParams = self.params
        data = subject.data
        all_masks = _masks(data.extras.get("masks"), data.x)
        assert all_masks is not None
        proba = self._proba(subject)
        rng = subject.rng("saliency.shortcut")
        take = np.sort(rng.choice(len(data), size=min(p.shortcut_samples, len(data)),
                                  replace=False))
        xs, ms = data.x[torch.as_tensor(take)], all_masks[torch.as_tensor(take)]
        agree, chance = object_only_agreement(proba, xs, ms)
        trusted = [m for m in run.methods
                   if run.faith[m].score - run.random.score >= p.faithfulness_gain_medium
                   and run.rho.get(m, 0.0) < p.sanity_rank_medium] or list(run.methods)
        h, w = masks.shape[-2:]
        outside = torch.stack([(run.maps[m][: len(masks)] * (~masks).float()).mean(0)
                               for m in trusted]).mean(0)
        mean_map = torch.stack([run.maps[m][: len(masks)].mean(0) for m in trusted]).mean(0)
        size = max(2, min(h, w) // 4)
        r0, c0 = hotspot_window(outside, size)
        where = describe_position(r0, c0, size, h, w)
        hot, hot_n = occlusion_change(proba, xs, ms, r0, c0, size)
        rand_change = random_window_change(proba, xs, ms, size, p.occlusion_windows,
                                           subject.generator("saliency.occlusion"))
        focus = float(np.median([loc[m][2] for m in trusted]))
        outside_energy = 1.0 - float(np.median([loc[m][1] for m in trusted]))
        occl_excess = (hot - rand_change) if not (math.isnan(hot) or math.isnan(rand_change)) \
            else 0.0
        reliance = max(1.0 - agree, occl_excess)
        saliency_outside = focus < p.object_focus_low
        run.metrics.update({
            "shortcut.object_only_agreement": agree,
            "shortcut.hotspot_occlusion_change": hot,
            "shortcut.random_occlusion_change": rand_change,
            "shortcut.reliance_outside_object": reliance,
            "shortcut.saliency_outside_object": outside_energy,
            "shortcut.object_focus": focus,
        })
        evidence = {
            "object_only_agreement": agree, "chance_agreement": chance,
            "hotspot": {"row": r0, "col": c0, "size": size, "where": where},
            "hotspot_occlusion_change": hot, "hotspot_images": hot_n,
            "random_occlusion_change": rand_change, "reliance": reliance,
            "saliency_outside_object": outside_energy, "object_focus": focus,
            "object_area_share": float(mask_area(masks).mean()), "methods": trusted,
            "images": len(take),
        }
        detail = (f"With everything outside the object replaced by its mean colour, only "
                  f"{agree:.0%} of {len(take)} predictions stay the same (chance "
                  f"{chance:.0%}). Occluding the {size}x{size} window at the {where} (rows "
                  f"{r0}-{r0 + size - 1}, columns {c0}-{c0 + size - 1}), where saliency outside "
                  f"the object concentrates, changes {hot:.0%} of predictions, against "
                  f"{rand_change:.0%} for random windows outside the object. The saliency maps "
                  f"({', '.join(TITLES[m] for m in trusted)}) put {outside_energy:.0%} of "
                  f"their energy outside the object, which covers "
                  f"{float(mask_area(masks).mean()):.0%} of the image (object focus "
                  f"{focus:.2f}; below 1 means the background gets more than its share).")
        severity: Severity | None = None
        if reliance >= p.reliance_high:
            severity = Severity.HIGH
        elif reliance >= p.reliance_medium or saliency_outside:
            severity = Severity.MEDIUM
        if severity is not None:
            agree_text = ("and the saliency maps agree" if saliency_outside else
                          "although the saliency maps do not show it (they may be unfaithful)")
            if reliance < p.reliance_medium:
                agree_text = "by its saliency maps only; the counterfactual tests do not confirm it"
            run.findings.append(Finding(
                id="saliency.outside-object", severity=severity,
                title=f"The model relies on evidence outside the object ({where})",
                detail=f"Counterfactual reliance {reliance:.0%} {agree_text}. {detail}",
                evidence=evidence,
                recommendation=("Look at the mean-saliency figure and the boxed region: remove "
                                "the artefact from the training data (or randomise it), retrain, "
                                "and re-audit; do not deploy a model whose decision follows "
                                "the background.")))
        obj_freq = ms.float().mean(0)
        example = figs.display_images(x_eval[:1], subject.card.input.range)[0]
        fig = figs.where_figure(mean_map, outside, obj_freq, (r0, c0, size), where, example)
        summary = (f"Object-only agreement {agree:.0%}, occluding the {where} changes "
                   f"{hot:.0%} of predictions (random windows {rand_change:.0%}); "
                   f"{outside_energy:.0%} of saliency lies outside the object. ")
        return {"figure": fig, "summary": summary}

    def _featvis(self, subject: Subject, run: _Run) -> str:
        p: SaliencyParams = self.params
        classes = subject.card.classes
        k = min(len(classes), p.featvis_classes)
        fv = ActivationMaximisation(subject.model, tuple(subject.data.x.shape[1:]),
                                    subject.card.input.range, steps=p.featvis_steps,
                                    seed=derive_seed(subject.seed, "saliency.featvis"))
        res = fv.visualise(list(range(k)))
        imgs = figs.display_images(res.images, subject.card.input.range)
        run.figures.append(figs.featvis_figure(imgs, classes[:k], res.probabilities.tolist()))
        mean_p = float(res.probabilities.mean())
        run.metrics["featvis.mean_class_probability"] = mean_p
        return (f" The feature visualisations of {k} classes reach a mean class probability of "
                f"{mean_p:.2f}.")

    def _quality_table(self, run: _Run, loc: dict[str, list[float]], unit: str) -> Table:
        cols = ["method", "deletion AUC ↓", "insertion AUC ↑", "gain over random ↑",
                "sanity ρ ↓"]
        if loc:
            cols += ["pointing game ↑", "energy in object ↑", "object focus ↑"]
        rows: list[list[Any]] = []
        for m in run.methods:
            f = run.faith[m]
            row: list[Any] = [TITLES[m], round(f.deletion_auc, 4), round(f.insertion_auc, 4),
                              round(f.score - run.random.score, 4),
                              _r(run.rho.get(m, math.nan))]
            if loc:
                row += [_r(v) for v in loc[m]]
            rows.append(row)
        rows.append(["random order", round(run.random.deletion_auc, 4),
                     round(run.random.insertion_auc, 4), 0.0, None] + ([None] * 3 if loc else []))
        return Table(id="quality", title="Explanation quality per method", columns=cols,
                     rows=rows,
                     caption=f"Deletion/insertion over {unit}s with the data mean as baseline; "
                             "arrows show the better direction. See the table below for how to "
                             "read each metric.")

    def _reading(self, p: SaliencyParams, masks: bool, fv_text: str) -> str:
        text = (
            "Each method explains the class the model predicted, on a seeded sample of the audit "
            "data; a map is evidence only as far as it is measured. Faithfulness: pixels are "
            "removed (deletion) or revealed (insertion) in the map's order, "
            f"{p.deletion_steps} steps, replaced by the data's mean value; if the map ranks "
            "what the model uses, the probability of the explained class falls fast on deletion "
            "and rises fast on insertion. The gain over random compares this with a random "
            "order; a gain near zero means the map is decoration. Sanity: the same maps are "
            "computed for a copy of the model with random weights (Adebayo et al., 2018); if "
            "they stay similar (rank correlation ρ near 1) the method shows the input, not the "
            "model. ")
        if masks:
            text += (
                "Localisation: with object masks, the pointing game counts maps whose peak is on "
                "the object, energy in object is the share of saliency on it, and object focus "
                "divides that by the object's area (1 = no preference). Reliance outside the "
                "object is tested by counterfactuals: keeping only the object (background "
                "replaced by its mean colour) should keep predictions, and occluding the "
                "background window where saliency concentrates should not change them more "
                "than occluding random background windows. ")
        else:
            text += "Localisation metrics need object masks and were skipped for this data. "
        text += ("Feature visualisation shows inputs optimised to excite each class." + fv_text)
        return text

    # ---------------------------------------------------------------------------------- tabular

    def _run_tabular(self, subject: Subject, methods: list[str], skipped: list[str]) -> Section:
        p: SaliencyParams = self.params
        data, model = subject.data, subject.model
        proba = self._proba(subject)
        names = (data.feature_names or subject.card.input.feature_names
                 or [f"x{i}" for i in range(data.x.shape[1])])
        findings: list[Finding] = []
        notes: list[str] = []
        if skipped:
            findings.append(Finding(
                id="saliency.tabular-skipped", severity=Severity.INFO,
                title=f"{', '.join(TITLES[m] for m in skipped)} skipped on tabular data",
                detail="Class activation maps need spatial feature maps; tabular models are "
                       "explained with LIME and gradient attributions instead."))
        if not methods:
            return self.section(status="skipped", findings=findings,
                                summary="No saliency method applies to tabular data.")
        rng = subject.rng("saliency.samples")
        n = min(p.samples, len(data))
        idx = np.sort(rng.choice(len(data), size=n, replace=False))
        x = data.x[torch.as_tensor(idx)]
        target = subject.data_pred[torch.as_tensor(idx)]
        baseline = data.x.mean(dim=0)
        lo, hi = subject.card.input.range
        std = data.x.std(dim=0).clamp(min=1e-6)
        seed = derive_seed(subject.seed, "saliency.lime")

        def make(name: str, mdl: torch.nn.Module) -> Any:
            if name == "lime":
                return LimeTabular(mdl, data.x, names, samples=p.lime_tabular_samples, seed=seed)
            if name == "integrated-gradients":
                return IntegratedGradientsExplainer(mdl, baseline, steps=p.ig_steps)
            return SmoothGrad(mdl, noise=float(p.smoothgrad_noise * std.mean()),
                              samples=p.smoothgrad_samples)

        signed: dict[str, torch.Tensor] = {}
        maps: dict[str, torch.Tensor] = {}
        for m in methods:
            torch.manual_seed(derive_seed(subject.seed, f"saliency.{m}"))
            signed[m] = make(m, model).attribute(x, target)
            maps[m] = signed[m].abs()
        gen = subject.generator("saliency.faithfulness")
        rand = faithfulness(proba, x, target, random_maps(tuple(x.shape), gen), baseline,
                            p.deletion_steps, gen)
        faith = {m: faithfulness(proba, x, target, maps[m], baseline, p.deletion_steps, gen)
                 for m in methods}
        norm_maps = {m: v / v.amax(dim=1, keepdim=True).clamp(min=1e-12) for m, v in maps.items()}
        rho, rmaps = self._sanity(subject, methods, make, x, target, norm_maps, notes)
        run = _Run(methods=methods, maps=norm_maps, faith=faith, random=rand, rho=rho,
                   random_maps=rmaps, findings=findings, figures=[], metrics={}, notes=notes)
        self._method_findings(run)
        del lo, hi

        mean_abs = {m: maps[m].mean(0).numpy() for m in methods}
        ranks = np.mean([np.argsort(np.argsort(-v)) for v in mean_abs.values()], axis=0)
        order = np.argsort(ranks, kind="stable")[: p.tabular_top]
        cols = ["feature", "mean rank"]
        for m in methods:
            cols += [f"{TITLES[m]} mean |attr|", f"{TITLES[m]} share of rows +"]
        rows: list[list[Any]] = []
        for f in order:
            row: list[Any] = [names[f], round(float(ranks[f]) + 1, 2)]
            for m in methods:
                row += [_r(float(mean_abs[m][f]), 5),
                        _r(float((signed[m][:, f] > 0).float().mean()), 3)]
            rows.append(row)
        imp_table = Table(
            id="feature-importance", title="Feature importance",
            columns=cols, rows=rows,
            caption=(f"Top {len(order)} of {len(names)} features by average rank across methods, "
                     f"over {n} explained rows. Mean |attr|: average absolute attribution "
                     "(LIME: weight of the row's value bin; IG: contribution to the class "
                     "probability's logit relative to the mean row). Share of rows +: how often "
                     "the feature pushed towards the predicted class."))
        run.figures.append(figs.importance_figure([names[f] for f in order],
                                                  {m: mean_abs[m][order] for m in methods},
                                                  TITLES))
        run.figures.append(figs.curves(faith, TITLES, rand, "feature"))
        metrics = run.metrics
        _faithfulness_metrics(metrics, n, methods, faith, rand, rho)
        if len(methods) >= 2:
            a, b = mean_abs[methods[0]], mean_abs[methods[1]]
            agree = float(spearman_rows(torch.from_numpy(a)[None], torch.from_numpy(b)[None])[0])
            metrics["methods_rank_agreement"] = agree
        top = ", ".join(names[f] for f in order[:3])
        best = max(methods, key=lambda m: faith[m].score)
        summary = (f"Explained the predicted class of {n} rows with "
                   f"{', '.join(TITLES[m] for m in methods)}. Most important features: {top}. "
                   f"Most faithful: {TITLES[best]} (gain over random "
                   f"{faith[best].score - rand.score:+.2f}). " + " ".join(notes))
        reading = (
            "LIME fits a local linear model on perturbed copies of each row (quartile bins, "
            "binary columns as categories, the audit data as background); Integrated Gradients "
            "integrates gradients from the mean row to the row. The importance table averages "
            "absolute attributions over the explained rows. Faithfulness: features are replaced "
            "by their mean (deletion) or revealed on the mean row (insertion) in the order of "
            f"each row's attributions, {p.deletion_steps} steps; a faithful ranking makes the "
            "probability of the predicted class fall fast on deletion and rise fast on "
            "insertion, better than a random order. Sanity: rank correlation with the "
            "attributions of a randomly re-initialised model should be low. "
            + ("Rank agreement between methods near 1 means they name the same features. "
               if len(methods) >= 2 else ""))
        return self.section(summary=summary.strip(), reading=reading, metrics=metrics,
                            findings=run.findings, figures=run.figures,
                            tables=[imp_table, self._quality_table(run, {}, "feature"),
                                    _reading_table(tabular=True)])


def _faithfulness_metrics(metrics: dict[str, float], n: int, methods: list[str],
                          faith: dict[str, Faithfulness], rand: Faithfulness,
                          rho: dict[str, float]) -> None:
    """Add sample count, random-order baseline and each method's AUCs and sanity rho."""
    metrics["samples"] = float(n)
    metrics["random.deletion_auc"] = rand.deletion_auc
    metrics["random.insertion_auc"] = rand.insertion_auc
    for m in methods:
        metrics[f"{m}.deletion_auc"] = faith[m].deletion_auc
        metrics[f"{m}.insertion_auc"] = faith[m].insertion_auc
        metrics[f"{m}.gain_over_random"] = faith[m].score - rand.score
        if m in rho:
            metrics[f"{m}.sanity_spearman"] = rho[m]


def _masks(value: Any, x: torch.Tensor) -> torch.Tensor | None:
    """``extras["masks"]`` as a bool tensor ``(N, H, W)`` matching ``x``, else ``None``."""
    if value is None:
        return None
    m = torch.as_tensor(np.asarray(value)) if not isinstance(value, torch.Tensor) else value
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.ndim != 3 or m.shape[0] != x.shape[0] or tuple(m.shape[1:]) != tuple(x.shape[2:]):
        return None
    return m.bool()


def _r(v: float, digits: int = 4) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else round(v, digits)


def _reading_table(tabular: bool = False) -> Table:
    rows: list[list[Any]] = [list(r) for r in (METRIC_READING[:4] if tabular else METRIC_READING)]
    if tabular:
        rows = [[r[0], r[1].replace("pixels", "features"), r[2]] for r in rows]
    return Table(id="how-to-read", title="How to read the metrics",
                 columns=["metric", "what it measures", "how to read it"], rows=rows)
