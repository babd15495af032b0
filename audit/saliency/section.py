"""The ``saliency`` section's text and numbers: metrics, tables, summary and the reading guide,
from a measured evaluation (findings and figures are made by their own modules)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from audit.result import Figure, Finding, Section, Table
from audit.saliency.evaluation import ImageEvaluation, MethodScore, TabularEvaluation
from audit.saliency.findings import consistency
from audit.saliency.metrics import Faithfulness
from audit.saliency.reliance import LOCAL_AREA_MAX, LOCAL_SHARE_MIN
from audit.saliency.settings import SaliencyParams

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
    ["object-only agreement", "Share of predictions unchanged when everything outside the "
     "object is replaced, per fill (its own mean colour, the data's mean colour, another "
     "class's background); the worst fill counts.",
     "Near 1 the model decides on the object; near chance (1 / classes) or below it follows "
     "the background."],
    ["window map", "Share of predictions changed by occluding each background window in turn "
     "(outside the object, with the data's mean colour), against random windows.",
     "A few strong windows name where a cue sits; a whole-background change with no strong "
     "window means the cue is spread (a tint, a texture) or moves between images."],
]


def _r(v: float | None, digits: int = 4) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else round(v, digits)


def faithfulness_metrics(n: int, scores: list[MethodScore], random: Faithfulness
                         ) -> dict[str, float]:
    """Sample count, the random order's AUCs and each method's AUCs, gain and sanity rho."""
    metrics = {"samples": float(n), "random.deletion_auc": random.deletion_auc,
               "random.insertion_auc": random.insertion_auc}
    for s in scores:
        metrics[f"{s.name}.deletion_auc"] = s.faithfulness.deletion_auc
        metrics[f"{s.name}.insertion_auc"] = s.faithfulness.insertion_auc
        metrics[f"{s.name}.gain_over_random"] = s.gain
        if s.sanity is not None:
            metrics[f"{s.name}.sanity_spearman"] = s.sanity
    return metrics


def image_metrics(ev: ImageEvaluation) -> dict[str, float]:
    """Localisation, shortcut, feature-visualisation and faithfulness metrics, in that order."""
    metrics: dict[str, float] = {}
    if ev.localisation is not None and ev.object_area_share is not None:
        metrics["object_area_share"] = ev.object_area_share
        for m, loc in ev.localisation.items():
            metrics[f"{m}.pointing_game"] = loc.pointing_game
            metrics[f"{m}.energy_in_object"] = loc.energy_in_object
            metrics[f"{m}.object_focus"] = loc.object_focus
    if (sc := ev.shortcut) is not None:
        metrics["shortcut.object_only_agreement"] = sc.object_only_agreement
        for f in sc.fills:
            metrics[f"shortcut.agreement.{f.name}"] = f.agreement
        metrics.update({
            "shortcut.hotspot_occlusion_change": sc.hotspot.change,
            "shortcut.random_occlusion_change": sc.random_change,
            "shortcut.window_hot_area": sc.hotspot.area,
            "shortcut.window_hot_share": sc.hotspot.share,
            "shortcut.reliance_outside_object": sc.reliance,
            "shortcut.saliency_outside_object": sc.saliency_outside,
            "shortcut.object_focus": sc.object_focus,
        })
    if ev.featvis is not None:
        metrics["featvis.mean_class_probability"] = ev.featvis.mean_probability
    metrics.update(faithfulness_metrics(ev.samples, ev.scores, ev.random))
    return metrics


def quality_table(ev: ImageEvaluation | TabularEvaluation, unit: str) -> Table:
    """Per method: deletion, insertion, gain, sanity (and localisation with masks)."""
    loc = ev.localisation if isinstance(ev, ImageEvaluation) else None
    cols = ["method", "deletion AUC ↓", "insertion AUC ↑", "gain over random ↑", "sanity ρ ↓"]
    if loc:
        cols += ["pointing game ↑", "energy in object ↑", "object focus ↑"]
    rows: list[list[Any]] = []
    for s in ev.scores:
        f = s.faithfulness
        row: list[Any] = [s.title, round(f.deletion_auc, 4), round(f.insertion_auc, 4),
                          round(s.gain, 4), _r(math.nan if s.sanity is None else s.sanity)]
        if loc:
            lm = loc[s.name]
            row += [_r(lm.pointing_game), _r(lm.energy_in_object), _r(lm.object_focus)]
        rows.append(row)
    rows.append(["random order", round(ev.random.deletion_auc, 4),
                 round(ev.random.insertion_auc, 4), 0.0, None] + ([None] * 3 if loc else []))
    return Table(id="quality", title="Explanation quality per method", columns=cols, rows=rows,
                 caption=f"Deletion/insertion over {unit}s with the data mean as baseline; "
                         "arrows show the better direction. See the table below for how to "
                         "read each metric.")


def reading_table(tabular: bool = False) -> Table:
    """How to read each metric (the localisation rows only for images)."""
    rows: list[list[Any]] = [list(r) for r in (METRIC_READING[:4] if tabular else METRIC_READING)]
    if tabular:
        rows = [[r[0], r[1].replace("pixels", "features"), r[2]] for r in rows]
    return Table(id="how-to-read", title="How to read the metrics",
                 columns=["metric", "what it measures", "how to read it"], rows=rows)


def _sanity_note(error: str | None) -> list[str]:
    return [] if error is None else [f"The sanity check was skipped: the model could not be "
                                     f"copied and randomised ({error})."]


def _most_faithful(scores: list[MethodScore]) -> str:
    best = max(scores, key=lambda s: s.faithfulness.score)
    return f"Most faithful: {best.title} (gain over random {best.gain:+.2f}). "


def shortcut_summary(ev: ImageEvaluation, p: SaliencyParams | None = None) -> str:
    """The counterfactual tests in two sentences and whether they agree."""
    if (sc := ev.shortcut) is None:
        return ""
    worst, h = sc.worst_fill, sc.hotspot
    each = ", ".join(f"{f.title} {f.agreement:.0%}" for f in sc.fills)
    place = (f"the window map names the {h.where} ({h.change:.0%} of predictions change there, "
             f"random windows {sc.random_change:.0%})" if h.localised else
             f"the window map names no place (at most {h.change:.0%} of predictions change for "
             f"one window, random windows {sc.random_change:.0%})")
    return (f"Object-only agreement {worst.agreement:.0%} at worst ({each}); {place}; "
            f"{sc.saliency_outside:.0%} of saliency lies outside the object. "
            f"{consistency(sc, p or SaliencyParams())} ")


def image_summary(ev: ImageEvaluation, p: SaliencyParams | None = None) -> str:
    """What was explained, the CAM layer, the most faithful method, the shortcut test."""
    layer = ev.selection.layer
    layer_text = ""
    if layer is not None:
        how = "chosen automatically" if layer.automatic else "set by --layer"
        grid = f", read as a {layer.layout.describe()}" \
            if layer.layout is not None and layer.layout.kind != "nchw" else ""
        layer_text = (f" Grad-CAM target layer: {layer.name} (output "
                      f"{'x'.join(map(str, layer.shape))}{grid}, {how}).")
    shortcut = shortcut_summary(ev, p)
    notes = _sanity_note(ev.sanity_error)
    notes += [f"{title} does not apply to this model: {why}."
              for title, why in ev.selection.unavailable]
    if ev.localisation is None:
        notes.append("The data has no object masks, so localisation (pointing game, energy in "
                     "object) and the outside-the-object tests were skipped.")
    return (f"Explained the predicted class of {ev.samples} images with {len(ev.scores)} "
            f"methods.{layer_text} {_most_faithful(ev.scores)}{shortcut}"
            + " ".join(notes)).strip()


def image_reading(ev: ImageEvaluation, p: SaliencyParams) -> str:
    """How the image measurements were made and how to read them."""
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
    if ev.localisation is not None:
        text += (
            "Localisation: with object masks, the pointing game counts maps whose peak is on "
            "the object, energy in object is the share of saliency on it, and object focus "
            "divides that by the object's area (1 = no preference). Reliance outside the "
            "object is tested by counterfactuals, which do not depend on the maps. Object "
            "only: everything outside the object is replaced by three fills in turn (the "
            "image's own mean colour, the data's mean colour, both with noise as strong as "
            "the data's background texture, and another class's background); a model that "
            "decides on the object keeps its predictions under every fill, and the worst "
            "fill counts, because a per-image fill keeps a tint that the others remove. "
            "Window map: every window of a grid over the image is occluded in turn (outside "
            "the object, with the data's mean colour) and the "
            "changed predictions are compared with random windows; the windows changing at "
            "least half as many predictions as the strongest name the place of a cue when "
            f"they cover at most {LOCAL_AREA_MAX:.0%} of the image and hold at least "
            f"{LOCAL_SHARE_MIN:.0%} of the change, otherwise the cue (if any) is spread over "
            "the background or moves between images. When the two tests disagree, the "
            "summary says what that means. ")
    else:
        text += "Localisation metrics need object masks and were skipped for this data. "
    text += "Feature visualisation shows inputs optimised to excite each class."
    if (fv := ev.featvis) is not None:
        text += (f" The feature visualisations of {len(fv.classes)} classes reach a mean class "
                 f"probability of {fv.mean_probability:.2f}.")
    return text


def image_section(ev: ImageEvaluation, p: SaliencyParams, findings: list[Finding],
                  figures: list[Figure], *, check: str, title: str) -> Section:
    """The section of an image evaluation."""
    return Section(check=check, title=title, params=dataclasses.asdict(p),
                   summary=image_summary(ev, p), reading=image_reading(ev, p),
                   metrics=image_metrics(ev), findings=findings, figures=figures,
                   tables=[quality_table(ev, "pixel"), reading_table()])


def tabular_metrics(ev: TabularEvaluation) -> dict[str, float]:
    """Faithfulness metrics and the rank agreement of the first two methods."""
    metrics = faithfulness_metrics(ev.samples, ev.scores, ev.random)
    if ev.rank_agreement is not None:
        metrics["methods_rank_agreement"] = ev.rank_agreement
    return metrics


def importance_table(ev: TabularEvaluation) -> Table:
    """The top features by mean rank, with each method's mean |attribution| and sign."""
    cols = ["feature", "mean rank"]
    for s in ev.scores:
        cols += [f"{s.title} mean |attr|", f"{s.title} share of rows +"]
    rows: list[list[Any]] = []
    for f in ev.order:
        row: list[Any] = [ev.feature_names[f], round(float(ev.mean_rank[f]) + 1, 2)]
        for s in ev.scores:
            row += [_r(float(ev.mean_abs[s.name][f]), 5), _r(ev.positive_share[s.name][f], 3)]
        rows.append(row)
    return Table(
        id="feature-importance", title="Feature importance", columns=cols, rows=rows,
        caption=(f"Top {len(ev.order)} of {len(ev.feature_names)} features by average rank "
                 f"across methods, over {ev.samples} explained rows. Mean |attr|: average "
                 "absolute attribution (LIME: weight of the row's value bin; IG: contribution "
                 "to the class probability's logit relative to the mean row). Share of rows +: "
                 "how often the feature pushed towards the predicted class."))


def tabular_summary(ev: TabularEvaluation) -> str:
    """What was explained, the top three features and the most faithful method."""
    top = ", ".join(ev.feature_names[f] for f in ev.order[:3])
    return (f"Explained the predicted class of {ev.samples} rows with "
            f"{', '.join(s.title for s in ev.scores)}. Most important features: {top}. "
            f"{_most_faithful(ev.scores)}" + " ".join(_sanity_note(ev.sanity_error))).strip()


def tabular_reading(ev: TabularEvaluation, p: SaliencyParams) -> str:
    """How the tabular measurements were made and how to read them."""
    return (
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
           if len(ev.scores) >= 2 else ""))


def tabular_section(ev: TabularEvaluation, p: SaliencyParams, findings: list[Finding],
                    figures: list[Figure], *, check: str, title: str) -> Section:
    """The section of a tabular evaluation."""
    return Section(check=check, title=title, params=dataclasses.asdict(p),
                   summary=tabular_summary(ev), reading=tabular_reading(ev, p),
                   metrics=tabular_metrics(ev), findings=findings, figures=figures,
                   tables=[importance_table(ev), quality_table(ev, "feature"),
                           reading_table(tabular=True)])
