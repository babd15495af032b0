"""Foolbox attacks behind our :class:`~audit.robustness.base.Attack` contract.

Minimal-perturbation attacks (``eps=None`` gives the smallest adversarial each finds; with
``eps`` the result is also clipped to the ball, foolbox-style, and success means "adversarial
within eps"):

- :class:`DeepFool` (Moosavi-Dezfooli et al. 2016), L-inf or L2;
- :class:`CarliniWagner` (Carlini & Wagner 2017), L2;
- :class:`FMN`, fast minimum-norm (Pintor et al. 2021), L-inf or L2;
- :class:`HopSkipJump` (Chen et al. 2020), decision-based: it only sees predicted labels.

A wrapper declares only its settings (the foolbox attack's keyword arguments) and the foolbox
class for each norm; the base class builds it, counts the model evaluations, times the run and
builds the result. Every result carries
``info["minimal_norms"]``: the unbounded perturbation size found per sample (``inf``: none).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import foolbox as fb
import torch
from torch import Tensor, nn

from audit.robustness.base import Attack, Found
from audit.robustness.ops import Norm, per_sample, perturbation_norms

__all__ = ["FMN", "CarliniWagner", "DeepFool", "FoolboxAttack", "HopSkipJump"]


@dataclass
class FoolboxAttack(Attack, kind="minimal", role="minimal-norm", needs_eps=False):
    """Base class: a subclass's own fields are the foolbox attack's keyword arguments and
    ``foolbox`` maps each norm it supports to the foolbox class."""

    norm: Norm = "l2"
    foolbox: ClassVar[dict[Norm, str]] = {}

    def default_name(self) -> str:
        return f"{self.title}-{self.norm.upper()}"

    def options(self) -> dict[str, Any]:
        """The foolbox attack's keyword arguments: the subclass's own fields."""
        own = {f.name for f in fields(FoolboxAttack)}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in own}

    def make(self) -> Any:
        """The foolbox attack object."""
        return getattr(fb.attacks, self.foolbox[self.norm])(**self.options())

    def run(self, model: nn.Module, x: Tensor, y: Tensor, eps: Tensor | None,
            x_init: Tensor | None) -> Found:
        return self._foolbox(model, x, y, self._scalar(eps))

    def _scalar(self, eps: Tensor | None) -> float | None:
        """Foolbox takes one epsilon for the whole batch."""
        if eps is None or eps.numel() == 0:
            return None
        if not bool((eps == eps[0]).all()):
            raise ValueError(f"{self.name} takes one eps for the whole batch")
        return float(eps[0])

    def _foolbox(self, model: nn.Module, x: Tensor, y: Tensor, eps: float | None,
                 **kwargs: Any) -> Found:
        """Run the foolbox attack at ``[None, eps]``: the unbounded minimal adversarial, and
        (with ``eps``) the adversarial clipped to the ball."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # foolbox warns about train mode, eagerpy about numpy
            fmodel = fb.PyTorchModel(model, bounds=self.bounds, device=x.device)
            eps_list = [None] if eps is None else [None, eps]
            raw, clipped, success = self.make()(fmodel, x, y, epsilons=eps_list, **kwargs)
        x_min = raw[0].detach()
        found = success[0].detach()
        norms = perturbation_norms(x_min - x, self.norm)
        info: dict[str, Any] = {"minimal_norms": torch.where(
            found, norms, torch.full_like(norms, math.inf)).cpu()}
        if eps is None:
            return Found(x_min, found, info)
        x_adv = torch.where(per_sample(success[1], x), clipped[1], x_min)
        return Found(x_adv, success[1].detach() | (found & (norms <= eps)), info)


@dataclass
class DeepFool(FoolboxAttack, title="DeepFool"):
    """DeepFool: linearise the model, step to the nearest linearised boundary, repeat."""

    steps: int = 50
    candidates: int = 10
    overshoot: float = 0.02
    foolbox: ClassVar[dict[Norm, str]] = {"linf": "LinfDeepFoolAttack", "l2": "L2DeepFoolAttack"}


@dataclass
class CarliniWagner(FoolboxAttack, title="CW", norms=("l2",)):
    """Carlini-Wagner L2: Adam on ``||delta||^2 + c * margin`` with a binary search on ``c``."""

    steps: int = 100
    binary_search_steps: int = 3
    stepsize: float = 0.05
    initial_const: float = 1.0
    foolbox: ClassVar[dict[Norm, str]] = {"l2": "L2CarliniWagnerAttack"}


@dataclass
class FMN(FoolboxAttack, title="FMN"):
    """Fast minimum-norm: steps along the gradient of the logit margin while shrinking the
    norm budget once adversarial (cosine-annealed step size)."""

    steps: int = 100
    max_stepsize: float = 1.0
    gamma: float = 0.05
    foolbox: ClassVar[dict[Norm, str]] = {"linf": "LInfFMNAttack", "l2": "L2FMNAttack"}


@dataclass
class HopSkipJump(FoolboxAttack, kind="decision-based", role="black-box", title="HopSkipJump"):
    """HopSkipJump: decision-based (labels only); estimates the boundary's normal from random
    queries, then a geometric step search and a binary search back to the boundary."""

    steps: int = 16
    initial_gradient_eval_steps: int = 20
    max_gradient_eval_steps: int = 100
    foolbox: ClassVar[dict[Norm, str]] = {"linf": "HopSkipJumpAttack", "l2": "HopSkipJumpAttack"}

    def options(self) -> dict[str, Any]:
        return {**super().options(), "constraint": self.norm}

    def run(self, model: nn.Module, x: Tensor, y: Tensor, eps: Tensor | None,
            x_init: Tensor | None) -> Found:
        """Starts each sample from another input of the batch that the model puts in a
        different class (foolbox's default blended-noise start fails on some models);
        samples without such an input fail."""
        with torch.no_grad():
            pred = model(x).argmax(dim=1)
        other = pred[None, :] != y[:, None]  # (N, N): input j is in another class than y_i
        has = other.any(dim=1)
        # the nearest such input (L2) is the best start
        dist = torch.cdist(x.flatten(1), x.flatten(1)).masked_fill(~other, math.inf)
        start = x[dist.argmin(dim=1)]
        idx = has.nonzero()[:, 0]
        n = int(x.shape[0])
        x_adv = x.clone()
        success = torch.zeros(n, dtype=torch.bool, device=x.device)
        minimal = torch.full((n,), math.inf)
        if idx.numel():
            scalar = self._scalar(eps[idx] if eps is not None else None)
            r = self._foolbox(model, x[idx], y[idx], scalar, starting_points=start[idx])
            x_adv[idx], success[idx] = r.x_adv, r.adversarial
            minimal[idx.cpu()] = r.info["minimal_norms"]
        return Found(x_adv, success, {"minimal_norms": minimal, "no_start": int((~has).sum())})
