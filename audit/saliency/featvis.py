"""Feature visualisation by regularised activation maximisation (Olah, Mordvintsev & Schubert,
"Feature Visualization", Distill 2017; Yosinski et al. 2015).

For each class an input is optimised, from a flat mid-range start, to maximise the class's
pre-softmax logit plus its log-softmax (the logit alone can be raised by features shared with
other classes; the log-softmax term keeps the image specific to the class). Unregularised, this
yields high-frequency adversarial noise; the regularisers of the article keep the image
interpretable: *jitter* (a random shift every step, transformation robustness), an L2 penalty
pulling pixels to the middle of the range, a total-variation penalty against high frequencies,
and a periodic Gaussian blur. Pixels are parameterised through a
sigmoid so they stay inside the model's input range. All classes are optimised in one batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class FeatureVisResult:
    """Optimised inputs ``(K, C, H, W)`` in the input range and the model's softmax probability
    of each image's own class (near 1 when the visualisation found what the class responds to)."""

    classes: list[int]
    images: torch.Tensor
    probabilities: torch.Tensor


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels, per sample ``(N,)``."""
    dh = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1)
    dw = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1)
    return dh + dw


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable 3x3 Gaussian blur of ``(N, C, H, W)`` with reflect padding."""
    t = torch.tensor([-1.0, 0.0, 1.0])
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = (k / k.sum()).to(x)
    c = x.shape[1]
    pad = nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    h = nn.functional.conv2d(pad, k.view(1, 1, 1, 3).repeat(c, 1, 1, 1), groups=c)
    return nn.functional.conv2d(h, k.view(1, 1, 3, 1).repeat(c, 1, 1, 1), groups=c)


class ActivationMaximisation:
    """Regularised class visualisations for an image model taking ``shape`` ``(C, H, W)``
    inputs in ``value_range``. ``jitter`` defaults to ``max(1, H // 16)`` pixels."""

    def __init__(self, model: nn.Module, shape: Sequence[int],
                 value_range: tuple[float, float] = (0.0, 1.0), steps: int = 128,
                 lr: float = 0.1, jitter: int | None = None, l2: float = 1.0, tv: float = 2.0,
                 blur_every: int = 4, blur_sigma: float = 0.5, seed: int = 0) -> None:
        self.model = model
        self.shape = tuple(int(s) for s in shape)
        self.lo, self.hi = float(value_range[0]), float(value_range[1])
        self.steps = steps
        self.lr = lr
        self.jitter = max(1, self.shape[-2] // 16) if jitter is None else jitter
        self.l2 = l2
        self.tv = tv
        self.blur_every = blur_every
        self.blur_sigma = blur_sigma
        self.seed = seed

    def _image(self, p: torch.Tensor) -> torch.Tensor:
        return self.lo + (self.hi - self.lo) * torch.sigmoid(p)

    def visualise(self, classes: Sequence[int]) -> FeatureVisResult:
        """One optimised input per class in ``classes``."""
        gen = torch.Generator().manual_seed(self.seed)
        dev = next((q.device for q in self.model.parameters()), torch.device("cpu"))
        k = len(classes)
        target = torch.as_tensor(list(classes), dtype=torch.long, device=dev)
        p = (0.01 * torch.randn((k, *self.shape), generator=gen)).to(dev).requires_grad_(True)
        opt = torch.optim.Adam([p], lr=self.lr)
        span = self.hi - self.lo
        mid = (self.lo + self.hi) / 2
        params = list(self.model.parameters())
        flags = [q.requires_grad for q in params]
        for q in params:
            q.requires_grad_(False)
        try:
            with torch.enable_grad():
                for step in range(self.steps):
                    x = self._image(p)
                    if self.jitter:
                        dy, dx = (int(v) for v in torch.randint(
                            -self.jitter, self.jitter + 1, (2,), generator=gen))
                        x = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
                    out = self.model(x)
                    own = out.gather(1, target[:, None])[:, 0]
                    # the logit plus its log-softmax: strong and specific to the class
                    logit = own + torch.log_softmax(out, dim=1).gather(1, target[:, None])[:, 0]
                    rel = (x - mid) / span
                    loss = (-logit + self.l2 * rel.pow(2).flatten(1).mean(1)
                            + self.tv * total_variation(x / span)).sum()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    if self.blur_every and (step + 1) % self.blur_every == 0:
                        with torch.no_grad():
                            p.copy_(gaussian_blur(p, self.blur_sigma))
        finally:
            for q, f in zip(params, flags, strict=True):
                q.requires_grad_(f)
        with torch.no_grad():
            images = self._image(p).detach()
            proba = torch.softmax(self.model(images).float(), dim=1)
            own = proba.gather(1, target[:, None])[:, 0]
        return FeatureVisResult(classes=list(classes), images=images.cpu(),
                                probabilities=own.cpu())
