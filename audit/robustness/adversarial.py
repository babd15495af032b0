"""Adversarial training's building blocks: the settings, the random starts, and the adversarial
batch and loss, usable in any training loop.

Three methods, all on top of the attacks in :mod:`audit.robustness.attacks`:

- ``"pgd"``: PGD adversarial training (Madry et al. 2018): minimise the cross-entropy at the
  last iterate of a ``steps``-step PGD attack from a random start in the ``eps``-ball.
- ``"trades"``: TRADES (Zhang et al. 2019): ``CE(f(x), y) + beta * KL(f(x) || f(x_adv))``,
  where ``x_adv`` maximises the KL term (PGD from ``x + 0.001 N(0, 1)``); ``beta`` trades
  clean for robust accuracy (6 in the paper).
- ``"fast"``: FGSM with a random start ("fast is better than free", Wong et al. 2020): one
  signed-gradient step of ``1.25 eps`` from a uniform point in the ball; about ``(steps + 1) / 2``
  times cheaper than PGD training, but prone to *catastrophic overfitting* (see
  :mod:`audit.robustness.overfitting`).

Drop-in use in your own loop (the attack runs in eval mode on the model and leaves parameter
gradients alone; only the returned loss carries gradients)::

    from audit.robustness.adversarial import adversarial_loss

    for x, y in loader:
        loss = adversarial_loss(model, x, y, method="pgd", eps=0.1)
        opt.zero_grad(); loss.backward(); opt.step()

With the shared trainer (warm-up, validation, best-robust weights, resumable checkpoints, DDP):
:func:`audit.robustness.losses.adversarial_trainer`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, TypedDict, Unpack

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audit.errors import UsageError
from audit.robustness.attacks import FGSM, PGD, Norm
from audit.training.config import TrainConfig, value_range

Method = Literal["pgd", "trades", "fast"]
METHODS: tuple[str, ...] = ("pgd", "trades", "fast")
CoAction = Literal["fallback", "stop", "warn"]
AttackMode = Literal["eval", "train"]

__all__ = [
    "METHODS",
    "AdversarialBatch",
    "AdversarialConfig",
    "AttackOptions",
    "adversarial_batch",
    "adversarial_loss",
    "eps_schedule",
    "model_mode",
    "noise_kind",
    "random_unit_noise",
]


@dataclass
class AdversarialConfig(TrainConfig):
    """Settings of an adversarial training run: the optimisation (:class:`TrainConfig`) plus
    the attack it trains against (``eps`` in input units).

    ``steps``, ``rel_step``: the PGD/TRADES attack (step ``rel_step * eps``, default
    ``2.5 / steps``); ``warmup_epochs``: ramp eps linearly from 0; ``attack_mode``: the model's
    mode while attacking. ``eval_steps``: the PGD attack that measures robust validation
    accuracy each epoch (and probes for catastrophic overfitting). ``co_*``: the
    catastrophic-overfitting monitor of the fast method: ``co_checks`` times per epoch the PGD
    accuracy of ``co_probe`` fixed training samples at the full ``eps`` is measured; a drop by
    more than ``co_drop`` (absolute) below the best value so far is a collapse, answered by
    ``co_action``. ``bounds``: the input's value range (the card's ``input.range``).
    """

    method: Method = "pgd"
    eps: float = 0.1
    norm: Norm = "linf"
    steps: int = 10
    rel_step: float | None = None
    beta: float = 6.0
    warmup_epochs: float = 0.0
    attack_mode: AttackMode = "eval"
    eval_steps: int = 10
    co_action: CoAction = "fallback"
    co_checks: int = 2
    co_probe: int = 64
    co_drop: float = 0.2
    bounds: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        self.bounds = value_range(self.bounds)

    def rules(self) -> list[tuple[bool, str]]:
        return [
            (math.isfinite(self.eps) and self.eps > 0, f"eps must be > 0, got {self.eps}"),
            *super().rules(),
            (self.steps >= 1 and self.eval_steps >= 1, "attack steps must be >= 1"),
            (self.beta >= 0, f"beta must be >= 0, got {self.beta}"),
            (self.warmup_epochs >= 0, "warm-up epochs must be >= 0"),
            (self.co_checks >= 0 and self.co_probe >= 1 and 0 < self.co_drop <= 1,
             "co_checks >= 0, co_probe >= 1 and 0 < co_drop <= 1 are required"),
            (self.bounds[0] < self.bounds[1], f"bounds must be (low, high), got {self.bounds}"),
        ]


@dataclass
class AdversarialBatch:
    """What one adversarial training step computed on a batch.

    ``loss`` (N,) per-sample training loss (with gradients), ``x_adv`` the adversarial inputs,
    ``logits_adv`` the model's logits on them (detached), ``eps`` the budget used.
    """

    loss: Tensor
    x_adv: Tensor
    logits_adv: Tensor
    eps: float | Tensor


def random_unit_noise(shape: tuple[int, ...], norm: Norm, generator: torch.Generator | None,
                      kind: Literal["uniform", "normal"] = "uniform") -> Tensor:
    """Random starts before scaling by epsilon: uniform in the unit L-inf cube, uniform in the
    unit L2 ball (``norm="l2"``), or standard normal (``kind="normal"``, TRADES' start)."""
    if kind == "normal":
        return torch.randn(shape, generator=generator)
    if norm == "linf":
        return 2 * torch.rand(shape, generator=generator) - 1
    g = torch.randn(shape, generator=generator)
    flat = g.flatten(1)
    d = max(flat.shape[1], 1)
    direction = flat / (flat.norm(dim=1, keepdim=True) + 1e-12)
    radius = torch.rand((shape[0], 1), generator=generator) ** (1.0 / d)
    return (direction * radius).view(shape)


def noise_kind(method: str) -> Literal["uniform", "normal"]:
    """The random start ``method`` uses (TRADES: normal; the others: uniform in the ball)."""
    return "normal" if method == "trades" else "uniform"


def eps_schedule(progress: float, eps: float, warmup_epochs: float) -> float:
    """Epsilon after ``progress`` epochs (fractional) with a linear warm-up from 0 to ``eps``
    over ``warmup_epochs`` (Gowal et al. 2018 and most PGD-AT recipes ramp the budget)."""
    if warmup_epochs <= 0:
        return eps
    return eps * min(1.0, max(progress, 0.0) / warmup_epochs)


@contextmanager
def model_mode(model: nn.Module, mode: AttackMode) -> Iterator[None]:
    """Put ``model`` in train or eval mode for the block, then back in its own."""
    was = model.training
    model.train(mode == "train")
    try:
        yield
    finally:
        model.train(was)


def _inner(model: nn.Module) -> nn.Module:
    """The module to attack: DDP's wrapped module (the attack must not trigger DDP's gradient
    synchronisation; all ranks hold the same weights)."""
    inner = getattr(model, "module", None)
    if isinstance(model, nn.parallel.DistributedDataParallel) and isinstance(inner, nn.Module):
        return inner
    return model


def _per_sample(v: float | Tensor, x: Tensor) -> float | Tensor:
    if isinstance(v, Tensor) and v.ndim:
        return v.view(-1, *([1] * (x.ndim - 1)))
    return v


def _kl(p_logits: Tensor, q_logits: Tensor) -> Tensor:
    """Per-sample ``KL(softmax(p) || softmax(q))``."""
    log_p = F.log_softmax(p_logits, dim=1)
    return (log_p.exp() * (log_p - F.log_softmax(q_logits, dim=1))).sum(dim=1)


def _craft(target: nn.Module, x: Tensor, y: Tensor, method: str, eps: float | Tensor,
           noise: Tensor, norm: Norm, steps: int, rel_step: float | None,
           bounds: tuple[float, float]) -> Tensor:
    """The adversarial inputs of ``method`` from the random start ``noise`` (unscaled)."""
    if method == "trades":
        with torch.no_grad():
            clean = target(x)

        def kl_from_clean(logits: Tensor, _y: Tensor) -> Tensor:
            return _kl(clean, logits)

        start = (x + 0.001 * noise).clamp(*bounds)
        attack: PGD | FGSM = PGD(norm=norm, steps=steps, rel_step=rel_step, random_start=False,
                                 loss=kl_from_clean, early_stop=False, check_success=False,
                                 bounds=bounds)
    else:
        start = (x + _per_sample(eps, x) * noise).clamp(*bounds)
        if method == "fast":
            attack = FGSM(norm=norm, rel_step=1.25 if rel_step is None else rel_step,
                          random_start=False, early_stop=False, check_success=False,
                          bounds=bounds)
        else:
            attack = PGD(norm=norm, steps=steps, rel_step=rel_step, random_start=False,
                         early_stop=False, check_success=False, bounds=bounds)
    return attack(target, x, y, eps=eps, x_init=start).x_adv


def adversarial_batch(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    method: Method | str = "pgd",
    eps: float | Tensor = 0.1,
    norm: Norm = "linf",
    steps: int = 10,
    rel_step: float | None = None,
    beta: float = 6.0,
    bounds: tuple[float, float] = (0.0, 1.0),
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
    attack_mode: AttackMode = "eval",
) -> AdversarialBatch:
    """Craft adversarial inputs for ``(x, y)`` with ``method`` and return the per-sample
    training loss (see :func:`adversarial_loss` for the arguments).

    ``noise`` is the random start before scaling, shaped like ``x`` (see
    :func:`random_unit_noise`); by default it is drawn from ``generator``. The attack runs on
    the model in ``attack_mode`` (eval by default, so dropout and batch-norm statistics do not
    move while attacking); the training forward pass runs in the model's own mode, once, on
    the clean and adversarial inputs concatenated for TRADES (one forward per step keeps
    DistributedDataParallel happy).
    """
    if method not in METHODS:
        raise UsageError(f"unknown adversarial training method {method!r}; use one of "
                         f"{', '.join(METHODS)}")
    if steps < 1:
        raise UsageError(f"attack steps must be >= 1, got {steps}")
    x, y = x.detach(), y.detach()
    n = int(x.shape[0])
    if noise is None:
        noise = random_unit_noise(tuple(x.shape), norm, generator, noise_kind(method))
    noise = noise.to(device=x.device, dtype=x.dtype)
    e = eps.to(device=x.device, dtype=x.dtype) if isinstance(eps, Tensor) else float(eps)
    target = _inner(model)
    if n == 0:
        x_adv = x
    else:
        with model_mode(target, attack_mode):
            x_adv = _craft(target, x, y, method, e, noise, norm, steps, rel_step, bounds)
    x_adv = x_adv.detach()
    if method == "trades":
        logits = model(torch.cat([x, x_adv]))
        clean_logits, adv_logits = logits[:n], logits[n:]
        loss = (F.cross_entropy(clean_logits, y, reduction="none")
                + beta * _kl(clean_logits, adv_logits))
    else:
        adv_logits = model(x_adv)
        loss = F.cross_entropy(adv_logits, y, reduction="none")
    return AdversarialBatch(loss=loss, x_adv=x_adv, logits_adv=adv_logits.detach(), eps=e)


class AttackOptions(TypedDict, total=False):
    """The attack settings :func:`adversarial_loss` passes to :func:`adversarial_batch`
    (defaults there)."""

    norm: Norm
    steps: int
    rel_step: float | None
    beta: float
    bounds: tuple[float, float]
    generator: torch.Generator | None
    attack_mode: AttackMode


def adversarial_loss(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    method: Method | str = "pgd",
    eps: float | Tensor = 0.1,
    *,
    reduction: Literal["mean", "sum", "none"] = "mean",
    **options: Unpack[AttackOptions],
) -> Tensor:
    """The adversarial training loss of ``model`` on ``(x, y)``: call ``.backward()`` on it.

    - ``method``: ``"pgd"`` (Madry), ``"trades"`` (Zhang; ``beta``, default 6, weighs the KL
      term) or ``"fast"`` (FGSM with a random start, Wong et al.; step ``1.25 eps`` unless
      ``rel_step``).
    - ``eps``: the budget in input units (pixels in [0, 1] for the bundled image models), a
      float or a per-sample tensor ``(N,)``; ``norm``: ``"linf"`` (default) or ``"l2"``.
    - ``steps``/``rel_step``: PGD and TRADES attack steps (default 10) and step size as a
      fraction of eps (default ``2.5 / steps``).
    - ``bounds``: the input's value range (the card's ``input.range``; default ``(0, 1)``).
    - ``generator``: random starts (default: torch's global generator).
    - ``attack_mode``: the model mode while attacking (``"eval"``, the default: dropout and
      batch-norm frozen, as in the TRADES reference; ``"train"`` as in Madry's and Rice et
      al.'s code).

    Works for any classifier taking a float tensor: images (N, C, H, W) or tabular rows (N, D).
    """
    out = adversarial_batch(model, x, y, method=method, eps=eps, **options)
    if reduction == "none":
        return out.loss
    return out.loss.sum() if reduction == "sum" else out.loss.mean()
