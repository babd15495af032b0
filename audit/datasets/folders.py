"""Image data on disk: a folder of class sub-folders (the ImageNet / ``ImageFolder`` layout) or
a CSV of image paths and labels, decoded with Pillow (PNG, JPEG, WebP, BMP, GIF, TIFF, PPM).

Layout::

    data/                     labels: the sub-folder's name, which must be one of the card's
      circle/0001.png         classes (a subset is fine); the class index is its position in
      square/a/0002.jpg       the card's ``classes``, not the folders' alphabetical order
      ...

Files are found recursively in each class folder (symlinks followed, hidden files such as
``.DS_Store`` skipped); files at the top of a folder that has class sub-folders are ignored.
With ``labels=False`` (production data for the drift check) a folder of images without
sub-folders loads unlabelled.

A CSV lists one image per row: the column ``path`` (or ``file``, ``filename``, ``image``) holds
the file's path, relative to the CSV's folder (or absolute), and the label column (``--target``,
else the card's ``target``, else ``label``, ``class``, ``target`` or ``y``) a class name or
index.

Preprocessing, per image, from the card's ``input`` (the same for both layouts):

1. convert to the card's channels: ``RGB`` for 3, ``L`` (luma) for 1 or a 2-D shape, ``RGBA``
   for 4 (CMYK, palette and grey images convert; 16-bit grey scales by 1/65535; alpha is
   dropped without compositing and the EXIF orientation is not applied, as torchvision's
   ``ImageFolder`` loader does);
2. an image already of the card's H x W is kept as it is; any other is resized (bilinear,
   antialiased) so that its shorter side is the card's ``extra.resize`` pixels if the card sets
   it, else ``RESIZE_RATIO`` (256/224) times the crop (torchvision's standard evaluation
   transform, ``Resize(256)`` + ``CenterCrop(224)``, scaled), and never smaller than the crop;
3. centre-cropped to H x W;
4. scaled from [0, 1] (pixel / 255) to the card's ``input.range`` (e.g. 0..255 stays pixels).

``input.mean``/``input.std`` are *not* applied here: the model loader puts them in front of the
model (:mod:`audit.loading.normalize`), so the data stays in the card's raw range.

Memory: files are listed first (paths only), then decoded one batch at a time (``BATCH``
files, on a few threads) into one preallocated float32 tensor. At most one batch of decoded
images is held besides that tensor, never all files' bytes or PIL images; the tensor itself is
the dataset's size (N x C x H x W x 4 bytes), because the audit's checks take the data as one
tensor. A folder whose tensor would exceed half the machine's memory is refused up front.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audit.card import ModelCard
from audit.errors import DataError
from audit.subject import UNLABELLED, AuditData

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm",
                    ".pgm", ".pbm")
RESIZE_RATIO = 256 / 224
"""Shorter side / crop side of torchvision's standard evaluation transform."""
BATCH = 256
"""Files decoded per batch."""
PATH_COLUMNS = ("path", "file", "filename", "image")
LABEL_COLUMNS = ("label", "class", "target", "y")
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def load_image_folder(path: Path, card: ModelCard, *, labels: bool = True,
                      workers: int | None = None) -> AuditData:
    """A folder of class sub-folders (or, with ``labels=False``, of images) as
    :class:`AuditData` preprocessed for ``card`` (module doc); :class:`DataError` naming the
    folder or file on any problem."""
    _target_shape(card, path)
    subdirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subdirs:
        files = _images_in(path, recursive=False)
        if not files:
            raise DataError(f"--data {path} is a directory without images; put each class's "
                            f"images in a sub-folder named after the class "
                            f"({_shown(card.classes)})")
        if labels:
            raise DataError(f"{path} holds {len(files)} image(s) but no class sub-folders; put "
                            f"each class's images in a sub-folder named after the class "
                            f"({_shown(card.classes)}), or list them in a CSV with a label "
                            "column")
        y = np.full(len(files), UNLABELLED, np.int64)
    else:
        names = [d.name for d in subdirs]
        unknown = [n for n in names if n not in card.classes]
        if unknown:
            missing = [c for c in card.classes if c not in names]
            raise DataError(
                f"{path}: class folder(s) {_shown(unknown, 8)} are not classes of the model; "
                f"its classes are {_shown(card.classes)}"
                + (f" (no folder for {_shown(missing, 8)}; a subset is fine)" if missing else "")
                + "; rename the folders to the card's class names")
        lookup = {c: i for i, c in enumerate(card.classes)}
        files, ys = [], []
        for d in subdirs:
            found = _images_in(d, recursive=True)
            files += found
            ys += [lookup[d.name]] * len(found)
        if not files:
            raise DataError(f"--data {path} is a directory whose class folders "
                            f"({_shown(names, 8)}) hold no images")
        y = np.asarray(ys, np.int64)
    x = decode_images(files, card, workers=workers)
    return AuditData(name=path.name or str(path), x=x, y=torch.from_numpy(y),
                     kind="image", classes=list(card.classes), source=str(path),
                     extras={"files": np.asarray([str(f.relative_to(path)) for f in files])})


def load_image_csv(path: Path, card: ModelCard, target: str | None = None,
                   path_column: str | None = None, sensitive: Sequence[str] | None = None, *,
                   labels: bool = True, workers: int | None = None) -> AuditData:
    """A CSV of image paths (``path_column``, else the first of :data:`PATH_COLUMNS`; relative
    to the CSV's folder) and labels (``target``, else the card's, else the first of
    :data:`LABEL_COLUMNS`; optional with ``labels=False``). ``sensitive`` columns are kept in
    ``extras["frame"]`` for the fairness check."""
    import pandas as pd

    from audit.datasets.files import _labels

    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path} is not a readable CSV file ({str(e).splitlines()[0][:120]})") \
            from None
    columns = [str(c) for c in frame.columns]
    col = path_column or next((c for c in PATH_COLUMNS if c in columns), None)
    if col is None or col not in columns:
        raise DataError(f"{path}: no column of image paths; name it "
                        f"{' or '.join(repr(c) for c in PATH_COLUMNS)} (columns are "
                        f"{', '.join(columns[:20])})")
    label_col = target or card.target or next((c for c in LABEL_COLUMNS if c in columns), None)
    if label_col is not None and label_col not in columns:
        if target or labels:
            raise DataError(f"{path}: label column {label_col!r} not found; columns are "
                            f"{', '.join(columns[:20])}")
        label_col = None
    if label_col is None and labels:
        raise DataError(f"{path}: no label column; pass --target COLUMN or name it "
                        f"{' or '.join(repr(c) for c in LABEL_COLUMNS)}")
    if len(frame) == 0:
        raise DataError(f"{path} lists no images")
    base = path.parent
    files = [Path(p) if Path(p).is_absolute() else base / p for p in frame[col]]
    for row, f in enumerate(files):
        if not f.is_file():
            raise DataError(f"{path}: row {row + 2} names {f}, which is not a file "
                            f"(paths in column {col!r} are relative to the CSV's folder)")
    y = (_labels(frame[label_col].to_numpy(), card.classes, path, label_col)
         if label_col is not None else np.full(len(frame), UNLABELLED, np.int64))
    x = decode_images(files, card, workers=workers)
    extras: dict[str, Any] = {"files": np.asarray([str(p) for p in frame[col]])}
    if sensitive:
        missing = [c for c in sensitive if c not in columns]
        if missing:
            raise DataError(f"{path}: sensitive column(s) {', '.join(missing)} not found; "
                            f"columns are {', '.join(columns[:20])}")
        extras["frame"] = pd.read_csv(path, usecols=list(sensitive))
        extras["sensitive"] = list(sensitive)
    return AuditData(name=path.stem, x=x, y=torch.from_numpy(y), kind="image",
                     classes=list(card.classes), source=str(path), extras=extras)


def decode_images(files: Sequence[Path], card: ModelCard, *, workers: int | None = None,
                  batch: int = BATCH) -> torch.Tensor:
    """``files`` decoded and preprocessed for ``card`` (module doc) into one float32 tensor
    ``(N, *card.input.shape)``, ``batch`` files at a time; beyond the spill size it lives in a
    memory-mapped temporary file (:mod:`audit.store`), so a folder of any size that
    fits on disk loads in bounded memory."""
    from audit.store import RowWriter, ensure_room

    shape = tuple(card.input.shape)
    ensure_room(len(files) * int(np.prod(shape)) * 4, f"{len(files)} images of shape {shape}")
    lo, hi = card.input.range
    writer = RowWriter(shape, f"{len(files)} images")
    n_workers = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        for _, chunk in _batches(files, batch):
            arrays = list(pool.map(lambda f: _load_one(f, card), chunk))
            block = torch.from_numpy(np.stack(arrays))
            writer.append(block * (hi - lo) + lo if (lo, hi) != (0, 1) else block)
    return writer.finish()


def _batches(files: Sequence[Path], size: int) -> Iterator[tuple[int, Sequence[Path]]]:
    for start in range(0, len(files), size):
        yield start, files[start:start + size]


def _load_one(file: Path, card: ModelCard) -> np.ndarray:
    """One image as float32 ``card.input.shape`` in [0, 1]."""
    from PIL import Image, UnidentifiedImageError

    channels, h, w = _target_shape(card, file)
    try:
        with Image.open(file) as img:
            img.load()
            arr = _preprocess(img, channels, h, w, card.extra.get("resize"))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError,
            Image.DecompressionBombError) as e:
        reason = (str(e).splitlines() or [type(e).__name__])[0][:120]
        raise DataError(f"{file} is not a readable image ({reason}); remove it or replace it "
                        f"with a {', '.join(x.lstrip('.') for x in IMAGE_EXTENSIONS[:4])} "
                        "file") from None
    return arr if len(card.input.shape) == 3 else arr[0]


def _preprocess(img: Any, channels: int, h: int, w: int, resize: object) -> np.ndarray:
    """Convert, resize, centre-crop (module doc): ``(channels, h, w)`` float32 in [0, 1]."""
    from PIL import Image

    if img.mode in _SIXTEEN_BIT:  # 16-bit grey: scale to [0, 1] in float
        grey = np.asarray(img, dtype=np.float32) / 65535.0
        img, scale = Image.fromarray(np.clip(grey, 0, 1)), 1.0
    else:
        mode = {1: "L", 3: "RGB", 4: "RGBA"}[channels]
        if img.mode == "P" and "transparency" in img.info:
            img = img.convert("RGBA")  # palette transparency: as RGBA first (no warning)
        img, scale = (img if img.mode == mode else img.convert(mode)), 1 / 255
    size = _resized(img.size, h, w, resize)
    if size is not None:
        img = img.resize(size, Image.Resampling.BILINEAR)
        left, top = (size[0] - w) // 2, (size[1] - h) // 2
        img = img.crop((left, top, left + w, top + h))
    arr = np.asarray(img, dtype=np.float32) * np.float32(scale)
    if arr.ndim == 2:
        arr = np.repeat(arr[None], channels, axis=0) if channels > 1 else arr[None]
    else:
        arr = arr.transpose(2, 0, 1)
    return np.ascontiguousarray(arr)


def _resized(size: tuple[int, int], h: int, w: int, resize: object) -> tuple[int, int] | None:
    """The ``(width, height)`` to resize an image of ``size`` (width, height) to before the
    centre crop to ``h`` x ``w``; ``None``: it is ``h`` x ``w`` already and no resize is set."""
    iw, ih = size
    if resize is None and (ih, iw) == (h, w):
        return None
    if resize is not None:
        short = float(resize) if isinstance(resize, int | float) else 0.0
    else:
        short = RESIZE_RATIO * max(h, w)
    # the shorter side gets ``short`` pixels (the longer one in proportion, truncated as
    # torchvision's Resize does), and both sides cover the crop
    scale = max(short / min(iw, ih), h / ih, w / iw)
    if iw <= ih:
        nw = round(iw * scale)
        nh = int(nw * ih / iw)
    else:
        nh = round(ih * scale)
        nw = int(nh * iw / ih)
    return max(nw, w), max(nh, h)


def _target_shape(card: ModelCard, where: Path) -> tuple[int, int, int]:
    shape = tuple(card.input.shape)
    resize = card.extra.get("resize")
    if resize is not None and (not isinstance(resize, int) or isinstance(resize, bool)
                               or resize <= 0):
        raise DataError(f"the card's extra.resize must be a positive integer (the shorter "
                        f"side in pixels before the centre crop), got {resize!r}")
    if card.input.kind != "image" or len(shape) not in (2, 3) or (
            len(shape) == 3 and shape[0] not in (1, 3, 4)):
        raise DataError(f"{where}: images need a card with an image input of shape [C, H, W] "
                        f"(C = 1, 3 or 4) or [H, W]; this card's input is {card.input.kind} "
                        f"{list(shape)}")
    return (shape[0], shape[1], shape[2]) if len(shape) == 3 else (1, shape[0], shape[1])


def _images_in(folder: Path, *, recursive: bool) -> list[Path]:
    """Image files in ``folder`` (sorted; hidden ones skipped); :class:`DataError` naming the
    first file that is not an image by its extension."""
    found: list[Path] = []
    if recursive:
        for root, dirs, names in os.walk(folder, followlinks=True):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found += [Path(root) / n for n in names if not n.startswith(".")]
    else:
        found = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    found.sort()
    for f in found:
        if f.suffix.lower() not in IMAGE_EXTENSIONS:
            raise DataError(f"{f} is not an image file (images are "
                            f"{', '.join(e.lstrip('.') for e in IMAGE_EXTENSIONS)}); move it "
                            "out of the data folder")
    return found


def _shown(names: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")
