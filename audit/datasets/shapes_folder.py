"""Write the bundled ``shapes`` data as an image folder (one sub-folder per class, PNG files),
to show and test a folder audit without downloading anything::

    python -m audit.datasets.shapes_folder shapes-folder          # the test split, 600 PNGs
    audit run shapes-cnn --data shapes-folder/

The images are the bundled split's, quantised to 8 bits (``round(255 x)``), so an audit of the
folder matches one of ``--data shapes`` up to that rounding.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from audit.datasets.shapes import CLASSES

FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}


def write_shapes_folder(out: Path, split: str = "test", *, fmt: str = "png",
                        watermark: bool = False) -> int:
    """Write the bundled ``shapes`` (``watermark``: ``shapes-watermark``) ``split`` under
    ``out/<class>/<index>.<fmt>`` (index: the row in the bundled split); returns the number of
    files. Lossless for ``png``; ``jpg`` and ``webp`` are written at quality 95."""
    from PIL import Image

    from audit.datasets import load_dataset

    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    data = load_dataset("shapes-watermark" if watermark else "shapes", split)
    pixels = np.round(data.x.numpy().transpose(0, 2, 3, 1) * 255).astype(np.uint8)
    for name in CLASSES:
        (out / name).mkdir(parents=True, exist_ok=True)
    options = {} if fmt == "png" else {"quality": 95}
    for i, (img, label) in enumerate(zip(pixels, data.y.tolist(), strict=True)):
        Image.fromarray(img).save(out / CLASSES[label] / f"{i:04d}.{fmt}", FORMATS[fmt],
                                  **options)
    return len(pixels)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m audit.datasets.shapes_folder",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write (class sub-folders inside)")
    parser.add_argument("--split", choices=("train", "test"), default="test")
    parser.add_argument("--format", choices=sorted(FORMATS), default="png", dest="fmt")
    parser.add_argument("--watermark", action="store_true",
                        help="the shapes-watermark variant (the shortcut's corner square)")
    args = parser.parse_args(argv)
    n = write_shapes_folder(args.out, args.split, fmt=args.fmt, watermark=args.watermark)
    print(f"wrote {n} {args.fmt} images of shapes/{args.split} to {args.out}/ "
          f"({', '.join(CLASSES)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
