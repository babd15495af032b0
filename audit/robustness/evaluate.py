"""Robust accuracy against epsilon, per-sample worst case over attacks, streamed in batches.

How the curve is measured (for one norm, L-inf or L2):

1. A minimal-perturbation attack (foolbox's FMN) gives each correctly classified sample an
   upper bound ``d_i`` on its smallest adversarial perturbation; a sample is not robust at
   any ``eps >= d_i``. This draws the whole curve at once.
2. Bounded attacks (APGD-CE, then APGD-DLR on the samples CE could not break, each with
   several short random restarts) confirm the curve at each reported epsilon, largest first
   (optionally warm-started from the minimal attack's point projected onto the ball). At
   ``eps_k`` they run on the samples with ``eps_k < d_i <= eps_{k+1}`` (all ``d_i > eps_K``
   at the largest): a sample the bounded
   attacks could not break at a larger epsilon is not attacked again at a smaller one. Every
   adversarial they find lowers ``d_i`` to its norm.
3. ``worst[i]`` is the smallest adversarial norm any attack found for sample ``i`` (0 for
   samples misclassified without attack, ``inf`` if none); other attacks (the suite) merge
   into it with :meth:`Curve.merge`. Robust accuracy at ``eps`` is the share of samples with
   ``worst > eps``: an upper bound on the true robust accuracy, as every attack-based number.

Memory is bounded by the batch size: only per-sample norms (N floats) are kept.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from audit.budget import Budget
from audit.distributed import current
from audit.robustness.apgd import APGD
from audit.robustness.base import Attack, AttackResult, run_attacks
from audit.robustness.foolbox_attacks import FMN
from audit.robustness.ops import Norm, project

__all__ = [
    "AttackStats", "Curve", "CurveConfig", "add_stats", "confirm", "fmn_step",
    "robustness_curve", "run_suite",
]


@dataclass
class AttackStats:
    """Totals of one attack over the batches it ran on (one row of the per-attack table)."""

    name: str
    kind: str
    norm: Norm
    eps: float | None
    role: str = ""
    samples: int = 0
    successes: int = 0
    time: float = 0.0
    evaluations: int = 0
    gradients: int = 0
    norms: list[float] = field(default_factory=list)
    unfinished: int = 0  # samples the attack did not finish (stopped by its budget)
    stopped: str = ""  # the budget that stopped it: evaluations or time

    @classmethod
    def of(cls, attack: Attack, norm: Norm) -> AttackStats:
        """Empty totals for ``attack`` (its name, kind and role)."""
        return cls(attack.name, attack.kind, norm, None, role=attack.role)

    def add(self, r: AttackResult, mask: Tensor | None = None) -> None:
        """Add a result (``mask`` selects the samples that count towards success)."""
        ok = r.success if mask is None else r.success[mask]
        self.samples += int(ok.numel())
        self.successes += int(ok.sum())
        self.time += r.time
        self.evaluations += r.evaluations
        self.gradients += r.gradients
        found = r.norms[r.success] if mask is None else r.norms[r.success & mask]
        self.norms.extend(float(v) for v in found.cpu())
        if r.finished is not None:
            done = r.finished.cpu() if mask is None else r.finished.cpu()[mask.cpu()]
            self.unfinished += int((~done).sum())
        self.stopped = self.stopped or r.stopped

    def absorb(self, other: AttackStats) -> None:
        """Add the totals of ``other`` (the same attack on later samples)."""
        self.samples += other.samples
        self.successes += other.successes
        self.time += other.time
        self.evaluations += other.evaluations
        self.gradients += other.gradients
        self.norms.extend(other.norms)
        self.unfinished += other.unfinished
        self.stopped = self.stopped or other.stopped

    @property
    def success_rate(self) -> float:
        return self.successes / self.samples if self.samples else math.nan

    @property
    def median_norm(self) -> float:
        return float(np.median(self.norms)) if self.norms else math.nan

    def row(self) -> dict[str, Any]:
        return {"attack": self.name, "kind": self.kind, "role": self.role, "norm": self.norm,
                "eps": self.eps,
                "samples": self.samples, "success_rate": self.success_rate,
                "median_norm": self.median_norm, "time_s": self.time,
                "evaluations": self.evaluations, "gradients": self.gradients}


def add_stats(total: dict[str, AttackStats], more: dict[str, AttackStats]) -> None:
    """Add the per-attack totals ``more`` (of later samples) into ``total``, by name."""
    for name, st in more.items():
        if name in total:
            total[name].absorb(st)
        else:
            total[name] = st


@dataclass
class CurveConfig:
    """Budget of the curve: minimal-attack steps; bounded attacks as (loss, random restarts)
    pairs of ``bounded_steps`` APGD iterations each. Many short restarts beat few long ones
    on digits-cnn (16 of 17 breakable samples found at L-inf 0.1 by 8x10 CE + 2x10 DLR, vs
    15 by 2x25 + 2x25 at the same cost; DLR restarts found nothing CE had not, so one is
    kept, for saturated softmax); warm starts from the minimal attack's point found half as
    many as random starts, so they are off by default."""

    minimal_steps: int = 30
    bounded_steps: int = 10
    bounded: tuple[tuple[str, int], ...] = (("ce", 8), ("dlr", 1))
    batch_size: int = 256
    fmn_rel_step: float | None = None
    warm_start: bool = False
    budget: tuple[int | None, float | None] | None = None
    """Each attack's (evaluations per sample per call, seconds in all); None: unlimited."""

    def new_budget(self) -> Budget | None:
        return None if self.budget is None else Budget(*self.budget)


@dataclass
class Curve:
    """Per-sample minimal norms and worst case for one norm; see the module docstring."""

    norm: Norm
    eps: list[float]
    correct: np.ndarray
    minimal: np.ndarray
    worst: np.ndarray
    attacked: dict[float, int] = field(default_factory=dict)
    confirmed: dict[float, int] = field(default_factory=dict)
    stats: dict[str, AttackStats] = field(default_factory=dict)
    evaluations: int = 0
    gradients: int = 0
    time: float = 0.0

    @classmethod
    def empty(cls, norm: Norm, eps: list[float], n: int) -> Curve:
        """A curve of ``n`` samples before any attack."""
        return cls(norm=norm, eps=eps, correct=np.zeros(n, dtype=bool),
                   minimal=np.zeros(n, dtype=np.float64), worst=np.zeros(n, dtype=np.float64),
                   attacked=dict.fromkeys(eps, 0), confirmed=dict.fromkeys(eps, 0))

    @classmethod
    def joined(cls, parts: Sequence[Curve], norm: Norm, eps: list[float]) -> Curve:
        """One curve from the curves of consecutive batches: per-sample arrays concatenated,
        counts and attack totals added in batch order."""
        out = cls.empty(norm, eps, 0)
        for key in ("correct", "minimal", "worst"):
            setattr(out, key, np.concatenate([getattr(out, key)]
                                             + [getattr(p, key) for p in parts]))
        for p in parts:
            for e in eps:
                out.attacked[e] += p.attacked.get(e, 0)
                out.confirmed[e] += p.confirmed.get(e, 0)
            add_stats(out.stats, p.stats)
            out.evaluations += p.evaluations
            out.gradients += p.gradients
        return out

    def robust_accuracy(self, eps: float, source: str = "worst") -> float:
        """Share of all samples with no adversarial within ``eps`` (``source``: ``"worst"``
        over all attacks or ``"minimal"`` from the minimal attack only)."""
        d = self.worst if source == "worst" else self.minimal
        return float((d > eps).mean()) if len(d) else math.nan

    def accuracy_at(self, grid: np.ndarray, source: str = "worst") -> np.ndarray:
        """Robust accuracy at each value of ``grid``."""
        d = np.sort(self.worst if source == "worst" else self.minimal)
        return 1.0 - np.searchsorted(d, grid, side="right") / max(len(d), 1)

    def merge(self, index: np.ndarray, result: AttackResult) -> int:
        """Lower ``worst`` at samples ``index`` with the adversarials found by ``result``;
        returns how many samples got a smaller norm."""
        found = result.found_norms().cpu().numpy().astype(np.float64)
        if result.eps is not None:  # float rounding at the ball's edge
            found = np.where(np.isfinite(found), np.minimum(found, result.eps), np.inf)
        better = found < self.worst[index]
        self.worst[index[better]] = found[better]
        return int(better.sum())


def fmn_step(norm: Norm, x: Tensor, bounds: tuple[float, float], eps: Sequence[float],
             rel: float | None = None) -> float:
    """FMN's largest step, in the [0, 1] range attacks run in (see :class:`.base.Attack`).
    Foolbox steps along the L2-normalised gradient; in L-inf the result hardly depends on
    the step, so it scales with the input (``sqrt(dim) / 8``); in L2 FMN ends near its first
    step's size when that is too large (median minimal norm 0.68 with step 0.69 on
    shapes-cnn, 0.29 with 0.1), so the step is 0.4 x the smallest reported epsilon (0.1 for
    digits-cnn), as a share of the range. ``rel`` overrides the factor."""
    width = float(bounds[1] - bounds[0]) or 1.0
    if norm == "linf":
        d = max(int(x[0].numel()), 1)
        return (rel if rel is not None else 0.125) * math.sqrt(d)
    return (rel if rel is not None else 0.4) * min(eps) / width


def robustness_curve(model: nn.Module, x: Tensor, y: Tensor, norm: Norm, eps: Sequence[float],
                     *, bounds: tuple[float, float], config: CurveConfig | None = None,
                     generator: torch.Generator | None = None,
                     device: torch.device | None = None,
                     progress: Callable[[int, int], None] | None = None) -> Curve:
    """Measure robust accuracy at every epsilon of ``eps`` for ``norm``; see the module doc.

    ``x``/``y`` may live on the CPU; batches of ``config.batch_size`` move to ``device``.
    """
    cfg = config or CurveConfig()
    dev = device or x.device
    n = int(x.shape[0])
    eps_sorted = sorted(float(e) for e in eps)
    fmn = FMN(norm=norm, steps=cfg.minimal_steps, bounds=bounds, budget=cfg.new_budget(),
              max_stepsize=fmn_step(norm, x, bounds, eps_sorted, cfg.fmn_rel_step))
    bounded = [APGD(norm=norm, loss=loss, steps=cfg.bounded_steps,  # type: ignore[arg-type]
                    restarts=restarts, bounds=bounds, generator=generator,
                    budget=cfg.new_budget())
               for loss, restarts in cfg.bounded if restarts > 0]
    t0 = time.perf_counter()

    def one(_: int, sl: slice) -> Curve:
        part = Curve.empty(norm, eps_sorted, sl.stop - sl.start)
        part.stats[fmn.name] = AttackStats.of(fmn, norm)
        _curve_batch(model, x[sl].to(dev), y[sl].to(dev), slice(0, sl.stop - sl.start), part,
                     fmn, bounded, cfg, bounds)
        if progress:
            progress(sl.stop, n)
        return part

    # a batch draws its random starts from its own stream (Distributed.map), so the curve
    # is the same whichever process of a distributed audit measured which batch
    parts = current().map(one, n, cfg.batch_size, seeded=True, generators=[generator])
    curve = Curve.joined(parts, norm, eps_sorted)
    curve.stats.setdefault(fmn.name, AttackStats.of(fmn, norm))
    curve.time = time.perf_counter() - t0
    return curve


def _curve_batch(model: nn.Module, xb: Tensor, yb: Tensor, sl: slice, curve: Curve, fmn: FMN,
                 bounded: Sequence[Attack], cfg: CurveConfig, bounds: tuple[float, float]
                 ) -> None:
    """One batch of the curve: clean check, FMN on the correct samples, then the bounded
    confirmations; fills ``curve`` at ``sl`` and adds to its counts."""
    with torch.no_grad():
        ok = (model(xb).argmax(dim=1) == yb).cpu()
    curve.evaluations += int(xb.shape[0])
    curve.correct[sl] = ok.numpy()
    d = np.zeros(int(xb.shape[0]), dtype=np.float64)  # 0: misclassified already
    x_min = xb.clone()
    idx = ok.nonzero()[:, 0]
    if idx.numel():
        r = fmn(model, xb[idx], yb[idx], eps=None)
        curve.stats[fmn.name].add(r)
        curve.evaluations += r.evaluations
        curve.gradients += r.gradients
        d[idx.numpy()] = r.found_norms().cpu().numpy()
        x_min[idx.to(xb.device)] = r.x_adv
    curve.minimal[sl] = d
    ev, gr = confirm(model, xb, yb, d, curve.eps, bounded, norm=curve.norm, bounds=bounds,
                     x_init=x_min if cfg.warm_start else None, stats=curve.stats,
                     attacked=curve.attacked, confirmed=curve.confirmed)
    curve.evaluations += ev
    curve.gradients += gr
    curve.worst[sl] = d


def confirm(model: nn.Module, x: Tensor, y: Tensor, d: np.ndarray, eps: Sequence[float],
            attacks: Sequence[Attack], *, norm: Norm, bounds: tuple[float, float],
            x_init: Tensor | None = None, stats: dict[str, AttackStats] | None = None,
            attacked: dict[float, int] | None = None, confirmed: dict[float, int] | None = None
            ) -> tuple[int, int]:
    """Attack each sample at the largest reported epsilon below its current norm ``d_i``
    (updated in place), all windows in one batch with per-sample epsilons; a sample broken
    with a norm that drops it into a lower window is attacked again there. Each attack runs
    on the samples the previous ones could not break. Returns (evaluations, gradients)."""
    e_arr = np.asarray(sorted(eps), dtype=np.float64)
    done_at = np.full(len(d), np.inf)
    dev = x.device
    evals = grads = 0
    while True:
        k = np.searchsorted(e_arr, d, side="left") - 1  # largest eps strictly below d_i
        valid = k >= 0
        target = np.where(valid, e_arr[np.clip(k, 0, None)], np.inf)
        todo = np.nonzero(valid & (target < done_at))[0]
        if len(todo) == 0:
            return evals, grads
        done_at[todo] = target[todo]
        for e in target[todo]:
            if attacked is not None:
                attacked[float(e)] = attacked.get(float(e), 0) + 1
        for a in attacks:
            if len(todo) == 0:
                break
            ti = torch.as_tensor(todo, device=dev)
            xs, ys = x[ti], y[ti]
            e_t = torch.as_tensor(target[todo], dtype=x.dtype, device=dev)
            kwargs = {}
            if x_init is not None:
                kwargs["x_init"] = project(x_init[ti], xs, e_t, norm, bounds)
            r = a(model, xs, ys, eps=e_t, **kwargs)
            if stats is not None:
                stats.setdefault(a.name, AttackStats.of(a, norm)).add(r)
            evals, grads = evals + r.evaluations, grads + r.gradients
            hit = r.success.cpu().numpy()
            d[todo[hit]] = np.minimum(r.norms.cpu().double().numpy()[hit], target[todo][hit])
            if confirmed is not None:
                for e in target[todo][hit]:
                    confirmed[float(e)] = confirmed.get(float(e), 0) + 1
            todo = todo[~hit]


def run_suite(model: nn.Module, x: Tensor, y: Tensor, attacks: Sequence[Attack],
              eps: float, *, batch_size: int = 256, device: torch.device | None = None
              ) -> list[AttackResult]:
    """Run every attack on the same samples at ``eps`` (batched); minimal-perturbation
    attacks also report their unbounded norms in ``info['minimal_norms']``."""
    return run_attacks(attacks, model, x, y, eps=eps, batch_size=batch_size, device=device)
