"""Foolbox attacks behind our :class:`~audit.robustness.attacks.Attack` protocol.

Minimal-perturbation attacks (``eps=None`` gives the smallest adversarial each finds; with
``eps`` the result is also clipped to the ball, foolbox-style, and success means "adversarial
within eps"):

- :class:`DeepFool` (Moosavi-Dezfooli et al. 2016), L-inf or L2;
- :class:`CarliniWagner` (Carlini & Wagner 2017), L2;
- :class:`FMN`, fast minimum-norm (Pintor et al. 2021), L-inf or L2;
- :class:`HopSkipJump` (Chen et al. 2020), decision-based: it only sees predicted labels.

Model evaluations are counted by wrapping the model in
:class:`~audit.robustness.attacks.CountingModel`.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import foolbox as fb
import torch
from torch import Tensor, nn

from audit.robustness.attacks import (
    AttackKind,
    AttackResult,
    CountingModel,
    Norm,
    perturbation_norms,
)

__all__ = ["FMN", "CarliniWagner", "DeepFool", "FoolboxAttack", "HopSkipJump"]


@dataclass
class FoolboxAttack:
    """Base class: subclasses build the foolbox attack in :meth:`make`."""

    norm: Norm = "l2"
    bounds: tuple[float, float] = (0.0, 1.0)
    name: str = ""
    kind: ClassVar[AttackKind] = "minimal"

    def make(self) -> Any:
        """The foolbox attack object."""
        raise NotImplementedError

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, *,
                 eps: float | Tensor | None = None) -> AttackResult:
        return self._run(CountingModel(model).train(model.training), x, y, eps)

    def _run(self, counting: CountingModel, x: Tensor, y: Tensor, eps: float | Tensor | None,
             **kwargs: Any) -> AttackResult:
        t0 = time.perf_counter()
        x, y = x.detach(), y.detach()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # foolbox warns about train mode, eagerpy about numpy
            fmodel = fb.PyTorchModel(counting, bounds=self.bounds, device=x.device)
            attack = self.make()
            eps_list: list[float | None] = [None]
            scalar = None
            if eps is not None:
                scalar = float(eps) if not isinstance(eps, Tensor) or eps.ndim == 0 else None
                if scalar is None:
                    raise ValueError(f"{self.name} takes one eps for the whole batch")
                eps_list.append(scalar)
            raw, clipped, success = attack(fmodel, x, y, epsilons=eps_list, **kwargs)
        x_min = raw[0].detach()
        found = success[0].detach()
        norms = perturbation_norms(x_min - x, self.norm)
        info: dict[str, Any] = {"minimal_norms": torch.where(
            found, norms, torch.full_like(norms, math.inf)).cpu()}
        if scalar is not None:
            x_adv = torch.where(success[1].view(-1, *([1] * (x.ndim - 1))), clipped[1], x_min)
            ok = success[1].detach() | (found & (norms <= scalar))
        else:
            x_adv, ok = x_min, found
        return AttackResult(
            name=self.name, norm=self.norm, eps=scalar, x_adv=x_adv.detach(), success=ok,
            norms=perturbation_norms(x_adv - x, self.norm), time=time.perf_counter() - t0,
            evaluations=counting.forwards, gradients=counting.backwards, info=info)


@dataclass
class DeepFool(FoolboxAttack):
    """DeepFool: linearise the model, step to the nearest linearised boundary, repeat."""

    steps: int = 50
    candidates: int = 10
    overshoot: float = 0.02

    def __post_init__(self) -> None:
        self.name = self.name or f"DeepFool-{self.norm.upper()}"

    def make(self) -> Any:
        cls = fb.attacks.LinfDeepFoolAttack if self.norm == "linf" else fb.attacks.L2DeepFoolAttack
        return cls(steps=self.steps, candidates=self.candidates, overshoot=self.overshoot)


@dataclass
class CarliniWagner(FoolboxAttack):
    """Carlini-Wagner L2: Adam on ``||delta||^2 + c * margin`` with a binary search on ``c``."""

    steps: int = 100
    binary_search_steps: int = 3
    stepsize: float = 0.05
    initial_const: float = 1.0

    def __post_init__(self) -> None:
        if self.norm != "l2":
            raise ValueError("Carlini-Wagner is an L2 attack")
        self.name = self.name or "CW-L2"

    def make(self) -> Any:
        return fb.attacks.L2CarliniWagnerAttack(
            binary_search_steps=self.binary_search_steps, steps=self.steps,
            stepsize=self.stepsize, initial_const=self.initial_const)


@dataclass
class FMN(FoolboxAttack):
    """Fast minimum-norm: steps along the gradient of the logit margin while shrinking the
    norm budget once adversarial (cosine-annealed step size)."""

    steps: int = 100
    max_stepsize: float = 1.0
    gamma: float = 0.05

    def __post_init__(self) -> None:
        self.name = self.name or f"FMN-{self.norm.upper()}"

    def make(self) -> Any:
        cls = fb.attacks.LInfFMNAttack if self.norm == "linf" else fb.attacks.L2FMNAttack
        return cls(steps=self.steps, max_stepsize=self.max_stepsize, gamma=self.gamma)


@dataclass
class HopSkipJump(FoolboxAttack):
    """HopSkipJump: decision-based (labels only); estimates the boundary's normal from random
    queries, then a geometric step search and a binary search back to the boundary."""

    steps: int = 16
    initial_gradient_eval_steps: int = 20
    max_gradient_eval_steps: int = 100
    kind: ClassVar[AttackKind] = "decision-based"

    def __post_init__(self) -> None:
        self.name = self.name or f"HopSkipJump-{self.norm.upper()}"

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, *,
                 eps: float | Tensor | None = None) -> AttackResult:
        """Starts each sample from another input of the batch that the model puts in a
        different class (foolbox's default blended-noise start fails on some models);
        samples without such an input fail."""
        t0 = time.perf_counter()
        counting = CountingModel(model).train(model.training)
        with torch.no_grad():
            pred = counting(x).argmax(dim=1)
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
        scalar = None if eps is None else float(eps)
        if idx.numel():
            r = self._run(counting, x[idx], y[idx], eps, starting_points=start[idx])
            x_adv[idx], success[idx] = r.x_adv, r.success
            minimal[idx.cpu()] = r.info["minimal_norms"]
        return AttackResult(
            name=self.name, norm=self.norm, eps=scalar, x_adv=x_adv, success=success,
            norms=perturbation_norms(x_adv - x, self.norm), time=time.perf_counter() - t0,
            evaluations=counting.forwards, gradients=counting.backwards,
            info={"minimal_norms": minimal, "no_start": int((~has).sum())})

    def make(self) -> Any:
        return fb.attacks.HopSkipJumpAttack(
            steps=self.steps, initial_gradient_eval_steps=self.initial_gradient_eval_steps,
            max_gradient_eval_steps=self.max_gradient_eval_steps, constraint=self.norm)
