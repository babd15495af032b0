"""The attack contract: one final ``__call__`` for every attack; a subclass writes ``run()``.

``attack(model, x, y, *, eps) -> AttackResult`` (as foolbox's ``FixedEpsilonAttack``):
:meth:`Attack.__call__` validates ``eps`` and turns it into a per-sample tensor, projects an
optional warm start onto the ball, wraps the model in :class:`CountingModel` (per-sample
forward and backward passes), times the run, and builds the :class:`AttackResult`, where
``success[i]`` means ``x_adv[i]`` is misclassified *and* within ``eps`` of ``x[i]``. The
subclass's :meth:`Attack.run` only searches: it returns the points it found and which of them
it saw misclassified (:class:`Found`).

Every attack class declares ``kind`` (how it reaches the model, shown in the report),
``role`` (what the gradient-masking diagnostics use it for: ``"single-step"``,
``"iterative"``, ``"black-box"``, ``"minimal-norm"``) and the ``norms`` it supports.
"""

from __future__ import annotations

import dataclasses
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, final

import torch
from torch import Tensor, nn

from audit.budget import BestSeen, Budget, BudgetExhausted, CountingModel, Stop
from audit.distributed import current, units
from audit.robustness.ops import Norm, perturbation_norms, project

AttackKind = Literal["white-box", "black-box", "decision-based", "minimal"]
Role = Literal["single-step", "iterative", "black-box", "minimal-norm"]
ROLES: tuple[Role, ...] = ("single-step", "iterative", "black-box", "minimal-norm")

__all__ = ["NORM_INFO", "ROLES", "Attack", "AttackKind", "AttackResult", "Budget",
           "CountingModel", "Found", "Role", "run_batched"]

NORM_INFO = ("minimal_norms",)
"""``info`` entries that are perturbation sizes (rescaled with the value range)."""


@dataclass
class AttackResult:
    """What one attack produced on a batch.

    ``x_adv`` (N, ...) adversarial inputs (for failed samples: the attack's last point),
    ``success`` (N,) bool, ``norms`` (N,) perturbation sizes in ``norm``, ``time`` seconds,
    ``evaluations`` per-sample forward passes, ``gradients`` per-sample backward passes,
    ``info`` attack-specific traces (per-sample tensors such as ``success_step``); ``kind``
    and ``role`` are the attack class's. ``stopped`` names the budget that stopped the attack
    ("" when it finished) and ``finished`` (N,) says which samples it finished; a stopped
    sample's result is the best adversarial seen before the stop (:mod:`.budget`).
    """

    name: str
    norm: Norm
    eps: float | None
    x_adv: Tensor
    success: Tensor
    norms: Tensor
    time: float
    evaluations: int
    gradients: int = 0
    info: dict[str, Any] = field(default_factory=dict)
    kind: str = ""
    role: str = ""
    stopped: Stop = ""
    finished: Tensor | None = None

    def __len__(self) -> int:
        return int(self.success.shape[0])

    @property
    def success_rate(self) -> float:
        """Share of samples where the attack succeeded."""
        return float(self.success.float().mean()) if len(self) else math.nan

    def found_norms(self) -> Tensor:
        """Perturbation size where the attack succeeded, ``inf`` where it failed."""
        inf = torch.full_like(self.norms, math.inf)
        return torch.where(self.success.to(self.norms.device), self.norms, inf)


@dataclass
class Found:
    """What :meth:`Attack.run` returns: the points it ends on, which of them it saw
    misclassified (``adversarial``, (N,) bool), and attack-specific ``info``."""

    x_adv: Tensor
    adversarial: Tensor
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class Attack(ABC):
    """Base of every attack. Subclasses are dataclasses with a ``norm`` field and their own
    settings, declare the class attributes below (in the class line, see
    :meth:`__init_subclass__`) and implement :meth:`run`; ``__call__`` is final. Every attack
    also takes the keyword fields ``bounds`` (the model's value range), ``generator`` (the
    random source of attacks that draw; the others ignore it), ``name``
    (:meth:`default_name` when empty) and ``budget`` (:class:`Budget`: evaluations per sample
    and wall time; None: unlimited).

    Whatever the bounds, ``run`` sees inputs in [0, 1]: ``__call__`` maps the range onto it
    (and epsilon with it) and maps the result back, so step sizes and thresholds written for
    [0, 1] (foolbox's HopSkipJump clips to it) hold for 0..255 or [-1, 1] inputs too."""

    kind: ClassVar[AttackKind]
    role: ClassVar[Role]
    norms: ClassVar[tuple[Norm, ...]] = ("linf", "l2")
    title: ClassVar[str] = ""
    needs_eps: ClassVar[bool] = True
    """False for minimal-perturbation attacks: ``eps=None`` asks for the smallest adversarial."""
    warm_start: ClassVar[bool] = False
    """True when ``run`` accepts ``x_init`` (a start point replacing the random one)."""

    bounds: tuple[float, float] = (0.0, 1.0)
    generator: torch.Generator | None = None
    name: str = ""
    budget: Budget | None = None
    if TYPE_CHECKING:  # a field of each subclass, declared there with its default
        norm: Norm

    def __init_subclass__(cls, **declared: Any) -> None:
        """The class attributes can be given in the class line:
        ``class PGD(Attack, kind="white-box", role="iterative", title="PGD")``."""
        for key in [k for k in declared if k in _DECLARED]:
            setattr(cls, key, declared.pop(key))
        super().__init_subclass__(**declared)
        if "__call__" in cls.__dict__:
            raise TypeError(f"{cls.__name__} overrides Attack.__call__; implement run() instead")
        if "role" in cls.__dict__ and cls.role not in ROLES:
            raise TypeError(f"{cls.__name__}.role must be one of {', '.join(ROLES)}")

    def __post_init__(self) -> None:
        if self.norm not in self.norms:
            raise ValueError(f"{type(self).__name__} supports the "
                             f"{' and '.join(self.norms)} norms only, not {self.norm!r}")
        if not self.name:
            self.name = self.default_name()

    def default_name(self) -> str:
        """The name when none is given: the class's ``title``, else its name."""
        return self.title or type(self).__name__

    def applies(self, num_classes: int) -> str | None:
        """Reason the attack cannot run on a model with ``num_classes`` outputs, or None."""
        return None

    @abstractmethod
    def run(self, model: nn.Module, x: Tensor, y: Tensor, eps: Tensor | None,
            x_init: Tensor | None) -> Found:
        """Search adversarials for ``x`` (detached) with labels ``y``. ``eps`` is (N,) on
        ``x``'s device (None only when ``needs_eps`` is False); ``x_init`` is an optional
        start already inside the ball. ``model`` counts its own evaluations."""

    @final
    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, *,
                 eps: float | Tensor | None = None, x_init: Tensor | None = None
                 ) -> AttackResult:
        lo, hi = float(self.bounds[0]), float(self.bounds[1])
        if (lo, hi) == (0.0, 1.0):
            return _attack(self, model, x, y, eps, x_init)
        return _rescaled(self, model, x, y, eps, x_init, lo, hi - lo)


_DECLARED = frozenset({"kind", "role", "norms", "title", "needs_eps", "warm_start"})


def _attack(attack: Attack, model: nn.Module, x: Tensor, y: Tensor,
            eps: float | Tensor | None, x_init: Tensor | None) -> AttackResult:
    """The call contract in the [0, 1] range: validate, run within the budget, check."""
    t0 = time.perf_counter()
    x, y = x.detach(), y.detach()
    e = _eps_per_sample(attack, eps, x)
    start = _warm_start(attack, x_init, x, e)
    budget = attack.budget
    tracker = BestSeen(x, y, e, lambda d: perturbation_norms(d, attack.norm),
                       attack.bounds) if budget else None
    counting = CountingModel(
        model, tracker=tracker, deadline=budget.deadline(t0) if budget else None,
        limit=budget.evaluations * int(x.shape[0])
        if budget and budget.evaluations is not None else None)
    stopped: Stop = ""
    try:
        if counting.deadline is not None and counting.deadline <= t0:
            raise BudgetExhausted("time")
        found = attack.run(counting, x, y, e, start)
    except BudgetExhausted as stop:
        assert tracker is not None
        stopped, found = stop.reason, _stopped(attack, counting, tracker, x)
    if budget is not None:
        budget.spent += time.perf_counter() - t0
    x_adv = found.x_adv.detach()
    norms = perturbation_norms(x_adv - x, attack.norm)
    success = found.adversarial.detach()
    if e is not None:  # float rounding at the ball's edge is not a violation
        scale = max(abs(attack.bounds[0]), abs(attack.bounds[1]), 1.0)
        slack = 8 * torch.finfo(x.dtype).eps * scale
        success = success & (norms <= e * (1 + 1e-5) + slack)
    scalar = eps if isinstance(eps, int | float) else (
        eps if isinstance(eps, Tensor) and eps.ndim == 0 else None)
    return AttackResult(
        name=attack.name, norm=attack.norm, eps=None if scalar is None else float(scalar),
        x_adv=x_adv, success=success, norms=norms, time=time.perf_counter() - t0,
        evaluations=counting.forwards, gradients=counting.backwards, info=found.info,
        kind=attack.kind, role=attack.role, stopped=stopped,
        finished=torch.full((int(x.shape[0]),), not stopped, dtype=torch.bool))


def _stopped(attack: Attack, counting: CountingModel, tracker: BestSeen, x: Tensor) -> Found:
    """What a stopped attack reports: the best adversarial seen (the clean input where none;
    misclassified clean inputs count, checked with one pass when none was seen)."""
    if not tracker.seen:
        with torch.no_grad():
            tracker.see(x, counting.model(x))
        counting.forwards += int(x.shape[0])
    info: dict[str, Any] = {}
    if not attack.needs_eps:  # in-ball finds are upper bounds of the minimal norms too
        info["minimal_norms"] = tracker.norms.cpu()
    return Found(tracker.best, tracker.found, info)


class _Affine(nn.Module):
    """``model(lo + z * width)``: the model seen from [0, 1]."""

    def __init__(self, model: nn.Module, lo: float, width: float) -> None:
        super().__init__()
        self.model, self.lo, self.width = model, lo, width
        self.training = bool(getattr(model, "training", False))

    def forward(self, z: Tensor) -> Tensor:
        out: Tensor = self.model(self.lo + z * self.width)
        return out


def _rescaled(attack: Attack, model: nn.Module, x: Tensor, y: Tensor,
              eps: float | Tensor | None, x_init: Tensor | None, lo: float, width: float
              ) -> AttackResult:
    """Run ``attack`` in [0, 1] on the model seen through :class:`_Affine`; the result is
    mapped back (points, norms and norm-valued ``info``) and keeps the caller's ``eps``."""
    if width <= 0:
        raise ValueError(f"{attack.name}: bounds {attack.bounds} are empty")
    unit = dataclasses.replace(attack, bounds=(0.0, 1.0))  # shares budget and generator
    e = None if eps is None else eps / width
    start = None if x_init is None else (x_init.detach() - lo) / width
    r = _attack(unit, _Affine(model, lo, width), (x.detach() - lo) / width, y, e, start)
    r.x_adv = (lo + r.x_adv * width).clamp(lo, lo + width)
    r.norms = r.norms * width
    r.info = {k: (v * width if k in NORM_INFO and isinstance(v, Tensor) else v)
              for k, v in r.info.items()}
    if r.eps is not None:  # the caller's scalar, not the rescaled one
        r.eps = float(eps)  # type: ignore[arg-type]  # a scalar when r.eps is set
    return r


def _eps_per_sample(attack: Attack, eps: float | Tensor | None, x: Tensor) -> Tensor | None:
    """``eps`` as a finite, non-negative (N,) tensor on ``x``'s device (module functions, not
    methods, so no subclass can shadow them)."""
    if eps is None:
        if attack.needs_eps:
            raise ValueError(f"{attack.name} is a bounded attack: pass eps")
        return None
    n = int(x.shape[0])
    e = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
    if e.ndim == 0:
        e = e.expand(n).clone()
    elif e.numel() != n:
        raise ValueError(f"{attack.name}: eps has {e.numel()} values for {n} samples")
    else:
        e = e.reshape(-1)
    if not bool(torch.isfinite(e).all()) or bool((e < 0).any()):
        raise ValueError(f"{attack.name}: eps must be finite and non-negative")
    return e


def _warm_start(attack: Attack, x_init: Tensor | None, x: Tensor, eps: Tensor | None
                ) -> Tensor | None:
    """``x_init`` projected onto the ball and the value range."""
    if x_init is None:
        return None
    if not attack.warm_start or eps is None:
        raise ValueError(f"{attack.name} takes no x_init (warm start)")
    return project(x_init.detach(), x, eps, attack.norm, attack.bounds)


def run_batched(attack: Callable[..., AttackResult], model: nn.Module, x: Tensor, y: Tensor,
                *, eps: float | Tensor | None, batch_size: int = 256,
                device: torch.device | None = None, **kwargs: Any) -> AttackResult:
    """Run ``attack`` over ``x`` in batches (bounded memory) and join the results on the CPU.

    Extra keyword arguments (``x_init``) are sliced per batch when they are tensors with N rows.
    Each batch of the inputs moves to ``device``; the per-batch results stay there and are
    joined, then copied to the CPU once, after the loop. In a distributed audit each rank
    attacks a block of the batches (:meth:`audit.distributed.Distributed.map`).
    """
    return run_attacks([attack], model, x, y, eps=eps, batch_size=batch_size, device=device,
                       **kwargs)[0]


def run_attacks(attacks: Sequence[Callable[..., AttackResult]], model: nn.Module, x: Tensor,
                y: Tensor, *, eps: float | Tensor | None, batch_size: int = 256,
                device: torch.device | None = None, **kwargs: Any) -> list[AttackResult]:
    """:func:`run_batched` for several attacks on the same samples, as one list of (attack,
    batch) units: a distributed audit splits the units, so a suite of several attacks on a
    single batch still spreads over the ranks. A unit draws its random starts from its own
    stream, so the split does not change any attack's result."""
    n = int(x.shape[0])
    if not n:
        raise ValueError("run_batched needs at least one sample")
    dev = device or x.device
    world = current()
    spans = units(n, batch_size)

    def one(k: int, _: slice) -> tuple[AttackResult, float]:
        t0 = time.perf_counter()
        attack, sl = attacks[k // len(spans)], spans[k % len(spans)]
        kw = {key: (v[sl].to(dev) if isinstance(v, Tensor) and v.shape[:1] == (n,) else v)
              for key, v in kwargs.items()}
        e = eps[sl].to(dev) if isinstance(eps, Tensor) and eps.ndim else eps
        r = attack(model, x[sl].to(dev), y[sl].to(dev), eps=e, **kw)
        return (_on_cpu(r) if world.enabled else r), time.perf_counter() - t0

    parts = world.map(one, len(attacks) * len(spans), 1, seeded=True,
                      generators=[getattr(a, "generator", None) for a in attacks])
    out = []
    for i in range(len(attacks)):
        mine = parts[i * len(spans):(i + 1) * len(spans)]
        out.append(_on_cpu(_join([r for r, _ in mine], sum(t for _, t in mine))))
    return out


def _on_cpu(r: AttackResult) -> AttackResult:
    """``r`` with its per-sample tensors copied to the CPU."""
    r.x_adv, r.success, r.norms = r.x_adv.cpu(), r.success.cpu(), r.norms.cpu()
    if r.finished is not None:
        r.finished = r.finished.cpu()
    for key, v in r.info.items():
        if _per_sample(v, len(r)):
            r.info[key] = v.cpu()
    return r


def _per_sample(v: Any, n: int) -> bool:
    """Whether an ``info`` value is a per-sample trace (a vector of ``n`` values)."""
    return isinstance(v, Tensor) and v.ndim == 1 and v.shape[0] == n


def _join(parts: list[AttackResult], seconds: float) -> AttackResult:
    """One result from per-batch results: per-sample tensors concatenated, counts summed."""
    first = parts[0]
    info: dict[str, Any] = {}
    for key, v in first.info.items():
        if _per_sample(v, len(first)):
            info[key] = torch.cat([p.info[key].to(v.device) for p in parts])
        else:
            info[key] = v
    return AttackResult(
        name=first.name, norm=first.norm, eps=first.eps,
        x_adv=torch.cat([p.x_adv for p in parts]), success=torch.cat([p.success for p in parts]),
        norms=torch.cat([p.norms for p in parts]), time=seconds,
        evaluations=sum(p.evaluations for p in parts), gradients=sum(p.gradients for p in parts),
        info=info, kind=first.kind, role=first.role,
        stopped=next((p.stopped for p in parts if p.stopped), ""),
        finished=torch.cat([_finished(p) for p in parts]))


def _finished(r: AttackResult) -> Tensor:
    dev = r.success.device
    return r.finished.to(dev) if r.finished is not None else \
        torch.ones(len(r), dtype=torch.bool, device=dev)
