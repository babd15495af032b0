"""Global surrogates: interpretable models (trees, sparse linear) that imitate the audited model.

``GlobalSurrogate`` wraps any scikit-learn classifier and is fitted on the model's predictions;
``fidelity`` scores it on held-out data; ``sweep_tree``/``sweep_linear`` trace fidelity against
complexity; ``tree_rules``/``tree_text`` turn a tree into readable rules. The ``surrogate`` check
(``audit.surrogate.check``) runs all of it in an audit.
"""

from audit.surrogate.features import (
    FeatureView,
    RegionView,
    Split,
    TabularView,
    imitation_set,
    view_for,
)
from audit.surrogate.model import (
    Fidelity,
    GlobalSurrogate,
    bootstrap_fidelity,
    linear_coef,
    linear_estimator,
    r2_proba,
    tree_estimator,
)
from audit.surrogate.rules import Rule, plot_surrogate_tree, tree_rules, tree_text
from audit.surrogate.sweep import Sweep, SweepPoint, recommend, sweep_linear, sweep_tree

__all__ = [
    "FeatureView", "Fidelity", "GlobalSurrogate", "RegionView", "Rule", "Split", "Sweep",
    "SweepPoint", "TabularView", "bootstrap_fidelity", "imitation_set", "linear_coef",
    "linear_estimator", "plot_surrogate_tree", "r2_proba", "recommend", "sweep_linear",
    "sweep_tree", "tree_estimator", "tree_rules", "tree_text", "view_for",
]
