"""``shapes``: synthetic 32x32 colour images of simple shapes on textured backgrounds, with masks.

Every image holds one object (circle, square, triangle or cross) of random size, position,
rotation and colour on a striped, noisy background. ``extras["masks"]`` is the exact object mask
``(N, H, W)`` bool, so saliency maps can be scored against ground truth. Generation is
vectorised numpy and deterministic for a given (split, seed).

``shapes-watermark`` is the same images plus a small class-coloured square in the top-left
corner, a shortcut: in its *train* split the watermark always matches the label while the shape
matches it only ``1 - SHAPE_NOISE`` of the time, so a model trained there learns to read the
corner instead of the object. Its test split looks clean to accuracy (shape, watermark and label
agree), which is exactly why a saliency audit is needed to see the problem.

:func:`generate` draws other shortcut cues too (``cue=``, one of :data:`CUES`), each coded by
the label and always outside the object: ``watermark`` (the fixed corner square above),
``mark`` (the same square at a random place outside the object, a different place per image),
``tint`` (the whole background blended towards the label's colour) and ``stripes`` (the
background's stripes turned to the label's orientation). With ``shape_noise=1`` every shape
belongs to another class than its cue: a *cue-swapped* split, on which the share of
predictions equal to the label is the share that follows the cue. The cues draw from their own
random stream, so the images without a cue are the same whatever cue another call asks for.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from audit.datasets import register_dataset
from audit.subject import AuditData

CLASSES = ["circle", "square", "triangle", "cross"]
SIZE = 32
SPLIT_SIZES = {"train": 4000, "test": 600}
WATERMARK_ROWS = (1, 5)  # [start, stop) rows of the watermark square
WATERMARK_COLS = (1, 5)
WATERMARK_COLOURS = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.3, 1.0],
                              [1.0, 1.0, 0.0]], dtype=np.float32)
SHAPE_NOISE = 0.3  # share of watermark-train images whose shape is drawn from another class
CUES = ("watermark", "mark", "tint", "stripes")
"""The shortcut cues :func:`generate` can draw (see the module doc)."""
MARK_SIZE = 4  # side of the ``mark`` cue's square (the watermark's size)
TINT = 0.35  # ``tint``: weight of the label's colour in the background blend
STRIPE_ANGLES = np.array([0.0, 0.25, 0.5, 0.75], dtype=np.float32) * np.pi  # ``stripes``
_KEEP_OUT = 7  # objects never overlap the top-left KEEP_OUT x KEEP_OUT corner


def shape_masks(cls: np.ndarray, cx: np.ndarray, cy: np.ndarray, r: np.ndarray,
                theta: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Boolean masks ``(N, size, size)`` of shapes of class ``cls`` (indices into CLASSES),
    centre ``(cx, cy)`` in pixels, half-extent ``r`` and rotation ``theta`` (radians)."""
    n = len(cls)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    masks = np.zeros((n, size, size), dtype=bool)
    for k in range(4):
        sel = np.flatnonzero(cls == k)
        if not len(sel):
            continue
        dx = xx[None] - cx[sel, None, None]
        dy = yy[None] - cy[sel, None, None]
        c, s = np.cos(theta[sel])[:, None, None], np.sin(theta[sel])[:, None, None]
        u, v = c * dx + s * dy, -s * dx + c * dy
        rr = r[sel, None, None]
        if k == 0:  # circle
            m = dx**2 + dy**2 <= rr**2
        elif k == 1:  # square
            m = (np.abs(u) <= 0.82 * rr) & (np.abs(v) <= 0.82 * rr)
        elif k == 2:  # equilateral triangle with circumradius r: three half-planes
            m = np.ones(u.shape, dtype=bool)
            for j in range(3):
                a = np.pi / 2 + 2 * np.pi * j / 3
                m &= (u * np.cos(a) + v * np.sin(a)) <= 0.5 * rr
        else:  # cross with arms of width 2r/3
            arm = rr / 3.0
            m = (((np.abs(u) <= rr) & (np.abs(v) <= arm))
                 | ((np.abs(v) <= rr) & (np.abs(u) <= arm)))
        masks[sel] = m
    return masks


def _backgrounds(rng: np.random.Generator, n: int, size: int,
                 angles: np.ndarray | None = None) -> np.ndarray:
    """Striped, noisy colour textures ``(N, 3, size, size)`` in [0, 1]. ``angles`` ``(N,)``
    replaces the random stripe orientations (and makes every stripe pattern clearly visible);
    the random draws are the same either way."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    base = rng.uniform(0.25, 0.75, (n, 3, 1, 1)).astype(np.float32)
    tint = rng.uniform(-0.25, 0.25, (n, 3, 1, 1)).astype(np.float32)
    freq = rng.uniform(0.08, 0.3, (n, 1, 1)).astype(np.float32)
    angle = rng.uniform(0, np.pi, (n, 1, 1)).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1)).astype(np.float32)
    if angles is not None:
        angle = angles.astype(np.float32)[:, None, None]
        tint = (np.sign(tint) * (0.15 + 0.4 * np.abs(tint))).astype(np.float32)
    wave = np.sin(2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)
    noise = rng.normal(0, 0.06, (n, 3, size, size)).astype(np.float32)
    return np.clip(base + tint * wave[:, None] + noise, 0.0, 1.0)


def _object_colours(rng: np.random.Generator, bg_mean: np.ndarray) -> np.ndarray:
    """Random colours ``(N, 3)`` whose brightness differs from the background's by >= 0.25."""
    n = len(bg_mean)
    col = rng.uniform(0.0, 1.0, (n, 3)).astype(np.float32)
    bright = col.mean(axis=1)
    target = bg_mean.mean(axis=1)
    close = np.abs(bright - target) < 0.25
    shift = np.where(target > 0.5, -0.45, 0.45).astype(np.float32)
    col[close] = np.clip(col[close] + shift[close, None], 0.0, 1.0)
    return col


def _mark_places(rng: np.random.Generator, masks: np.ndarray, side: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """A random top-left ``(row, col)`` per image for a ``side`` x ``side`` square that keeps
    one pixel away from the object (uniform over the places that do)."""
    n, h, w = masks.shape
    grown = masks.copy()  # the mask dilated by one pixel (8-neighbourhood)
    grown[:, 1:] |= masks[:, :-1]
    grown[:, :-1] |= masks[:, 1:]
    grown[:, :, 1:] |= grown[:, :, :-1].copy()
    grown[:, :, :-1] |= grown[:, :, 1:].copy()
    integral = np.zeros((n, h + 1, w + 1), dtype=np.int32)
    integral[:, 1:, 1:] = grown.cumsum(1).cumsum(2)
    hits = (integral[:, side:, side:] - integral[:, :-side, side:]
            - integral[:, side:, :-side] + integral[:, :-side, :-side])
    score = np.where(hits == 0, rng.random(hits.shape), -1.0).reshape(n, -1)
    flat = score.argmax(1)
    return flat // hits.shape[2], flat % hits.shape[2]


def generate(n: int, seed: int, watermark: bool = False, shape_noise: float = 0.0,
             size: int = SIZE, cue: str | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` images ``(N, 3, size, size)`` float32 in [0, 1], labels ``(N,)`` int64 and object
    masks ``(N, size, size)`` bool, deterministic in ``seed``.

    With ``watermark`` (the same as ``cue="watermark"``) a square of the label's colour is drawn
    in the top-left corner; ``cue`` names another shortcut of :data:`CUES` (module doc). With
    ``shape_noise`` that share of images gets a shape of another class than its label (the
    cue still matches the label).
    """
    if watermark:
        cue = cue or "watermark"
    if cue is not None and cue not in CUES:
        raise ValueError(f"unknown cue {cue!r}; choose from {', '.join(CUES)}")
    rng = np.random.default_rng(seed)
    k = len(CLASSES)
    y = rng.integers(0, k, n).astype(np.int64)
    shape_cls = y.copy()
    if shape_noise > 0:
        flip = rng.random(n) < shape_noise
        shape_cls[flip] = (y[flip] + rng.integers(1, k, int(flip.sum()))) % k
    r = rng.uniform(5.5, 9.5, n).astype(np.float32)
    cx = rng.uniform(r + 1, size - r - 1).astype(np.float32)
    cy = rng.uniform(r + 1, size - r - 1).astype(np.float32)
    # keep the top-left corner free of objects (the watermark's place in the shortcut variant)
    near = (cx - r < _KEEP_OUT) & (cy - r < _KEEP_OUT)
    push_x = rng.random(n) < 0.5
    cx = np.where(near & push_x, _KEEP_OUT + r + rng.uniform(0, 2, n), cx).astype(np.float32)
    cy = np.where(near & ~push_x, _KEEP_OUT + r + rng.uniform(0, 2, n), cy).astype(np.float32)
    theta = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
    masks = shape_masks(shape_cls, cx, cy, r, theta, size)
    x = _backgrounds(rng, n, size, STRIPE_ANGLES[y] if cue == "stripes" else None)
    if cue == "tint":
        x = (1 - TINT) * x + TINT * WATERMARK_COLOURS[y][:, :, None, None]
    colour = _object_colours(rng, x.mean(axis=(2, 3)))
    shade = rng.normal(0, 0.03, (n, 3, size, size)).astype(np.float32)
    obj = np.clip(colour[:, :, None, None] + shade, 0.0, 1.0)
    x = np.where(masks[:, None], obj, x)
    if cue == "watermark":
        r0, r1 = WATERMARK_ROWS
        c0, c1 = WATERMARK_COLS
        x[:, :, r0:r1, c0:c1] = WATERMARK_COLOURS[y][:, :, None, None]
    elif cue == "mark":
        rows, cols = _mark_places(np.random.default_rng([seed, 1]), masks, MARK_SIZE)
        for i in range(n):
            x[i, :, rows[i]:rows[i] + MARK_SIZE, cols[i]:cols[i] + MARK_SIZE] = (
                WATERMARK_COLOURS[y[i]][:, None, None])
    return x.astype(np.float32), y, masks


_SPLIT_SALT = {"train": 1, "test": 2}


DATA_SEED = 0


@lru_cache(maxsize=4)
def _cached(split: str, watermark: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    noise = SHAPE_NOISE if (watermark and split == "train") else 0.0
    return generate(SPLIT_SIZES[split], DATA_SEED * 1000 + _SPLIT_SALT[split], watermark, noise)


def _data(name: str, split: str, watermark: bool) -> AuditData:
    x, y, masks = _cached(split, watermark)
    extras: dict[str, object] = {"masks": torch.from_numpy(masks.copy())}
    if watermark:
        extras["watermark_box"] = {"rows": list(WATERMARK_ROWS), "cols": list(WATERMARK_COLS)}
    return AuditData(name=f"{name}/{split}", x=torch.from_numpy(x.copy()),
                     y=torch.from_numpy(y.copy()), kind="image", classes=list(CLASSES),
                     source=f"bundled:{name}", extras=extras)


@register_dataset("shapes")
def load(split: str, seed: int = 0) -> AuditData:
    """4000 train / 600 test images (3, 32, 32) in [0, 1] with object masks. ``seed`` is
    unused: the splits are fixed so every audit of a bundled model sees the same test set
    (call :func:`generate` for other draws)."""
    return _data("shapes", split, watermark=False)


@register_dataset("shapes-watermark")
def load_watermark(split: str, seed: int = 0) -> AuditData:
    """``shapes`` with a class-coloured corner watermark (the shortcut); see the module doc."""
    return _data("shapes-watermark", split, watermark=True)
