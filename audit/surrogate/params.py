"""Settings of the surrogate check (one dataclass, parsed from ``[checks.surrogate]``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass
class SurrogateParams:
    """Settings of the surrogate check."""

    quick: ClassVar[dict[str, Any]] = {
        "max_rows": 1200, "min_fit_samples": 1200, "n_bootstrap": 100,
        "tree_depths": [1, 2, 3, 4, 6], "linear_steps": 6}
    sample_caps: ClassVar[dict[str, str]] = {
        "max_rows": "audit rows fitted and scored (a share held out)"}
    scaled: ClassVar[dict[str, int]] = {"max_rows": 256, "min_fit_samples": 256}
    """Budget fields shrunk, down to these floors, for a model costlier than the defaults
    are sized for (:mod:`audit.cost`)."""

    max_rows: int = 3000  # audit rows sampled (seeded) for fitting and scoring
    holdout: float = 0.3  # share of rows held out to measure fidelity
    perturbed_ratio: float = 1.0  # perturbed samples added per audit row
    min_fit_samples: int = 2000  # fit on at least this many rows (more perturbed ones)
    perturb_prob: float = 0.3  # chance that a column/region is swapped in a perturbed row
    tree_depths: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5, 6, 8, 10])
    """Tree depths of the fidelity sweep."""
    min_samples_leaf: int = 5  # smallest leaf of a surrogate tree
    linear_steps: int = 10  # points on the L1 regularisation path
    linear_span: float = 3.0  # decades spanned by the L1 path
    tolerance: float = 0.02  # recommend the smallest surrogate within this of the best
    min_fidelity_medium: float = 0.9  # best agreement below this: rules are not the logic (info)
    min_fidelity_high: float = 0.75  # best agreement below this: a low finding (a method limit)
    sensitive_share_medium: float = 0.05  # weight share on sensitive columns for a finding
    n_bootstrap: int = 200  # bootstrap resamples of the fidelity intervals
    grid: int = 4  # images: regions per side of the pooled features
    draw_depth: int = 3  # depth of the drawn tree
    max_rules: int = 16  # rules listed in the report
    max_weights: int = 15  # linear weights listed in the report
