"""The finding rules of the ``saliency`` check: pure functions of a measured evaluation and the
check's thresholds (:class:`~audit.saliency.settings.SaliencyParams`), in report order."""

from __future__ import annotations

from typing import Any

from audit.result import Finding, Severity
from audit.saliency.evaluation import (
    ImageEvaluation,
    MethodScore,
    Selection,
    ShortcutEvidence,
    TabularEvaluation,
)
from audit.saliency.metrics import Faithfulness
from audit.saliency.settings import SaliencyParams


def selection_findings(sel: Selection) -> list[Finding]:
    """Methods that could not run: no spatial layer for a CAM, or not for this kind of data."""
    out: list[Finding] = []
    if sel.no_layer:
        out.append(Finding(
            id="saliency.no-spatial-layer", severity=Severity.INFO,
            title="Grad-CAM skipped: the model has no spatial layer",
            detail=("No submodule outputs a (C, h, w) feature map (or the model does not "
                    f"support forward hooks), so {', '.join(sel.no_layer)} "
                    "cannot run; the other methods explain the model."),
            recommendation="Pass --layer NAME to name a convolutional layer if the "
                           "model has one."))
    if sel.not_for_kind:
        detail = ("Class activation maps need spatial feature maps; tabular models are "
                  "explained with LIME and gradient attributions instead."
                  if sel.kind == "tabular" else "These methods explain tabular rows only.")
        out.append(Finding(
            id=f"saliency.{sel.kind}-skipped", severity=Severity.INFO,
            title=f"{', '.join(sel.not_for_kind)} skipped on {sel.kind} data", detail=detail))
    return out


def unfaithful(score: MethodScore, random: Faithfulness, p: SaliencyParams) -> Finding | None:
    """MEDIUM when the method's gain over a random order is below ``faithfulness_gain_medium``."""
    if score.gain >= p.faithfulness_gain_medium:
        return None
    f, t, gain = score.faithfulness, score.title, score.gain
    return Finding(
        id=f"saliency.unfaithful.{score.name}", severity=Severity.MEDIUM,
        title=f"{t} is barely more faithful than a random map (gain {gain:+.2f})",
        detail=(f"Deleting pixels in {t}'s order gives deletion AUC {f.deletion_auc:.3f} and "
                f"insertion AUC {f.insertion_auc:.3f}, against {random.deletion_auc:.3f} and "
                f"{random.insertion_auc:.3f} for a random order (gain {gain:+.3f}, threshold "
                f"{p.faithfulness_gain_medium})."),
        evidence={"method": score.name, "deletion_auc": f.deletion_auc,
                  "insertion_auc": f.insertion_auc,
                  "random_deletion_auc": random.deletion_auc,
                  "random_insertion_auc": random.insertion_auc, "gain": gain},
        recommendation=f"Do not present {t} maps of this model as evidence; prefer the methods "
                       "with the highest gain in the table.")


def insensitive(score: MethodScore, p: SaliencyParams) -> Finding | None:
    """MEDIUM when the maps of a randomised model rank like the trained model's (rho at or
    above ``sanity_rank_medium``)."""
    rho, t = score.sanity, score.title
    if rho is None or rho < p.sanity_rank_medium:
        return None
    return Finding(
        id=f"saliency.insensitive.{score.name}", severity=Severity.MEDIUM,
        title=f"{t} barely changes when the weights are randomised (ρ={rho:.2f})",
        detail=(f"Maps of the trained model and of a copy with random weights have mean "
                f"Spearman rank correlation {rho:.3f} (threshold {p.sanity_rank_medium}): they "
                "follow the input and the architecture more than what the model learned."),
        evidence={"method": score.name, "spearman": rho},
        recommendation=f"Treat {t} maps as edge detectors, not explanations of this model; "
                       "rely on methods that pass this check.")


def method_findings(scores: list[MethodScore], random: Faithfulness, p: SaliencyParams
                    ) -> list[Finding]:
    """Per method, in order: unfaithful, then insensitive to the weights."""
    out: list[Finding] = []
    for s in scores:
        out += [f for f in (unfaithful(s, random, p), insensitive(s, p)) if f is not None]
    return out


def outside_object(ev: ShortcutEvidence, p: SaliencyParams, titles: dict[str, str]
                   ) -> Finding | None:
    """HIGH when the counterfactual reliance reaches ``reliance_high``; MEDIUM when it reaches
    ``reliance_medium`` or the trusted maps' object focus is below ``object_focus_low``."""
    saliency_says = ev.object_focus < p.object_focus_low
    if ev.reliance >= p.reliance_high:
        severity = Severity.HIGH
    elif ev.reliance >= p.reliance_medium or saliency_says:
        severity = Severity.MEDIUM
    else:
        return None
    if ev.reliance < p.reliance_medium:
        agree = "by its saliency maps only; the counterfactual tests do not confirm it"
    elif saliency_says:
        agree = "and the saliency maps agree"
    else:
        agree = "although the saliency maps do not show it (they may be unfaithful)"
    return Finding(
        id="saliency.outside-object", severity=severity,
        title=f"The model relies on evidence outside the object ({ev.hotspot.where})",
        detail=f"Counterfactual reliance {ev.reliance:.0%} {agree}. {_detail(ev, titles)}",
        evidence=_evidence(ev),
        recommendation=("Look at the mean-saliency figure and the boxed region: remove the "
                        "artefact from the training data (or randomise it), retrain, and "
                        "re-audit; do not deploy a model whose decision follows the "
                        "background."))


def _detail(ev: ShortcutEvidence, titles: dict[str, str]) -> str:
    h = ev.hotspot
    return (f"With everything outside the object replaced by its mean colour, only "
            f"{ev.object_only_agreement:.0%} of {ev.images} predictions stay the same (chance "
            f"{ev.chance_agreement:.0%}). Occluding the {h.size}x{h.size} window at the "
            f"{h.where} (rows {h.row}-{h.row + h.size - 1}, columns "
            f"{h.col}-{h.col + h.size - 1}), where saliency outside the object concentrates, "
            f"changes {ev.hotspot_change:.0%} of predictions, against {ev.random_change:.0%} "
            f"for random windows outside the object. The saliency maps "
            f"({', '.join(titles.get(m, m) for m in ev.methods)}) put "
            f"{ev.saliency_outside:.0%} of their energy outside the object, which covers "
            f"{ev.object_area_share:.0%} of the image (object focus {ev.object_focus:.2f}; "
            "below 1 means the background gets more than its share).")


def _evidence(ev: ShortcutEvidence) -> dict[str, Any]:
    h = ev.hotspot
    return {
        "object_only_agreement": ev.object_only_agreement,
        "chance_agreement": ev.chance_agreement,
        "hotspot": {"row": h.row, "col": h.col, "size": h.size, "where": h.where},
        "hotspot_occlusion_change": ev.hotspot_change, "hotspot_images": ev.hotspot_images,
        "random_occlusion_change": ev.random_change, "reliance": ev.reliance,
        "saliency_outside_object": ev.saliency_outside, "object_focus": ev.object_focus,
        "object_area_share": ev.object_area_share, "methods": list(ev.methods),
        "images": ev.images,
    }


def no_masks() -> Finding:
    """INFO: localisation and the outside-the-object test need object masks."""
    return Finding(
        id="saliency.no-masks", severity=Severity.INFO,
        title="Localisation metrics skipped: the data has no object masks",
        detail=("Pointing game, energy in object and the test for evidence outside the object "
                "need ground-truth object masks (AuditData.extras['masks'])."),
        recommendation="Audit on data with masks (e.g. an .npz with a 'masks' array) to check "
                       "where the model looks.")


def image_findings(ev: ImageEvaluation, p: SaliencyParams) -> list[Finding]:
    """Every finding of an image evaluation, in report order."""
    out = selection_findings(ev.selection) + method_findings(ev.scores, ev.random, p)
    if ev.shortcut is not None:
        titles = {s.name: s.title for s in ev.scores}
        out += [f for f in (outside_object(ev.shortcut, p, titles),) if f is not None]
    elif ev.localisation is None:
        out.append(no_masks())
    return out


def tabular_findings(ev: TabularEvaluation, p: SaliencyParams) -> list[Finding]:
    """Every finding of a tabular evaluation, in report order."""
    return selection_findings(ev.selection) + method_findings(ev.scores, ev.random, p)
