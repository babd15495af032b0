"""Image folders (class sub-folders of PNG/JPEG/WebP files) and CSVs of image paths as --data:
preprocessing from the card, the round trip against the bundled shapes split, and the errors."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import Cli
from PIL import Image

from audit.card import ModelCard
from audit.datasets import load_dataset
from audit.datasets.files import load_data_file
from audit.datasets.folders import load_image_csv, load_image_folder
from audit.datasets.shapes_folder import main as shapes_folder_main
from audit.datasets.shapes_folder import write_shapes_folder
from audit.errors import DataError
from audit.loading import load_model
from audit.subject import UNLABELLED

ROOT = Path(__file__).resolve().parents[1]
SHAPES_CARD = ROOT / "models" / "shapes-cnn" / "card.json"


@pytest.fixture(scope="module")
def card() -> ModelCard:
    return ModelCard.load(SHAPES_CARD)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled shapes test split as 600 PNGs in class folders (written once)."""
    out = tmp_path_factory.mktemp("shapes") / "shapes-folder"
    assert shapes_folder_main([str(out)]) == 0
    return out


def _png(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def _small_folder(root: Path, classes: tuple[str, ...] = ("circle", "square")) -> Path:
    rng = np.random.default_rng(0)
    for c in classes:
        for i in range(2):
            _png(root / c / f"{i}.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    return root


def test_round_trip_matches_the_bundled_split(folder: Path, card: ModelCard) -> None:
    data = load_data_file(folder, card)
    ref = load_dataset("shapes", "test")
    assert len(data) == 600 and data.x.shape[1:] == (3, 32, 32) and data.labelled
    idx = [int(Path(f).stem) for f in data.extras["files"]]
    assert sorted(idx) == list(range(600))
    assert torch.equal(data.y, ref.y[idx])
    assert float((data.x - ref.x[idx]).abs().max()) <= 0.5 / 255 + 1e-6  # uint8 rounding only
    model = load_model("shapes-cnn").model
    with torch.no_grad():
        pred, ref_pred = model(data.x).argmax(1), model(ref.x[idx]).argmax(1)
    agree = float((pred == ref_pred).float().mean())
    assert agree >= 0.99, agree
    acc, ref_acc = (pred == data.y).float().mean(), (ref_pred == data.y).float().mean()
    assert abs(float(acc - ref_acc)) <= 1 - agree + 1e-9


def test_folder_audit_through_the_cli(cli: Cli, folder: Path, tmp_path: Path) -> None:
    code, _, err = cli("run", "shapes-cnn", "--data", f"{folder}/", "--checks", "performance",
                       "--out", str(tmp_path / "r.html"))
    assert code == 0, err
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["data"]["size"] == 600 and result["data"]["source"] == f"{folder}"
    perf = next(s for s in result["sections"] if "accuracy" in s.get("metrics", {}))
    assert abs(perf["metrics"]["accuracy"] - 0.9467) < 0.01


@pytest.mark.parametrize("fmt", ["jpg", "webp"])
def test_jpeg_and_webp_load(tmp_path: Path, card: ModelCard, fmt: str) -> None:
    out = tmp_path / fmt
    rng = np.random.default_rng(1)
    for c in ("circle", "cross"):
        for i in range(3):
            pixels = np.full((32, 32, 3), 40 * i + 60, np.uint8) + rng.integers(0, 5, (32, 32, 3),
                                                                                dtype=np.uint8)
            path = out / c / f"{i}.{fmt}"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(path, quality=95)
    data = load_image_folder(out, card)
    assert data.x.shape == (6, 3, 32, 32)
    assert data.y.tolist() == [0, 0, 0, 3, 3, 3]  # the card's class order: circle 0, cross 3
    assert abs(float(data.x[0].mean()) - 62 / 255) < 0.02  # lossy, but close


def test_larger_images_are_resized_and_centre_cropped(tmp_path: Path, card: ModelCard) -> None:
    """48 wide x 40 high, to a 32 x 32 card: shorter side to 32 x 256/224 = 37 (the longer one
    to 44), then the centre 32 x 32; with the card's extra.resize 32: 38 x 32, then the crop."""
    pixels = np.zeros((40, 48, 3), np.uint8)
    pixels[:, :, 2] = 255  # blue
    pixels[16:24, 20:28] = (255, 0, 0)  # a red 8 x 8 square at the centre
    pixels[:, :2] = (0, 255, 0)  # green left border: cropped away
    _png(tmp_path / "d" / "square" / "big.png", pixels)
    x = load_image_folder(tmp_path / "d", card).x[0]
    assert x.shape == (3, 32, 32)
    assert x[0, 15:17, 15:17].min() > 0.9 and x[2, 15:17, 15:17].max() < 0.1  # red centre
    assert x[2, 0, 0] > 0.9 and x[1].max() < 0.1  # blue corner, no green border left
    red_cols = (x[0] > 0.5).any(0).nonzero().flatten()
    assert 6 <= len(red_cols) <= 9 and abs(float(red_cols.float().mean()) - 15.5) <= 1
    expected = (Image.fromarray(pixels).resize((44, 37), Image.Resampling.BILINEAR)
                .crop((6, 2, 38, 34)))
    assert torch.allclose(x, torch.from_numpy(np.asarray(expected, np.float32)
                                              .transpose(2, 0, 1) / 255))
    fit = dataclasses.replace(card, extra={"resize": 32})
    x32 = load_image_folder(tmp_path / "d", fit).x[0]
    expected = (Image.fromarray(pixels).resize((38, 32), Image.Resampling.BILINEAR)
                .crop((3, 0, 35, 32)))
    assert torch.allclose(x32, torch.from_numpy(np.asarray(expected, np.float32)
                                                .transpose(2, 0, 1) / 255))


def test_modes_convert_and_range_scales(tmp_path: Path, card: ModelCard) -> None:
    grey = np.full((32, 32), 128, np.uint8)
    _png(tmp_path / "d" / "circle" / "grey.png", grey)
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(tmp_path / "d" / "circle" / "cmyk.jpg")
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).convert(
        "P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "d" / "circle" / "pal.png")
    data = load_image_folder(tmp_path / "d", card)
    by_name = dict(zip(data.extras["files"].tolist(), data.x, strict=True))
    assert torch.allclose(by_name["circle/grey.png"], torch.full((3, 32, 32), 128 / 255))
    cmyk = by_name["circle/cmyk.jpg"].mean((1, 2))
    assert cmyk[0] > 0.9 and cmyk[1] < 0.1 and cmyk[2] < 0.1  # CMYK (0, 255, 255, 0) is red
    assert torch.allclose(by_name["circle/pal.png"], torch.full((3, 32, 32), 200 / 255))
    # a 1-channel card in pixel units: RGB converts to luma, values stay 0..255
    grey_card = dataclasses.replace(card, input=dataclasses.replace(
        card.input, shape=(1, 32, 32), range=(0.0, 255.0)))
    _png(tmp_path / "g" / "square" / "rgb.png", np.full((32, 32, 3), 77, np.uint8))
    x = load_image_folder(tmp_path / "g", grey_card).x
    assert x.shape == (1, 1, 32, 32) and torch.allclose(x, torch.full_like(x, 77.0))
    sixteen = tmp_path / "g" / "square" / "deep.png"
    Image.fromarray(np.full((32, 32), 65535, np.uint16)).save(sixteen)
    assert float(load_image_folder(tmp_path / "g", grey_card).x.max()) == pytest.approx(255.0)


def test_unlabelled_folder(tmp_path: Path, card: ModelCard) -> None:
    rng = np.random.default_rng(2)
    for i in range(3):
        _png(tmp_path / "prod" / f"{i}.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    data = load_data_file(tmp_path / "prod", card, labels=False)
    assert len(data) == 3 and not data.labelled and set(data.y.tolist()) == {UNLABELLED}
    with pytest.raises(DataError, match="no class sub-folders"):
        load_data_file(tmp_path / "prod", card)


def test_csv_of_paths(tmp_path: Path, card: ModelCard) -> None:
    _small_folder(tmp_path / "imgs")
    rows = ["file,label,site", "imgs/circle/0.png,circle,a", "imgs/square/1.png,square,b",
            f"{tmp_path / 'imgs' / 'square' / '0.png'},square,a"]
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    data = load_data_file(tmp_path / "list.csv", card)
    assert data.x.shape == (3, 3, 32, 32) and data.y.tolist() == [0, 1, 1]
    (tmp_path / "idx.csv").write_text("path,y\nimgs/square/1.png,1\nimgs/circle/1.png,0\n")
    assert load_data_file(tmp_path / "idx.csv", card).y.tolist() == [1, 0]
    direct = load_image_folder(tmp_path / "imgs", card)
    assert torch.equal(data.x[0], direct.x[0])
    with_site = load_image_csv(tmp_path / "list.csv", card, sensitive=["site"])
    assert with_site.extras["frame"]["site"].tolist() == ["a", "b", "a"]
    (tmp_path / "nolabel.csv").write_text("path\nimgs/circle/0.png\n")
    assert not load_data_file(tmp_path / "nolabel.csv", card, labels=False).labelled
    with pytest.raises(DataError, match="no label column"):
        load_data_file(tmp_path / "nolabel.csv", card)
    (tmp_path / "missing.csv").write_text("path,label\nimgs/circle/9.png,circle\n")
    with pytest.raises(DataError, match=r"row 2 names .*9\.png, which is not a file"):
        load_data_file(tmp_path / "missing.csv", card)
    (tmp_path / "nopath.csv").write_text("name,label\na.png,circle\n")
    with pytest.raises(DataError, match="no column of image paths"):
        load_data_file(tmp_path / "nopath.csv", card)


def _bad_txt(t: Path) -> Path:
    (_small_folder(t / "d") / "circle" / "notes.txt").write_text("hello")
    return t / "d"


def _bad_png(t: Path) -> Path:
    (_small_folder(t / "d") / "square" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return t / "d"


def _bad_class(t: Path) -> Path:
    return _small_folder(t / "d", ("circle", "Square", "hexagon"))


def _empty(t: Path) -> Path:
    (t / "d").mkdir()
    return t / "d"


def _empty_classes(t: Path) -> Path:
    (t / "d" / "circle").mkdir(parents=True)
    return t / "d"


@pytest.mark.parametrize(("make", "message"), [
    (_bad_txt, r"d/circle/notes\.txt is not an image file"),
    (_bad_png, r"d/square/broken\.png is not a readable image"),
    (_bad_class, r"class folder\(s\) 'Square', 'hexagon' are not classes of the model; its "
                 r"classes are 'circle', 'square', 'triangle', 'cross' \(no folder for "
                 r"'square', 'triangle', 'cross'"),
    (_empty, r"is a directory without images"),
    (_empty_classes, r"class folders \('circle'\) hold no images"),
])
def test_errors_are_one_line_exit_2(cli: Cli, tmp_path: Path, make: object,
                                    message: str) -> None:
    assert callable(make)
    data = make(tmp_path)
    code, out, err = cli("run", "shapes-cnn", "--data", str(data), "--checks", "performance",
                         "--out", str(tmp_path / "r.html"))
    assert code == 2, (out, err)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert re.search(message, lines[0]), lines[0]


def test_write_shapes_folder_formats(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown format"):
        write_shapes_folder(tmp_path, fmt="gif")


def test_readme_folder_example(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's image-folder commands, as written (the audit with the performance check
    only): the folder is written, and the audit passes with shapes-cnn's test accuracy."""
    text = (ROOT / "README.md").read_text()
    block = re.findall(r"```shell\n(.*?)```", text.split("**An image folder.**", 1)[1], re.S)[0]
    write, run = block.strip().splitlines()
    assert write.startswith("python -m audit.datasets.shapes_folder ") and run.startswith("audit ")
    monkeypatch.chdir(tmp_path)
    assert shapes_folder_main(write.split()[3:]) == 0
    code, out, err = cli(*run.split()[1:], "--checks", "performance", "--out", "r.html")
    assert code == 0 and "PASS" in out, err
    result = json.loads(Path("r.json").read_text())
    assert result["data"]["size"] == 600
