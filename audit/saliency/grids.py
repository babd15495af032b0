"""Reading a layer's output as a grid over the image, whatever its memory layout.

CNNs give ``(N, C, h, w)`` feature maps; Swin and ConvNeXt blocks often work channels-last
``(N, h, w, C)``; vision transformers give tokens ``(N, k + h*w, C)``, where ``k`` leading
tokens (a class token, DeiT's distillation token) sit before the patch grid. A :class:`Layout`
says which of these a per-sample output shape is, given the input's ``(H, W)``, and turns such
outputs into ``(N, C, h, w)`` maps (:meth:`Layout.to_map`) so one CAM formula serves them all.

A grid is plausible when the image's strides along both axes agree: ``H / h`` and ``W / w`` are
within a factor of :data:`MAX_STRIDE_RATIO` of each other (patchify and pooling keep the aspect
ratio). That separates ``(C, h, w)`` from ``(h, w, C)`` and finds ``k``: 65 tokens of a 32x32
image are a class token plus 8x8 patches, not a 5x13 grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

LayoutKind = Literal["nchw", "nhwc", "tokens"]

MAX_STRIDE_RATIO = 1.5
MAX_PREFIX_TOKENS = 8  # a class token, a distillation token (DeiT), register tokens (DINOv2)


@dataclass(frozen=True)
class Layout:
    """How a per-sample output lays its ``(h, w)`` grid out; ``prefix`` tokens come first."""

    kind: LayoutKind
    grid: tuple[int, int]
    prefix: int = 0

    def to_map(self, t: torch.Tensor) -> torch.Tensor:
        """A batch of outputs in this layout as ``(N, C, h, w)``."""
        h, w = self.grid
        if self.kind == "nchw":
            return t
        if self.kind == "nhwc":
            return t.permute(0, 3, 1, 2)
        tokens = t[:, self.prefix:, :]
        return tokens.reshape(t.shape[0], h, w, t.shape[-1]).permute(0, 3, 1, 2)

    def describe(self) -> str:
        """``"8x8 grid of tokens after 1 leading token"`` and the like, for the report."""
        h, w = self.grid
        if self.kind == "nchw":
            return f"{h}x{w} feature map"
        if self.kind == "nhwc":
            return f"{h}x{w} channels-last feature map"
        lead = f" after {self.prefix} leading token{'s' if self.prefix > 1 else ''}" \
            if self.prefix else ""
        return f"{h}x{w} grid of tokens{lead}"


def plausible(grid: tuple[int, int], image: tuple[int, int]) -> bool:
    """Whether a ``grid`` could cover an ``image`` of ``(H, W)`` with equal strides."""
    (h, w), (big_h, big_w) = grid, image
    if h < 1 or w < 1 or h * w < 2:
        return False
    sh, sw = big_h / h, big_w / w
    return max(sh, sw) / min(sh, sw) <= MAX_STRIDE_RATIO


def token_grid(n_tokens: int, image: tuple[int, int]) -> tuple[int, tuple[int, int]] | None:
    """``(prefix, (h, w))`` for ``n_tokens`` tokens over an ``image``: the fewest leading
    tokens that leave a plausible grid, the grid closest to the image's aspect ratio."""
    aspect = image[0] / image[1]
    for prefix in range(min(MAX_PREFIX_TOKENS, n_tokens - 2) + 1):
        n = n_tokens - prefix
        grids = [(h, n // h) for h in range(1, math.isqrt(n) + 1) if n % h == 0]
        grids += [(w, h) for h, w in grids]
        fits = [g for g in grids if plausible(g, image)]
        if fits:
            return prefix, min(fits, key=lambda g: abs(math.log(g[0] / g[1] / aspect)))
    return None


def layout_of(shape: tuple[int, ...], image: tuple[int, int]) -> Layout | None:
    """The layout of a per-sample output ``shape`` over an ``image`` of ``(H, W)``, or
    ``None`` when it is no grid. ``(C, h, w)`` is read channels-first unless only the
    channels-last reading is plausible (as before for any ``h * w > 1``)."""
    if len(shape) == 3:
        first, last = (shape[1], shape[2]), (shape[0], shape[1])
        if not plausible(first, image) and plausible(last, image) and shape[2] > 1:
            return Layout("nhwc", last)
        return Layout("nchw", first) if first[0] * first[1] > 1 else None
    if len(shape) == 2 and shape[1] > 1:
        found = token_grid(shape[0], image)
        if found is not None:
            return Layout("tokens", found[1], found[0])
    return None
