"""Measure a :class:`~audit.certified.evaluation.CertifiedEvaluation`: CERTIFY (and PREDICT)
at each sigma on a seeded sample of the audit data."""

from __future__ import annotations

import time

import numpy as np
import torch

from audit.certified.evaluation import CertifiedEvaluation, SigmaCertification
from audit.certified.params import CertifiedParams, card_sigmas, key, sigmas_of
from audit.certified.smoothing import Certificates, Smoothing
from audit.distributed import current
from audit.subject import Subject, derive_seed

__all__ = ["measure_certified", "sample_rows"]


def sample_rows(subject: Subject, max_samples: int) -> np.ndarray:
    """The audited rows: all of them, or a seeded random subset of ``max_samples`` (sorted)."""
    n = len(subject.data)
    if n <= max_samples:
        return np.arange(n)
    return np.sort(subject.rng("certified").choice(n, size=max_samples, replace=False))


UNIT = 8
"""Inputs certified per unit of work: each unit draws its noise from its own seed, so a
distributed audit (:mod:`audit.distributed`) splits the units over its ranks and certifies
every input as one process does."""


def certify_in_units(sm: Smoothing, x: torch.Tensor, p: CertifiedParams,
                     seed: int) -> Certificates:
    """CERTIFY ``x`` in units of :data:`UNIT` inputs, unit ``k`` seeded from ``seed`` and
    ``k`` (split over the ranks of a distributed audit)."""
    def one(k: int, sl: slice) -> Certificates:
        return sm.certify(x[sl], p.n0, p.n, p.alpha, seed=derive_seed(seed, f"unit {k}"))

    return Certificates.join(current().map(one, int(x.shape[0]), UNIT))


def measure_certified(subject: Subject, p: CertifiedParams) -> CertifiedEvaluation:
    """Certify ``subject``'s model at every sigma of :func:`sigmas_of`; each sigma draws its
    noise from its own seed (the run seed, the check and the sigma), so adding a sigma does
    not change the others' numbers."""
    rows = sample_rows(subject, p.max_samples)
    x, y = subject.data.x[rows], subject.data.y[rows].numpy().astype(np.int64)
    base_correct = subject.data_pred[rows].numpy() == y
    results = []
    for sigma in sigmas_of(p, subject):
        start = time.perf_counter()
        sm = Smoothing(subject.model, sigma, subject.card.num_classes,
                       batch_size=p.batch_size, device=subject.device)
        cert = certify_in_units(sm, x, p, derive_seed(subject.seed,
                                                      f"certified:sigma={key(sigma)}"))
        results.append(SigmaCertification(
            sigma=sigma, y=y, prediction=cert.prediction, radius=cert.radius,
            predict=cert.predict, n0=p.n0, n=p.n, alpha=p.alpha,
            seconds=time.perf_counter() - start, forwards=cert.forwards))
    lo, hi = subject.card.input.range
    return CertifiedEvaluation(
        samples=len(rows), base_correct=base_correct, sigmas=results,
        radii=sorted(float(r) for r in p.radii), kind=subject.data.kind,
        bounds=(float(lo), float(hi)), card_metrics=dict(subject.card.metrics),
        card_sigmas=card_sigmas(subject), indices=rows.astype(np.int64),
        data_sha256=subject.data.sha256, data_size=len(subject.data))
