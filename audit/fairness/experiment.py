"""The mitigation experiment behind ``audit mitigate``: retrain or post-process a model with
each method and strength, and measure accuracy and fairness gaps on held-out data.

Every variant starts from the same seed and the training settings of the model's recipe, so
the only difference between a variant and the baseline is the mitigation itself:

- ``baseline``: the architecture retrained with the recipe's settings (for a bundled model this
  reproduces the shipped checkpoint);
- ``reweighing``: Kamiran & Calders weights in the loss;
- ``penalty-dp`` / ``penalty-eo``: cross-entropy + lambda x relaxed demographic-parity /
  equalized-odds gap, one model per lambda;
- ``thresholds-dp`` / ``thresholds-eo``: the baseline's scores with group thresholds chosen by
  Fairlearn's ThresholdOptimizer on the training data, one per tolerance.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from audit.card import ModelCard
from audit.errors import UsageError
from audit.fairness.groups import INTERSECTION, sensitive_frame
from audit.fairness.metrics import FairnessResult, assess_fairness
from audit.fairness.mitigation import (
    FairnessPenalty,
    GroupThresholds,
    Reweighing,
    group_codes,
    train_with_penalty,
)
from audit.fairness.plots import tradeoff_figure
from audit.result import AuditResult, Finding, Section, Severity, Table
from audit.subject import AuditData
from audit.zoo.common import reproducible

METHODS: dict[str, str] = {
    "reweighing": "reweighing (Kamiran & Calders)",
    "penalty-dp": "fairness penalty: demographic parity",
    "penalty-eo": "fairness penalty: equalized odds",
    "thresholds-dp": "group thresholds: demographic parity",
    "thresholds-eo": "group thresholds: equalized odds",
}
DEFAULT_LAMBDAS = (0.1, 0.3, 1.0, 3.0)
DEFAULT_TOLS = (0.0, 0.05)


@dataclass
class TrainingSettings:
    """How every variant is trained (taken from the card's recipe where it says)."""

    epochs: int = 20
    lr: float = 3e-3
    batch_size: int = 256
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int | None = None

    @classmethod
    def from_card(cls, card: ModelCard, **overrides: Any) -> TrainingSettings:
        """Settings from ``card.recipe`` (epochs, batch_size, seed, threads, and lr /
        weight_decay numbers written in its optimizer text), then ``overrides`` not None."""
        r = card.recipe or {}
        s = cls()
        for key in ("epochs", "batch_size", "seed", "threads"):
            if isinstance(r.get(key), int) and not isinstance(r.get(key), bool):
                setattr(s, key, int(r[key]))
        for key in ("lr", "weight_decay"):
            if isinstance(r.get(key), int | float) and not isinstance(r.get(key), bool):
                setattr(s, key, float(r[key]))
            else:
                m = re.search(rf"\b{key}=([0-9.eE+-]+)", str(r.get("optimizer", "")))
                if m:
                    with contextlib.suppress(ValueError):
                        setattr(s, key, float(m.group(1)))
        for key, value in overrides.items():
            if value is not None:
                setattr(s, key, value)
        return s


@dataclass
class Variant:
    """One mitigated model measured on the evaluation data."""

    method: str
    setting: str
    accuracy: float
    result: FairnessResult
    seconds: float

    @property
    def key(self) -> str:
        return self.method + (f"[{self.setting}]" if self.setting else "")

    @property
    def constant(self) -> bool:
        """Whether the variant (almost) always predicts the same class: a collapsed model
        whose zero gaps mean nothing."""
        rate = self.result.overall["selection_rate"]
        return rate < 0.005 or rate > 0.995


def fresh_model(card: ModelCard, seed: int) -> nn.Module:
    """A newly initialised model of the card's architecture (seeded like the recipes)."""
    from audit.loading import import_arch

    if not card.arch:
        raise UsageError("audit mitigate retrains the model, so its card must name the "
                         "architecture ('arch': 'module:Class')")
    torch.manual_seed(seed)
    return import_arch(card.arch)(**card.arch_kwargs)


def _scores(model: nn.Module, x: torch.Tensor, positive: int) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        out = [torch.softmax(model(x[i : i + 2048]), 1)[:, positive] for i in
               range(0, len(x), 2048)]
    return torch.cat(out).numpy().astype(np.float64)


def run_mitigation(
    card: ModelCard,
    train: AuditData,
    test: AuditData,
    sensitive: Sequence[str],
    *,
    methods: Sequence[str] = tuple(METHODS),
    lambdas: Sequence[float] = DEFAULT_LAMBDAS,
    tols: Sequence[float] = DEFAULT_TOLS,
    settings: TrainingSettings | None = None,
    positive: int = 1,
    target: Sequence[str] | None = None,
    n_boot: int = 200,
    min_group_size: int = 30,
    progress: Callable[[str], None] | None = None,
) -> list[Variant]:
    """Train and measure the baseline and every requested variant.

    ``sensitive`` are the columns measured; ``target`` the columns whose intersection the
    mitigations act on (default: all of ``sensitive``).
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UsageError(f"unknown mitigation method(s) {', '.join(unknown)}; use "
                         f"{', '.join(METHODS)}")
    st = settings or TrainingSettings.from_card(card)
    target = list(target or sensitive)
    tr_sens = sensitive_frame(train.extras["frame"], target, where=train.name)
    te_eval = sensitive_frame(test.extras["frame"], list(sensitive), where=test.name)
    te_target = sensitive_frame(test.extras["frame"], target, where=test.name)
    ytr = (train.y == positive).long()
    yte = (test.y == positive).numpy().astype(np.int64)
    codes, _ = group_codes(tr_sens)
    groups = torch.from_numpy(codes)
    variants: list[Variant] = []

    def say(text: str) -> None:
        if progress:
            progress(text)

    def measure(method: str, setting: str, pred: np.ndarray, score: np.ndarray | None,
                start: float) -> None:
        res = assess_fairness(yte, pred, te_eval, score=score, min_group_size=min_group_size,
                              n_boot=n_boot, random_state=st.seed)
        variants.append(Variant(method=method, setting=setting,
                                accuracy=float((pred == yte).mean()), result=res,
                                seconds=time.perf_counter() - start))

    def train_one(penalty: FairnessPenalty | None = None,
                  weights: torch.Tensor | None = None) -> nn.Module:
        model = fresh_model(card, st.seed)
        with reproducible(threads=st.threads or None):
            train_with_penalty(model, train.x, ytr if card.num_classes == 2 else train.y,
                               epochs=st.epochs, lr=st.lr, batch_size=st.batch_size,
                               seed=st.seed, weight_decay=st.weight_decay, groups=groups,
                               penalty=penalty, sample_weight=weights)
        return model

    def decide(model: nn.Module, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        score = _scores(model, x, positive)
        with torch.no_grad():
            pred = (model(x).argmax(1) == positive).numpy().astype(np.int64)
        return pred, score

    say("baseline")
    t0 = time.perf_counter()
    base = train_one()
    pred, score = decide(base, test.x)
    measure("baseline", "", pred, score, t0)
    if "reweighing" in methods:
        say("reweighing")
        t0 = time.perf_counter()
        w = Reweighing().fit_transform(ytr.numpy(), tr_sens)
        model = train_one(weights=torch.from_numpy(w).float())
        pred, score = decide(model, test.x)
        measure("reweighing", "", pred, score, t0)
    for key, constraint in (("penalty-dp", "demographic_parity"),
                            ("penalty-eo", "equalized_odds")):
        if key not in methods:
            continue
        for lam in lambdas:
            say(f"{key} lambda={lam:g}")
            t0 = time.perf_counter()
            model = train_one(penalty=FairnessPenalty(constraint, lam,  # type: ignore[arg-type]
                                                      positive=1))
            pred, score = decide(model, test.x)
            measure(key, f"λ={lam:g}", pred, score, t0)
    train_scores = _scores(base, train.x, positive)
    test_scores = _scores(base, test.x, positive)
    for key, constraint in (("thresholds-dp", "demographic_parity"),
                            ("thresholds-eo", "equalized_odds")):
        if key not in methods:
            continue
        # Fairlearn relaxes only demographic parity; equalized odds is always exact
        for tol in (tols if constraint == "demographic_parity" else [0.0]):
            say(f"{key} tol={tol:g}")
            t0 = time.perf_counter()
            thr = GroupThresholds(constraint, tol=tol or None)  # type: ignore[arg-type]
            thr.fit(train_scores, ytr.numpy(), tr_sens)
            pred = thr.predict(test_scores, te_target, random_state=st.seed)
            measure(key, f"tol={tol:g}" if constraint == "demographic_parity" else "exact",
                    pred, None, t0)
    return variants


GAPS = (("demographic_parity_difference", "DP diff"),
        ("equalized_odds_difference", "EO diff"))


def mitigation_section(variants: list[Variant], settings: TrainingSettings,
                       sensitive: Sequence[str], target: Sequence[str]) -> Section:
    """The report section: trade-off table and plot, and a finding per method saying what it
    bought and what it cost."""
    groupings = [g.name for g in variants[0].result.groupings]
    keys = {g.name: g.key for g in variants[0].result.groupings}
    target_name = INTERSECTION.join(target)
    cols = ["method", "setting", "accuracy"]
    for gname in groupings:
        cols += [f"{label} ({gname})" for _, label in GAPS]
    cols += ["seconds", "note"]
    rows: list[list[Any]] = []
    for v in variants:
        row: list[Any] = [v.method, v.setting, round(v.accuracy, 4)]
        for gname in groupings:
            g = next(x for x in v.result.groupings if x.name == gname)
            row += [_r(g.disparities[k].value) for k, _ in GAPS]
        row += [round(v.seconds, 1), "collapsed: predicts one class for everyone"
                if v.constant else ""]
        rows.append(row)
    table = Table(id="mitigation", title="Mitigation: accuracy and fairness gaps per method",
                  columns=cols, rows=rows,
                  caption=("Every variant is measured on the same held-out data. DP diff: "
                           "demographic parity difference; EO diff: equalized odds difference "
                           f"(lower is fairer). Mitigations act on the groups of {target_name}."))
    points = []
    for v in variants:
        p: dict[str, Any] = {"method": v.method, "setting": v.setting, "accuracy": v.accuracy}
        for g in v.result.groupings:
            for k, _ in GAPS:
                d = g.disparities[k]
                p[f"{g.key}.{k}"] = d.value
                p[f"{g.key}.{k}.ci"] = (d.ci_low, d.ci_high)
        points.append(p)
    # the first sensitive column alone and the groups the mitigations act on
    shown = list(dict.fromkeys(g for g in (groupings[0], target_name) if g in keys))
    panels = [(f"{keys[gname]}.{k}", f"{label} by {gname}") for gname in shown
              for k, label in GAPS]
    figure = tradeoff_figure(points, panels)
    base = variants[0]
    metrics: dict[str, float] = {}
    for v in variants:
        metrics[f"{v.key}.accuracy"] = v.accuracy
        for k, _ in GAPS:
            metrics[f"{v.key}.{keys[shown[-1]]}.{k}"] = _gap(v, keys[shown[-1]], k)
    findings = [_method_finding(method, [v for v in variants if v.method == method], base,
                                shown[-1])
                for method in dict.fromkeys(v.method for v in variants[1:])]
    tkey = keys[shown[-1]]
    usable = [v for v in variants if not v.constant] or variants
    best = min(usable, key=lambda v: _gap(v, tkey, "demographic_parity_difference"))
    summary = (f"{len(variants)} variants on {variants[0].result.n} held-out rows. Baseline: "
               f"accuracy {base.accuracy:.1%}, DP diff {_gap(base, tkey, GAPS[0][0]):.3f} and EO "
               f"diff {_gap(base, tkey, GAPS[1][0]):.3f} by {shown[-1]}. Smallest DP diff: "
               f"{_gap(best, tkey, GAPS[0][0]):.3f} ({best.key}) at accuracy "
               f"{best.accuracy:.1%}."
               + (f" {sum(v.constant for v in variants)} variant(s) collapsed to predicting "
                  "one class." if any(v.constant for v in variants) else ""))
    reading = (
        "Each mitigation is run from the same seed with the model's own training settings "
        f"(epochs {settings.epochs}, lr {settings.lr:g}, batch {settings.batch_size}, weight "
        f"decay {settings.weight_decay:g}, seed {settings.seed}) and measured on held-out data. "
        "Reweighing gives each (group, label) cell the weight P(group)P(label)/P(group, label) "
        "so that the label is independent of the group in training. The fairness penalty adds "
        "λ × the batch's soft demographic-parity (or equalized-odds) gap to the loss: larger λ "
        "trades more accuracy for a smaller gap. Group thresholds keep the baseline model and "
        "pick one (randomised) threshold per group with Fairlearn's ThresholdOptimizer; tol is "
        "the constraint violation allowed. Read the plot from the baseline: a good mitigation "
        "moves left (smaller gap) without dropping far (accuracy). Gaps have bootstrap "
        "intervals (bars); a move smaller than the bars may be noise.")
    return Section(check="mitigation", title="Bias mitigation: fairness against accuracy",
                   summary=summary, reading=reading, metrics=metrics, findings=findings,
                   figures=[figure], tables=[table],
                   duration_s=sum(v.seconds for v in variants))


def _r(v: float) -> float | None:
    return round(v, 4) if math.isfinite(v) else None


def _gap(v: Variant, key: str, metric: str) -> float:
    g = next(x for x in v.result.groupings if x.key == key)
    value = g.disparities[metric].value
    return value if math.isfinite(value) else math.inf


def _method_finding(method: str, runs: list[Variant], base: Variant, gname: str) -> Finding:
    key = next(g.key for g in base.result.groupings if g.name == gname)
    metric = ("equalized_odds_difference" if method.endswith("-eo")
              else "demographic_parity_difference")
    label = "EO diff" if metric.startswith("equalized") else "DP diff"
    b = _gap(base, key, metric)
    best = min([v for v in runs if not v.constant] or runs, key=lambda v: _gap(v, key, metric))
    g = _gap(best, key, metric)
    return Finding(
        id=f"mitigation.{method}", severity=Severity.INFO,
        title=(f"{METHODS[method]}: {label} {b:.3f} → {g:.3f} at accuracy "
               f"{best.accuracy:.1%} (baseline {base.accuracy:.1%})"),
        detail=(f"By {gname}, {METHODS[method]} ({best.setting or 'default'}) changes the "
                f"{label} from {b:.3f} to {g:.3f} and accuracy from {base.accuracy:.1%} to "
                f"{best.accuracy:.1%}. Every grouping: "
                + "; ".join(f"{x.name} {label} {_gap(base, x.key, metric):.3f} → "
                            f"{_gap(best, x.key, metric):.3f}"
                            for x in base.result.groupings) + "."),
        evidence={"method": method, "setting": best.setting, "grouping": gname,
                  "metric": metric, "baseline_gap": b, "gap": g,
                  "baseline_accuracy": base.accuracy, "accuracy": best.accuracy},
        recommendation="Pick the variant whose gap and accuracy fit the use; check its full "
                       "fairness section before deploying it.")


def mitigate(
    model: str,
    *,
    data: str | None = None,
    train: str | None = None,
    evaluate: str | None = None,
    target: str | None = None,
    sensitive: Sequence[str] | None = None,
    groups: Sequence[str] | None = None,
    methods: Sequence[str] = tuple(METHODS),
    lambdas: Sequence[float] = DEFAULT_LAMBDAS,
    tols: Sequence[float] = DEFAULT_TOLS,
    epochs: int | None = None,
    seed: int | None = None,
    n_boot: int = 200,
    config: str | None = None,
    fail_on: str | None = None,
    command: str = "",
    progress: Callable[[str], None] | None = None,
) -> AuditResult:
    """The fairness audit of ``model`` plus the mitigation experiment, as one result.

    Training data: the bundled dataset's ``train`` split (``data``, default the card's dataset)
    evaluated on its ``test`` split, or the CSV files ``train`` and ``evaluate``. ``sensitive``
    are the columns measured (default: the data's or the card's), ``groups`` the columns whose
    intersection the mitigations act on (default: all sensitive columns).
    """
    from audit.datasets import load_dataset
    from audit.loading import load_model
    from audit.result import summarize
    from audit.runner import load_data, run_audit

    loaded = load_model(model)
    card = loaded.card
    if card is None:
        raise UsageError(f"{model} has no card.json; mitigation needs the card's architecture, "
                         "dataset and classes")
    if card.num_classes != 2:
        raise UsageError(f"audit mitigate needs a binary classifier; {card.name} has "
                         f"{card.num_classes} classes")
    if (train is None) != (evaluate is None):
        raise UsageError("pass both --train and --eval (CSV files), or neither to use the "
                         "bundled dataset's train and test splits")
    if train is not None and evaluate is not None:
        if data is not None:
            raise UsageError("pass either --data (a bundled dataset) or --train/--eval files")
        train_data = load_data(train, card, target=target, sensitive=sensitive)
        test_data = load_data(evaluate, card, target=target, sensitive=sensitive)
    else:
        name = data or card.dataset
        if not name:
            raise UsageError(f"{card.name}'s card names no dataset; pass --data NAME or "
                             "--train/--eval CSV files")
        train_data = load_dataset(name, "train")
        test_data = load_data(name, card, sensitive=sensitive)
    cols = list(sensitive or test_data.extras.get("sensitive") or card.sensitive or [])
    if not cols:
        raise UsageError("no sensitive columns: pass --sensitive COL[,COL]")
    test_data.extras["sensitive"] = cols
    for d in (train_data, test_data):
        if d.extras.get("frame") is None:
            raise UsageError(f"{d.name} has no named columns; mitigation needs tabular data "
                             "with the sensitive columns")
    result = run_audit(loaded, data=test_data, checks=["fairness"], config=config, seed=seed,
                       fail_on=fail_on, command=command)
    settings = TrainingSettings.from_card(card, epochs=epochs, seed=seed)
    target_cols = list(groups or cols)
    variants = run_mitigation(card, train_data, test_data, cols, methods=methods,
                              lambdas=lambdas, tols=tols, settings=settings,
                              target=target_cols, n_boot=n_boot, progress=progress)
    result.sections.append(mitigation_section(variants, settings, cols, target_cols))
    fail = Severity.parse(result.summary["fail_on"])
    result.summary = summarize(result.sections, fail, result.summary["duration_s"]
                               + sum(v.seconds for v in variants))
    return result
