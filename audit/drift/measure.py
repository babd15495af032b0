"""Measure drift between a subject's reference data and its (current) audit data."""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict

import numpy as np
import pandas as pd
import torch

from audit.drift.cbpe import estimate_accuracy
from audit.drift.embeddings import Embedder
from audit.drift.evaluation import DriftEvaluation
from audit.drift.features import benjamini_hochberg, feature_drift
from audit.drift.params import DriftParams
from audit.drift.twosample import classifier_test, mmd_test
from audit.subject import AuditData, Subject

__all__ = ["CONFIDENCE", "PREDICTED", "measure_drift", "raw_columns"]

PREDICTED = "predicted class"
CONFIDENCE = "confidence"


def raw_columns(ref: AuditData, cur: AuditData) -> tuple[pd.DataFrame, pd.DataFrame,
                                                         list[str]] | None:
    """The raw columns both tabular data sets share (the model's inputs, then the sensitive
    columns), with the categorical ones; ``None`` for images."""
    if ref.kind != "tabular":
        return None
    fr, fc = ref.extras.get("frame"), cur.extras.get("frame")
    encoder = cur.extras.get("encoder") or ref.extras.get("encoder")
    if fr is None or fc is None:  # numeric features only: the model's inputs themselves
        names = ref.feature_names or [f"x{i}" for i in range(int(ref.x.shape[1]))]
        return (pd.DataFrame(ref.x.numpy(), columns=names),
                pd.DataFrame(cur.x.numpy(), columns=names), [])
    inputs = list(encoder.columns) if encoder is not None else list(ref.feature_names or [])
    sensitive = [c for c in [*ref.extras.get("sensitive", []), *cur.extras.get("sensitive", [])]
                 if c not in inputs]
    columns = [c for c in dict.fromkeys([*inputs, *sensitive])
               if c in fr.columns and c in fc.columns]
    categorical = list(encoder.categorical) if encoder is not None else []
    return fr[columns], fc[columns], [c for c in categorical if c in columns]


def _feature_groups(data: AuditData) -> dict[str, list[int]]:
    """Encoded feature indices per raw column (one-hot columns of one raw column together)."""
    encoder = data.extras.get("encoder")
    groups: dict[str, list[int]] = defaultdict(list)
    if encoder is not None:
        for i, f in enumerate(encoder.features):
            groups[f.column].append(i)
    else:
        for i, name in enumerate(data.feature_names or []):
            groups[name].append(i)
    return dict(groups)


def _adjust_together(ev: DriftEvaluation, alpha: float) -> None:
    """Benjamini-Hochberg over every test of the check (columns, predictions, classifier,
    MMD), so that on data without drift any drift finding has probability at most ``alpha``."""
    tests = [f for f in [*ev.features, *ev.predictions] if not f.note]
    others = [t.p_value for t in (ev.classifier, ev.mmd) if t is not None]
    if not tests and not others:
        return
    adjusted = benjamini_hochberg(np.array([*(f.p_value for f in tests), *others]))
    new = {id(f): dataclasses.replace(f, p_adjusted=float(a), drifted=bool(a < alpha))
           for f, a in zip(tests, adjusted, strict=False)}
    ev.features = [new.get(id(f), f) for f in ev.features]
    ev.predictions = [new.get(id(f), f) for f in ev.predictions]
    rest = iter(adjusted[len(tests):])
    if ev.classifier is not None:
        ev.classifier_p_adjusted = float(next(rest))
    if ev.mmd is not None:
        ev.mmd_p_adjusted = float(next(rest))


def _out_of_range(ev: DriftEvaluation, subject: Subject, tol: float = 1e-4) -> None:
    """Share of current rows with an input outside what the model was built for, and per
    column: numeric raw columns past the encoder's training range (the encoder clips them, so
    the model never sees how far out they are), else inputs outside the card's range."""
    cur = subject.data
    encoder, frame = cur.extras.get("encoder"), cur.extras.get("frame")
    if encoder is not None and frame is not None:
        ev.input_range = (math.nan, math.nan)
        masks = {}
        for col, (lo, hi) in encoder.numeric.items():
            values = pd.to_numeric(frame[col], errors="coerce").to_numpy(np.float64)
            masks[col] = (values < lo - tol * abs(hi - lo)) | (values > hi + tol * abs(hi - lo))
        if not masks:
            return
        outside = np.stack(list(masks.values()), axis=1)
        ev.out_of_range = float(outside.any(axis=1).mean())
        shares = {c: float(m.mean()) for c, m in masks.items()}
    else:
        lo, hi = subject.card.input.range
        ev.input_range = (float(lo), float(hi))
        x = cur.x.reshape(len(cur), -1)
        rows = ((x < lo - tol) | (x > hi + tol)).numpy()
        ev.out_of_range = float(rows.any(axis=1).mean()) if len(x) else 0.0
        groups = _feature_groups(cur) if cur.kind == "tabular" else {}
        shares = {n: float(rows[:, cols].any(axis=1).mean()) for n, cols in groups.items()}
    ev.out_of_range_columns = sorted(((n, v) for n, v in shares.items() if v > 0),
                                     key=lambda t: -t[1])


def measure_drift(subject: Subject, p: DriftParams) -> DriftEvaluation:
    """Every drift measurement of the check (the subject must have a reference)."""
    ref, cur = subject.reference, subject.data
    assert ref is not None, "the drift check applies only with reference data"
    seed = int(subject.rng("drift").integers(2**31 - 1))
    ev = DriftEvaluation(reference=ref.source or ref.name, current=cur.source or cur.name,
                         kind=cur.kind, n_reference=len(ref), n_current=len(cur))
    _out_of_range(ev, subject)
    raw = raw_columns(ref, cur)
    if raw is not None:  # the family also holds 2 prediction and 2 whole-data tests
        ev.features = feature_drift(raw[0], raw[1], categorical=raw[2], alpha=p.alpha,
                                    power=p.power, psi_bins=p.psi_bins, extra_tests=4)
    embed = Embedder.of(subject)
    ev.embedding, ev.embedding_note = embed.source, embed.note
    emb_ref, logits_ref = embed.with_logits(ref.x)  # one pass over the reference
    e_ref, e_cur = emb_ref.numpy(), embed(cur.x).numpy()
    ev.mmd = mmd_test(e_ref, e_cur, permutations=p.mmd_permutations,
                      max_samples=p.mmd_max_samples, alpha=p.alpha, seed=seed,
                      device=subject.device)
    if cur.kind == "tabular":
        ev.classifier = classifier_test(ref.x.numpy(), cur.x.numpy(),
                                        groups=_feature_groups(cur), model="boosting",
                                        max_rows=p.c2st_max_rows, alpha=p.alpha, seed=seed)
        ev.classifier_on = "the model's input features"
    else:
        ev.classifier = classifier_test(e_ref, e_cur, model="logistic",
                                        max_rows=p.c2st_max_rows, alpha=p.alpha, seed=seed)
        ev.classifier_on = f"the model's embeddings ({embed.source})"
    proba_ref = torch.softmax(logits_ref, dim=1).numpy().astype(np.float64)
    proba_cur = subject.data_proba.numpy().astype(np.float64)
    classes = list(subject.card.classes)
    frames = [pd.DataFrame({PREDICTED: np.asarray(classes, dtype=object)[q.argmax(axis=1)],
                            CONFIDENCE: q.max(axis=1)}) for q in (proba_ref, proba_cur)]
    ev.predictions = feature_drift(
        frames[0], frames[1], categorical=[PREDICTED], alpha=p.alpha, power=p.power,
        psi_bins=p.psi_bins, extra_tests=2 + sum(not f.note for f in ev.features))
    _adjust_together(ev, p.alpha)
    k = len(classes)
    shares = [np.bincount(q.argmax(axis=1), minlength=k) / len(q) for q in (proba_ref,
                                                                             proba_cur)]
    ev.class_shares = [(c, float(shares[0][i]), float(shares[1][i]))
                       for i, c in enumerate(classes)]
    ev.confidence_reference = proba_ref.max(axis=1)
    ev.confidence_current = proba_cur.max(axis=1)
    try:
        ev.accuracy = estimate_accuracy(
            proba_ref, ref.y.numpy(), proba_cur, cur.y.numpy() if cur.labelled else None,
            bootstrap=p.bootstrap, seed=seed)
    except ValueError as e:  # e.g. a reference without errors has nothing to calibrate on
        ev.notes.append(f"No accuracy estimate without labels: {e}.")
    return ev
