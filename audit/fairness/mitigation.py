"""Bias mitigation, one reusable piece per stage of a model's life.

- Before training, :class:`Reweighing` (Kamiran & Calders, 2012): weight every (group, label)
  cell by ``P(group) P(label) / P(group, label)`` so that, in the weighted training data, the
  label is independent of the group. Pass the weights to any weighted loss
  (``audit.training.CrossEntropy(sample_weight=...)``). Also before training,
  :class:`CorrelationRemoval`: Fairlearn's ``CorrelationRemover`` on the encoded inputs (the
  decorrelation baseline), keeping the model's input width. Reweighing one slice of the rows
  (not a group) is :class:`audit.fairness.mitigation_slices.SliceReweighing`.
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

from collections.abc import Sequence
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


# ----------------------------------------------------------------------------- decorrelation

def indicator_matrix(sensitive: pd.DataFrame, labels: Sequence[Sequence[str]] | None = None
                     ) -> tuple[np.ndarray, list[list[str]]]:
    """One 0/1 column per group of each sensitive column (the audit's groups: missing values
    are a group of their own), in ``labels``' order when given (a group not in ``labels`` gets
    no column, so new data is encoded like the data ``labels`` came from); and the labels."""
    from audit.fairness.groups import make_groupings

    groupings, _, _ = make_groupings(sensitive.reset_index(drop=True), intersectional=False)
    blocks, out_labels = [], []
    for i, g in enumerate(groupings):
        names = list(labels[i]) if labels is not None else list(g.labels)
        here = np.asarray(g.labels, dtype=object)[g.codes]
        blocks.append(np.stack([here == name for name in names], axis=1)
                      if names else np.zeros((len(here), 0)))
        out_labels.append(names)
    return np.concatenate(blocks, axis=1).astype(np.float64), out_labels


class CorrelationRemoval:
    """Fairlearn's ``CorrelationRemover`` on a model's encoded inputs, at the model's width.

    Fairlearn (0.15) projects the non-sensitive columns onto the centred sensitive columns by
    least squares, replaces them by ``alpha`` x residual + (1 - ``alpha``) x original, and
    drops the sensitive columns from its output. A model expects its encoder's width, so here:

    - the sensitive columns Fairlearn decorrelates from are 0/1 indicators of the groups of the
      raw sensitive columns (:func:`indicator_matrix`), so the sensitive attribute need not be
      a model input;
    - ``input_columns`` (the model inputs that encode a sensitive attribute: its one-hot
      columns) are left out of the decorrelated columns and **zeroed**: a constant input only
      adds a constant to the first layer, so this is Fairlearn's dropping at the same width
      (keeping them would let the model read the attribute the method removes);
    - every other input is replaced in place by Fairlearn's output. Its values may leave the
      encoder's [0, 1] range; the model is retrained on them.

    ``transform`` needs the sensitive columns of the rows it transforms, as Fairlearn's does.
    """

    def __init__(self, input_columns: Sequence[int] = (), alpha: float = 1.0) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.input_columns = sorted(set(int(i) for i in input_columns))
        self.alpha = float(alpha)
        self._remover: Any = None
        self._labels: list[list[str]] = []

    def _split(self, x: np.ndarray) -> tuple[np.ndarray, list[int]]:
        keep = [j for j in range(x.shape[1]) if j not in set(self.input_columns)]
        return np.asarray(x, dtype=np.float64)[:, keep], keep

    def fit(self, x: np.ndarray, sensitive: pd.DataFrame) -> CorrelationRemoval:
        """Learn the projection on the training inputs and their sensitive columns."""
        from fairlearn.preprocessing import CorrelationRemover

        s, self._labels = indicator_matrix(sensitive)
        z, keep = self._split(x)
        if len(s) != len(z):
            raise DataError(f"inputs and sensitive columns differ in length ({len(z)}, "
                            f"{len(s)})")
        ids = list(range(len(keep), len(keep) + s.shape[1]))
        self._remover = CorrelationRemover(sensitive_feature_ids=ids, alpha=self.alpha)
        self._remover.fit(np.hstack([z, s]))
        return self

    def transform(self, x: np.ndarray, sensitive: pd.DataFrame) -> np.ndarray:
        """``x`` with the other inputs decorrelated and the sensitive inputs zeroed (float32,
        the width of ``x``)."""
        if self._remover is None:
            raise RuntimeError("call fit() first")
        s, _ = indicator_matrix(sensitive, self._labels)
        z, keep = self._split(x)
        out = np.zeros(np.shape(x), dtype=np.float64)
        out[:, keep] = self._remover.transform(np.hstack([z, s]))
        return out.astype(np.float32)

    def fit_transform(self, x: np.ndarray, sensitive: pd.DataFrame) -> np.ndarray:
        """Fit and return the transformed training inputs."""
        return self.fit(x, sensitive).transform(x, sensitive)


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
