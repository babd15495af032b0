"""Counterfactual tests of reliance outside the object: whole-background fills and a window map.

**Object only.** Everything outside each object mask is replaced by a fill and the share of
predictions that stay the same is the *agreement*. One fill cannot remove every kind of cue
(the image's own mean colour keeps a class-coloured tint), so three are used and the worst one
counts:

* ``own-mean``: each image's own mean background colour (removes marks and textures, keeps a
  tint);
* ``dataset-mean``: the mean background colour of the audit data, the same for every image
  (data-independent: removes a tint too);
* ``other-background``: the background of another image with a different label (its own object
  painted over with its mean background colour), drawn among the images whose background
  contrasts with the kept object at least as much as the image's own (so the object stays as
  visible as it was). A model that follows the background then predicts the donor's class:
  agreement falls towards 0, not just to chance.

Both mean colours carry seeded Gaussian noise with the data's typical within-image spread of
the background per channel, so that a fill looks like a background of this data (it stays flat
for data with flat backgrounds): a flat field behind the object is itself unlike any training
background. Measured on clean shapes models (textured backgrounds): a flat data-mean fill
changed 33% of the predictions of one (seed 2, width 16), this fill 9%; noise as wide as the
spread *across* images changed 32% of the bundled clean model's predictions, this one 8%.
Cue models lose 68-80% with either.

**Window map.** The image is covered by ``s`` x ``s`` windows (``s`` a quarter of the shorter
side) at stride ``s / 2``; each window is occluded in turn, only its pixels outside the object
and with the dataset-mean fill, on the images where at least half of it is background. The
share of changed predictions per window is a ``(rows, cols)`` map of the whole image; windows
placed at random give the reference.

**Concentration.** The *hot* windows are those that change at least half as many predictions
as the strongest one. ``area`` is the share of the image their union covers, ``share`` their
share of the map's total change. The cue is *localised*, and named by the position of the hot
windows' bounding box, when the strongest window changes at least ``min_excess`` (the check's
``reliance_medium``) more predictions than random windows, ``area <= max_area``
(:data:`LOCAL_AREA_MAX`) and ``share >= min_share`` (:data:`LOCAL_SHARE_MIN`); otherwise no
place is named (the cue, if any, is spread over the background or moves between images).
A uniform map has ``area`` 1; a fixed 4x4 watermark on 32x32 images gives one hot window
(``area`` 0.06, ``share`` 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from audit.saliency.evaluation import FillResult, Hotspot, WindowMap
from audit.saliency.metrics import ProbaFn, describe_box, outside_fill

FILLS: dict[str, str] = {
    "own-mean": "its own mean colour",
    "dataset-mean": "the data's mean colour",
    "other-background": "another class's background",
}
"""The whole-background fills, in report order, with their names in plain words."""

LOCAL_AREA_MAX = 0.25
"""A localised cue's hot windows cover at most this share of the image."""
LOCAL_SHARE_MIN = 0.5
"""... and hold at least this share of the window map's total change."""
SPREAD = "spread over the background"
"""What :attr:`Hotspot.where` says when no place holds the change."""


def background_stats(x: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean background colour of ``x`` ``(1, C, 1, 1)`` and the mean within-image spread
    (standard deviation) of the background per channel ``(1, C, 1, 1)``."""
    out = (~masks).float()[:, None]
    own = outside_fill(x, masks)
    count = out.sum((2, 3), keepdim=True).clamp(min=1)
    mean = (x * out).sum((0, 2, 3), keepdim=True) / out.sum((0, 2, 3), keepdim=True).clamp(min=1)
    spread = ((((x - own) ** 2) * out).sum((2, 3), keepdim=True) / count).sqrt()
    return mean, spread.mean(0, keepdim=True)


def _object_colour(x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    inside = masks.float()[:, None]
    return (x * inside).sum((2, 3)) / inside.sum((2, 3)).clamp(min=1)


def donors(x: torch.Tensor, masks: torch.Tensor, y: torch.Tensor, generator: torch.Generator
           ) -> torch.Tensor:
    """Per image ``i`` the index of another image whose background goes behind ``i``'s object:
    a different label where one exists, and among those preferably one whose mean background
    colour is at least as far from ``i``'s object colour as ``i``'s own (random among them)."""
    n = len(x)
    obj = _object_colour(x, masks)
    bg = outside_fill(x, masks)[:, :, 0, 0]
    own = (obj - bg).norm(dim=1)
    out = torch.empty(n, dtype=torch.long)
    for start in range(0, n, _CHUNK):
        rows = torch.arange(start, min(start + _CHUNK, n))
        other = rows[:, None] != torch.arange(n)[None]
        differ = (y[rows, None] != y[None]) & other
        differ = torch.where(differ.any(1, keepdim=True), differ, other)
        visible = differ & (torch.cdist(obj[rows], bg) >= own[rows, None] - 1e-6)
        score = torch.rand(len(rows), n, generator=generator)
        score = torch.where(visible, score + 2.0,
                            torch.where(differ, score, torch.full_like(score, -1.0)))
        out[rows] = score.argmax(1)
    return out


_CHUNK = 1024  # rows of the donor choice computed at once (memory: CHUNK x N)


def fills(x: torch.Tensor, masks: torch.Tensor, y: torch.Tensor, lo: float, hi: float,
          generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Each of :data:`FILLS` as full images ``(N, C, H, W)`` (only their pixels outside the
    masks are used); ``generator`` draws the donors (:func:`donors`), then the texture noise
    the two mean colours share."""
    j = donors(x, masks, y, generator) if len(x) > 1 else torch.zeros(len(x), dtype=torch.long)
    mean, spread = background_stats(x, masks)
    texture = spread * torch.randn(x.shape, generator=generator)
    own = outside_fill(x, masks)
    donor = torch.where(masks[j][:, None], own[j].expand_as(x), x[j])
    return {"own-mean": (own + texture).clamp(lo, hi),
            "dataset-mean": (mean + texture).clamp(lo, hi), "other-background": donor}


def object_only(proba: ProbaFn, x: torch.Tensor, masks: torch.Tensor,
                filled: dict[str, torch.Tensor]) -> list[FillResult]:
    """The share of predictions unchanged when everything outside the object is replaced by
    each fill."""
    before = proba(x).argmax(1)
    out = []
    for name, fill in filled.items():
        after = proba(torch.where(masks[:, None], x, fill)).argmax(1)
        out.append(FillResult(name, FILLS.get(name, name),
                              float((after == before).float().mean())))
    return out


def window_positions(length: int, size: int, stride: int) -> list[int]:
    """Start offsets of windows of ``size`` at ``stride`` covering ``[0, length)`` (the last
    one flush with the end)."""
    starts = list(range(0, max(length - size, 0) + 1, stride))
    if starts[-1] + size < length:
        starts.append(length - size)
    return starts


def window_change(proba: ProbaFn, x: torch.Tensor, masks: torch.Tensor, fill: torch.Tensor,
                  row: int, col: int, size: int, before: torch.Tensor | None = None
                  ) -> tuple[float, int]:
    """Occlude the window at ``(row, col)``, only outside the object, with ``fill``, on the
    images where at least half of the window is background. Returns (share of changed
    predictions, images used); NaN when no image qualifies."""
    win = torch.zeros(masks.shape[-2:], dtype=torch.bool)
    win[row:row + size, col:col + size] = True
    cover = (win & ~masks).flatten(1).sum(1)
    ok = cover * 2 >= int(win.sum())
    n = int(ok.sum())
    if n == 0:
        return math.nan, 0
    xs, ms = x[ok], masks[ok]
    pred = proba(xs).argmax(1) if before is None else before[ok]
    region = (win[None] & ~ms)[:, None]
    changed = proba(torch.where(region, fill.expand_as(x)[ok], xs)).argmax(1) != pred
    return float(changed.float().mean()), n


def window_map(proba: ProbaFn, x: torch.Tensor, masks: torch.Tensor, fill: torch.Tensor
               ) -> WindowMap:
    """:func:`window_change` for every window of the grid (module doc)."""
    h, w = masks.shape[-2:]
    size = max(2, min(h, w) // 4)
    stride = max(1, size // 2)
    rows, cols = window_positions(h, size, stride), window_positions(w, size, stride)
    before = proba(x).argmax(1)
    change = torch.full((len(rows), len(cols)), math.nan)
    images = torch.zeros((len(rows), len(cols)), dtype=torch.long)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            rate, n = window_change(proba, x, masks, fill, r, c, size, before)
            change[i, j], images[i, j] = rate, n
    return WindowMap(change=change, images=images, rows=rows, cols=cols, size=size,
                     image_shape=(h, w))


def random_windows(proba: ProbaFn, x: torch.Tensor, masks: torch.Tensor, fill: torch.Tensor,
                   size: int, windows: int, generator: torch.Generator) -> float:
    """:func:`window_change` averaged over ``windows`` random window positions (weighted by
    the images each could use): what occluding an arbitrary background patch does."""
    h, w = masks.shape[-2:]
    before = proba(x).argmax(1)
    total, count = 0.0, 0
    for _ in range(windows):
        r = int(torch.randint(0, h - size + 1, (1,), generator=generator))
        c = int(torch.randint(0, w - size + 1, (1,), generator=generator))
        rate, n = window_change(proba, x, masks, fill, r, c, size, before)
        if n:
            total += rate * n
            count += n
    return total / count if count else math.nan


def concentration(wm: WindowMap, random_change: float, *, min_excess: float, max_area: float,
                  min_share: float) -> Hotspot:
    """The strongest window, the hot windows' region and whether it names a place (module
    doc)."""
    change = torch.nan_to_num(wm.change, nan=0.0)
    flat = int(change.reshape(-1).argmax())
    i, j = flat // change.shape[1], flat % change.shape[1]
    peak = float(change[i, j])
    hot = (change >= peak / 2) & (change > 0)
    if not hot.any():
        hot[i, j] = True
    h, w = wm.image_shape
    cover = torch.zeros((h, w), dtype=torch.bool)
    for a, b in hot.nonzero().tolist():
        cover[wm.rows[a]:wm.rows[a] + wm.size, wm.cols[b]:wm.cols[b] + wm.size] = True
    rr, cc = cover.any(1).nonzero()[:, 0], cover.any(0).nonzero()[:, 0]
    box = (int(rr.min()), int(cc.min()), int(rr.max()) + 1, int(cc.max()) + 1)
    total = float(change.sum())
    share = float(change[hot].sum()) / total if total > 0 else math.nan
    area = float(cover.float().mean())
    base = 0.0 if math.isnan(random_change) else random_change
    localised = (peak - base >= min_excess and area <= max_area
                 and not math.isnan(share) and share >= min_share)
    return Hotspot(row=wm.rows[i], col=wm.cols[j], size=wm.size, change=peak,
                   images=int(wm.images[i, j]), region=box, area=area, share=share,
                   localised=localised, where=describe_box(*box, h, w) if localised else SPREAD)


@dataclass(frozen=True)
class Counterfactuals:
    """What :func:`counterfactuals` measured."""

    fills: list[FillResult]
    chance_agreement: float  # 1 / classes
    windows: WindowMap
    random_change: float
    hotspot: Hotspot

    @property
    def reliance(self) -> float:
        """max(1 - worst agreement, strongest window - random windows)."""
        worst = min(f.agreement for f in self.fills)
        h, r = self.hotspot.change, self.random_change
        return max(1.0 - worst, 0.0 if math.isnan(h) or math.isnan(r) else h - r)


def counterfactuals(proba: ProbaFn, x: torch.Tensor, masks: torch.Tensor, y: torch.Tensor,
                    value_range: tuple[float, float], *, min_excess: float, windows: int,
                    fill_generator: torch.Generator, window_generator: torch.Generator
                    ) -> Counterfactuals:
    """Every test of the module doc on images ``x`` with object ``masks`` and labels ``y``:
    object only with each fill, the window map (dataset-mean fill), ``windows`` random windows
    and the concentration (a place is named when the strongest window beats random windows by
    ``min_excess``)."""
    filled = fills(x, masks, y, value_range[0], value_range[1], fill_generator)
    results = object_only(proba, x, masks, filled)
    wm = window_map(proba, x, masks, filled["dataset-mean"])
    rand = random_windows(proba, x, masks, filled["dataset-mean"], wm.size, windows,
                          window_generator)
    hot = concentration(wm, rand, min_excess=min_excess, max_area=LOCAL_AREA_MAX,
                        min_share=LOCAL_SHARE_MIN)
    return Counterfactuals(fills=results, chance_agreement=1.0 / proba(x[:1]).shape[1],
                           windows=wm, random_change=rand, hotspot=hot)
