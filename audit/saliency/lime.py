"""LIME (Ribeiro et al. 2016) for images and for tabular rows, on the ``lime`` package.

Images: the ``lime`` package's ``LimeImageExplainer`` builds every perturbed image in a Python
loop and calls the model ``batch_size`` (10) images at a time, with a quickshift segmentation
that finds one or two segments in an 8x8 digit. :class:`LimeImage` keeps LIME's method (binary
on/off segments, row 0 all on, cosine distance, kernel ``sqrt(exp(-d^2 / 0.25^2))``, a ridge
surrogate fitted by ``lime.lime_base.LimeBase``) but segments small images on a regular grid
(about 8x8 cells), builds all perturbations of a batch of images as one tensor operation and
predicts them in large batches. ``bench/bench_saliency.py`` measures the difference.

Tabular: :class:`LimeTabular` is ``lime.lime_tabular.LimeTabularExplainer`` (quartile
discretisation, binary columns as categorical) with a batched ``predict_fn``.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal, Self

import numpy as np
import torch
from lime.lime_base import LimeBase
from lime.lime_tabular import LimeTabularExplainer
from sklearn.metrics import pairwise_distances
from torch import nn

from audit.saliency.base import ExplainContext, Explainer, Modality, batches, model_device


def predict_proba(model: nn.Module, x: torch.Tensor, batch_size: int = 1024, *,
                  on_device: bool = False) -> torch.Tensor:
    """Softmax probabilities of ``model`` on ``x`` in batches, without gradients, on the CPU
    (on the model's device with ``on_device=True``)."""
    dev = model_device(model)
    out = []
    with torch.no_grad():
        for s in batches(len(x), batch_size):
            out.append(torch.softmax(model(x[s].to(dev)).float(), dim=1))
    joined = torch.cat(out)
    return joined if on_device else joined.cpu()  # one copy, after the loop


def grid_segments(height: int, width: int, cells: int = 8) -> torch.Tensor:
    """Labels ``(H, W)`` of a regular grid of about ``cells`` x ``cells`` square segments."""
    side = max(1, math.ceil(min(height, width) / cells))
    rows = torch.arange(height) // side
    cols = torch.arange(width) // side
    ncols = int(cols.max()) + 1
    return rows[:, None] * ncols + cols[None, :]


def slic_segments(image: torch.Tensor, segments: int = 64) -> torch.Tensor:
    """SLIC superpixels ``(H, W)`` of one image ``(C, H, W)`` (scikit-image)."""
    from skimage.segmentation import slic

    img = image.permute(1, 2, 0).numpy().astype(np.float64)
    lab = slic(img, n_segments=segments, compactness=10.0, start_label=0,
               channel_axis=-1, convert2lab=img.shape[2] == 3)
    return torch.from_numpy(np.unique(lab, return_inverse=True)[1].reshape(lab.shape))


def lime_kernel(d: np.ndarray, kernel_width: float = 0.25) -> np.ndarray:
    """The ``lime_image`` similarity kernel on cosine distances."""
    return np.asarray(np.sqrt(np.exp(-(d**2) / kernel_width**2)))


class LimeImage(Explainer):
    """LIME for images with batched perturbation and prediction (see the module doc).

    ``hide`` is what a switched-off segment shows: a tensor broadcastable to one image (e.g. the
    data's mean colour) or ``None`` for each segment's own mean colour (``lime``'s default).
    ``last_scores`` holds the surrogate's weighted R^2 per image of the last call.
    """

    name = "lime"
    title = "LIME"
    modalities: ClassVar[frozenset[Modality]] = frozenset({"image"})
    default_for: ClassVar[frozenset[Modality]] = frozenset({"image"})

    def __init__(self, model: nn.Module, samples: int = 500,
                 segmentation: Literal["grid", "slic"] = "grid", cells: int = 8,
                 hide: torch.Tensor | None = None, seed: int = 0, images_per_batch: int = 8,
                 predict_batch: int = 256) -> None:
        super().__init__(model)
        self.samples = samples
        self.segmentation = segmentation
        self.cells = cells
        self.hide = hide
        self.seed = seed
        self.images_per_batch = images_per_batch
        self.predict_batch = predict_batch
        self.last_scores: list[float] = []

    @classmethod
    def build(cls, model: nn.Module, ctx: ExplainContext) -> Self:
        p = ctx.settings
        return cls(model, samples=p.lime_samples, segmentation=p.lime_segmentation,
                   cells=p.lime_cells, hide=ctx.baseline, seed=ctx.seed)

    def segments(self, x: torch.Tensor) -> torch.Tensor:
        """Segment labels ``(N, H, W)`` (0..K-1 per image)."""
        h, w = x.shape[-2:]
        if self.segmentation == "slic":
            return torch.stack([slic_segments(img, self.cells * self.cells) for img in x])
        return grid_segments(h, w, self.cells).expand(len(x), h, w)

    def attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``(N, H, W)`` maps of each segment's signed LIME weight for ``target`` (``explain``
        keeps the positive part)."""
        x = x.detach().float().cpu()
        segs = self.segments(x)
        gen = torch.Generator().manual_seed(self.seed)
        base = LimeBase(lime_kernel, random_state=np.random.RandomState(self.seed % 2**32))
        maps = torch.zeros(len(x), *x.shape[-2:])
        self.last_scores = []
        for s in batches(len(x), self.images_per_batch):
            xb, sb = x[s], segs[s]
            k = int(sb.max()) + 1
            z = torch.randint(0, 2, (len(xb), self.samples, k), generator=gen)
            z[:, 0] = 1
            proba = self._predict_perturbed(xb, sb, z).reshape(len(xb), self.samples, -1)
            for j in range(len(xb)):
                kj = int(sb[j].max()) + 1  # superpixel counts differ between images
                data = z[j, :, :kj].numpy()
                labels = proba[j].numpy().astype(np.float64)
                dist = pairwise_distances(data, data[:1], metric="cosine").ravel()
                label = int(target[s][j])
                _, weights, score, _ = base.explain_instance_with_data(
                    data, labels, dist, label, kj, feature_selection="none")
                w = torch.zeros(kj)
                for f, v in weights:
                    w[int(f)] = float(v)
                maps[s.start + j] = w[sb[j]]
                self.last_scores.append(float(score))
        return maps

    def _predict_perturbed(self, xb: torch.Tensor, sb: torch.Tensor, z: torch.Tensor
                           ) -> torch.Tensor:
        """Probabilities for every perturbation ``z[b, s]`` of every image ``xb[b]``, built and
        predicted ``predict_batch`` at a time (rows ordered image by image)."""
        fill = self._fill(xb, sb)
        b, s, k = z.shape
        flat_z = z.reshape(b * s, k)
        image = torch.arange(b).repeat_interleave(s)
        seg_flat = sb.reshape(b, -1)
        out = []
        for sl in batches(b * s, self.predict_batch):
            ii = image[sl]
            on = torch.gather(flat_z[sl], 1, seg_flat[ii]).reshape(len(ii), 1, *xb.shape[-2:])
            on = on.to(xb.dtype)
            out.append(predict_proba(self.model, xb[ii] * on + fill[ii] * (1 - on),
                                     self.predict_batch, on_device=True))
        return torch.cat(out).cpu()  # for lime's numpy surrogate: one copy per image batch

    def _fill(self, xb: torch.Tensor, sb: torch.Tensor) -> torch.Tensor:
        if self.hide is not None:
            return torch.as_tensor(self.hide, dtype=xb.dtype).expand_as(xb[0]).expand_as(xb)
        fill = torch.empty_like(xb)
        for j in range(len(xb)):
            k = int(sb[j].max()) + 1
            flat = sb[j].reshape(-1)
            counts = torch.bincount(flat, minlength=k).clamp(min=1).float()
            for c in range(xb.shape[1]):
                sums = torch.bincount(flat, weights=xb[j, c].reshape(-1), minlength=k)
                fill[j, c] = (sums / counts)[sb[j]]
        return fill


class LimeTabular(Explainer):
    """LIME for rows ``(N, F)``: ``lime_tabular.LimeTabularExplainer`` fitted on ``background``
    (rows representative of the data), ``samples`` perturbations per row."""

    name = "lime"
    title = "LIME"
    modalities: ClassVar[frozenset[Modality]] = frozenset({"tabular"})
    default_for: ClassVar[frozenset[Modality]] = frozenset({"tabular"})

    def __init__(self, model: nn.Module, background: torch.Tensor,
                 feature_names: list[str] | None = None, samples: int = 1000,
                 seed: int = 0) -> None:
        super().__init__(model)
        bg = background.detach().float().cpu().numpy().astype(np.float64)
        self.num_features = bg.shape[1]
        binary = [i for i in range(bg.shape[1]) if len(np.unique(bg[:, i])) <= 2]
        self.explainer = LimeTabularExplainer(
            bg, mode="classification", feature_names=feature_names,
            categorical_features=binary, discretize_continuous=True,
            random_state=np.random.RandomState(seed % 2**32))
        self.samples = samples
        self.last_scores: list[float] = []

    @classmethod
    def build(cls, model: nn.Module, ctx: ExplainContext) -> Self:
        if ctx.background is None:
            raise ValueError("LIME (tabular) needs background rows")
        return cls(model, ctx.background, ctx.feature_names,
                   samples=ctx.settings.lime_tabular_samples, seed=ctx.seed)

    def _predict(self, rows: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.asarray(rows, dtype=np.float32))
        return predict_proba(self.model, x).numpy().astype(np.float64)

    def attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Signed LIME weights ``(N, F)``: positive where the row's value of the feature supports
        ``target``."""
        out = torch.zeros(len(x), self.num_features)
        self.last_scores = []
        rows = x.detach().float().cpu().numpy().astype(np.float64)
        for i, row in enumerate(rows):
            label = int(target[i])
            exp = self.explainer.explain_instance(row, self._predict, labels=(label,),
                                                  num_features=self.num_features,
                                                  num_samples=self.samples)
            for f, v in exp.as_map()[label]:
                out[i, int(f)] = float(v)
            self.last_scores.append(float(exp.score))
        return out
