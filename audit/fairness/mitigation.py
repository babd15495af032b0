"""Bias mitigation, one reusable piece per stage of a model's life.

- Before training, :class:`Reweighing` (Kamiran & Calders, 2012): weight every (group, label)
  cell by ``P(group) P(label) / P(group, label)`` so that, in the weighted training data, the
  label is independent of the group. Pass the weights to any weighted loss
  (``audit.training.CrossEntropy(sample_weight=...)``).
- During training, :class:`FairnessPenalty`: a differentiable relaxation of Fairlearn's
  demographic-parity or equalized-odds difference, computed on the predicted probabilities of
  each mini-batch, added to the cross-entropy with weight ``lambda``: the training loss
  :class:`FairnessPenaltyLoss` of the shared trainer (:mod:`audit.training`);
  :func:`train_with_penalty` runs it (with ``weight=0`` it gives the plain model).
- After training, :class:`GroupThresholds`: group-specific (randomised) thresholds on the
  model's scores chosen by Fairlearn's ``ThresholdOptimizer`` to satisfy demographic parity or
  equalized odds (optionally up to a tolerance) at the best accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

from audit.errors import DataError
from audit.training import CrossEntropy, TrainConfig, Trainer

Constraint = Literal["demographic_parity", "equalized_odds"]
CONSTRAINTS: tuple[str, ...] = ("demographic_parity", "equalized_odds")


def group_codes(sensitive: pd.DataFrame | pd.Series | np.ndarray) -> tuple[np.ndarray,
                                                                           list[str]]:
    """Integer group codes of the intersection of the given columns, and the group labels."""
    from audit.fairness.groups import make_groupings

    frame = (sensitive.to_frame() if isinstance(sensitive, pd.Series) else
             pd.DataFrame({"group": sensitive}) if isinstance(sensitive, np.ndarray) else
             sensitive)
    groupings, _, _ = make_groupings(frame.reset_index(drop=True), intersectional=True)
    g = groupings[-1]
    return g.codes, list(g.labels)


# ----------------------------------------------------------------------------- reweighing

@dataclass
class Reweighing:
    """Kamiran & Calders reweighing: ``w(a, y) = P(A=a) P(Y=y) / P(A=a, Y=y)``.

    ``fit(y, sensitive)`` learns the weight of every (group, label) cell; ``sample_weight(y,
    sensitive)`` returns one weight per row (cells unseen in fit get weight 1).
    """

    weights_: dict[tuple[str, int], float] = field(default_factory=dict)

    def fit(self, y: np.ndarray, sensitive: pd.DataFrame | pd.Series | np.ndarray
            ) -> Reweighing:
        codes, labels = group_codes(sensitive)
        yv = np.asarray(y).astype(np.int64)
        if len(yv) != len(codes):
            raise DataError(f"labels and sensitive columns differ in length ({len(yv)}, "
                            f"{len(codes)})")
        n = len(yv)
        classes = np.unique(yv)
        self.weights_ = {}
        for gi, label in enumerate(labels):
            in_g = codes == gi
            for c in classes:
                cell = int((in_g & (yv == c)).sum())
                if cell:
                    self.weights_[(label, int(c))] = (in_g.sum() / n) * ((yv == c).sum() / n) \
                        / (cell / n)
        return self

    def sample_weight(self, y: np.ndarray, sensitive: pd.DataFrame | pd.Series | np.ndarray
                      ) -> np.ndarray:
        """One weight per row."""
        codes, labels = group_codes(sensitive)
        yv = np.asarray(y).astype(np.int64)
        return np.array([self.weights_.get((labels[g], int(c)), 1.0)
                         for g, c in zip(codes, yv, strict=True)], dtype=np.float64)

    def fit_transform(self, y: np.ndarray, sensitive: pd.DataFrame | pd.Series | np.ndarray
                      ) -> np.ndarray:
        """Fit and return the training weights."""
        return self.fit(y, sensitive).sample_weight(y, sensitive)


# ----------------------------------------------------------------------------- penalty

class FairnessPenalty(nn.Module):
    """``weight`` x a soft fairness gap of a batch, from logits, labels and group codes.

    ``demographic_parity``: max − min over groups of the mean predicted probability of the
    favourable class (the relaxed demographic parity difference). ``equalized_odds``: the same
    gap among rows with y=1 (soft TPR) and among rows with y=0 (soft FPR), the larger of the two
    (Fairlearn's ``agg="worst_case"``). Groups with fewer than ``min_rows`` rows in the batch
    (or in the label's subset) are left out of that batch's gap.
    """

    def __init__(self, constraint: Constraint = "demographic_parity", weight: float = 1.0,
                 positive: int = 1, min_rows: int = 5) -> None:
        super().__init__()
        if constraint not in CONSTRAINTS:
            raise ValueError(f"constraint must be one of {', '.join(CONSTRAINTS)}")
        self.constraint = constraint
        self.weight = float(weight)
        self.positive = positive
        self.min_rows = min_rows

    def gap(self, proba: torch.Tensor, groups: torch.Tensor,
            mask: torch.Tensor | None = None) -> torch.Tensor:
        """max − min of per-group mean ``proba`` (rows in ``mask``); 0 with < 2 groups."""
        if mask is not None:
            proba, groups = proba[mask], groups[mask]
        if proba.numel() == 0:
            return proba.new_zeros(())
        n_groups = int(groups.max()) + 1
        counts = torch.bincount(groups, minlength=n_groups).to(proba.dtype)
        sums = torch.zeros(n_groups, dtype=proba.dtype, device=proba.device)
        sums = sums.index_add(0, groups, proba)
        keep = counts >= self.min_rows
        if int(keep.sum()) < 2:
            return proba.new_zeros(())
        means = sums[keep] / counts[keep]
        return means.max() - means.min()

    def forward(self, logits: torch.Tensor, y: torch.Tensor, groups: torch.Tensor
                ) -> torch.Tensor:
        proba = torch.softmax(logits, dim=1)[:, self.positive]
        if self.constraint == "demographic_parity":
            g = self.gap(proba, groups)
        else:
            pos = y == self.positive
            g = torch.maximum(self.gap(proba, groups, pos), self.gap(proba, groups, ~pos))
        return self.weight * g


class FairnessPenaltyLoss(CrossEntropy):
    """The in-training mitigation as a :class:`~audit.training.BatchLoss`: cross-entropy
    (weighted by ``sample_weight`` when given) plus ``penalty(logits, y, groups[idx])`` on every
    batch, ``groups`` holding the group code of every training row. A penalty of weight 0 adds
    nothing, so it trains exactly the model plain cross-entropy does."""

    def __init__(self, penalty: FairnessPenalty, groups: torch.Tensor,
                 sample_weight: torch.Tensor | None = None) -> None:
        super().__init__(sample_weight)
        self.fairness = penalty
        self.groups = groups

    def penalty(self, logits: torch.Tensor, y: torch.Tensor, idx: torch.Tensor
                ) -> torch.Tensor | None:
        if self.fairness.weight == 0.0:
            return None
        return self.fairness(logits, y, self.groups[idx].to(logits.device))


def train_with_penalty(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    weight_decay: float = 0.0,
    groups: torch.Tensor | None = None,
    penalty: FairnessPenalty | None = None,
    sample_weight: torch.Tensor | None = None,
) -> nn.Module:
    """Train ``model`` with the shared trainer (AdamW, one-cycle, the bundled recipes'
    settings and shuffling) on cross-entropy plus ``penalty(logits, y, groups)`` per batch.
    Without a penalty, or with weight 0, it trains exactly the model plain cross-entropy
    training gives for the same seed."""
    if penalty is not None and groups is None:
        raise ValueError("a fairness penalty needs the group of every training row")
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr,
                         weight_decay=weight_decay, seed=seed)
    loss = (FairnessPenaltyLoss(penalty, groups, sample_weight)
            if penalty is not None and groups is not None else CrossEntropy(sample_weight))
    Trainer(model, config, loss, (x, y)).fit()
    return model


# ----------------------------------------------------------------------------- thresholds

def _score_estimator() -> Any:
    """A fitted scikit-learn estimator whose prediction is the (single) score column."""
    from sklearn.base import BaseEstimator

    class Scores(BaseEstimator):
        def fit(self, x: Any, y: Any = None) -> Scores:
            self.fitted_ = True
            return self

        def predict(self, x: Any) -> np.ndarray:
            return np.asarray(x, dtype=np.float64)[:, 0]

    return Scores().fit(None)


class GroupThresholds:
    """Group-specific thresholds on scores, from Fairlearn's ``ThresholdOptimizer``.

    ``constraint`` is ``demographic_parity`` or ``equalized_odds``; ``tol`` relaxes it (the
    largest allowed violation, ``None`` for exact). Predictions are randomised between two
    thresholds per group, as the method requires; pass ``random_state`` for repeatability.
    Fairlearn relaxes only demographic parity: ``tol`` must be ``None`` for equalized odds.
    """

    def __init__(self, constraint: Constraint = "demographic_parity", tol: float | None = None,
                 grid_size: int = 1000) -> None:
        if constraint not in CONSTRAINTS:
            raise ValueError(f"constraint must be one of {', '.join(CONSTRAINTS)}")
        if tol is not None and constraint != "demographic_parity":
            raise ValueError("Fairlearn's ThresholdOptimizer relaxes only demographic parity; "
                             "use tol=None with equalized odds")
        self.constraint = constraint
        self.tol = tol
        self.grid_size = grid_size
        self._opt: Any = None
        self._groups: set[str] = set()

    @staticmethod
    def _frame(sensitive: pd.DataFrame | pd.Series | np.ndarray) -> pd.Series:
        codes, labels = group_codes(sensitive)
        return pd.Series(np.asarray(labels, dtype=object)[codes], name="group")

    def fit(self, scores: np.ndarray, y: np.ndarray,
            sensitive: pd.DataFrame | pd.Series | np.ndarray) -> GroupThresholds:
        """Choose thresholds on (training or validation) scores and labels."""
        from fairlearn.postprocessing import ThresholdOptimizer

        groups = self._frame(sensitive)
        self._groups = set(groups.tolist())
        self._opt = ThresholdOptimizer(estimator=_score_estimator(), constraints=self.constraint,
                                       objective="accuracy_score", grid_size=self.grid_size,
                                       prefit=True, predict_method="predict", tol=self.tol)
        self._opt.fit(np.asarray(scores, dtype=np.float64).reshape(-1, 1),
                      np.asarray(y).astype(np.int64), sensitive_features=groups)
        return self

    def predict(self, scores: np.ndarray, sensitive: pd.DataFrame | pd.Series | np.ndarray,
                random_state: int = 0) -> np.ndarray:
        """0/1 decisions; :class:`DataError` for groups not seen in ``fit``."""
        if self._opt is None:
            raise RuntimeError("call fit() first")
        groups = self._frame(sensitive)
        unknown = sorted(set(groups.tolist()) - self._groups)
        if unknown:
            raise DataError(f"group(s) {', '.join(unknown[:5])} were not in the data the "
                            "thresholds were fitted on; fit on data that has every group")
        out = self._opt.predict(np.asarray(scores, dtype=np.float64).reshape(-1, 1),
                                sensitive_features=groups, random_state=random_state)
        return np.asarray(out).astype(np.int64)
