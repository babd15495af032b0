"""Readable features for surrogates, and the perturbed samples they are fitted on.

A surrogate's rules are only as readable as its features. A :class:`FeatureView` maps model inputs
to features a person can read and says what a split on each one means:

* :class:`TabularView`: the model's own tabular features. With the data's encoder, a split on a
  one-hot feature reads ``workclass == Private`` and a split on a scaled number reads
  ``age > 42.5`` (the data's own units); without one, the feature names and values as given.
* :class:`RegionView`: images pooled into a ``grid x grid`` layout of regions; feature
  ``mean intensity of region r2c3`` (or ``mean red of region r2c3`` for colour images) is the
  average value of that region, row 2, column 3, counted from the top left.

Each view also *perturbs* samples for fitting: every feature group (a tabular column, with all
its one-hot features, or an image region) is replaced, with probability ``p``, by the same group
of another random sample. Perturbed samples stay valid inputs (one-hot stays one-hot, pixels stay
in range) and probe the model away from the data's exact correlations, so the surrogate learns
the model's behaviour, not just the data's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from audit.datasets.tabular import TabularEncoder, format_number

CHANNEL_NAMES = {1: ["intensity"], 3: ["red", "green", "blue"]}


@dataclass(frozen=True)
class Split:
    """A surrogate's split on one feature, in readable terms: ``column`` (a raw column, or the
    feature's name), the threshold in the data's own units, or, for a one-hot feature, the
    category it tests."""

    column: str
    threshold: float = 0.0
    category: str | None = None
    digits: int = 4

    def text(self, above: bool) -> str:
        """``column > threshold`` when ``above`` else ``column <= threshold``; for a one-hot
        feature ``column == category`` / ``column != category``."""
        if self.category is not None:
            return f"{self.column} {'==' if above else '!='} {self.category}"
        return f"{self.column} {'>' if above else '<='} " \
               f"{format_number(self.threshold, self.digits)}"


class FeatureView(Protocol):
    """Readable features of model inputs, the meaning of splits on them, and perturbation."""

    names: list[str]

    def transform(self, x: torch.Tensor) -> np.ndarray:
        """Readable features ``(N, F)`` of model inputs ``x``."""
        ...

    def split(self, index: int, threshold: float) -> Split:
        """What a split ``feature[index] <= threshold`` means, in readable terms."""
        ...

    def column(self, index: int) -> str:
        """The raw column (or region) a feature belongs to, for grouping and sensitivity."""
        ...

    def label(self, index: int) -> str:
        """A readable name of feature ``index`` (``workclass == Private``, ``age (17 to 90)``)."""
        ...

    def perturb(self, x: torch.Tensor, n: int, p: float, rng: np.random.Generator
                ) -> torch.Tensor:
        """``n`` perturbed samples built from ``x`` (see the module docstring)."""
        ...


def _swap_groups(x: np.ndarray, groups: list[np.ndarray], n: int, p: float,
                 rng: np.random.Generator) -> np.ndarray:
    """Rows of ``x`` (flattened) where each group of columns comes, with probability ``p``, from
    another random row."""
    base = rng.integers(0, len(x), size=n)
    out = x[base].copy()
    for cols in groups:
        swap = rng.random(n) < p
        donors = rng.integers(0, len(x), size=int(swap.sum()))
        out[np.ix_(np.flatnonzero(swap), cols)] = x[np.ix_(donors, cols)]
    return out


@dataclass
class TabularView:
    """The model's tabular features; an encoder (if any) gives raw columns and units."""

    names: list[str]
    encoder: TabularEncoder | None = None

    def __post_init__(self) -> None:
        if self.encoder is not None and self.encoder.feature_names != list(self.names):
            self.encoder = None  # the data was not encoded by this encoder: use plain names

    def transform(self, x: torch.Tensor) -> np.ndarray:
        return x.detach().cpu().reshape(len(x), -1).numpy().astype(np.float64)

    def split(self, index: int, threshold: float) -> Split:
        if self.encoder is None:
            return Split(self.names[index], float(threshold))
        f = self.encoder.feature(index)
        if f.kind == "onehot" and 0.0 <= threshold < 1.0:
            return Split(f.column, category=f.category)
        return Split(f.column, f.to_raw(threshold) if f.kind == "numeric" else float(threshold))

    def column(self, index: int) -> str:
        return self.encoder.feature(index).column if self.encoder is not None \
            else self.names[index]

    def label(self, index: int) -> str:
        if self.encoder is None:
            return self.names[index]
        f = self.encoder.feature(index)
        if f.kind == "onehot":
            return f"{f.column} == {f.category}"
        return f"{f.column} ({format_number(f.low)} to {format_number(f.high)})"

    def groups(self) -> list[np.ndarray]:
        """Feature indices per raw column (one-hot features of a column together)."""
        order: dict[str, list[int]] = {}
        for j in range(len(self.names)):
            order.setdefault(self.column(j), []).append(j)
        return [np.array(v) for v in order.values()]

    def perturb(self, x: torch.Tensor, n: int, p: float, rng: np.random.Generator
                ) -> torch.Tensor:
        flat = x.detach().cpu().reshape(len(x), -1).numpy()
        out = _swap_groups(flat, self.groups(), n, p, rng)
        return torch.from_numpy(out.reshape((n, *x.shape[1:])))


@dataclass
class RegionView:
    """Images ``(C, H, W)`` as mean values over a ``grid x grid`` layout of regions."""

    shape: tuple[int, int, int]
    grid: int = 4

    def __post_init__(self) -> None:
        c, h, w = self.shape
        self.grid = max(1, min(self.grid, h, w))
        self.row_edges = np.linspace(0, h, self.grid + 1).round().astype(int)
        self.col_edges = np.linspace(0, w, self.grid + 1).round().astype(int)
        channels = CHANNEL_NAMES.get(c, [f"channel {k}" for k in range(c)])
        self.names = [f"mean {ch} of region r{i + 1}c{j + 1}" for ch in channels
                      for i in range(self.grid) for j in range(self.grid)]

    def region(self, index: int) -> tuple[int, int, int]:
        """(channel, region row, region column) of feature ``index``."""
        per = self.grid * self.grid
        ch, r = divmod(index, per)
        return ch, r // self.grid, r % self.grid

    def transform(self, x: torch.Tensor) -> np.ndarray:
        a = x.detach().cpu().numpy().astype(np.float64)
        feats = []
        for ch in range(self.shape[0]):
            for i in range(self.grid):
                r0, r1 = self.row_edges[i], self.row_edges[i + 1]
                for j in range(self.grid):
                    c0, c1 = self.col_edges[j], self.col_edges[j + 1]
                    feats.append(a[:, ch, r0:r1, c0:c1].mean(axis=(1, 2)))
        return np.stack(feats, axis=1)

    def split(self, index: int, threshold: float) -> Split:
        return Split(self.names[index], float(threshold), digits=3)

    def column(self, index: int) -> str:
        _, i, j = self.region(index)
        return f"r{i + 1}c{j + 1}"

    def label(self, index: int) -> str:
        return self.names[index]

    def groups(self) -> list[np.ndarray]:
        """Flat pixel indices per region (all channels of a region together)."""
        c, h, w = self.shape
        idx = np.arange(c * h * w).reshape(c, h, w)
        out = []
        for i in range(self.grid):
            for j in range(self.grid):
                block = idx[:, self.row_edges[i]:self.row_edges[i + 1],
                            self.col_edges[j]:self.col_edges[j + 1]]
                out.append(block.reshape(-1))
        return out

    def perturb(self, x: torch.Tensor, n: int, p: float, rng: np.random.Generator
                ) -> torch.Tensor:
        flat = x.detach().cpu().reshape(len(x), -1).numpy()
        out = _swap_groups(flat, self.groups(), n, p, rng)
        return torch.from_numpy(out.reshape((n, *x.shape[1:])))


def view_for(x: torch.Tensor, kind: str, feature_names: list[str] | None,
             encoder: TabularEncoder | None, grid: int = 4) -> FeatureView:
    """The readable view of data ``x``: regions for images, features for tabular data."""
    if kind == "image" and x.ndim == 4:
        c, h, w = (int(s) for s in x.shape[1:])
        return RegionView((c, h, w), grid)
    n_features = int(np.prod(x.shape[1:]))
    names = list(feature_names) if feature_names and len(feature_names) == n_features \
        else [f"x{j}" for j in range(n_features)]
    return TabularView(names, encoder)


def imitation_set(predict: Callable[[torch.Tensor], np.ndarray], x: torch.Tensor,
                  view: FeatureView, *, perturbed: int, p: float, rng: np.random.Generator,
                  labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Readable features and the model's labels for ``x`` plus ``perturbed`` perturbed samples.

    ``predict`` maps model inputs to predicted class indices; ``labels`` (the model's labels on
    ``x``, when already known) saves one pass over ``x``. This is what a surrogate is fitted on.
    """
    y = labels if labels is not None else predict(x)
    if perturbed <= 0:
        return view.transform(x), np.asarray(y)
    x_pert = view.perturb(x, perturbed, p, rng).to(torch.float32)
    return (np.concatenate([view.transform(x), view.transform(x_pert)]),
            np.concatenate([np.asarray(y), predict(x_pert)]))
