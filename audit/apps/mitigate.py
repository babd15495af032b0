"""The mitigation experiment behind ``audit mitigate``: retrain or post-process a model with
each method and strength, and measure accuracy and fairness gaps on held-out data.

Everything is compared with **your model**: the loaded checkpoint (the model under audit) on the
same held-out data, as ``audit run`` measures it. The other rows:

- ``baseline``: the architecture retrained with the recipe's settings and no mitigation (for a
  bundled model this reproduces the shipped checkpoint). Reweighing and the penalties retrain
  the model, so they differ from your model by the retraining *and* the mitigation; this row,
  from the same seed and settings, separates the two. It is trained only when one of them is
  asked for;
- ``reweighing``: Kamiran & Calders weights in the loss;
- ``reweighing-slice``: one model per ``--slice`` rule, the slice's rows upweighted so that it
  carries half of the training loss (:class:`~audit.fairness.mitigation_slices.SliceReweighing`);
- ``correlation-remover``: Fairlearn's ``CorrelationRemover`` on the encoded inputs (the
  decorrelation baseline; the sensitive inputs zeroed, the others decorrelated from the
  sensitive groups; one model per ``alpha``), trained and measured on the transformed inputs;
- ``penalty-dp`` / ``penalty-eo``: cross-entropy + lambda x relaxed demographic-parity /
  equalized-odds gap, one model per lambda;
- ``thresholds-dp`` / ``thresholds-eo``: your model's scores with group thresholds chosen by
  Fairlearn's ThresholdOptimizer on the training data, one per tolerance (post-processing: no
  retraining).

With ``slices`` (rules as the slices check writes them, read by
:func:`audit.slices.conditions.parse_rule` and applied to the raw frames), every row also gets
each slice's error rate and its gap to the rest of the held-out rows, so a slice's gap before
(your model) and after each mitigation is seen side by side.

A model of more than two classes is judged on one favourable class against the rest
(``positive_class``); every accuracy here is then that decision's.

The methods are :mod:`audit.fairness.mitigation`'s; the training is :mod:`audit.training`'s;
the report section is :mod:`audit.apps.mitigate_section`'s.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from audit.apps.mitigate_section import BASELINE, METHODS, YOURS, Variant, mitigation_section
from audit.card import ModelCard
from audit.errors import DataError, UsageError
from audit.fairness.groups import sensitive_frame
from audit.fairness.metrics import assess_fairness
from audit.fairness.mitigation import (
    CorrelationRemoval,
    FairnessPenalty,
    GroupThresholds,
    Reweighing,
    group_codes,
    train_with_penalty,
)
from audit.fairness.mitigation_slices import SliceReweighing, slice_gap
from audit.result import AuditResult, Severity, summarize
from audit.subject import AuditData
from audit.training import reproducible

DEFAULT_LAMBDAS = (0.1, 0.3, 1.0, 3.0)
DEFAULT_TOLS = (0.0, 0.05)
DEFAULT_ALPHAS = (1.0,)
DEFAULT_METHODS = ("reweighing", "penalty-dp", "penalty-eo", "thresholds-dp", "thresholds-eo")
"""The methods run when none are named (plus ``reweighing-slice`` when slices are given);
``correlation-remover`` is asked for by name."""
PENALTIES = (("penalty-dp", "demographic_parity"), ("penalty-eo", "equalized_odds"))
THRESHOLDS = (("thresholds-dp", "demographic_parity"), ("thresholds-eo", "equalized_odds"))
RETRAINED = ("reweighing", "reweighing-slice", "correlation-remover", "penalty-dp",
             "penalty-eo")
"""The methods that retrain the model (and so need the retrained baseline beside them)."""

__all__ = ["DEFAULT_ALPHAS", "DEFAULT_LAMBDAS", "DEFAULT_METHODS", "DEFAULT_TOLS", "METHODS",
           "TrainingSettings", "Variant", "default_methods", "fresh_model", "mitigate",
           "read_slices", "run_mitigation"]


def default_methods(slices: Sequence[str] = ()) -> list[str]:
    """The methods run when none are named: :data:`DEFAULT_METHODS`, and reweighing by slice
    when there are slices."""
    return [*DEFAULT_METHODS, *(["reweighing-slice"] if slices else [])]


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


def fresh_model(card: ModelCard, seed: int) -> nn.Module:
    """A newly initialised model of the card's architecture (seeded like the recipes)."""
    from audit.loading import import_arch

    if not card.arch:
        raise UsageError("audit mitigate retrains the model, so its card must name the "
                         "architecture ('arch': 'module:Class')")
    torch.manual_seed(seed)
    return import_arch(card.arch)(**card.arch_kwargs)


def _outputs(model: nn.Module, x: torch.Tensor, positive: int) -> tuple[np.ndarray, np.ndarray]:
    """Favourable decisions (argmax is ``positive``, as the audit decides) and the favourable
    class's probabilities, in batches on the model's own device."""
    device = next((t.device for t in (*model.parameters(), *model.buffers())),
                  torch.device("cpu"))
    model.eval()
    preds, scores = [], []
    with torch.no_grad():
        for i in range(0, len(x), 2048):
            logits = model(x[i : i + 2048].to(device)).float().cpu()
            preds.append(logits.argmax(1))
            scores.append(torch.softmax(logits, 1)[:, positive])
    pred = (torch.cat(preds) == positive).numpy().astype(np.int64)
    return pred, torch.cat(scores).numpy().astype(np.float64)


Slice = tuple[str, np.ndarray, np.ndarray]
"""A slice rule (as :func:`~audit.slices.conditions.rule_text` writes it) and its rows in the
training and in the held-out data."""


def _slice_rows(rule: str, conditions: Sequence[Any], data: AuditData) -> np.ndarray:
    frame = data.extras["frame"].reset_index(drop=True)
    absent = [c.column for c in conditions if c.column not in frame.columns]
    if absent:
        shown = ", ".join(map(str, list(frame.columns)[:25]))
        raise DataError(f"--slice {rule!r} names column {absent[0]!r}, which {data.name} does "
                        f"not have; its columns are {shown}")
    rows = np.ones(len(frame), dtype=bool)
    for c in conditions:
        rows &= c.mask(frame)
    if not rows.any():
        raise DataError(f"--slice {rule!r} matches no row of {data.name} ({len(frame)} rows); "
                        "check the values in the rule")
    return rows


def read_slices(rules: Sequence[str], train: AuditData, test: AuditData) -> list[Slice]:
    """Each rule read (:class:`UsageError` when it cannot be) and applied to the raw columns
    of both data (:class:`DataError` for a column they lack or a rule no row matches)."""
    from audit.slices.conditions import parse_rule, rule_text

    out: list[Slice] = []
    for rule in rules:
        try:
            conditions = parse_rule(rule)
        except ValueError as e:
            raise UsageError(f"--slice: {e}; write a rule like \"age < 25 and sex == 'Male'\" "
                             "(strings quoted, 'and' between conditions)") from None
        text = rule_text(conditions)
        if text not in (r for r, _, _ in out):
            out.append((text, _slice_rows(rule, conditions, train),
                        _slice_rows(rule, conditions, test)))
    return out


def _sensitive_inputs(data: AuditData, columns: Sequence[str]) -> list[int]:
    """The model inputs that encode one of ``columns`` (a numeric input named like it, or its
    one-hot columns ``column=value``)."""
    encoder = data.extras.get("encoder")
    if encoder is not None:
        return [j for j, f in enumerate(encoder.features) if f.column in columns]
    names = data.feature_names or []
    return [j for j, n in enumerate(names)
            if any(n == c or n.startswith(f"{c}=") for c in columns)]


class _Experiment:
    """The shared inputs of every variant and the list they are measured into."""

    def __init__(self, card: ModelCard, train: AuditData, test: AuditData,
                 sensitive: Sequence[str], target: Sequence[str], settings: TrainingSettings,
                 positive: int, n_boot: int, min_group_size: int,
                 progress: Callable[[str], None] | None, slices: Sequence[Slice] = ()) -> None:
        self.card, self.train, self.test, self.st = card, train, test, settings
        self.target, self.slices = list(target), list(slices)
        self.positive, self.n_boot, self.min_group_size = positive, n_boot, min_group_size
        self.progress = progress
        self.tr_sens = sensitive_frame(train.extras["frame"], list(target), where=train.name)
        self.te_eval = sensitive_frame(test.extras["frame"], list(sensitive), where=test.name)
        self.te_target = sensitive_frame(test.extras["frame"], list(target), where=test.name)
        self.ytr = (train.y == positive).long()
        self.yte = (test.y == positive).numpy().astype(np.int64)
        self.groups = torch.from_numpy(group_codes(self.tr_sens)[0])
        self.variants: list[Variant] = []

    def say(self, text: str) -> None:
        if self.progress:
            self.progress(text)

    def measure(self, method: str, setting: str, pred: np.ndarray, score: np.ndarray | None,
                start: float) -> None:
        res = assess_fairness(self.yte, pred, self.te_eval, score=score,
                              min_group_size=self.min_group_size, n_boot=self.n_boot,
                              random_state=self.st.seed)
        wrong = pred != self.yte
        self.variants.append(Variant(method=method, setting=setting,
                                     accuracy=float((pred == self.yte).mean()), result=res,
                                     seconds=time.perf_counter() - start,
                                     slices=[slice_gap(rule, rows, wrong)
                                             for rule, _, rows in self.slices]))

    def train_one(self, penalty: FairnessPenalty | None = None,
                  weights: torch.Tensor | None = None, x: torch.Tensor | None = None
                  ) -> nn.Module:
        st = self.st
        model = fresh_model(self.card, st.seed)
        with reproducible(threads=st.threads or None):  # on the model's own classes
            train_with_penalty(model, self.train.x if x is None else x, self.train.y,
                               epochs=st.epochs, lr=st.lr,
                               batch_size=st.batch_size, seed=st.seed,
                               weight_decay=st.weight_decay, groups=self.groups,
                               penalty=penalty, sample_weight=weights)
        return model

    def trained(self, method: str, setting: str, x_test: torch.Tensor | None = None,
                start: float | None = None, **kw: Any) -> nn.Module:
        """Train a variant and measure it on the test data (``x_test`` when the variant
        transforms the inputs)."""
        t0 = time.perf_counter() if start is None else start
        model = self.train_one(**kw)
        self.measure(method, setting, *_outputs(model, self.test.x if x_test is None
                                                else x_test, self.positive), t0)
        return model

    def decorrelated(self, alpha: float) -> None:
        """Fairlearn's CorrelationRemover on the inputs, the model retrained on them and
        measured on the held-out inputs transformed the same way."""
        t0 = time.perf_counter()
        cr = CorrelationRemoval(_sensitive_inputs(self.train, self.target), alpha=alpha)
        xtr = cr.fit_transform(self.train.x.numpy(), self.tr_sens)
        xte = cr.transform(self.test.x.numpy(), self.te_target)
        self.trained("correlation-remover", f"α={alpha:g}", x_test=torch.from_numpy(xte),
                     start=t0, x=torch.from_numpy(xtr))

    def thresholded(self, key: str, constraint: str, tol: float, scores: tuple[np.ndarray,
                    np.ndarray]) -> None:
        """Group thresholds on the post-processed model's scores, measured on the test
        data."""
        t0 = time.perf_counter()
        thr = GroupThresholds(constraint, tol=tol or None)  # type: ignore[arg-type]
        thr.fit(scores[0], self.ytr.numpy(), self.tr_sens)
        pred = thr.predict(scores[1], self.te_target, random_state=self.st.seed)
        self.measure(key, f"tol={tol:g}" if constraint == "demographic_parity" else "exact",
                     pred, None, t0)


def _checked_slices(methods: Sequence[str], slices: Sequence[str], alphas: Sequence[float],
                    train: AuditData, test: AuditData
                    ) -> tuple[list[Slice], list[np.ndarray]]:
    """The slices read and applied, and the training weights of reweighing by each slice when
    asked for (empty otherwise): every error before anything is trained."""
    if "reweighing-slice" in methods and not slices:
        raise UsageError("reweighing-slice reweighs the rows of a slice: name it with --slice "
                         "RULE (e.g. --slice \"age < 25\"), as the slices check writes it")
    bad = [a for a in alphas if not 0.0 <= a <= 1.0]
    if bad:
        raise UsageError(f"correlation-remover's alpha is between 0 and 1, got {bad[0]:g}")
    found = read_slices(slices, train, test)
    weights = ([SliceReweighing().fit_transform(rows, f"--slice {rule!r}")
                for rule, rows, _ in found] if "reweighing-slice" in methods else [])
    return found, weights


def run_mitigation(
    card: ModelCard,
    train: AuditData,
    test: AuditData,
    sensitive: Sequence[str],
    *,
    model: nn.Module | None = None,
    methods: Sequence[str] = DEFAULT_METHODS,
    lambdas: Sequence[float] = DEFAULT_LAMBDAS,
    tols: Sequence[float] = DEFAULT_TOLS,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    slices: Sequence[str] = (),
    settings: TrainingSettings | None = None,
    positive: int = 1,
    target: Sequence[str] | None = None,
    n_boot: int = 200,
    min_group_size: int = 30,
    progress: Callable[[str], None] | None = None,
) -> list[Variant]:
    """Measure ``model`` (the model under audit, first: what the others are compared with),
    the retrained baseline when a retraining method is asked for, and every requested variant.

    Without ``model`` the retrained baseline comes first and the thresholds post-process it.
    ``sensitive`` are the columns measured; ``target`` the columns whose intersection the
    mitigations act on (default: all of ``sensitive``); ``positive`` the favourable class.
    ``slices`` are rules (``age < 25 and sex == 'Male'``): ``reweighing-slice`` trains one
    model per rule, and every variant is measured on each slice; ``alphas`` are the strengths of
    ``correlation-remover`` (1: full decorrelation).
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UsageError(f"unknown mitigation method(s) {', '.join(unknown)}; use "
                         f"{', '.join(METHODS)}")
    found, slice_weights = _checked_slices(methods, slices, alphas, train, test)
    ex = _Experiment(card, train, test, sensitive, list(target or sensitive),
                     settings or TrainingSettings.from_card(card), positive, n_boot,
                     min_group_size, progress, found)
    if model is not None:
        ex.say("your model")
        t0 = time.perf_counter()
        ex.measure(YOURS, "", *_outputs(model, test.x, positive), t0)
    base = None
    if model is None or any(m in RETRAINED for m in methods):
        ex.say("retrained baseline")
        base = ex.trained(BASELINE, "")
    if "reweighing" in methods:
        ex.say("reweighing")
        w = Reweighing().fit_transform(ex.ytr.numpy(), ex.tr_sens)
        ex.trained("reweighing", "", weights=torch.from_numpy(w).float())
    for (rule, _, _), w in zip(ex.slices, slice_weights, strict=False):
        ex.say(f"reweighing-slice {rule}")
        ex.trained("reweighing-slice", rule, weights=torch.from_numpy(w).float())
    for alpha in alphas if "correlation-remover" in methods else ():
        ex.say(f"correlation-remover alpha={alpha:g}")
        ex.decorrelated(alpha)
    for key, constraint in PENALTIES:
        for lam in lambdas if key in methods else ():
            ex.say(f"{key} lambda={lam:g}")
            ex.trained(key, f"λ={lam:g}", penalty=FairnessPenalty(
                constraint, lam, positive=positive))  # type: ignore[arg-type]
    post = model if model is not None else base
    if post is not None and any(m.startswith("thresholds-") for m in methods):
        scores = (_outputs(post, train.x, positive)[1], _outputs(post, test.x, positive)[1])
        for key, constraint in THRESHOLDS:
            # Fairlearn relaxes only demographic parity; equalized odds is always exact
            for tol in (tols if constraint == "demographic_parity" else [0.0]) \
                    if key in methods else ():
                ex.say(f"{key} tol={tol:g}")
                ex.thresholded(key, constraint, tol, scores)
    return ex.variants


def _load_data(card: ModelCard, data: str | None, train: str | None, evaluate: str | None,
               target: str | None, sensitive: Sequence[str] | None
               ) -> tuple[AuditData, AuditData]:
    """(training, evaluation) data: a bundled dataset's splits or two CSV files."""
    from audit.datasets import load_dataset
    from audit.runner import load_data

    if (train is None) != (evaluate is None):
        raise UsageError("pass both --train and --eval (CSV files), or neither to use the "
                         "bundled dataset's train and test splits")
    if train is not None and evaluate is not None:
        if data is not None:
            raise UsageError("pass either --data (a bundled dataset) or --train/--eval files")
        return (load_data(train, card, target=target, sensitive=sensitive),
                load_data(evaluate, card, target=target, sensitive=sensitive))
    name = data or card.dataset
    if not name:
        raise UsageError(f"{card.name}'s card names no dataset; pass --data NAME or "
                         "--train/--eval CSV files")
    return load_dataset(name, "train"), load_data(name, card, sensitive=sensitive)


def _checked_card(card: ModelCard | None, model: str, positive_class: str
                  ) -> tuple[ModelCard, int]:
    """The card and the index of the favourable class (a binary model's second class unless
    named); :class:`UsageError` when it cannot be decided."""
    from audit.fairness.check import positive_index

    if card is None:
        raise UsageError(f"{model} has no card.json; mitigation needs the card's architecture, "
                         "dataset and classes (pass --card card.json)")
    classes = card.classes
    if positive_class and positive_class not in classes and not (
            positive_class.isdigit() and int(positive_class) < len(classes)):
        raise UsageError(f"--positive-class {positive_class!r} is not a class of {card.name}; "
                         f"classes are {', '.join(classes[:10])}")
    pos = positive_index(classes, positive_class)
    if pos is None:
        raise UsageError(f"audit mitigate compares a binary decision; {card.name} has "
                         f"{card.num_classes} classes ({', '.join(classes[:10])}): name the "
                         "favourable one with --positive-class CLASS (it is then compared "
                         "against the rest)")
    return card, pos


def mitigate(
    model: str,
    *,
    arch: str | None = None,
    card: str | None = None,
    positive_class: str | None = None,
    data: str | None = None,
    train: str | None = None,
    evaluate: str | None = None,
    target: str | None = None,
    sensitive: Sequence[str] | None = None,
    groups: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    lambdas: Sequence[float] = DEFAULT_LAMBDAS,
    tols: Sequence[float] = DEFAULT_TOLS,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    slices: Sequence[str] = (),
    epochs: int | None = None,
    seed: int | None = None,
    n_boot: int = 200,
    config: str | None = None,
    fail_on: str | None = None,
    command: str = "",
    progress: Callable[[str], None] | None = None,
) -> AuditResult:
    """The fairness audit of ``model`` plus the mitigation experiment, as one result.

    ``model`` is a bundled name, a folder or a checkpoint (``arch`` and ``card`` as for
    ``audit run``). Training data: the bundled dataset's ``train`` split (``data``, default the
    card's dataset) evaluated on its ``test`` split, or the CSV files ``train`` and
    ``evaluate``. ``sensitive`` are the columns measured (default: the data's or the card's),
    ``groups`` the columns whose intersection the mitigations act on (default: all sensitive
    columns); ``positive_class`` the favourable class (default: ``[checks.fairness]
    positive_class``, else a binary model's second class). ``methods`` default to
    :func:`default_methods`; ``slices`` and ``alphas`` are :func:`run_mitigation`'s.
    """
    import dataclasses

    from audit.checks import make_params
    from audit.config import resolve_config
    from audit.fairness.check import FairnessCheck
    from audit.loading import load_model
    from audit.runner import run_audit

    loaded = load_model(model, arch=arch, card=card)
    fairness = dict(resolve_config(config).params.get("fairness", {}))
    if positive_class:
        fairness["positive_class"] = positive_class
    params = make_params(FairnessCheck, fairness, quick=False)
    model_card, pos = _checked_card(loaded.card, model, params.positive_class)
    if arch:  # retraining builds the architecture the user named
        model_card = dataclasses.replace(model_card, arch=arch)
    train_data, test_data = _load_data(model_card, data, train, evaluate, target, sensitive)
    for d in (train_data, test_data):
        if d.extras.get("frame") is None:
            raise UsageError(f"{d.name} has no named columns; mitigation needs tabular data "
                             "with the sensitive columns")
    cols = list(sensitive or test_data.extras.get("sensitive") or model_card.sensitive or [])
    if not cols:
        shown = ", ".join(map(str, list(test_data.extras["frame"].columns)[:25]))
        raise DataError(f"no sensitive column to mitigate for: none was passed and the card "
                        f"names none; the columns of {test_data.name} are {shown}; pass "
                        "--sensitive COLUMN")
    test_data.extras["sensitive"] = cols
    methods = list(methods) if methods else default_methods(slices)
    _checked_slices(methods, slices, alphas, train_data, test_data)  # before the long part
    result = run_audit(loaded, data=test_data, checks=["fairness"], config=config, seed=seed,
                       fail_on=fail_on, command=command,
                       params={"fairness": {"positive_class": positive_class}}
                       if positive_class else None)
    settings = TrainingSettings.from_card(model_card, epochs=epochs, seed=seed)
    target_cols = list(groups or cols)
    variants = run_mitigation(model_card, train_data, test_data, cols, model=loaded.model,
                              methods=methods, lambdas=lambdas, tols=tols, alphas=alphas,
                              slices=slices, settings=settings,
                              positive=pos, target=target_cols, n_boot=n_boot,
                              min_group_size=params.min_group_size, progress=progress)
    result.sections.append(mitigation_section(variants, settings, cols, target_cols,
                                              positive=model_card.classes[pos]
                                              if model_card.num_classes > 2 else ""))
    fail = Severity.parse(result.summary["fail_on"])
    result.summary = summarize(result.sections, fail, result.summary["duration_s"]
                               + sum(v.seconds for v in variants))
    return result
