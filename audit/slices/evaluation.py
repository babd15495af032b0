"""What the slices check measured, as typed values (judged by :mod:`audit.slices.findings`,
reported by :mod:`audit.slices.section`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from audit.slices.bias import GroupBias
from audit.slices.proxies import Proxy
from audit.slices.search import SliceResult, SliceSearch

__all__ = ["GallerySlice", "SlicesEvaluation"]


@dataclass
class GallerySlice:
    """An image slice with the rows shown in its gallery (correct ones first), their Grad-CAM
    maps for the predicted class (``None`` when the model has no spatial layer)."""

    rule: str
    rows: list[int]
    n_correct: int
    images: np.ndarray
    maps: torch.Tensor | None
    true: list[str]
    pred: list[str]


@dataclass
class SlicesEvaluation:
    """Weak slices (rules on columns or image attributes, embedding clusters), and the
    training data's bias and proxies."""

    kind: str
    samples: int
    errors: int
    search: SliceSearch | None = None
    search_on: str = ""  # "raw columns" or "image attributes"
    clusters: list[SliceResult] = field(default_factory=list)
    embedding: str = ""
    galleries: list[GallerySlice] = field(default_factory=list)
    train: str = ""  # the training data's name ("" when none)
    bias: list[GroupBias] = field(default_factory=list)
    proxies: list[Proxy] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    members: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    """Rows of each confirmed slice (by rule), to tell overlapping slices apart."""

    @property
    def confirmed(self) -> list[SliceResult]:
        """Every confirmed slice, rules first, by gap."""
        rules = self.search.confirmed if self.search is not None else []
        return [*rules, *(c for c in self.clusters if c.confirmed)]

    def distinct(self, overlap: float = 0.5, limit: int = 5
                 ) -> list[tuple[SliceResult, list[str]]]:
        """The confirmed slices worth telling apart, by gap: a slice whose rows overlap a kept
        one's by ``overlap`` (Jaccard) or more is folded into it (its rule listed beside the
        kept one); at most ``limit`` are kept."""
        kept: list[tuple[SliceResult, list[str]]] = []
        for s in sorted(self.confirmed, key=lambda s: -s.gap):
            m = self.members.get(s.rule)
            home = None
            for k, same in kept:
                other = self.members.get(k.rule)
                if m is not None and other is not None:
                    union = int((m | other).sum())
                    if union and int((m & other).sum()) / union >= overlap:
                        home = same
                        break
            if home is not None:
                home.append(s.rule)
            elif len(kept) < limit:
                kept.append((s, []))
        return kept

    @property
    def error_rate(self) -> float:
        """The model's overall error rate on the audited data."""
        return self.errors / self.samples if self.samples else float("nan")
