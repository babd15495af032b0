"""Measuring explanations: faithfulness, sanity, localisation, and reliance outside the object.

* Deletion / insertion (Petsiuk et al. 2018, RISE): remove (or reveal) the most salient pixels
  or features first, in ``steps`` equal chunks, replacing them with a baseline, and follow the
  probability of the explained class; the area under the curve is compared with the same curve
  for a random order. Ties in a map are broken randomly, never in raster order.
* Model-parameter randomisation (Adebayo et al. 2018, "Sanity Checks for Saliency Maps"):
  Spearman rank correlation between maps of the trained model and of a copy with randomly
  re-initialised weights; a method whose maps barely change does not explain the model.
* Localisation on data with object masks: the pointing game (Zhang et al. 2016: is the map's
  peak on the object, within ``tolerance`` pixels) and the share of saliency energy inside the
  mask, compared with the mask's share of the image.
* Reliance outside the object (counterfactuals) lives in :mod:`audit.saliency.reliance`; this
  module keeps its building blocks (each image's mean background colour, words for a place).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import rankdata
from torch import nn

ProbaFn = Callable[[torch.Tensor], torch.Tensor]
"""Inputs ``(N, ...)`` -> class probabilities ``(N, K)`` (batched, no gradients)."""


def _units(mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A per-pixel ``(N, H, W)`` or per-feature ``(N, F)`` mask, broadcastable to ``x``."""
    return mask.unsqueeze(1) if x.ndim >= 3 else mask


def saliency_ranks(maps: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Rank of each unit (pixel or feature) in descending saliency, ``(N, U)``; ties in random
    order."""
    flat = maps.reshape(maps.shape[0], -1).float()
    n, u = flat.shape
    perm = torch.stack([torch.randperm(u, generator=generator) for _ in range(n)])
    shuffled = torch.gather(flat, 1, perm)
    idx = torch.sort(shuffled, dim=1, descending=True, stable=True).indices
    order = torch.gather(perm, 1, idx)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(u).expand(n, u).contiguous())
    return ranks


CURVE_UNIT = 8
"""Samples per unit of the deletion and insertion curves (the split of a distributed audit)."""


def perturbation_curves(proba: ProbaFn, x: torch.Tensor, target: torch.Tensor,
                        ranks: torch.Tensor, baseline: torch.Tensor, steps: int,
                        mode: str) -> torch.Tensor:
    """Probability of ``target`` ``(N, steps + 1)`` as the top-ranked units are deleted
    (``mode="deletion"``: replaced by ``baseline``) or inserted into the baseline
    (``"insertion"``), ``k / steps`` of the units at step ``k``."""
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be deletion or insertion, got {mode!r}")
    u = ranks.shape[1]
    base = torch.as_tensor(baseline, dtype=x.dtype).expand_as(x)
    cols = []
    for k in range(steps + 1):
        top = (ranks < round(k * u / steps)).reshape(x.shape[0], *_map_shape(x))
        sel = _units(top, x)
        step = torch.where(sel, base, x) if mode == "deletion" else torch.where(sel, x, base)
        cols.append(proba(step).gather(1, target[:, None])[:, 0])
    return torch.stack(cols, dim=1)


def _map_shape(x: torch.Tensor) -> tuple[int, ...]:
    return tuple(x.shape[2:]) if x.ndim >= 3 else tuple(x.shape[1:])


def curve_auc(curves: torch.Tensor) -> torch.Tensor:
    """Area under each curve ``(N, S + 1)`` over the fraction axis [0, 1] (trapezoids)."""
    steps = curves.shape[1] - 1
    return torch.trapezoid(curves, dx=1.0 / steps, dim=1)


@dataclass
class Faithfulness:
    """Mean deletion / insertion AUCs and mean curves (``steps + 1`` points)."""

    deletion_auc: float
    insertion_auc: float
    deletion_curve: list[float]
    insertion_curve: list[float]

    @property
    def score(self) -> float:
        """Insertion AUC minus deletion AUC: higher means the ranking matters more."""
        return self.insertion_auc - self.deletion_auc


def faithfulness(proba: ProbaFn, x: torch.Tensor, target: torch.Tensor, maps: torch.Tensor,
                 baseline: torch.Tensor, steps: int, generator: torch.Generator
                 ) -> Faithfulness:
    """Deletion and insertion of ``x``'s units in the order of ``maps``; the curves of blocks
    of :data:`CURVE_UNIT` samples are split over the ranks of a distributed audit (they use
    no randomness: the ranks, with their random tie-breaks, are drawn first, on every rank)."""
    from audit.distributed import current

    ranks = saliency_ranks(maps, generator)

    def one(_: int, sl: slice) -> tuple[torch.Tensor, torch.Tensor]:
        args = (proba, x[sl], target[sl], ranks[sl], baseline, steps)
        return (perturbation_curves(*args, "deletion").cpu(),
                perturbation_curves(*args, "insertion").cpu())

    parts = current().map(one, int(x.shape[0]), CURVE_UNIT) if len(x) else [one(0, slice(0))]
    dele = torch.cat([d for d, _ in parts])
    ins = torch.cat([i for _, i in parts])
    return Faithfulness(float(curve_auc(dele).mean()), float(curve_auc(ins).mean()),
                        dele.mean(0).tolist(), ins.mean(0).tolist())


def random_maps(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Uniform random maps: the order a random explanation would give."""
    return torch.rand(shape, generator=generator)


def spearman_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation of each sample's maps ``a[i]`` and ``b[i]`` (NaN when one of
    them is constant)."""
    fa = a.reshape(a.shape[0], -1).double().numpy()
    fb = b.reshape(b.shape[0], -1).double().numpy()
    ra, rb = rankdata(fa, axis=1), rankdata(fb, axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    den = np.sqrt((ra**2).sum(axis=1) * (rb**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (ra * rb).sum(axis=1) / den
    return torch.from_numpy(np.where(den > 0, rho, np.nan))


def randomize_parameters(model: nn.Module, seed: int) -> nn.Module:
    """A copy of ``model`` with every parameter randomised: modules with ``reset_parameters``
    are re-initialised (their default initialisation), other parameters shuffled in place of
    their values. Buffers such as input normalisation are kept. The global RNG is untouched."""
    rand = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for mod in rand.modules():
            own = list(mod.parameters(recurse=False))
            if not own:
                continue
            reset = getattr(mod, "reset_parameters", None)
            if callable(reset):
                reset()
            else:
                for p in own:
                    flat = p.reshape(-1)
                    p.copy_(flat[torch.randperm(flat.numel(), generator=gen)].reshape(p.shape))
    rand.eval()
    return rand


def pointing_game(maps: torch.Tensor, masks: torch.Tensor, tolerance: int = 1) -> torch.Tensor:
    """Per sample: is the map's peak on the object (mask dilated by ``tolerance`` pixels)?"""
    m = masks.float()[:, None]
    if tolerance > 0:
        m = nn.functional.max_pool2d(m, 2 * tolerance + 1, stride=1, padding=tolerance)
    flat = maps.reshape(maps.shape[0], -1)
    peak = flat.argmax(dim=1)
    return m.reshape(m.shape[0], -1).gather(1, peak[:, None])[:, 0] > 0


def energy_in_mask(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Per sample: the share of the map's total saliency inside the mask (NaN for empty
    maps)."""
    total = maps.reshape(maps.shape[0], -1).sum(1)
    inside = (maps * masks.float()).reshape(maps.shape[0], -1).sum(1)
    return torch.where(total > 0, inside / total.clamp(min=1e-12),
                       torch.full_like(total, float("nan")))


def mask_area(masks: torch.Tensor) -> torch.Tensor:
    """Per sample: the share of the image the mask covers."""
    return masks.float().reshape(masks.shape[0], -1).mean(1)


def outside_fill(x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Each image's mean colour outside its mask, ``(N, C, 1, 1)``."""
    out = (~masks).float()[:, None]
    return (x * out).sum((2, 3), keepdim=True) / out.sum((2, 3), keepdim=True).clamp(min=1)


def describe_box(row0: int, col0: int, row1: int, col1: int, height: int, width: int) -> str:
    """Plain words for where a box (rows ``row0:row1``, columns ``col0:col1``) sits, by its
    centre in thirds of the image: ``top-left corner``, ``centre``, ``bottom edge``."""
    cy, cx = (row0 + row1) / 2 / height, (col0 + col1) / 2 / width
    v = "top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else "middle"
    hz = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else "centre"
    if v == "middle" and hz == "centre":
        return "centre"
    if v == "middle":
        return f"{hz} edge"
    if hz == "centre":
        return f"{v} edge"
    return f"{v}-{hz} corner"


def describe_position(row: int, col: int, size: int, height: int, width: int) -> str:
    """:func:`describe_box` of the ``size`` x ``size`` window at ``(row, col)``."""
    return describe_box(row, col, row + size, col + size, height, width)
