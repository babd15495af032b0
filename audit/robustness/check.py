"""The ``robustness`` check: robust accuracy curves, attack suite, gradient-masking
diagnostics, common corruptions, and a gallery of adversarial examples.

Budget of the default run (documented in the reading): robust accuracy curves in L-inf and
L2 from FMN (30 steps) on every sample, confirmed at each reported epsilon by APGD-CE (8
random restarts) and APGD-DLR (1) of 10 steps each on the samples near that epsilon; an
attack suite of 14 attacks on 32 samples at the headline epsilon of each norm; diagnostics;
4 corruptions at 5 severities on every sample. At most ``max_samples`` samples (a seeded
random subset). ``--quick`` shrinks every budget (200 samples, 16 in the suite).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor

from audit.checks import Check, register
from audit.figures import PALETTE, new_figure, styled, to_figure
from audit.result import Figure, Finding, Section, Severity, Table
from audit.robustness import diagnostics as dg
from audit.robustness.attacks import APGD, FGSM, PGD, AttackResult, Norm, Square
from audit.robustness.corruptions import CORRUPTIONS, applicable, corruption_accuracy
from audit.robustness.evaluate import (
    AttackStats,
    Curve,
    CurveConfig,
    confirm,
    robustness_curve,
    run_suite,
)
from audit.robustness.foolbox_attacks import CarliniWagner, DeepFool, HopSkipJump
from audit.subject import Subject

NORMS: tuple[Norm, ...] = ("linf", "l2")
NORM_LABEL = {"linf": "L-inf", "l2": "L2"}


@dataclass
class RobustnessParams:
    """Settings of the robustness check (``[checks.robustness]`` in ``audit.toml``)."""

    linf_eps: list[float] | None = None  # L-inf budgets (default: the card's)
    l2_eps: list[float] | None = None  # L2 budgets (default: the card's)
    headline_linf: float | None = None  # eps of the suite and diagnostics
    headline_l2: float | None = None  # L2 eps of the suite and diagnostics
    max_samples: int = 1000  # seeded subset of the data above this
    batch_size: int = 256  # attack batch size (bounds memory)
    minimal_steps: int = 30  # FMN steps for minimal perturbations
    bounded_steps: int = 10  # APGD steps per restart
    bounded_restarts_ce: int = 8  # APGD-CE restarts
    bounded_restarts_dlr: int = 1  # APGD-DLR restarts
    suite_samples: int = 32  # samples attacked by the full suite
    suite_steps: int = 50  # steps of the suite's PGD/APGD
    square_queries: int = 400  # Square attack query budget
    hsj_steps: int = 4  # HopSkipJump iterations
    cw_steps: int = 30  # Carlini-Wagner steps
    corruptions: list[str] = field(default_factory=lambda: list(CORRUPTIONS))
    """Common corruptions to apply."""
    severities: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    """Corruption severities (1-5)."""
    gallery: int = 6  # adversarial examples shown
    escalate: bool = True  # re-attack with DLR/black-box when unreliable
    fragile_low: float = 0.95  # robust/clean ratio below this: low finding
    fragile_medium: float = 0.75  # robust/clean ratio below this: medium
    fragile_high: float = 0.10  # robust/clean ratio below this: high
    card_gap: float = 0.02  # robust accuracy this far below the card's
    corruption_severity: int = 3  # severity judged for findings
    corruption_medium: float = 0.10  # accuracy drop above this: medium
    corruption_high: float = 0.30  # accuracy drop above this: high
    unreliable_severity: Literal["info", "low", "medium", "high", "critical"] = "high"
    """Severity of the unreliable finding."""
    single_step_margin: float = 0.02  # FGSM beating PGD by this: masking
    stall_share: float = 0.5  # share not helped by more steps
    unbounded_min: float = 0.98  # unbounded success rate expected
    blackbox_margin: float = 0.02  # black-box beating white-box by this
    flat_share: float = 0.2  # share with zero gradients: flat
    noisy_share: float = 0.5  # share with noisy loss surface


def default_eps(norm: Norm, subject: Subject) -> list[float]:
    """Epsilons from the card's ``robustness`` field, else a scale-aware default."""
    key = f"{norm}_eps"
    card = subject.card.robustness or {}
    if isinstance(card.get(key), list) and card[key]:
        return [float(e) for e in card[key]]
    lo, hi = subject.card.input.range
    width = float(hi - lo) or 1.0
    if norm == "linf":
        rel = [1 / 255, 2 / 255, 4 / 255, 8 / 255] if subject.data.kind == "image" else \
            [0.01, 0.02, 0.05, 0.1]
        return [round(width * r, 6) for r in rel]
    d = math.sqrt(max(int(subject.data.x[0].numel()), 1))
    return [round(width * d * r, 6) for r in (0.005, 0.01, 0.02, 0.05)]


def eps_key(e: float) -> str:
    """How an epsilon appears in metric names: ``robust_accuracy_linf_0.1``."""
    return f"{e:g}"


@register
class RobustnessCheck(Check[RobustnessParams]):
    """Robust accuracy against L-inf and L2 attacks that does not overstate."""

    name = "robustness"
    title = "Adversarial robustness and corruptions"
    description = ("robust accuracy vs epsilon (L-inf, L2) over an attack suite, "
                   "gradient-masking diagnostics, common corruptions")
    Params = RobustnessParams
    quick: ClassVar[dict[str, Any]] = {
        "max_samples": 200, "minimal_steps": 20, "bounded_restarts_ce": 3,
        "bounded_restarts_dlr": 1, "suite_samples": 16, "suite_steps": 20,
        "square_queries": 150, "hsj_steps": 3, "cw_steps": 20, "severities": [1, 3, 5],
        "gallery": 4}

    def applies(self, subject: Subject) -> str | None:
        if subject.card.num_classes < 2:
            return "needs a classifier with at least 2 classes"
        if len(subject.data) == 0:
            return "no data"
        return None

    def run(self, subject: Subject) -> Section:
        return _Run(self.params, subject).section(self)


class _Run:
    """State of one robustness check run."""

    def __init__(self, p: RobustnessParams, subject: Subject) -> None:
        self.p = p
        self.s = subject
        lo, hi = subject.card.input.range
        self.bounds = (float(lo), float(hi))
        self.dev = subject.device
        self.model = subject.model
        self.th = dg.Thresholds(p.single_step_margin, p.stall_share, 5, p.unbounded_min,
                                p.blackbox_margin, p.flat_share, p.noisy_share)
        n = len(subject.data)
        rng = subject.rng("robustness.samples")
        idx = np.sort(rng.choice(n, p.max_samples, replace=False)) if n > p.max_samples \
            else np.arange(n)
        self.idx = idx
        self.x = subject.data.x[torch.as_tensor(idx)]
        self.y = subject.data.y[torch.as_tensor(idx)]
        self.kind = subject.data.kind
        self.classes = subject.card.classes
        self.evaluations = 0
        self.skipped: list[tuple[str, str]] = []
        self.stages: list[tuple[str, int, float]] = []
        self.escalated: dict[str, list[AttackResult]] = {}
        self.escalation_rows: list[list[Any]] = []
        self._mark = (0, time.perf_counter())

    def _stage(self, name: str) -> None:
        """Record the evaluations and time spent since the previous stage."""
        ev, t = self._mark
        now = time.perf_counter()
        self.stages.append((name, self.evaluations - ev, now - t))
        self._mark = (self.evaluations, now)

    # ------------------------------------------------------------------ measurement

    def section(self, check: Check) -> Section:
        p, s = self.p, self.s
        clean_logits = s.data_logits[torch.as_tensor(self.idx)]
        self.evaluations += len(self.idx)
        correct = (clean_logits.argmax(dim=1) == self.y).numpy()
        clean_acc = float(correct.mean())
        eps = {"linf": p.linf_eps if p.linf_eps is not None else default_eps("linf", s),
               "l2": p.l2_eps if p.l2_eps is not None else default_eps("l2", s)}
        eps = {k: sorted(float(e) for e in v if e > 0) for k, v in eps.items()}
        norms = [nm for nm in NORMS if eps[nm]]
        curves: dict[str, Curve] = {}
        for nm in norms:
            cfg = CurveConfig(minimal_steps=p.minimal_steps, bounded_steps=p.bounded_steps,
                              bounded=self._bounded(), batch_size=p.batch_size)
            curves[nm] = robustness_curve(self.model, self.x, self.y, nm, eps[nm],
                                          bounds=self.bounds, config=cfg, device=self.dev,
                                          generator=s.generator(f"robustness.curve.{nm}"))
            self.evaluations += curves[nm].evaluations
            self._stage(f"curve {NORM_LABEL[nm]}")
        headline: dict[str, float] = {nm: self._headline(nm, eps[nm]) for nm in norms}
        rng = s.rng("robustness.suite")
        pool = np.nonzero(correct)[0]
        suite_idx = np.sort(rng.permutation(pool)[: p.suite_samples])
        suites: dict[str, list[AttackResult]] = {}
        kinds: dict[str, str] = {}
        diags: list[dg.Diagnostic] = []
        for nm in norms:
            if len(suite_idx) == 0:
                break
            attacks = self._suite_attacks(nm)
            kinds.update({a.name: a.kind for a in attacks})
            xs, ys = self.x[suite_idx], self.y[suite_idx]
            res = run_suite(self.model, xs, ys, attacks, headline[nm],
                            batch_size=p.batch_size, device=self.dev)
            suites[nm] = res
            for r in res:
                self.evaluations += r.evaluations
                curves[nm].merge(suite_idx, r)
                if "minimal_norms" in r.info:
                    mn = r.info["minimal_norms"].double().numpy()
                    better = mn < curves[nm].worst[suite_idx]
                    curves[nm].worst[suite_idx[better]] = mn[better]
            self._stage(f"attack suite {NORM_LABEL[nm]}")
            found = self._diagnostics(nm, res, kinds, curves[nm], xs, ys, headline[nm])
            diags += found
            self._stage(f"diagnostics {NORM_LABEL[nm]}")
            if any(d.triggered for d in found) and p.escalate:
                self.escalated[nm] = self._escalate(nm, curves[nm], headline[nm], kinds)
                self._stage(f"escalation {NORM_LABEL[nm]}")
        corr = self._corruptions()
        self._stage("corruptions")
        gallery_fig, gallery_table = self._gallery(suites, headline, suite_idx)
        self._stage("gallery")
        return self._build(check, clean_acc, correct, eps, headline, curves, suites, kinds,
                           diags, corr, gallery_fig, gallery_table)

    def _bounded(self) -> tuple[tuple[str, int], ...]:
        reason = APGD.applies(len(self.classes), "dlr")
        if reason:
            self._skip("APGD-DLR", reason)
            return (("ce", self.p.bounded_restarts_ce),)
        return (("ce", self.p.bounded_restarts_ce), ("dlr", self.p.bounded_restarts_dlr))

    def _skip(self, name: str, reason: str) -> None:
        if (name, reason) not in self.skipped:
            self.skipped.append((name, reason))

    def _headline(self, norm: Norm, eps: list[float]) -> float:
        h = self.p.headline_linf if norm == "linf" else self.p.headline_l2
        return float(h) if h is not None else eps[len(eps) // 2]

    def _suite_attacks(self, norm: Norm) -> list[Any]:
        p, b = self.p, self.bounds
        gen = self.s.generator(f"robustness.suite.{norm}")
        tag = NORM_LABEL[norm]
        out: list[Any] = [
            FGSM(norm=norm, bounds=b, name=f"FGSM-{tag}" if norm == "linf" else f"FGM-{tag}"),
            PGD(norm=norm, steps=p.suite_steps, bounds=b, generator=gen, name=f"PGD-{tag}"),
            APGD(norm=norm, loss="ce", steps=p.suite_steps, bounds=b, generator=gen,
                 name=f"APGD-CE-{tag}"),
        ]
        if APGD.applies(len(self.classes), "dlr") is None:
            out.append(APGD(norm=norm, loss="dlr", steps=p.suite_steps, bounds=b,
                            generator=gen, name=f"APGD-DLR-{tag}"))
        out.append(DeepFool(norm=norm, bounds=b, name=f"DeepFool-{tag}"))
        if norm == "l2":
            out.append(CarliniWagner(steps=p.cw_steps, bounds=b, name="CW-L2"))
        if norm == "linf":
            out.append(Square(queries=p.square_queries, bounds=b, generator=gen,
                              name=f"Square-{tag}"))
        else:
            self._skip("Square-L2", "our Square attack implements L-inf only; HopSkipJump "
                                    "covers L2 without gradients")
        out.append(HopSkipJump(norm=norm, steps=p.hsj_steps, bounds=b,
                               name=f"HopSkipJump-{tag}"))
        return out

    def _escalate(self, norm: Norm, curve: Curve, eps: float, kinds: dict[str, str]
                  ) -> list[AttackResult]:
        """When the diagnostics suspect masked gradients, re-attack with attacks that do not
        trust the cross-entropy gradient: APGD-DLR with many restarts (scale-invariant loss)
        at every reported eps, like the curve's confirmations, then the gradient-free attack
        of the norm (Square for L-inf, HopSkipJump for L2) on every sample still counted
        robust at the headline eps."""
        p, b = self.p, self.bounds
        gen = self.s.generator(f"robustness.escalate.{norm}")
        tag = NORM_LABEL[norm]
        out: list[AttackResult] = []
        if APGD.applies(len(self.classes), "dlr") is None:
            dlr = APGD(norm=norm, loss="dlr", steps=p.bounded_steps,
                       restarts=p.bounded_restarts_ce + p.bounded_restarts_dlr, bounds=b,
                       generator=gen, name=f"APGD-DLR-{tag} (escalation)")
            kinds[dlr.name] = dlr.kind
            stats: dict[str, AttackStats] = {}
            for i in range(0, len(self.x), p.batch_size):
                sl = slice(i, i + p.batch_size)
                d = curve.worst[sl].copy()
                ev, _ = confirm(self.model, self.x[sl].to(self.dev), self.y[sl].to(self.dev),
                                d, curve.eps, [dlr], norm=norm, bounds=b, stats=stats)
                self.evaluations += ev
                curve.worst[sl] = np.minimum(curve.worst[sl], d)
            if dlr.name in stats:
                st = stats[dlr.name]
                self.escalation_rows.append([dlr.name, dlr.kind, NORM_LABEL[norm], "each eps",
                                             st.samples, round(st.success_rate, 4),
                                             None if math.isnan(st.median_norm)
                                             else round(st.median_norm, 4), round(st.time, 2),
                                             st.evaluations])
        free: Any = (Square(queries=p.square_queries, bounds=b, generator=gen,
                            name=f"Square-{tag} (escalation)") if norm == "linf" else
                     HopSkipJump(norm=norm, steps=p.hsj_steps, bounds=b,
                                 name=f"HopSkipJump-{tag} (escalation)"))
        todo = np.nonzero(curve.worst > eps)[0]
        if len(todo):
            kinds[free.name] = free.kind
            r = run_suite(self.model, self.x[todo], self.y[todo], [free], eps,
                          batch_size=p.batch_size, device=self.dev)[0]
            self.evaluations += r.evaluations
            curve.merge(todo, r)
            if "minimal_norms" in r.info:
                mn = r.info["minimal_norms"].double().numpy()
                better = mn < curve.worst[todo]
                curve.worst[todo[better]] = mn[better]
            out.append(r)
        return out

    def _diagnostics(self, norm: Norm, res: list[AttackResult], kinds: dict[str, str],
                     curve: Curve, xs: Tensor, ys: Tensor, eps: float) -> list[dg.Diagnostic]:
        by = {r.name: r for r in res}
        tag = NORM_LABEL[norm]
        fgsm = by.get(f"FGSM-{tag}") or by[f"FGM-{tag}"]
        iterative = [r for r in res if kinds[r.name] == "white-box" and r is not fgsm]
        out = [dg.single_step(fgsm, iterative, self.th), dg.iterations(by[f"PGD-{tag}"], self.th)]
        correct_n = int(curve.correct.sum())
        minimal = {}
        for st in curve.stats.values():
            if st.kind == "minimal" and correct_n:
                minimal[st.name] = st.successes / max(st.samples, 1)
        for r in res:
            if kinds[r.name] == "minimal" and "minimal_norms" in r.info:
                minimal[r.name] = float(torch.isfinite(r.info["minimal_norms"]).float().mean())
        out.append(dg.unbounded(minimal, norm, self.th))
        out.append(dg.black_box(res, kinds, eps, self.th))
        surf, ev = dg.loss_surface(self.model, xs.to(self.dev), ys.to(self.dev), norm, eps,
                                   self.bounds, self.th,
                                   generator=self.s.generator(f"robustness.surface.{norm}"))
        self.evaluations += ev
        return out + surf

    def _corruptions(self) -> dict[str, list[float]]:
        names = [c for c in self.p.corruptions if c in CORRUPTIONS]
        for c in self.p.corruptions:
            if c not in CORRUPTIONS:
                self._skip(c, f"unknown corruption; known: {', '.join(CORRUPTIONS)}")
            elif (why := applicable(c, self.x, self.kind)) is not None:
                self._skip(CORRUPTIONS[c].title, why)
        sev = [v for v in self.p.severities if 1 <= v <= 5]
        out = corruption_accuracy(self.s.logits, self.x, self.y, names, sev, kind=self.kind,
                                  bounds=self.bounds, batch_size=self.p.batch_size,
                                  generator=self.s.generator("robustness.corruptions"))
        self.evaluations += len(self.x) * len(sev) * len(out)
        return out

    # ------------------------------------------------------------------ gallery

    def _gallery(self, suites: dict[str, list[AttackResult]], headline: dict[str, float],
                 suite_idx: np.ndarray) -> tuple[Figure | None, Table | None]:
        norm: Norm | None = "linf" if "linf" in suites else ("l2" if "l2" in suites else None)
        if norm is None or self.p.gallery <= 0:
            return None, None
        eps = headline[norm]
        res = [r for r in suites[norm] if r.success.any()]
        if not res:
            return None, None
        n = len(suite_idx)
        best_norm = torch.full((n,), math.inf)
        best_adv = self.x[suite_idx].clone()
        best_name = [""] * n
        for r in res:
            ok = r.success & (r.norms <= eps * (1 + 1e-5))
            better = ok & (r.norms < best_norm)
            best_norm = torch.where(better, r.norms, best_norm)
            best_adv[better] = r.x_adv[better]
            for i in better.nonzero()[:, 0].tolist():
                best_name[i] = r.name
        pick = torch.isfinite(best_norm).nonzero()[:, 0][: self.p.gallery]
        if len(pick) == 0:
            return None, None
        clean = self.x[suite_idx][pick]
        adv = best_adv[pick]
        pc = torch.softmax(self.s.logits(clean), dim=1)
        pa = torch.softmax(self.s.logits(adv), dim=1)
        self.evaluations += 2 * len(pick)
        names = [best_name[i] for i in pick.tolist()]
        if self.kind == "image" and clean.ndim == 4:
            return self._gallery_figure(clean, adv, pc, pa, names, norm, eps), None
        return None, self._gallery_table(clean, adv, pc, pa, names)

    def _label(self, proba: Tensor) -> tuple[str, float]:
        k = int(proba.argmax())
        name = str(self.classes[k])
        return (name if len(name) <= 10 else name[:9] + "…"), float(proba[k])

    @styled
    def _gallery_figure(self, clean: Tensor, adv: Tensor, pc: Tensor, pa: Tensor,
                        names: list[str], norm: Norm, eps: float) -> Figure:
        lo, hi = self.bounds
        k = len(clean)
        fig, axes = new_figure(1.25 * k + 0.4, 4.3, nrows=3, ncols=k, squeeze=False)

        def show(img: Tensor) -> np.ndarray:
            a = ((img - lo) / ((hi - lo) or 1.0)).clamp(0, 1).numpy()
            return a[0] if a.shape[0] == 1 else np.transpose(a, (1, 2, 0))

        for j in range(k):
            diff = (adv[j] - clean[j]).mean(dim=0).numpy()
            amp = float(np.abs(diff).max()) or 1.0
            c_lab, c_conf = self._label(pc[j])
            a_lab, a_conf = self._label(pa[j])
            axes[0][j].imshow(show(clean[j]), cmap="gray", vmin=0, vmax=1,
                              interpolation="nearest")
            axes[0][j].set_title(f"{c_lab} ({c_conf:.0%})", fontsize=7)
            axes[1][j].imshow(show(adv[j]), cmap="gray", vmin=0, vmax=1,
                              interpolation="nearest")
            axes[1][j].set_title(f"{a_lab} ({a_conf:.0%})", fontsize=7, color="#b82e2e")
            axes[2][j].imshow(diff / amp, cmap="RdBu_r", vmin=-1, vmax=1,
                              interpolation="nearest")
            axes[2][j].set_title(f"{names[j]} x{1 / amp:.0f}", fontsize=6)
            for i in range(3):
                axes[i][j].set_xticks([])
                axes[i][j].set_yticks([])
        for i, lab in enumerate(["clean", "adversarial", "difference"]):
            axes[i][0].set_ylabel(lab, fontsize=8)
        fig.tight_layout()
        return to_figure(
            fig, "robustness-gallery", f"Adversarial examples ({NORM_LABEL[norm]}, eps {eps:g})",
            "Top: clean input with the predicted class and its confidence. Middle: the "
            "adversarial input found by the attack with the smallest perturbation (red: its "
            "prediction). Bottom: the difference, amplified by the factor shown (red up, blue "
            "down).", fmt="png", dpi=80)

    def _gallery_table(self, clean: Tensor, adv: Tensor, pc: Tensor, pa: Tensor,
                       names: list[str]) -> Table:
        feats = self.s.data.feature_names or self.s.card.input.feature_names or \
            [f"x{i}" for i in range(clean[0].numel())]
        rows: list[list[Any]] = []
        for j in range(len(clean)):
            d = (adv[j] - clean[j]).flatten()
            top = torch.argsort(d.abs(), descending=True)[:3].tolist()
            changes = "; ".join(f"{feats[i]} {float(clean[j].flatten()[i]):.3g}→"
                                f"{float(adv[j].flatten()[i]):.3g}" for i in top if d[i] != 0)
            c_lab, c_conf = self._label(pc[j])
            a_lab, a_conf = self._label(pa[j])
            rows.append([f"{c_lab} ({c_conf:.0%})", f"{a_lab} ({a_conf:.0%})", names[j], changes])
        return Table(id="robustness-gallery", title="Adversarial examples (largest changes)",
                     columns=["clean prediction", "adversarial prediction", "attack",
                              "largest feature changes"], rows=rows)

    # ------------------------------------------------------------------ report

    def _build(self, check: Check, clean_acc: float, correct: np.ndarray,
               eps: dict[str, list[float]], headline: dict[str, float],
               curves: dict[str, Curve], suites: dict[str, list[AttackResult]],
               kinds: dict[str, str], diags: list[dg.Diagnostic],
               corr: dict[str, list[float]], gallery_fig: Figure | None,
               gallery_table: Table | None) -> Section:
        p = self.p
        n = len(self.idx)
        metrics: dict[str, float] = {"clean_accuracy": clean_acc, "samples": float(n)}
        for nm, c in curves.items():
            for e in c.eps:
                metrics[f"robust_accuracy_{nm}_{eps_key(e)}"] = c.robust_accuracy(e)
            finite = c.worst[np.isfinite(c.worst)]
            metrics[f"median_min_perturbation_{nm}"] = float(np.median(c.worst)) \
                if len(finite) == len(c.worst) else math.nan
        for name, accs in corr.items():
            metrics[f"corruption_accuracy_{name}"] = float(np.mean(accs))
        triggered = [d for d in diags if d.triggered]
        metrics["unreliable"] = float(bool(triggered))
        metrics["model_evaluations"] = float(self.evaluations)

        findings = self._findings(clean_acc, curves, headline, triggered, corr)
        tables = [self._curve_table(curves), self._attack_table(curves, suites, kinds)]
        if diags:
            tables.append(Table(
                id="robustness-diagnostics", title="Gradient-masking diagnostics",
                columns=["diagnostic", "norm", "value", "threshold", "triggered", "detail"],
                rows=[[d.title, NORM_LABEL.get(d.norm, d.norm),
                       None if math.isnan(d.value) else round(d.value, 4), d.threshold,
                       ("yes" if d.triggered else "no") if d.evaluated else "not judged",
                       d.detail] for d in diags],
                caption="Each row tests the evaluation itself; a triggered row means the "
                        "attacks may be fooled and the robust accuracy is likely overstated."))
        if corr:
            sev = [v for v in p.severities if 1 <= v <= 5]
            tables.append(Table(
                id="robustness-corruptions", title="Accuracy under common corruptions",
                columns=["corruption", "clean", *[f"severity {v}" for v in sev], "mean"],
                rows=[[CORRUPTIONS[k].title, round(clean_acc, 4),
                       *[round(a, 4) for a in v], round(float(np.mean(v)), 4)]
                      for k, v in corr.items()],
                caption="Hendrycks & Dietterich (2019) corruptions with the CIFAR-10-C "
                        "parameters, applied to every evaluated sample."))
        tables.append(Table(
            id="robustness-cost", title="Cost of this check",
            columns=["stage", "model evaluations", "time (s)"],
            rows=[[a, ev, round(t, 2)] for a, ev, t in self.stages],
            caption="Model evaluations are per-sample forward passes (a forward and backward "
                    "pass counts once)."))
        if self.skipped:
            tables.append(Table(id="robustness-skipped", title="Attacks and corruptions not run",
                                columns=["what", "reason"],
                                rows=[[a, r] for a, r in self.skipped]))
        if gallery_table is not None:
            tables.append(gallery_table)
        figures = []
        if curves:
            figures.append(self._curve_figure(curves, clean_acc))
        if gallery_fig is not None:
            figures.append(gallery_fig)
        if corr:
            figures.append(self._corruption_figure(corr, clean_acc))
        return check.section(summary=self._summary(clean_acc, n, curves, headline, triggered,
                                                   suites),
                             reading=self._reading(curves, headline), metrics=metrics,
                             findings=findings, figures=figures, tables=tables)

    def _summary(self, clean_acc: float, n: int, curves: dict[str, Curve],
                 headline: dict[str, float], triggered: list[dg.Diagnostic],
                 suites: dict[str, list[AttackResult]]) -> str:
        parts = [f"{NORM_LABEL[nm]} eps {headline[nm]:g}: "
                 f"{c.robust_accuracy(headline[nm]):.1%}" for nm, c in curves.items()]
        attacks = sum(len(v) for v in suites.values()) + sum(
            len({st.name for st in c.stats.values()}) for c in curves.values()) + sum(
            len(v) for v in self.escalated.values())
        text = (f"Clean accuracy {clean_acc:.1%} on {n} samples; worst-case robust accuracy "
                f"{'; '.join(parts)} (over {attacks} attack runs). ")
        if triggered:
            text += ("The evaluation is unreliable: " + ", ".join(
                sorted({d.title.lower() for d in triggered})) + ".")
            if self.escalated:
                text += (" Escalated attacks ran on every sample still counted robust (DLR "
                         "loss at every eps; gradient-free at " + ", ".join(
                             f"{NORM_LABEL[nm]} eps {headline[nm]:g}" for nm in self.escalated)
                         + ").")
        else:
            text += "No gradient-masking diagnostic triggered."
        return text

    def _reading(self, curves: dict[str, Curve], headline: dict[str, float]) -> str:
        p = self.p
        tabular = ("" if self.kind == "image" else
                   " Tabular inputs are perturbed as continuous values in the encoded space "
                   "(one-hot columns can take fractional values), so the numbers bound what an "
                   "attacker who controls the encoded features can do, not only valid records.")
        return (
            "Robust accuracy at eps is the share of samples for which no attack found an "
            "input within eps (L-inf: largest change of one value; L2: Euclidean length, in "
            f"the card's value range {self.bounds[0]:g} to {self.bounds[1]:g}) that changes the "
            "prediction; misclassified samples count as not robust. Every attack-based number "
            "is an upper bound on the true robust accuracy. Curves: FMN, a minimal-"
            f"perturbation attack ({p.minimal_steps} steps), gives each sample the smallest "
            "adversarial perturbation it finds, which draws the whole curve at once (dashed); "
            f"then APGD-CE ({p.bounded_restarts_ce} random restarts) and APGD-DLR "
            f"({p.bounded_restarts_dlr}) of {p.bounded_steps} steps each attack every sample "
            "at the largest reported eps below its perturbation (samples they cannot break "
            "there are not attacked again at smaller eps), and the suite of attacks on "
            f"{p.suite_samples} samples at the headline eps adds its finds (solid: per-sample "
            "worst case over all attacks). The attack table lists each attack's success rate "
            "on the suite samples (correctly classified), median perturbation of its "
            "successes, time and model evaluations (per-sample forward passes). The "
            "diagnostics test the attacks themselves: if one triggers (single-step beats "
            "iterative, iterations do not raise the loss, unbounded attacks do not reach 0% "
            "accuracy, black-box beats white-box, flat or noisy loss), the model may be "
            "masking gradients and the numbers are likely overstated. Corruptions: accuracy "
            "under Gaussian noise, blur, contrast and brightness at severities 1-5 "
            "(Hendrycks & Dietterich)." + tabular)

    def _findings(self, clean_acc: float, curves: dict[str, Curve], headline: dict[str, float],
                  triggered: list[dg.Diagnostic], corr: dict[str, list[float]]
                  ) -> list[Finding]:
        p = self.p
        out: list[Finding] = []
        if triggered:
            out.append(Finding(
                id="robustness.unreliable", severity=Severity.parse(p.unreliable_severity),
                title="Robustness evaluation unreliable: " + ", ".join(
                    f"{d.title.lower()} ({NORM_LABEL.get(d.norm, d.norm)})" for d in triggered),
                detail=" ".join(d.detail for d in triggered),
                evidence={"diagnostics": [d.to_dict() for d in triggered]},
                recommendation=(
                    "Do not rely on these robust accuracies: the attacks show signs of "
                    "gradient masking. Evaluate with adaptive attacks: replace "
                    "non-differentiable preprocessing by a differentiable approximation "
                    "(BPDA), attack the logit margin or DLR loss instead of a saturated "
                    "cross-entropy, average gradients over randomness (EOT), and raise steps "
                    "and restarts until the robust accuracy stops falling.")))
        for nm, c in curves.items():
            e = headline[nm]
            acc = c.robust_accuracy(e)
            ratio = acc / clean_acc if clean_acc > 0 else 0.0
            sev = (Severity.HIGH if ratio < p.fragile_high else Severity.MEDIUM
                   if ratio < p.fragile_medium else Severity.LOW if ratio < p.fragile_low
                   else None)
            if sev is not None:
                out.append(Finding(
                    id=f"robustness.fragile.{nm}", severity=sev,
                    title=f"{NORM_LABEL[nm]} robust accuracy {acc:.1%} at eps {e:g} "
                          f"(clean {clean_acc:.1%})",
                    detail=(f"Attacks within {NORM_LABEL[nm]} eps {e:g} change the prediction "
                            f"of {1 - acc / max(clean_acc, 1e-12):.0%} of the correctly "
                            f"classified samples; robust accuracy is {acc:.1%} against clean "
                            f"{clean_acc:.1%}. Median smallest perturbation found: "
                            f"{np.median(c.worst):.3g}."),
                    evidence={"norm": nm, "eps": e, "robust_accuracy": acc,
                              "clean_accuracy": clean_acc,
                              "curve": {eps_key(x): c.robust_accuracy(x) for x in c.eps}},
                    recommendation="If inputs can be manipulated, harden the model with "
                                   "adversarial training (audit harden: PGD-AT or TRADES) at "
                                   "this epsilon and audit it again."))
        for key, claimed in (self.s.card.metrics or {}).items():
            if not key.startswith("robust_accuracy_") or not isinstance(claimed, int | float):
                continue
            for nm, c in curves.items():
                for e in c.eps:
                    if key == f"robust_accuracy_{nm}_{eps_key(e)}":
                        acc = c.robust_accuracy(e)
                        if claimed - acc > p.card_gap:
                            out.append(Finding(
                                id=f"robustness.below-card.{nm}.{eps_key(e)}",
                                severity=Severity.HIGH,
                                title=f"{NORM_LABEL[nm]} robust accuracy at eps {e:g} is "
                                      f"{acc:.1%}, below the card's {claimed:.1%}",
                                detail=(f"The card claims {claimed:.1%} but the attack suite "
                                        f"brings it to {acc:.1%} ({(claimed - acc) * 100:.1f} "
                                        "points lower)."),
                                evidence={"claimed": float(claimed), "measured": acc},
                                recommendation="Correct the card, or check how the claim was "
                                               "measured (weaker attacks, other data)."))
        sev_i = min(max(p.corruption_severity, 1), 5)
        sev_list = [v for v in p.severities if 1 <= v <= 5]
        for name, accs in corr.items():
            at = sev_i if sev_i in sev_list else sev_list[len(sev_list) // 2]
            acc = accs[sev_list.index(at)]
            drop = clean_acc - acc
            if drop > p.corruption_medium:
                out.append(Finding(
                    id=f"robustness.corruption.{name}",
                    severity=Severity.HIGH if drop > p.corruption_high else Severity.MEDIUM,
                    title=f"{CORRUPTIONS[name].title} at severity {at} drops accuracy to "
                          f"{acc:.1%}",
                    detail=(f"Accuracy falls from {clean_acc:.1%} to {acc:.1%} under "
                            f"{CORRUPTIONS[name].title.lower()} at severity {at} (by "
                            "severity: " + ", ".join(f"{a:.1%}" for a in accs) + ")."),
                    evidence={"corruption": name, "severity": at, "accuracy": acc,
                              "clean_accuracy": clean_acc, "by_severity": accs},
                    recommendation="Augment training with this corruption (or normalise "
                                   "inputs against it) and check the data pipeline that "
                                   "feeds the model in production."))
        return out

    def _curve_table(self, curves: dict[str, Curve]) -> Table:
        rows: list[list[Any]] = []
        for nm, c in curves.items():
            for e in c.eps:
                rows.append([NORM_LABEL[nm], e, round(c.robust_accuracy(e), 4),
                             round(c.robust_accuracy(e, "minimal"), 4), c.attacked[e],
                             c.confirmed[e]])
        return Table(
            id="robustness-curve", title="Robust accuracy by epsilon",
            columns=["norm", "eps", "robust accuracy (worst case)", "minimal attack only",
                     "samples attacked at eps", "broken by bounded attacks"],
            rows=rows,
            caption="Worst case: no attack of the curve or of the suite found an adversarial "
                    "within eps. Minimal attack only: FMN's smallest perturbation exceeds eps. "
                    "The bounded attacks (APGD) run only on the samples near each eps that the "
                    "curve still counts as robust.")

    def _attack_table(self, curves: dict[str, Curve], suites: dict[str, list[AttackResult]],
                      kinds: dict[str, str]) -> Table:
        rows: list[list[Any]] = []
        for nm, res in suites.items():
            for r in res:
                found = r.info.get("minimal_norms")
                med_src = found[torch.isfinite(found)] if found is not None else \
                    r.norms[r.success]
                med = float(med_src.median()) if len(med_src) else None
                rows.append([r.name, kinds[r.name], NORM_LABEL[nm], r.eps, len(r),
                             round(r.success_rate, 4), None if med is None else round(med, 4),
                             round(r.time, 2), r.evaluations])
        rows.extend(self.escalation_rows)
        for nm, esc in self.escalated.items():
            for r in esc:
                rows.append([r.name, kinds[r.name], NORM_LABEL[nm], r.eps, len(r),
                             round(r.success_rate, 4),
                             round(float(r.norms[r.success].median()), 4)
                             if bool(r.success.any()) else None, round(r.time, 2),
                             r.evaluations])
        for nm, c in curves.items():
            merged: dict[str, AttackStats] = {}
            for st in c.stats.values():
                m = merged.setdefault(st.name, AttackStats(st.name, st.kind, st.norm, None))
                m.samples += st.samples
                m.successes += st.successes
                m.time += st.time
                m.evaluations += st.evaluations
                m.norms += st.norms
            for m in merged.values():
                med = m.median_norm
                rows.append([f"{m.name} (curve)", m.kind, NORM_LABEL[nm],
                             "none" if m.kind == "minimal" else "each eps", m.samples,
                             round(m.success_rate, 4) if m.samples else None,
                             None if math.isnan(med) else round(med, 4), round(m.time, 2),
                             m.evaluations])
        return Table(
            id="robustness-attacks", title="Attacks",
            columns=["attack", "kind", "norm", "eps", "samples", "success rate",
                     "median norm", "time (s)", "model evaluations"],
            rows=rows,
            caption="Suite rows: every attack on the same correctly classified samples at the "
                    "headline eps (minimal-perturbation attacks: success within eps; median "
                    "norm of their unbounded minimal perturbations). Curve rows: FMN on every "
                    "correctly classified sample, APGD on the samples attacked at each eps.")

    @styled
    def _curve_figure(self, curves: dict[str, Curve], clean_acc: float) -> Figure:
        k = len(curves)
        fig, axes = new_figure(4.0 * k, 3.0, ncols=k, squeeze=False)
        for ax, (nm, c) in zip(axes[0], curves.items(), strict=True):
            top = max(c.eps) * 1.25
            grid = np.linspace(0, top, 200)
            ax.step(grid, c.accuracy_at(grid, "minimal"), where="post", linestyle="--",
                    color=PALETTE[0], label="minimal attack (FMN)")
            ax.step(grid, c.accuracy_at(grid), where="post", color=PALETTE[1],
                    label="worst case, all attacks")
            ax.plot(c.eps, [c.robust_accuracy(e) for e in c.eps], "o", color=PALETTE[1],
                    markersize=4, label="reported eps")
            for e in c.eps:
                ax.annotate(f"{c.robust_accuracy(e):.0%}", (e, c.robust_accuracy(e)),
                            textcoords="offset points", xytext=(3, 4), fontsize=7)
            ax.set_xlim(0, top)
            ax.set_ylim(0, 1.02)
            ax.set_xlabel(f"{NORM_LABEL[nm]} epsilon")
            ax.set_ylabel("robust accuracy")
            ax.set_title(f"{NORM_LABEL[nm]} (clean accuracy {clean_acc:.1%})")
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=7, loc="upper right")
        fig.tight_layout()
        return to_figure(fig, "robustness-curves", "Robust accuracy against epsilon",
                         "Share of samples that no attack could fool within epsilon. Dashed: "
                         "from the minimal-perturbation attack alone; solid: worst case over "
                         "all attacks (bounded attacks confirm the dots).")

    @styled
    def _corruption_figure(self, corr: dict[str, list[float]], clean_acc: float) -> Figure:
        sev = [0] + [v for v in self.p.severities if 1 <= v <= 5]
        fig, ax = new_figure(4.6, 3.0)
        for i, (name, accs) in enumerate(corr.items()):
            ax.plot(sev, [clean_acc, *accs], "o-", color=PALETTE[i % len(PALETTE)],
                    markersize=3, label=CORRUPTIONS[name].title)
        ax.set_xticks(sev)
        ax.set_xlabel("severity (0 = clean)")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_title("Accuracy under common corruptions")
        fig.tight_layout()
        return to_figure(fig, "robustness-corruptions", "Accuracy under common corruptions",
                         "Each line is one corruption at severities 1-5 (CIFAR-10-C "
                         "parameters); severity 0 is the clean accuracy.")
