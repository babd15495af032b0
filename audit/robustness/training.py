"""Adversarial training: a drop-in loss for your own loop and a small resumable trainer.

Three methods, all on top of the attacks in :mod:`audit.robustness.attacks`:

- ``"pgd"``: PGD adversarial training (Madry et al. 2018): minimise the cross-entropy at the
  last iterate of a ``steps``-step PGD attack from a random start in the ``eps``-ball.
- ``"trades"``: TRADES (Zhang et al. 2019): ``CE(f(x), y) + beta * KL(f(x) || f(x_adv))``,
  where ``x_adv`` maximises the KL term (PGD from ``x + 0.001 N(0, 1)``); ``beta`` trades
  clean for robust accuracy (6 in the paper).
- ``"fast"``: FGSM with a random start ("fast is better than free", Wong et al. 2020): one
  signed-gradient step of ``1.25 eps`` from a uniform point in the ball; about ``(steps + 1) / 2``
  times cheaper than PGD training, but prone to *catastrophic overfitting* (robust accuracy
  against PGD collapsing to ~0 within a few batches while the FGSM accuracy soars).
  :class:`AdversarialTrainer` probes PGD accuracy a few times per epoch and, when it collapses,
  warns and falls back to PGD training (``co_action="fallback"``), stops with the last good
  weights (``"stop"``) or only warns (``"warn"``).

Drop-in use in your own loop (the attack runs in eval mode on the model and leaves parameter
gradients alone; only the returned loss carries gradients)::

    from audit.robustness.training import adversarial_loss

    for x, y in loader:
        loss = adversarial_loss(model, x, y, method="pgd", eps=0.1)
        opt.zero_grad(); loss.backward(); opt.step()

The whole loop (epsilon warm-up, validation, best-robust checkpoint, atomic per-epoch
checkpoints with exact resume, DistributedDataParallel) is :class:`AdversarialTrainer`.

Exactness: the random starts of a global batch are drawn once from the trainer's attack
generator and sliced per rank, the shuffling generator is shared by all ranks, and each rank's
loss is scaled so that DDP's gradient average equals the single-process mean over the global
batch. Dropout masks are drawn by each rank's own torch generator, so with dropout a
distributed run is statistically, not numerically, equivalent to a single-process run.
"""

from __future__ import annotations

import copy
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audit.errors import CheckpointError, UsageError
from audit.io import atomic_save
from audit.robustness.attacks import FGSM, PGD, Norm

Method = Literal["pgd", "trades", "fast"]
METHODS: tuple[str, ...] = ("pgd", "trades", "fast")
CoAction = Literal["fallback", "stop", "warn"]
CHECKPOINT_VERSION = 1

__all__ = [
    "METHODS", "AdversarialBatch", "AdversarialTrainer", "CatastrophicOverfittingWarning",
    "CoMonitor", "Distributed", "EpochStats", "TrainConfig", "adversarial_batch",
    "adversarial_loss", "eps_schedule", "init_distributed", "random_shift",
    "random_unit_noise",
]


# --------------------------------------------------------------------------- the loss


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


def _per_sample(v: float | Tensor, x: Tensor) -> float | Tensor:
    if isinstance(v, Tensor) and v.ndim:
        return v.view(-1, *([1] * (x.ndim - 1)))
    return v


def _inner(model: nn.Module) -> nn.Module:
    """The module to attack: DDP's wrapped module (the attack must not trigger DDP's gradient
    synchronisation; all ranks hold the same weights)."""
    inner = getattr(model, "module", None)
    if isinstance(model, nn.parallel.DistributedDataParallel) and isinstance(inner, nn.Module):
        return inner
    return model


@contextmanager
def _mode(model: nn.Module, mode: Literal["eval", "train"]) -> Iterator[None]:
    was = model.training
    model.train(mode == "train")
    try:
        yield
    finally:
        model.train(was)


def _kl(p_logits: Tensor, q_logits: Tensor) -> Tensor:
    """Per-sample ``KL(softmax(p) || softmax(q))``."""
    log_p = F.log_softmax(p_logits, dim=1)
    return (log_p.exp() * (log_p - F.log_softmax(q_logits, dim=1))).sum(dim=1)


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
    attack_mode: Literal["eval", "train"] = "eval",
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
        kind: Literal["uniform", "normal"] = "normal" if method == "trades" else "uniform"
        noise = random_unit_noise(tuple(x.shape), norm, generator, kind)
    noise = noise.to(device=x.device, dtype=x.dtype)
    e = eps.to(device=x.device, dtype=x.dtype) if isinstance(eps, Tensor) else float(eps)
    target = _inner(model)
    if n == 0:
        x_adv = x
    elif method == "trades":
        with _mode(target, attack_mode), torch.no_grad():
            clean = target(x)

        def kl_from_clean(logits: Tensor, _y: Tensor) -> Tensor:
            return _kl(clean, logits)

        start = (x + 0.001 * noise).clamp(*bounds)
        attack = PGD(norm=norm, steps=steps, rel_step=rel_step, random_start=False,
                     loss=kl_from_clean, early_stop=False, check_success=False, bounds=bounds)
        with _mode(target, attack_mode):
            x_adv = attack(target, x, y, eps=e, x_init=start).x_adv
    else:
        start = (x + _per_sample(e, x) * noise).clamp(*bounds)
        if method == "fast":
            attack = FGSM(norm=norm, rel_step=1.25 if rel_step is None else rel_step,
                          random_start=False, early_stop=False, check_success=False,
                          bounds=bounds)
        else:
            attack = PGD(norm=norm, steps=steps, rel_step=rel_step, random_start=False,
                         early_stop=False, check_success=False, bounds=bounds)
        with _mode(target, attack_mode):
            x_adv = attack(target, x, y, eps=e, x_init=start).x_adv
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


def adversarial_loss(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    method: Method | str = "pgd",
    eps: float | Tensor = 0.1,
    *,
    norm: Norm = "linf",
    steps: int = 10,
    rel_step: float | None = None,
    beta: float = 6.0,
    bounds: tuple[float, float] = (0.0, 1.0),
    generator: torch.Generator | None = None,
    attack_mode: Literal["eval", "train"] = "eval",
    reduction: Literal["mean", "sum", "none"] = "mean",
) -> Tensor:
    """The adversarial training loss of ``model`` on ``(x, y)``: call ``.backward()`` on it.

    - ``method``: ``"pgd"`` (Madry), ``"trades"`` (Zhang; ``beta`` weighs the KL term) or
      ``"fast"`` (FGSM with a random start, Wong et al.; step ``1.25 eps`` unless ``rel_step``).
    - ``eps``: the budget in input units (pixels in [0, 1] for the bundled image models), a
      float or a per-sample tensor ``(N,)``; ``norm``: ``"linf"`` or ``"l2"``.
    - ``steps``/``rel_step``: PGD and TRADES attack steps and step size as a fraction of eps
      (default ``2.5 / steps``).
    - ``bounds``: the input's value range (the card's ``input.range``).
    - ``generator``: random starts (default: torch's global generator).
    - ``attack_mode``: the model mode while attacking (``"eval"``: dropout/batch-norm frozen,
      as in the TRADES reference; ``"train"`` as in Madry's and Rice et al.'s code).

    Works for any classifier taking a float tensor: images (N, C, H, W) or tabular rows (N, D).
    """
    out = adversarial_batch(model, x, y, method=method, eps=eps, norm=norm, steps=steps,
                            rel_step=rel_step, beta=beta, bounds=bounds, generator=generator,
                            attack_mode=attack_mode)
    if reduction == "none":
        return out.loss
    return out.loss.sum() if reduction == "sum" else out.loss.mean()


def random_shift(x: Tensor, generator: torch.Generator, max_shift: int = 1) -> Tensor:
    """Translate each image (N, C, H, W) by up to ``max_shift`` pixels in each direction, with
    zero fill: the usual augmentation for small images (``--augment shift``)."""
    if x.ndim != 4:
        raise UsageError("--augment shift needs images (N, C, H, W); use --augment none for "
                         "tabular data")
    n, c, h, w = x.shape
    pad = F.pad(x, (max_shift,) * 4)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :]
    return pad[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None],
               rows, cols]


def eps_schedule(progress: float, eps: float, warmup_epochs: float) -> float:
    """Epsilon after ``progress`` epochs (fractional) with a linear warm-up from 0 to ``eps``
    over ``warmup_epochs`` (Gowal et al. 2018 and most PGD-AT recipes ramp the budget)."""
    if warmup_epochs <= 0:
        return eps
    return eps * min(1.0, max(progress, 0.0) / warmup_epochs)


# --------------------------------------------------------------------------- distributed


@dataclass(frozen=True)
class Distributed:
    """This process's place in a distributed run (``world_size == 1``: a single process)."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Only the main process writes files and shows progress."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def sum(self, values: list[float]) -> list[float]:
        """Sum ``values`` over all ranks (float64)."""
        if not self.enabled:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return [float(v) for v in t.cpu()]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (on every rank)."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj)
        return out

    def shard(self, n: int) -> tuple[int, int]:
        """This rank's slice ``[lo, hi)`` of ``n`` items split as evenly as possible."""
        base, extra = divmod(n, self.world_size)
        lo = self.rank * base + min(self.rank, extra)
        return lo, lo + base + (1 if self.rank < extra else 0)


def init_distributed() -> Distributed:
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE``,
    ``RANK``, ``LOCAL_RANK``): NCCL with one GPU per process when CUDA is there, gloo on CPU.
    Without ``torchrun`` (or with one process) returns a single-process :class:`Distributed`.
    """
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    cuda = torch.cuda.is_available()
    if world <= 1:
        return Distributed(device=torch.device("cuda" if cuda else "cpu"))
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if cuda else "gloo"
    device = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return Distributed(rank=dist.get_rank(), world_size=dist.get_world_size(), device=device,
                       backend=backend)


# --------------------------------------------------------------------------- configuration


@dataclass
class TrainConfig:
    """Settings of an adversarial training run (all have defaults; ``eps`` in input units).

    ``batch_size`` is the global batch (split over ranks in a distributed run). ``steps``,
    ``rel_step``: the PGD/TRADES attack; ``eval_steps``: the PGD attack that measures robust
    validation accuracy each epoch (and probes for catastrophic overfitting). ``co_*``: the
    catastrophic-overfitting monitor of the fast method: ``co_checks`` times per epoch the PGD
    accuracy of ``co_probe`` fixed training samples at the full ``eps`` is measured; a drop by
    more than ``co_drop`` (absolute) below the best value so far is a collapse.
    """

    method: Method = "pgd"
    eps: float = 0.1
    norm: Norm = "linf"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: Literal["adam", "sgd"] = "adam"
    schedule: Literal["onecycle", "cosine", "constant"] = "onecycle"
    steps: int = 10
    rel_step: float | None = None
    beta: float = 6.0
    warmup_epochs: float = 0.0
    attack_mode: Literal["eval", "train"] = "eval"
    eval_steps: int = 10
    co_action: CoAction = "fallback"
    co_checks: int = 2
    co_probe: int = 64
    co_drop: float = 0.2
    bounds: tuple[float, float] = (0.0, 1.0)
    seed: int = 0

    def validate(self) -> None:
        """Raise :class:`UsageError` naming the first invalid setting."""
        checks: list[tuple[bool, str]] = [
            (self.method in METHODS, f"method must be one of {', '.join(METHODS)}, got "
                                     f"{self.method!r}"),
            (self.norm in ("linf", "l2"), f"norm must be linf or l2, got {self.norm!r}"),
            (math.isfinite(self.eps) and self.eps > 0, f"eps must be > 0, got {self.eps}"),
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}"),
            (self.lr > 0, f"learning rate must be > 0, got {self.lr}"),
            (self.optimizer in ("adam", "sgd"), f"optimizer must be adam or sgd, got "
                                                f"{self.optimizer!r}"),
            (self.schedule in ("onecycle", "cosine", "constant"),
             f"schedule must be onecycle, cosine or constant, got {self.schedule!r}"),
            (self.steps >= 1 and self.eval_steps >= 1, "attack steps must be >= 1"),
            (self.beta >= 0, f"beta must be >= 0, got {self.beta}"),
            (self.warmup_epochs >= 0, "warm-up epochs must be >= 0"),
            (self.attack_mode in ("eval", "train"), "attack mode must be eval or train"),
            (self.co_action in ("fallback", "stop", "warn"),
             f"co_action must be fallback, stop or warn, got {self.co_action!r}"),
            (self.co_checks >= 0 and self.co_probe >= 1 and 0 < self.co_drop <= 1,
             "co_checks >= 0, co_probe >= 1 and 0 < co_drop <= 1 are required"),
            (self.bounds[0] < self.bounds[1], f"bounds must be (low, high), got {self.bounds}"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["bounds"] = list(self.bounds)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        if "bounds" in kw:
            kw["bounds"] = (float(kw["bounds"][0]), float(kw["bounds"][1]))
        return cls(**kw)


# Settings that must match for --resume to continue a run (the others only affect logging).
_RESUME_KEYS = ("method", "eps", "norm", "epochs", "batch_size", "lr", "weight_decay",
                "optimizer", "schedule", "steps", "rel_step", "beta", "warmup_epochs",
                "attack_mode", "eval_steps", "co_action", "co_checks", "co_probe", "co_drop",
                "bounds", "seed")


# --------------------------------------------------------------------------- monitoring


class CatastrophicOverfittingWarning(UserWarning):
    """Robust accuracy collapsed during fast (FGSM) adversarial training."""


@dataclass
class CoMonitor:
    """Detects catastrophic overfitting from PGD and FGSM accuracies on a fixed probe.

    Catastrophic overfitting (Wong et al. 2020; Andriushchenko & Flammarion 2020) is the model
    becoming robust to the single-step training attack but not to multi-step PGD: PGD accuracy
    collapses within a few batches while FGSM accuracy stays high. ``update(pgd, fgsm)`` returns
    True when the PGD accuracy fell more than ``drop`` below the best value seen so far *and*
    the FGSM accuracy is more than ``drop`` above it (an unstable model whose accuracies fall
    together is not flagged), once the best PGD accuracy has exceeded ``floor`` (what a constant
    classifier scores on the probe: the share of its most common class; the flailing of an
    untrained model is not a collapse). Accuracies are measured at the full epsilon, so the
    warm-up does not trigger it.
    """

    drop: float = 0.2
    floor: float = 0.0
    best: float = -1.0
    history: list[list[float]] = field(default_factory=list)

    def update(self, pgd: float, fgsm: float) -> bool:
        self.history.append([pgd, fgsm])
        if pgd > self.best:
            self.best = pgd
            return False
        return (self.best > self.floor and self.best - pgd > self.drop
                and fgsm - pgd > self.drop)

    def state_dict(self) -> dict[str, Any]:
        return {"drop": self.drop, "floor": self.floor, "best": self.best,
                "history": [list(h) for h in self.history]}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.drop, self.floor, self.best = float(d["drop"]), float(d["floor"]), float(d["best"])
        self.history = [list(h) for h in d["history"]]


@dataclass
class EpochStats:
    """One epoch's numbers (what the progress bar and the card show)."""

    epoch: int
    method: str
    eps: float
    lr: float
    train_loss: float
    train_robust_accuracy: float
    val_clean_accuracy: float
    val_robust_accuracy: float
    seconds: float
    cpu_seconds: float = 0.0
    val_seconds: float = 0.0
    best: bool = False
    events: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- RNG state


def _rng_state() -> dict[str, Any]:
    """This process's global generators (torch, numpy, python) as weights_only-safe objects."""
    np_state = np.random.get_state()
    assert isinstance(np_state, tuple)
    name, keys, pos, has_gauss, cached = np_state
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": _py_state(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _py_state(s: Any) -> Any:
    return [_py_state(v) for v in s] if isinstance(s, tuple | list) else s


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _cpu_state(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def _to_cpu(obj: Any) -> Any:
    """Deep copy with every tensor on the CPU (optimizer states)."""
    if isinstance(obj, Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_cpu(v) for v in obj)
    return copy.deepcopy(obj)


# --------------------------------------------------------------------------- the trainer


ProgressFn = Callable[[int, int, int], None]
EpochFn = Callable[[EpochStats], None]


class AdversarialTrainer:
    """Adversarial training loop: epsilon warm-up, per-epoch validation (clean and PGD robust
    accuracy), the best-robust weights kept, catastrophic-overfitting monitoring for the fast
    method, atomic per-epoch checkpoints with exact resume, and DistributedDataParallel.

    ::

        trainer = AdversarialTrainer(model, TrainConfig(method="trades", eps=0.1, epochs=20),
                                     train=(x_train, y_train), val=(x_val, y_val),
                                     checkpoint="runs/ckpt.pt")
        history = trainer.fit(resume=True)      # continues from runs/ckpt.pt if it exists
        model.load_state_dict(trainer.best_state)

    ``train`` and ``val`` are CPU tensors (the whole data set; every rank gets all of it and
    takes its shard of each global batch). ``augment(x, generator) -> x`` optionally transforms
    a global batch before sharding (use the generator for randomness so resume is exact).
    ``model`` is trained in place; in a distributed run (``dist``, see
    :func:`init_distributed`) it is wrapped in DistributedDataParallel and only rank 0 writes
    the checkpoint. For bitwise-exact resume on CPU, call
    ``torch.use_deterministic_algorithms(True)`` first (the ``audit harden`` command does).
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        train: tuple[Tensor, Tensor],
        val: tuple[Tensor, Tensor] | None = None,
        *,
        checkpoint: str | Path | None = None,
        dist: Distributed | None = None,
        augment: Callable[[Tensor, torch.Generator], Tensor] | None = None,
        on_batch: ProgressFn | None = None,
        on_epoch: EpochFn | None = None,
    ) -> None:
        config.validate()
        self.config = config
        self.dist = dist or Distributed(device=next(model.parameters()).device)
        self.x, self.y = train[0].detach().cpu(), train[1].detach().cpu()
        if len(self.x) == 0:
            raise UsageError("no training data")
        self.val = (val[0].detach().cpu(), val[1].detach().cpu()) if val is not None else None
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.augment = augment
        self.on_batch, self.on_epoch = on_batch, on_epoch
        self.module = model.to(self.dist.device)
        self.model: nn.Module = self.module
        if self.dist.enabled:
            ids = [self.dist.device.index] if self.dist.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(self.module, device_ids=ids)
        self.optimizer = self._optimizer()
        self.scheduler = self._scheduler()
        self.data_gen = torch.Generator().manual_seed(config.seed)
        self.attack_gen = torch.Generator().manual_seed(config.seed + 1)
        self.aug_gen = torch.Generator().manual_seed(config.seed + 2)
        self.epoch = 0
        self.method: Method = config.method
        self.history: list[EpochStats] = []
        self.best_state: dict[str, Tensor] = _cpu_state(self.module)
        self.best_epoch = -1
        self.best_score: tuple[float, float] = (-1.0, -1.0)
        self.monitor = CoMonitor(drop=config.co_drop)
        self.co_snapshot: dict[str, Any] | None = None
        self.events: list[str] = []
        self.train_seconds = 0.0
        self.train_cpu_seconds = 0.0
        self.val_seconds = 0.0
        self.val_cpu_seconds = 0.0
        self.stopped = False
        probe = torch.randperm(len(self.x), generator=torch.Generator().manual_seed(
            config.seed + 3))[: config.co_probe]
        self.probe = (self.x[probe], self.y[probe])
        counts = torch.bincount(self.probe[1]) if len(probe) else torch.zeros(1)
        self.monitor.floor = float(counts.max()) / max(len(probe), 1)

    # ----------------------------------------------------------------- setup

    def _optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        params = self.module.parameters()
        if c.optimizer == "sgd":
            return torch.optim.SGD(params, lr=c.lr, momentum=0.9, weight_decay=c.weight_decay,
                                   nesterov=True)
        return torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)

    @property
    def batches_per_epoch(self) -> int:
        return (len(self.x) + self.config.batch_size - 1) // self.config.batch_size

    def _scheduler(self) -> torch.optim.lr_scheduler.LRScheduler:
        c = self.config
        total = c.epochs * self.batches_per_epoch
        if c.schedule == "onecycle":
            return torch.optim.lr_scheduler.OneCycleLR(self.optimizer, max_lr=c.lr,
                                                       total_steps=total)
        if c.schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=total)
        return torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda _: 1.0)

    # ----------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where the last finished epoch ended."""
        rng = self.dist.gather(_rng_state())
        return {
            "version": CHECKPOINT_VERSION,
            "config": self.config.to_dict(),
            "world_size": self.dist.world_size,
            "epoch": self.epoch,
            "method": self.method,
            "stopped": self.stopped,
            "model": _cpu_state(self.module),
            "optimizer": _to_cpu(self.optimizer.state_dict()),
            "scheduler": self.scheduler.state_dict(),
            "generators": {"data": self.data_gen.get_state(),
                           "attack": self.attack_gen.get_state(),
                           "augment": self.aug_gen.get_state()},
            "rng": rng,
            "best": {"epoch": self.best_epoch, "score": list(self.best_score),
                     "state": self.best_state},
            "history": [s.to_dict() for s in self.history],
            "monitor": self.monitor.state_dict(),
            "co_snapshot": self.co_snapshot,
            "events": list(self.events),
            "train_seconds": self.train_seconds,
            "train_cpu_seconds": self.train_cpu_seconds,
            "val_seconds": self.val_seconds,
            "val_cpu_seconds": self.val_cpu_seconds,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (raises :class:`CheckpointError` when the settings
        differ from this trainer's)."""
        if state.get("version") != CHECKPOINT_VERSION:
            raise CheckpointError(f"checkpoint format {state.get('version')} is not "
                                  f"{CHECKPOINT_VERSION}; delete the checkpoint to start over")
        saved = TrainConfig.from_dict(state["config"]).to_dict()
        mine = self.config.to_dict()
        diffs = [f"{k} {saved[k]} (checkpoint) vs {mine[k]}" for k in _RESUME_KEYS
                 if saved.get(k) != mine.get(k)]
        if diffs:
            raise CheckpointError(f"the checkpoint {self.checkpoint or ''} was written with "
                                  "other settings: " + "; ".join(diffs[:4]) + "; resume with "
                                  "the same settings, or delete the checkpoint to start over")
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        gens = state["generators"]
        self.data_gen.set_state(gens["data"])
        self.attack_gen.set_state(gens["attack"])
        self.aug_gen.set_state(gens["augment"])
        rng = state["rng"]
        _set_rng_state(rng[self.dist.rank] if self.dist.rank < len(rng) else rng[0])
        self.epoch = int(state["epoch"])
        method = str(state["method"])
        self.method = "trades" if method == "trades" else "fast" if method == "fast" else "pgd"
        self.stopped = bool(state["stopped"])
        best = state["best"]
        self.best_epoch = int(best["epoch"])
        self.best_score = (float(best["score"][0]), float(best["score"][1]))
        self.best_state = best["state"]
        self.history = [EpochStats(**h) for h in state["history"]]
        self.monitor.load_state_dict(state["monitor"])
        self.co_snapshot = state["co_snapshot"]
        self.events = list(state["events"])
        self.train_seconds = float(state["train_seconds"])
        self.train_cpu_seconds = float(state["train_cpu_seconds"])
        self.val_seconds = float(state["val_seconds"])
        self.val_cpu_seconds = float(state["val_cpu_seconds"])

    def save_checkpoint(self) -> None:
        """Write the checkpoint atomically (rank 0 only; every rank must call this)."""
        state = self.state_dict()  # collective: all ranks gather their RNG states
        if self.checkpoint is not None and self.dist.is_main:
            target = self.checkpoint
            atomic_save(target, lambda p: torch.save(state, p))
        self.dist.barrier()

    def load_checkpoint(self) -> bool:
        """Restore from the checkpoint file if it exists; returns whether it did."""
        if self.checkpoint is None or not self.checkpoint.is_file():
            return False
        try:
            state = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
        except Exception as e:
            raise CheckpointError(f"cannot read checkpoint {self.checkpoint} ({type(e).__name__}"
                                  f": {str(e)[:120]}); delete it to start over") from None
        self.load_state_dict(state)
        return True

    # ----------------------------------------------------------------- training

    @property
    def finished(self) -> bool:
        return self.stopped or self.epoch >= self.config.epochs

    def fit(self, resume: bool = False) -> list[EpochStats]:
        """Train for the remaining epochs (all of them unless ``resume`` found a checkpoint)
        and return the history. The best-robust weights are in :attr:`best_state`; the model
        holds the last epoch's weights."""
        if resume:
            self.load_checkpoint()
        while not self.finished:
            self.train_epoch()
            self.save_checkpoint()
        return self.history

    def _eps(self, progress: float) -> float:
        return eps_schedule(progress, self.config.eps, self.config.warmup_epochs)

    def train_epoch(self) -> EpochStats:
        """One epoch over the training data, then validation; updates the best weights."""
        c, d = self.config, self.dist
        start, cpu_start = time.perf_counter(), time.process_time()
        nb = self.batches_per_epoch
        perm = torch.randperm(len(self.x), generator=self.data_gen)
        checks = {((k + 1) * nb) // (c.co_checks + 1) for k in range(c.co_checks)} \
            if c.method == "fast" else set()
        self.model.train()
        totals = [0.0, 0.0, 0.0]  # loss sum, robust correct, samples (this rank)
        events: list[str] = []
        eps = 0.0
        for b in range(nb):
            idx = perm[b * c.batch_size:(b + 1) * c.batch_size]
            n_global = int(idx.numel())
            xb, yb = self.x[idx], self.y[idx]
            if self.augment is not None:
                xb = self.augment(xb, self.aug_gen)
            kind: Literal["uniform", "normal"] = "normal" if self.method == "trades" \
                else "uniform"
            noise = random_unit_noise(tuple(xb.shape), c.norm, self.attack_gen, kind)
            lo, hi = d.shard(n_global)
            xl, yl = xb[lo:hi].to(d.device), yb[lo:hi].to(d.device)
            eps = self._eps(self.epoch + b / nb)
            out = adversarial_batch(
                self.model, xl, yl, method=self.method, eps=eps, norm=c.norm,
                steps=c.steps, rel_step=c.rel_step, beta=c.beta, bounds=c.bounds,
                noise=noise[lo:hi], attack_mode=c.attack_mode)
            # DDP averages gradients over ranks: scale so the result is the global-batch mean
            loss = out.loss.sum() * (d.world_size / n_global)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            totals[0] += float(out.loss.detach().sum())
            totals[1] += float((out.logits_adv.argmax(1) == yl).sum())
            totals[2] += hi - lo
            if self.on_batch is not None and d.is_main:
                self.on_batch(self.epoch, b + 1, nb)
            if b + 1 in checks and self.method == "fast":
                event = self._check_overfitting(b)
                if event:
                    events.append(event)
                    if self.stopped:
                        break
        loss_sum, correct, count = d.sum(totals)
        val_start, val_cpu_start = time.perf_counter(), time.process_time()
        clean, robust = self.evaluate()
        val_seconds = time.perf_counter() - val_start
        self.val_seconds += val_seconds
        self.val_cpu_seconds += time.process_time() - val_cpu_start
        self.epoch += 1
        self.train_seconds += time.perf_counter() - start
        self.train_cpu_seconds += time.process_time() - cpu_start
        score = (robust, clean)
        is_best = score >= self.best_score  # ties: the later (longer-trained) epoch
        if is_best:
            self.best_score, self.best_epoch = score, self.epoch
            self.best_state = _cpu_state(self.module)
        stats = EpochStats(
            epoch=self.epoch, method=self.method, eps=eps,
            lr=float(self.optimizer.param_groups[0]["lr"]),
            train_loss=loss_sum / max(count, 1), train_robust_accuracy=correct / max(count, 1),
            val_clean_accuracy=clean, val_robust_accuracy=robust,
            seconds=time.perf_counter() - start, cpu_seconds=time.process_time() - cpu_start,
            val_seconds=val_seconds, best=is_best, events=events)
        self.history.append(stats)
        self.events.extend(events)
        if self.on_epoch is not None and d.is_main:
            self.on_epoch(stats)
        return stats

    def _check_overfitting(self, batch: int) -> str:
        """Probe PGD accuracy; on a collapse apply ``co_action`` and return a message."""
        c = self.config
        gen = torch.Generator().manual_seed(c.seed * 1_000_003 + self.epoch * 1009 + batch)
        fgsm_attack = FGSM(norm=c.norm, rel_step=1.25 if c.rel_step is None else c.rel_step,
                           random_start=False, bounds=c.bounds)
        _, (acc, fgsm) = self._accuracies(
            self.probe, gen, [self._pgd(max(c.eval_steps // 2, 1)), fgsm_attack])
        if not self.monitor.update(acc, fgsm):
            self.co_snapshot = {"model": _cpu_state(self.module),
                                "optimizer": _to_cpu(self.optimizer.state_dict())}
            return ""
        msg = (f"catastrophic overfitting in epoch {self.epoch + 1}: PGD accuracy on "
               f"{len(self.probe[0])} training samples fell from {self.monitor.best:.1%} to "
               f"{acc:.1%} while FGSM accuracy is {fgsm:.1%}")
        if c.co_action == "warn":
            msg += "; continuing (co_action=warn)"
        else:
            if self.co_snapshot is not None:
                self.module.load_state_dict(self.co_snapshot["model"])
                self.optimizer.load_state_dict(self.co_snapshot["optimizer"])
            if c.co_action == "fallback":
                self.method = "pgd"
                msg += "; restored the last good weights and switched to PGD training"
            else:
                self.stopped = True
                msg += "; restored the last good weights and stopped (co_action=stop)"
        if self.dist.is_main:
            warnings.warn(msg, CatastrophicOverfittingWarning, stacklevel=2)
        return msg

    @torch.no_grad()
    def _clean(self, x: Tensor, y: Tensor) -> Tensor:
        return self.module(x).argmax(1) == y

    def _pgd(self, steps: int) -> PGD:
        c = self.config
        return PGD(norm=c.norm, steps=steps, random_start=False, early_stop=True,
                   bounds=c.bounds)

    def _accuracies(self, data: tuple[Tensor, Tensor], gen: torch.Generator,
                    attacks: list[PGD] | None = None, batch: int = 512
                    ) -> tuple[float, list[float]]:
        """Clean accuracy and robust accuracy against each attack (default: PGD with
        ``eval_steps``) on ``data`` at the full eps, every attack from the same random start
        drawn from ``gen``; sharded over ranks."""
        c, d = self.config, self.dist
        attacks = attacks or [self._pgd(c.eval_steps)]
        x_all, y_all = data
        noise = random_unit_noise(tuple(x_all.shape), c.norm, gen)
        lo, hi = d.shard(len(x_all))
        counts = [0.0] * (1 + len(attacks))
        with _mode(self.module, "eval"):
            for i in range(lo, hi, batch):
                j = min(i + batch, hi)
                x, y = x_all[i:j].to(d.device), y_all[i:j].to(d.device)
                ok = self._clean(x, y)
                start = (x + c.eps * noise[i:j].to(d.device)).clamp(*c.bounds)
                counts[0] += float(ok.sum())
                for k, attack in enumerate(attacks):
                    r = attack(self.module, x, y, eps=c.eps, x_init=start)
                    counts[k + 1] += float((ok & ~r.success).sum())
        totals = d.sum(counts)
        n = max(len(x_all), 1)
        return totals[0] / n, [t / n for t in totals[1:]]

    def evaluate(self) -> tuple[float, float]:
        """(clean, PGD robust) validation accuracy (training data's probe when no val set)."""
        gen = torch.Generator().manual_seed(self.config.seed + 4)
        clean, (robust,) = self._accuracies(self.val if self.val is not None else self.probe,
                                            gen)
        return clean, robust
