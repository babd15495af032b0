"""Settings and thresholds of the ``saliency`` check (``[checks.saliency]`` in audit.toml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from audit.saliency.registry import default_methods

QUICK: dict[str, Any] = {
    "samples": 12, "ig_steps": 16, "smoothgrad_samples": 8, "lime_samples": 200,
    "lime_tabular_samples": 400, "deletion_steps": 10, "sanity_samples": 6, "gallery": 3,
    "featvis_steps": 48, "shortcut_samples": 300, "occlusion_windows": 8,
    "explainer_evaluations": 5000, "explainer_seconds": 60.0}
"""``--quick`` overrides: fewer samples and steps, the same methods."""


@dataclass
class SaliencyParams:
    """Settings and thresholds of the saliency check."""

    quick: ClassVar[dict[str, Any]] = QUICK
    sample_caps: ClassVar[dict[str, str]] = {
        "samples": "samples explained and scored (deletion, insertion)",
        "sanity_samples": "samples explained again with randomised weights",
        "shortcut_samples": "samples with masks in the counterfactual shortcut tests"}
    scaled: ClassVar[dict[str, int]] = {
        "samples": 8, "ig_steps": 8, "smoothgrad_samples": 4, "lime_samples": 100,
        "deletion_steps": 8, "sanity_samples": 4, "featvis_steps": 16,
        "shortcut_samples": 32, "occlusion_windows": 4}
    """Budget fields shrunk, down to these floors, for a model costlier than the defaults
    are sized for (:mod:`audit.cost`)."""

    methods: list[str] = field(default_factory=lambda: default_methods("image"))
    """Explainers to run, by name (also xgradcam); tabular data runs lime and
    integrated-gradients by default."""
    samples: int = 32  # images (rows) explained and scored, a seeded sample of the data
    layer: str | None = None  # Grad-CAM target layer (--layer); default: traced automatically
    ig_steps: int = 32  # Integrated Gradients steps from the data-mean baseline
    smoothgrad_samples: int = 16  # noisy copies per input for SmoothGrad
    smoothgrad_noise: float = 0.15  # SmoothGrad noise std as a share of the input range
    lime_samples: int = 400  # LIME perturbations per image
    lime_segmentation: Literal["grid", "slic"] = "grid"  # LIME segments: grid cells or SLIC
    lime_cells: int = 8  # grid cells per side (SLIC: cells^2 superpixels)
    lime_tabular_samples: int = 1000  # LIME perturbations per tabular row
    deletion_steps: int = 16  # steps of the deletion/insertion curves
    sanity_samples: int = 12  # inputs explained again with randomised weights
    gallery: int = 4  # correct and misclassified samples shown per method
    featvis: bool = True  # draw the per-class feature visualisation
    featvis_steps: int = 128  # optimisation steps of the feature visualisation
    featvis_classes: int = 20  # at most this many classes are visualised
    shortcut_samples: int = 600  # images with masks used by the counterfactual tests
    occlusion_windows: int = 16  # random background windows occluded as the reference
    faithfulness_gain_medium: float = 0.05  # gain over random below this: medium finding
    sanity_rank_medium: float = 0.5  # Spearman with the randomised model above this: medium
    reliance_medium: float = 0.3  # prediction change outside the object for a medium finding
    reliance_high: float = 0.5  # prediction change outside the object for a high finding
    object_focus_low: float = 1.0  # object focus below this: saliency prefers the background
    tabular_top: int = 15  # features listed in the importance table and plot
    explainer_evaluations: int = 20000
    """Forward passes per explained sample one explainer may use in one run; past it the
    explainer stops and is left out of the scores (a budget finding says so)."""
    explainer_seconds: float = 600.0
    """Wall time one explainer may use over the whole check (its sanity rerun included)."""


