"""Randomized-smoothing certification: ours (audit.certified) against ART's
``PyTorchRandomizedSmoothing.certify`` in the same run, on the same model, noise level and
sample counts.

    python bench/bench_certified.py [--model digits-cnn-smoothed] [--sigma 0.5] [--samples 360]
                                    [--n0 100] [--n 1000] [--alpha 0.001] [--threads 2]

Both certify the first ``--samples`` images of the model's test split with n0 selection and n
estimation draws per image (ART's ``sample_size`` is n0) at failure probability alpha. ART
loops over the images and classifies each one's copies in batches of ``--art-batch`` (default
n: one forward per image and stage, ART's fastest setting); ours draws and classifies the
copies of many images per forward (``--batch`` noisy inputs). Printed: wall-clock seconds of
each and their ratio (ART / ours: > 1 means ours is faster), and the agreement: certified
accuracy at radii 0.25/0.5/1.0 with Clopper-Pearson 95% intervals, abstentions, the mean
certified radius and the paired difference of radii with its standard error (the two draw
independent noise, so they agree within Monte Carlo error, not bit for bit).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from torch import nn

from audit.certified.evaluation import rate
from audit.certified.smoothing import Smoothing
from audit.datasets import load_dataset
from audit.loading import load_model

RADII = (0.0, 0.25, 0.5, 1.0)


def art_certify(model: nn.Module, x: np.ndarray, classes: int, sigma: float, n0: int, n: int,
                alpha: float, batch: int) -> tuple[np.ndarray, np.ndarray, float]:
    """ART's certification: (predictions with -1 for abstain, radii, seconds)."""
    from art.estimators.certification.randomized_smoothing import PyTorchRandomizedSmoothing

    art = PyTorchRandomizedSmoothing(model=model, loss=nn.CrossEntropyLoss(),
                                     input_shape=tuple(x.shape[1:]), nb_classes=classes,
                                     device_type="cpu", sample_size=n0, scale=sigma,
                                     alpha=alpha)
    art.certify(x[:2], n=n, batch_size=batch)  # warm-up
    np.random.seed(0)
    start = time.perf_counter()
    pred, radius = art.certify(x, n=n, batch_size=batch)
    return pred.astype(np.int64), radius.astype(np.float64), time.perf_counter() - start


def ours_certify(model: nn.Module, x: torch.Tensor, classes: int, sigma: float, n0: int, n: int,
                 alpha: float, batch: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Our certification: (predictions with -1 for abstain, radii, seconds)."""
    sm = Smoothing(model, sigma, classes, batch_size=batch)
    sm.certify(x[:2], n0, n, alpha, seed=1)  # warm-up
    start = time.perf_counter()
    cert = sm.certify(x, n0, n, alpha, seed=0)
    return cert.prediction, cert.radius, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="digits-cnn-smoothed")
    ap.add_argument("--sigma", type=float, default=0.5)
    ap.add_argument("--samples", type=int, default=360)
    ap.add_argument("--n0", type=int, default=100)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--alpha", type=float, default=0.001)
    ap.add_argument("--batch", type=int, default=8192)
    ap.add_argument("--art-batch", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    loaded = load_model(a.model)
    model = loaded.model.eval()
    if loaded.card is None or not loaded.card.dataset:
        raise SystemExit(f"{a.model} has no card naming its dataset")
    test = load_dataset(loaded.card.dataset, "test")
    x, y = test.x[: a.samples], test.y[: a.samples].numpy()
    classes = loaded.card.num_classes
    print(f"{a.model}: {len(y)} samples, sigma {a.sigma:g}, n0 {a.n0}, n {a.n}, alpha "
          f"{a.alpha:g}, {a.threads} threads")
    ours = ours_certify(model, x, classes, a.sigma, a.n0, a.n, a.alpha, a.batch)
    art = art_certify(model, x.numpy(), classes, a.sigma, a.n0, a.n, a.alpha,
                      a.art_batch or a.n)
    print(f"\n{'':12}{'seconds':>9}{'abstain':>9}{'mean radius':>13}  certified accuracy "
          "(95% CI) at r = " + ", ".join(f"{r:g}" for r in RADII))
    for name, (pred, radius, seconds) in (("ours", ours), ("ART", art)):
        accs = "; ".join(rate((pred == y) & (radius >= r)).text() for r in RADII)
        print(f"{name:12}{seconds:9.2f}{int((pred == -1).sum()):9d}{radius.mean():13.4f}  "
              f"{accs}")
    d = ours[1] - art[1]
    se = d.std(ddof=1) / math.sqrt(len(d))
    print(f"\nradius difference ours - ART: mean {d.mean():+.4f} (paired SE {se:.4f}, "
          f"{abs(d.mean()) / se if se else 0:.1f} SE); same prediction on "
          f"{np.mean(ours[0] == art[0]):.1%} of samples")
    print(f"speed: ART / ours = {art[2] / ours[2]:.2f}x ({len(y) * (a.n0 + a.n)} noisy "
          f"forwards each; ours {len(y) * (a.n0 + a.n) / ours[2]:.0f}/s, ART "
          f"{len(y) * (a.n0 + a.n) / art[2]:.0f}/s)")


if __name__ == "__main__":
    main()
