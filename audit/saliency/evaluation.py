"""What the ``saliency`` check measured, as typed values: the input of the finding rules
(:mod:`audit.saliency.findings`), the section text (:mod:`audit.saliency.section`) and the
figures (:mod:`audit.saliency.figures`). Every field is a measurement, never a verdict; the
thresholds are applied by the findings."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from audit.saliency.base import Explainer, Modality
from audit.saliency.grids import Layout
from audit.saliency.metrics import Faithfulness


@dataclass(frozen=True)
class LayerChoice:
    """The CAM target layer: dotted name, per-sample output shape, and how it was chosen."""

    name: str
    shape: tuple[int, ...]
    automatic: bool  # traced automatically (else named by --layer)
    layout: Layout | None = None


@dataclass(frozen=True)
class Selection:
    """The explainers that run on this data, and those left out and why (titles)."""

    kind: Modality
    methods: tuple[type[Explainer], ...]
    no_layer: tuple[str, ...] = ()  # need a spatial layer the model does not have
    no_layer_reason: str = ""  # why the model exposes no layer, when the format knows
    not_for_kind: tuple[str, ...] = ()  # do not apply to this kind of data
    layer: LayerChoice | None = None
    unavailable: tuple[tuple[str, str], ...] = ()
    """Methods that cannot explain this model, and why: (title, reason)."""
    stopped: tuple[tuple[str, str, str], ...] = ()
    """Explainers their budget stopped: (title, budget, where: maps or sanity rerun)."""


@dataclass(frozen=True)
class MethodScore:
    """One method's faithfulness and sanity."""

    name: str
    title: str
    faithfulness: Faithfulness
    gain: float  # (insertion - deletion) AUC minus the random order's
    sanity: float | None  # mean Spearman rho with the randomised model's maps; None: not run


@dataclass(frozen=True)
class Localisation:
    """Where one method's maps fall relative to the object masks."""

    pointing_game: float  # share of maps whose peak lies on the object
    energy_in_object: float  # mean share of the saliency inside the mask
    object_focus: float  # energy in object / object area share (NaN for empty masks)


@dataclass(frozen=True)
class FillResult:
    """One whole-background counterfactual: everything outside the object replaced by a fill."""

    name: str  # own-mean, dataset-mean, other-background
    title: str  # the fill in plain words: "the data's mean colour"
    agreement: float  # share of predictions unchanged


@dataclass(frozen=True)
class WindowMap:
    """The share of predictions changed by occluding each window of a grid over the image."""

    change: torch.Tensor  # (rows, cols); NaN where no image had enough background
    images: torch.Tensor  # (rows, cols) images each window could use
    rows: list[int]  # top row of each window row
    cols: list[int]  # left column of each window column
    size: int  # window side in pixels
    image_shape: tuple[int, int]

    def pixel_map(self) -> torch.Tensor:
        """``(H, W)``: per pixel the largest change of the windows covering it."""
        out = torch.zeros(self.image_shape)
        change = torch.nan_to_num(self.change, nan=0.0)
        for i, r in enumerate(self.rows):
            for j, c in enumerate(self.cols):
                tile = out[r:r + self.size, c:c + self.size]
                tile.copy_(torch.maximum(tile, change[i, j]))
        return out


@dataclass(frozen=True)
class Hotspot:
    """Where occluding the background changes predictions most: the strongest window and the
    region of the windows at least half as strong (see
    :func:`audit.saliency.reliance.concentration`)."""

    row: int  # the strongest window's top row and left column
    col: int
    size: int
    change: float  # its share of changed predictions
    images: int  # images it could use
    region: tuple[int, int, int, int]  # hot windows' bounding box: row0, col0, row1, col1 (end
    # exclusive)
    area: float  # share of the image the hot windows cover
    share: float  # their share of the map's total change (NaN: no change anywhere)
    localised: bool  # the change is concentrated enough to name a place
    where: str  # the place in words ("top-left corner"), else "spread over the background"


@dataclass(frozen=True)
class ShortcutMaps:
    """Figure material of the outside-the-object test."""

    mean_map: torch.Tensor  # (H, W) mean saliency of the trusted methods
    outside_map: torch.Tensor  # (H, W) the same outside the objects
    object_freq: torch.Tensor  # (H, W) how often each pixel is object
    example: torch.Tensor  # (1, C, H, W) one explained input


@dataclass(frozen=True)
class ShortcutEvidence:
    """Saliency outside the object and the counterfactuals: the whole background replaced by
    each fill, and the window map over the background (:mod:`audit.saliency.reliance`)."""

    fills: list[FillResult]
    chance_agreement: float  # 1 / classes
    windows: WindowMap
    hotspot: Hotspot
    random_change: float  # predictions changed by occluding random windows
    reliance: float  # max(1 - worst agreement, strongest window - random windows)
    saliency_outside: float  # median share of the trusted maps' energy outside the object
    object_focus: float  # median object focus of the trusted methods
    object_area_share: float
    methods: list[str]  # the trusted methods (beat random, pass sanity), else all
    images: int  # images the counterfactuals used
    maps: ShortcutMaps | None = None

    @property
    def object_only_agreement(self) -> float:
        """The worst (lowest) agreement over the fills."""
        return min(f.agreement for f in self.fills)

    @property
    def worst_fill(self) -> FillResult:
        """The fill that changes the most predictions."""
        return min(self.fills, key=lambda f: f.agreement)

    @property
    def background_reliance(self) -> float:
        """Predictions changed by the worst whole-background fill."""
        return 1.0 - self.object_only_agreement

    @property
    def window_excess(self) -> float:
        """The strongest window's change minus random windows' (0 when either is NaN)."""
        h, r = self.hotspot.change, self.random_change
        return 0.0 if math.isnan(h) or math.isnan(r) else h - r


@dataclass(frozen=True)
class FeatureVis:
    """Per-class feature visualisations and the model's probability of each class for them."""

    classes: list[str]
    images: torch.Tensor  # (K, C, H, W) in the model's input space
    probabilities: list[float]
    mean_probability: float


@dataclass(frozen=True)
class Explained:
    """Figure material: the explained inputs, their labels and every method's maps."""

    x: torch.Tensor
    value_range: tuple[float, float]
    true: list[str]  # class name per sample
    pred: list[str]  # explained (predicted) class name per sample
    masks: torch.Tensor | None
    maps: dict[str, torch.Tensor]
    random_maps: dict[str, torch.Tensor]  # the randomised model's maps (sanity samples)
    show: list[int]  # gallery samples: correctly classified first
    n_correct: int


@dataclass(frozen=True)
class ImageEvaluation:
    """Everything the check measured on images."""

    selection: Selection
    samples: int
    scores: list[MethodScore]
    random: Faithfulness
    sanity_error: str | None = None  # why the model could not be randomised
    localisation: dict[str, Localisation] | None = None  # None: the data has no masks
    object_area_share: float | None = None
    shortcut: ShortcutEvidence | None = None
    featvis: FeatureVis | None = None
    explained: Explained | None = None


@dataclass(frozen=True)
class TabularEvaluation:
    """Everything the check measured on rows."""

    selection: Selection
    samples: int
    scores: list[MethodScore]
    random: Faithfulness
    feature_names: list[str]
    order: list[int]  # the top features by mean rank across methods
    mean_rank: np.ndarray  # per feature, 0 = most important
    mean_abs: dict[str, np.ndarray]  # per method: mean |attribution| per feature
    positive_share: dict[str, list[float]]  # per method: rows where the feature pushed up
    rank_agreement: float | None = None  # Spearman of the first two methods' mean |attr|
    sanity_error: str | None = None
