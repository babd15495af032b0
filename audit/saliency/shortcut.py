"""Localisation and reliance outside the object, on images with object masks.

:func:`localise` scores each method's maps against the masks (pointing game, energy in the
object, object focus). :func:`measure_shortcut` pools the maps of the methods worth trusting
(where saliency falls outside the objects) and runs the counterfactuals of
:mod:`audit.saliency.reliance` on a seeded sample of the audit data: keep only the object with
four fills of the background, and occlude every window of a grid over the background against
random windows.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from audit.saliency import reliance
from audit.saliency.evaluation import (
    Localisation,
    MethodScore,
    ShortcutEvidence,
    ShortcutMaps,
)
from audit.saliency.metrics import ProbaFn, energy_in_mask, mask_area, pointing_game
from audit.saliency.settings import SaliencyParams
from audit.subject import Subject


def masks_of(value: Any, x: torch.Tensor) -> torch.Tensor | None:
    """``extras["masks"]`` as a bool tensor ``(N, H, W)`` matching ``x``, else ``None``."""
    if value is None:
        return None
    m = torch.as_tensor(np.asarray(value)) if not isinstance(value, torch.Tensor) else value
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.ndim != 3 or m.shape[0] != x.shape[0] or tuple(m.shape[1:]) != tuple(x.shape[2:]):
        return None
    return m.bool()


def localise(maps: dict[str, torch.Tensor], masks: torch.Tensor
             ) -> tuple[float, dict[str, Localisation]]:
    """The objects' mean area share and each method's localisation against ``masks``."""
    area = float(mask_area(masks).mean())
    out: dict[str, Localisation] = {}
    for m, v in maps.items():
        mp = v[: len(masks)]
        energy = float(torch.nanmean(energy_in_mask(mp, masks)))
        out[m] = Localisation(pointing_game=float(pointing_game(mp, masks).float().mean()),
                              energy_in_object=energy,
                              object_focus=energy / area if area > 0 else math.nan)
    return area, out


def trusted_methods(scores: list[MethodScore], p: SaliencyParams) -> list[str]:
    """The methods that beat a random order and pass the sanity check (all if none does)."""
    return [s.name for s in scores
            if s.gain >= p.faithfulness_gain_medium
            and (s.sanity or 0.0) < p.sanity_rank_medium] or [s.name for s in scores]


def measure_shortcut(subject: Subject, p: SaliencyParams, scores: list[MethodScore],
                     maps: dict[str, torch.Tensor], masks: torch.Tensor,
                     loc: dict[str, Localisation], x_eval: torch.Tensor, proba: ProbaFn
                     ) -> ShortcutEvidence:
    """Saliency outside the object and the counterfactuals (see the module doc)."""
    data = subject.data
    all_masks = masks_of(data.extras.get("masks"), data.x)
    assert all_masks is not None
    rng = subject.rng("saliency.shortcut")
    take = torch.as_tensor(np.sort(rng.choice(len(data), size=min(p.shortcut_samples,
                                                                   len(data)), replace=False)))
    xs, ms, ys = data.x[take], all_masks[take], data.y[take]
    cf = reliance.counterfactuals(proba, xs, ms, ys, subject.card.input.range,
                                  min_excess=p.reliance_medium, windows=p.occlusion_windows,
                                  fill_generator=subject.generator("saliency.fills"),
                                  window_generator=subject.generator("saliency.occlusion"))
    trusted = trusted_methods(scores, p)
    outside = torch.stack([(maps[m][: len(masks)] * (~masks).float()).mean(0)
                           for m in trusted]).mean(0)
    mean_map = torch.stack([maps[m][: len(masks)].mean(0) for m in trusted]).mean(0)
    return ShortcutEvidence(
        fills=cf.fills, chance_agreement=cf.chance_agreement, windows=cf.windows,
        hotspot=cf.hotspot, random_change=cf.random_change, reliance=cf.reliance,
        saliency_outside=1.0 - float(np.median([loc[m].energy_in_object for m in trusted])),
        object_focus=float(np.median([loc[m].object_focus for m in trusted])),
        object_area_share=float(mask_area(masks).mean()), methods=trusted, images=len(take),
        maps=ShortcutMaps(mean_map=mean_map, outside_map=outside,
                          object_freq=ms.float().mean(0), example=x_eval[:1]))
