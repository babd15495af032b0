"""Randomized smoothing (Cohen, Rosenfeld & Kolter 2019): PREDICT and CERTIFY by Monte Carlo.

The smoothed classifier ``g(x) = argmax_c P(f(x + e) = c)``, ``e ~ N(0, sigma^2 I)``, is
certifiably robust in L2: if the top class has probability at least ``pA`` under the noise,
``g`` keeps its prediction within radius ``sigma * Phi^-1(pA)``. CERTIFY selects the top class
on ``n0`` noise draws, bounds its probability below with a one-sided ``1 - alpha``
Clopper-Pearson bound on ``n`` fresh draws, and abstains when the bound is below 1/2; PREDICT
abstains unless a binomial test separates the top two counts at level ``alpha``.

Noise is batched: the ``N * n`` noisy copies are drawn and classified in chunks of
``batch_size`` rows (one forward per chunk, however many samples and copies it holds) and
counted with one ``index_add_``, never a Python loop per copy::

    sm = Smoothing(model, sigma=0.25, num_classes=10)
    cert = sm.certify(x, n0=100, n=1000, alpha=0.001, seed=0)
    cert.radius        # (N,) L2 radii in input units; 0 where cert.abstained
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from scipy.stats import norm
from torch import Tensor, nn

from audit.certified.stats import lower_confidence_bound, top_two_pvalue
from audit.errors import UsageError

ABSTAIN = -1

__all__ = ["ABSTAIN", "Certificates", "Smoothing", "max_radius", "noise_generator"]


@dataclass
class Certificates:
    """CERTIFY's (and PREDICT's) output for ``N`` inputs.

    ``prediction``: CERTIFY's class (``ABSTAIN`` = -1 where the lower bound is below 1/2);
    ``radius``: certified L2 radius (0 where abstained); ``p_lower``: the lower bound on the
    top class's probability; ``counts``: the ``n`` estimation draws per class (N, C);
    ``predict``: PREDICT's class on those same counts (``ABSTAIN`` where the top two are not
    separated at level ``alpha``); ``forwards``: noisy inputs classified.
    """

    prediction: NDArray[np.int64]
    radius: NDArray[np.float64]
    p_lower: NDArray[np.float64]
    counts: NDArray[np.int64]
    predict: NDArray[np.int64]
    sigma: float
    n0: int
    n: int
    alpha: float
    forwards: int

    @classmethod
    def join(cls, parts: list[Certificates]) -> Certificates:
        """One result from the results of consecutive blocks of the inputs."""
        first = parts[0]
        return cls(prediction=np.concatenate([c.prediction for c in parts]),
                   radius=np.concatenate([c.radius for c in parts]),
                   p_lower=np.concatenate([c.p_lower for c in parts]),
                   counts=np.concatenate([c.counts for c in parts]),
                   predict=np.concatenate([c.predict for c in parts]),
                   sigma=first.sigma, n0=first.n0, n=first.n, alpha=first.alpha,
                   forwards=sum(c.forwards for c in parts))

    @property
    def abstained(self) -> NDArray[np.bool_]:
        return self.prediction == ABSTAIN

    def certified_correct(self, y: NDArray[np.int64], radius: float) -> NDArray[np.bool_]:
        """Per sample: certified with the true class ``y`` at L2 radius at least ``radius``."""
        return (self.prediction == y) & (self.radius >= radius)


def max_radius(sigma: float, n: int, alpha: float) -> float:
    """The largest radius CERTIFY can give with ``n`` draws (all of them the top class)."""
    return float(sigma * norm.ppf(float(lower_confidence_bound([n], n, alpha)[0])))


def noise_generator(seed: int, device: torch.device) -> torch.Generator:
    """A generator on ``device`` (noise is drawn where the model runs) seeded with ``seed``."""
    return torch.Generator(device=device).manual_seed(seed)


class Smoothing:
    """The Gaussian-smoothed version of ``model`` (a classifier of float inputs in its own
    input space; ``sigma`` is in input units). Noisy inputs are not clipped to the input
    range: the guarantee is for the smoothed classifier as defined, and clipping would change
    the noise distribution."""

    def __init__(self, model: nn.Module, sigma: float, num_classes: int, *,
                 batch_size: int = 8192, device: torch.device | None = None) -> None:
        if not sigma > 0:
            raise UsageError(f"sigma must be > 0, got {sigma}")
        if batch_size < 1:
            raise UsageError(f"batch size must be >= 1, got {batch_size}")
        self.model = model
        self.sigma = float(sigma)
        self.num_classes = int(num_classes)
        self.batch_size = int(batch_size)
        self.device = device or next(model.parameters()).device

    @torch.no_grad()
    def counts(self, x: Tensor, n: int, generator: torch.Generator) -> Tensor:
        """Class counts (N, C) of the base model on ``n`` noisy copies of each input."""
        x = x.to(self.device, torch.float32)
        total, c = int(x.shape[0]) * n, self.num_classes
        out = torch.zeros(int(x.shape[0]) * c, dtype=torch.int64, device=self.device)
        was = self.model.training
        self.model.eval()
        try:
            for start in range(0, total, self.batch_size):
                rows = torch.arange(start, min(start + self.batch_size, total),
                                    device=self.device)
                owner = rows // n
                base = x[owner]
                noisy = base + self.sigma * torch.randn(base.shape, generator=generator,
                                                        device=self.device)
                pred = self.model(noisy).argmax(1)
                out.index_add_(0, owner * c + pred, torch.ones_like(pred))
        finally:
            self.model.train(was)
        return out.view(-1, c).cpu()

    def certify(self, x: Tensor, n0: int, n: int, alpha: float,
                seed: int | torch.Generator = 0) -> Certificates:
        """CERTIFY every input (``n0`` selection draws, ``n`` estimation draws, failure
        probability ``alpha`` per input), and PREDICT on the estimation counts."""
        if n0 < 1 or n < 1:
            raise UsageError(f"n0 and n must be >= 1, got {n0} and {n}")
        if not 0 < alpha < 1:
            raise UsageError(f"alpha must be in (0, 1), got {alpha}")
        gen = seed if isinstance(seed, torch.Generator) else noise_generator(seed, self.device)
        selected = self.counts(x, n0, gen).argmax(1)
        counts = self.counts(x, n, gen)
        n_a = counts.gather(1, selected[:, None])[:, 0].numpy()
        p_lower = lower_confidence_bound(n_a, n, alpha)
        ok = p_lower >= 0.5
        with np.errstate(divide="ignore"):
            radius = np.where(ok, self.sigma * norm.ppf(np.where(ok, p_lower, 0.5)), 0.0)
        prediction = np.where(ok, selected.numpy(), ABSTAIN).astype(np.int64)
        return Certificates(prediction=prediction, radius=radius.astype(np.float64),
                            p_lower=p_lower, counts=counts.numpy().astype(np.int64),
                            predict=predict_from_counts(counts.numpy(), alpha),
                            sigma=self.sigma, n0=n0, n=n, alpha=alpha,
                            forwards=int(x.shape[0]) * (n0 + n))

    def predict(self, x: Tensor, n: int, alpha: float,
                seed: int | torch.Generator = 0) -> NDArray[np.int64]:
        """PREDICT: the top class of ``n`` noisy draws, or ``ABSTAIN`` when a two-sided
        binomial test of the top two counts does not reject equality at level ``alpha``."""
        gen = seed if isinstance(seed, torch.Generator) else noise_generator(seed, self.device)
        return predict_from_counts(self.counts(x, n, gen).numpy(), alpha)


def predict_from_counts(counts: NDArray[np.int64], alpha: float) -> NDArray[np.int64]:
    """PREDICT's decision from class counts (N, C): top class, or ``ABSTAIN``."""
    if counts.shape[1] < 2:
        return np.argmax(counts, axis=1).astype(np.int64)
    order = np.argsort(-counts, axis=1, kind="stable")
    rows = np.arange(len(counts))
    n_a, n_b = counts[rows, order[:, 0]], counts[rows, order[:, 1]]
    ok = top_two_pvalue(n_a, n_b) <= alpha
    return np.where(ok, order[:, 0], ABSTAIN).astype(np.int64)
