"""Measure a subject's robustness into a :class:`RobustnessEvaluation`.

Stages, in order (each one's model evaluations and time are recorded): per norm the robust
accuracy curve (FMN + APGD, :mod:`audit.robustness.evaluate`); per norm the attack suite
(:mod:`audit.robustness.suite`) on correctly classified samples at the headline eps, merged
into the curve, then the gradient-masking diagnostics and, when one triggers, the
escalation; with ``protocol = "autoattack"``, AutoAttack's standard protocol per norm
(:mod:`audit.robustness.autoattack`, on every sample, seeded with the run's seed, not merged
into the curve); common corruptions; the gallery of adversarial examples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch import Tensor

from audit.distributed import current
from audit.robustness import diagnostics as dg
from audit.robustness.autoattack import autoattack
from audit.robustness.base import Attack, AttackResult
from audit.robustness.corruptions import CORRUPTIONS, applicable, corruption_accuracy
from audit.robustness.evaluate import (
    AttackStats,
    Curve,
    add_stats,
    confirm,
    robustness_curve,
    run_suite,
)
from audit.robustness.evaluation import Gallery, Meter, ProtocolAccuracy, RobustnessEvaluation
from audit.robustness.ops import NORM_LABEL, NORMS, Norm
from audit.robustness.params import RobustnessParams, eps_scale, epsilons, headline_eps, units
from audit.robustness.suite import curve_config, escalation_attacks, suite_attacks
from audit.subject import Subject

__all__ = ["measure_robustness"]


@dataclass
class _Run:
    """The subject, the settings and the evaluated samples of one measurement."""

    s: Subject
    p: RobustnessParams
    x: Tensor
    y: Tensor
    meter: Meter

    @property
    def bounds(self) -> tuple[float, float]:
        return self.meter.ev.bounds

    @property
    def classes(self) -> int:
        return len(self.s.card.classes)


def measure_robustness(subject: Subject, p: RobustnessParams) -> RobustnessEvaluation:
    """Run every stage on at most ``p.max_samples`` samples (a seeded subset)."""
    n = len(subject.data)
    rng = subject.rng("robustness.samples")
    idx = np.sort(rng.choice(n, p.max_samples, replace=False)) if n > p.max_samples \
        else np.arange(n)
    pick = torch.as_tensor(idx)
    y = subject.data.y[pick]
    correct = (subject.data_logits[pick].argmax(dim=1) == y).numpy()
    lo, hi = subject.card.input.range
    scale = eps_scale(p, subject)
    ev = RobustnessEvaluation(
        clean_accuracy=float(correct.mean()), samples=len(idx), bounds=(float(lo), float(hi)),
        kind=subject.data.kind, card_metrics=dict(subject.card.metrics or {}),
        threat={k: v * scale for k, v in subject.card.threat_model.items()},
        stress_test=_has_one_hot(subject), eps_units=units(p, subject),
        correct=correct.astype(bool), indices=idx.astype(np.int64), data_size=n,
        data_sha256=subject.data.sha256)
    run = _Run(subject, p, subject.data.x[pick], y, Meter(ev))
    run.meter.count(len(idx))
    eps = epsilons(p, subject)
    for nm in (nm for nm in NORMS if eps[nm]):
        ev.curves[nm] = _curve(run, nm, eps[nm])
        ev.headline[nm] = headline_eps(p, nm, eps[nm], scale)
    suite_idx = np.sort(subject.rng("robustness.suite").permutation(np.nonzero(correct)[0])
                        [: p.suite_samples])
    for nm in ev.curves if len(suite_idx) else ():
        _suite(run, nm, suite_idx)
    if p.protocol == "autoattack":
        for nm in ev.curves:
            _autoattack(run, nm)
    _corruptions(run)
    run.meter.stage("corruptions")
    ev.gallery = _gallery(run, suite_idx)
    run.meter.stage("gallery")
    return ev


def _curve(run: _Run, norm: Norm, eps: list[float]) -> Curve:
    cfg, skipped = curve_config(run.p, run.classes)
    run.meter.skip(skipped)
    curve = robustness_curve(run.s.model, run.x, run.y, norm, eps, bounds=run.bounds,
                             config=cfg, device=run.s.device,
                             generator=run.s.generator(f"robustness.curve.{norm}"))
    run.meter.count(curve.evaluations)
    run.meter.stage(f"curve {NORM_LABEL[norm]}")
    return curve


def _merge(run: _Run, curve: Curve, index: np.ndarray, r: AttackResult) -> None:
    """Count ``r`` and lower the curve's worst case at ``index`` with its finds (bounded and,
    for minimal attacks, unbounded)."""
    run.meter.count(r.evaluations)
    curve.merge(index, r)
    if "minimal_norms" in r.info:
        mn = r.info["minimal_norms"].double().numpy()
        better = mn < curve.worst[index]
        curve.worst[index[better]] = mn[better]


def _suite(run: _Run, norm: Norm, suite_idx: np.ndarray) -> None:
    """The suite of ``norm`` at its headline eps, its diagnostics and the escalation."""
    ev, p, label = run.meter.ev, run.p, NORM_LABEL[norm]
    curve, eps = ev.curves[norm], ev.headline[norm]
    attacks, skipped = suite_attacks(norm, p, run.bounds,
                                     run.s.generator(f"robustness.suite.{norm}"), run.classes)
    run.meter.skip(skipped)
    xs, ys = run.x[suite_idx], run.y[suite_idx]
    results = run_suite(run.s.model, xs, ys, attacks, eps, batch_size=p.batch_size,
                        device=run.s.device)
    ev.suites[norm] = results
    for r in results:
        _merge(run, curve, suite_idx, r)
    run.meter.stage(f"attack suite {label}")
    th = dg.Thresholds(p.single_step_margin, p.stall_share, 5, p.unbounded_min,
                       p.blackbox_margin, p.flat_share, p.noisy_share)
    found, evals = dg.run_diagnostics(
        run.s.model, xs.to(run.s.device), ys.to(run.s.device), results, curve, eps,
        run.bounds, th, generator=run.s.generator(f"robustness.surface.{norm}"))
    ev.diagnostics += found
    run.meter.count(evals)
    run.meter.stage(f"diagnostics {label}")
    if p.escalate and any(d.triggered for d in found):
        ev.escalated[norm] = _escalate(run, norm)
        run.meter.stage(f"escalation {label}")


def _escalate(run: _Run, norm: Norm) -> list[AttackResult]:
    """When the diagnostics suspect masked gradients, re-attack with attacks that do not
    trust the cross-entropy gradient: APGD-DLR with many restarts (scale-invariant loss) at
    every reported eps, like the curve's confirmations, then the suite's gradient-free attack
    of the norm on every sample still counted robust at the headline eps."""
    ev = run.meter.ev
    curve, eps = ev.curves[norm], ev.headline[norm]
    dlr, free = escalation_attacks(norm, run.p, run.bounds,
                                   run.s.generator(f"robustness.escalate.{norm}"), run.classes)
    if dlr is not None:
        stats = _confirm_all(run, curve, dlr)
        if dlr.name in stats:
            ev.escalation_stats.append((norm, stats[dlr.name]))
    todo = np.nonzero(curve.worst > eps)[0]
    if free is None or not len(todo):
        return []
    r = run_suite(run.s.model, run.x[todo], run.y[todo], [free], eps,
                  batch_size=run.p.batch_size, device=run.s.device)[0]
    _merge(run, curve, todo, r)
    return [r]


def _confirm_all(run: _Run, curve: Curve, attack: Attack) -> dict[str, AttackStats]:
    """Confirm the curve at every reported eps with ``attack`` on every sample, in batches."""
    dev = run.s.device

    def one(_: int, sl: slice) -> tuple[np.ndarray, int, dict[str, AttackStats]]:
        d, stats = curve.worst[sl].copy(), dict[str, AttackStats]()
        evals, _ = confirm(run.s.model, run.x[sl].to(dev), run.y[sl].to(dev), d, curve.eps,
                           [attack], norm=curve.norm, bounds=run.bounds, stats=stats)
        return d, evals, stats

    total: dict[str, AttackStats] = {}
    start = 0
    for d, evals, stats in current().map(one, len(run.x), run.p.batch_size, seeded=True,
                                         generators=[getattr(attack, "generator", None)]):
        run.meter.count(evals)
        sl = slice(start, start + len(d))
        curve.worst[sl] = np.minimum(curve.worst[sl], d)
        start += len(d)
        add_stats(total, stats)
    return total


def _autoattack(run: _Run, norm: Norm) -> None:
    """AutoAttack's standard protocol at the headline eps of ``norm`` (every reported eps
    with ``autoattack_every_eps``) on every evaluated sample, seeded with the run's seed
    itself, so pyautoattack with that seed reproduces it."""
    ev = run.meter.ev
    curve = ev.curves[norm]
    for e in curve.eps if run.p.autoattack_every_eps else [ev.headline[norm]]:
        res = autoattack(run.s.model, run.x, run.y, norm=norm, eps=e, seed=run.s.seed,
                         bounds=run.bounds, num_classes=run.classes, device=run.s.device,
                         budget=run.p.budget)
        run.meter.skip(res.skipped)
        run.meter.count(res.evaluations)
        ev.autoattack.append(res)
        ev.protocols.append(ProtocolAccuracy(
            key="autoattack", title="AutoAttack (standard)", norm=norm, eps=e,
            accuracy=res.robust_accuracy, samples=res.samples, correct=res.robust.copy()))
    run.meter.stage(f"autoattack {NORM_LABEL[norm]}")


def _corruptions(run: _Run) -> None:
    ev, p = run.meter.ev, run.p
    for c in p.corruptions:
        if c not in CORRUPTIONS:
            run.meter.skip([(c, f"unknown corruption; known: {', '.join(CORRUPTIONS)}")])
        elif (why := applicable(c, run.x, ev.kind)) is not None:
            run.meter.skip([(CORRUPTIONS[c].title, why)])
    ev.severities = [v for v in p.severities if 1 <= v <= 5]
    ev.corruptions = corruption_accuracy(
        partial(run.s.logits, on_device=True), run.x, run.y,
        [c for c in p.corruptions if c in CORRUPTIONS], ev.severities, kind=ev.kind,
        bounds=run.bounds, batch_size=p.batch_size,
        generator=run.s.generator("robustness.corruptions"))
    run.meter.count(len(run.x) * len(ev.severities) * len(ev.corruptions))


def _gallery(run: _Run, suite_idx: np.ndarray) -> Gallery | None:
    """Up to ``p.gallery`` suite samples broken within the headline eps (L-inf first), each
    with the adversarial of the smallest perturbation any suite attack found."""
    ev = run.meter.ev
    norm: Norm | None = next((nm for nm in NORMS if nm in ev.suites), None)
    if norm is None or run.p.gallery <= 0:
        return None
    eps = ev.headline[norm]
    results = [r for r in ev.suites[norm] if r.success.any()]
    if not results:
        return None
    n = len(suite_idx)
    best_norm = torch.full((n,), math.inf)
    best_adv = run.x[suite_idx].clone()
    best_name = [""] * n
    for r in results:
        ok = r.success & (r.norms <= eps * (1 + 1e-5))
        better = ok & (r.norms < best_norm)
        best_norm = torch.where(better, r.norms, best_norm)
        best_adv[better] = r.x_adv[better]
        for i in better.nonzero()[:, 0].tolist():
            best_name[i] = r.name
    pick = torch.isfinite(best_norm).nonzero()[:, 0][: run.p.gallery]
    if len(pick) == 0:
        return None
    clean, adv = run.x[suite_idx][pick], best_adv[pick]
    pc = torch.softmax(run.s.logits(clean), dim=1)
    pa = torch.softmax(run.s.logits(adv), dim=1)
    run.meter.count(2 * len(pick))
    features = (run.s.data.feature_names or run.s.card.input.feature_names
                or [f"x{i}" for i in range(clean[0].numel())])
    return Gallery(norm, eps, clean, adv, pc, pa, [best_name[i] for i in pick.tolist()],
                   [str(c) for c in run.s.card.classes], list(features),
                   image=ev.kind == "image" and clean.ndim == 4)


def _has_one_hot(subject: Subject) -> bool:
    """Whether the inputs are tabular with one-hot encoded columns (from the card's encoder,
    or 0/1-only columns when there is none)."""
    if subject.data.kind == "image":
        return False
    from audit.datasets.tabular import card_encoder

    enc = card_encoder(subject.card)
    if enc is not None:
        return bool(enc.categorical)
    x = subject.data.x.reshape(len(subject.data), -1)
    binary = ((x == 0) | (x == 1)).all(dim=0)
    return bool(binary.any()) and len(subject.data) >= 2
