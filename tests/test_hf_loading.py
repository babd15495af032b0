"""Hugging Face ``save_pretrained`` image-classifier folders load without a card
(:mod:`audit.loading.hf`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from conftest import Cli
from hf_models import (
    BUILDERS,
    LABELS,
    tiny_bert,
    tiny_deit,
    tiny_vit,
)

from audit.errors import CheckpointError, UnsafeCheckpointError, UsageError
from audit.loading import load_model
from audit.loading.hf import HFImageClassifier, is_hf_folder


def _hf(folder: Path) -> Any:
    from transformers import AutoModelForImageClassification

    return AutoModelForImageClassification.from_pretrained(
        folder, local_files_only=True, use_safetensors=(folder / "model.safetensors").is_file(),
    ).eval()


def _reference(folder: Path, x: torch.Tensor, scale: float, mean: list[float],
               std: list[float]) -> torch.Tensor:
    """What Hugging Face computes: ``(pixels * rescale_factor - mean) / std``."""
    m, s = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
    with torch.no_grad():
        logits: torch.Tensor = _hf(folder)(pixel_values=(x * scale - m) / s).logits
    return logits


def _logits(folder: Path, x: torch.Tensor, **kw: Any) -> torch.Tensor:
    with torch.no_grad():
        out: torch.Tensor = load_model(folder, **kw).model(x)
    return out


X = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
RESIZE = {"vit": 32, "swin": 32, "deit": 36, "convnext": 36, "resnet": 36}
"""extra.resize: ViT/Swin size 32x32; DeiT size 36 then crop 32; ConvNeXt 32/crop_pct 0.875."""


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_folder_loads_with_inferred_card(tmp_path: Path, kind: str) -> None:
    folder = BUILDERS[kind](tmp_path / kind)
    pre = json.loads((folder / "preprocessor_config.json").read_text())
    loaded = load_model(folder)
    card = loaded.card
    assert card is not None and loaded.format == "hf-safetensors"
    assert isinstance(loaded.model, HFImageClassifier) and not loaded.model.training
    assert card.input.shape == (3, 32, 32) and card.input.range == (0.0, 1.0)
    assert card.input.kind == "image"
    assert card.input.mean == pytest.approx(pre["image_mean"])
    assert card.input.std == pytest.approx(pre["image_std"])
    assert card.classes == LABELS and card.name == kind
    assert card.extra == {"resize": RESIZE[kind]}
    assert loaded.arch == card.arch and card.arch.startswith("transformers:")
    assert "config.json" in card.description
    from audit.io import sha256_file
    assert loaded.sha256 == sha256_file(folder / "model.safetensors")
    out = _logits(folder, X)
    ref = _reference(folder, X, 1.0, pre["image_mean"], pre["image_std"])
    assert out.shape == (3, 4) and torch.allclose(out, ref, atol=1e-5)


def test_layer_names_keep_the_transformers_names(tmp_path: Path) -> None:
    names = dict(load_model(tiny_vit(tmp_path / "v")).model.named_modules())
    assert "model.classifier" in names and "normalize" in names
    assert any(n.startswith("model.vit.") and n.endswith(".1") for n in names)


def test_deit_with_teacher(tmp_path: Path) -> None:
    folder = tiny_deit(tmp_path / "t", teacher=True)
    loaded = load_model(folder)
    assert loaded.arch == "transformers:DeiTForImageClassificationWithTeacher"
    pre = json.loads((folder / "preprocessor_config.json").read_text())
    ref = _reference(folder, X, 1.0, pre["image_mean"], pre["image_std"])
    assert torch.allclose(_logits(folder, X), ref, atol=1e-5)


@pytest.mark.parametrize(("over", "scale"), [({"do_rescale": False}, 255.0),
                                             ({"rescale_factor": 1 / 127.5}, 2.0)])
def test_rescale_is_folded_into_mean_and_std(tmp_path: Path, over: dict[str, Any],
                                              scale: float) -> None:
    pre = {"size": {"height": 32, "width": 32}, "do_normalize": True,
           "image_mean": [100.0, 110.0, 120.0] if scale == 255 else [0.9, 1.0, 1.1],
           "image_std": [60.0, 61.0, 62.0] if scale == 255 else [0.5, 0.6, 0.7], **over}
    folder = tiny_vit(tmp_path / "v", preprocessor=pre)
    loaded = load_model(folder)
    assert loaded.card is not None
    assert loaded.card.input.mean == pytest.approx([m / scale for m in pre["image_mean"]])
    assert any("rescale_factor" in n for n in loaded.notes)
    ref = _reference(folder, X, scale, pre["image_mean"], pre["image_std"])
    assert torch.allclose(_logits(folder, X), ref, atol=1e-5)


def test_no_preprocessor_config(tmp_path: Path) -> None:
    folder = tiny_vit(tmp_path / "v", preprocessor={})
    loaded = load_model(folder)
    assert loaded.card is not None and loaded.card.input.shape == (3, 32, 32)
    assert loaded.card.input.mean is None and loaded.card.extra == {}
    assert any("preprocessor_config.json" in n for n in loaded.notes)
    assert torch.allclose(_logits(folder, X), _reference(folder, X, 1.0, [0.0], [1.0]),
                          atol=1e-5)


def test_sharded_safetensors(tmp_path: Path) -> None:
    from transformers import ViTForImageClassification

    model = _hf(tiny_vit(tmp_path / "v"))
    assert isinstance(model, ViTForImageClassification)
    folder = tmp_path / "sharded"
    model.save_pretrained(folder, max_shard_size="50KB")
    assert (folder / "model.safetensors.index.json").is_file()
    (folder / "preprocessor_config.json").write_text(
        (tmp_path / "v" / "preprocessor_config.json").read_text())
    loaded = load_model(folder)
    assert loaded.format == "hf-safetensors" and any("sharded" in n for n in loaded.notes)
    assert torch.allclose(_logits(folder, X), _logits(tmp_path / "v", X), atol=1e-6)


def _bin_only(tmp_path: Path) -> Path:
    folder = tiny_vit(tmp_path / "v")
    model = _hf(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    return folder


def test_pickle_weights_are_refused_unless_trusted(tmp_path: Path, cli: Cli) -> None:
    folder = _bin_only(tmp_path)
    with pytest.raises(UnsafeCheckpointError, match=r"pytorch_model\.bin.*--trust-checkpoint"):
        load_model(folder)
    code, _, err = cli("run", str(folder), "--data", "shapes", "--checks", "performance",
                       "--out", str(tmp_path / "r.html"))
    assert code == 3 and "pytorch_model.bin" in err and "Traceback" not in err
    loaded = load_model(folder, trust_checkpoint=True)
    assert loaded.format == "hf-pickle"
    pre = json.loads((folder / "preprocessor_config.json").read_text())
    ref = _reference(folder, X, 1.0, pre["image_mean"], pre["image_std"])
    assert torch.allclose(_logits(folder, X, trust_checkpoint=True), ref, atol=1e-5)


def _edit_config(folder: Path, **changes: Any) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def test_custom_code_is_refused(tmp_path: Path, cli: Cli,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tiny_vit(tmp_path / "v")
    _edit_config(folder, auto_map={"AutoModelForImageClassification": "modeling_x.Net"})
    with pytest.raises(UnsafeCheckpointError, match="auto_map"):
        load_model(folder)
    code, _, err = cli("run", str(folder), "--data", "shapes", "--checks", "performance")
    assert code == 3 and "--trust-checkpoint" in err
    # trusted: transformers is asked for remote code (the module is absent: one-line error)
    with pytest.raises(CheckpointError) as info:
        load_model(folder, trust_checkpoint=True)
    assert "\n" not in str(info.value)


def test_not_an_image_classifier(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="BertForSequenceClassification.*not an image "
                                              "classifier"):
        load_model(tiny_bert(tmp_path / "b"))


def test_missing_weights_and_broken_folders(tmp_path: Path) -> None:
    folder = tiny_vit(tmp_path / "v")
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])  # truncated: transformers raises
    with pytest.raises(CheckpointError) as info:
        load_model(folder)
    assert "\n" not in str(info.value) and "transformers cannot load it" in str(info.value)
    weights.unlink()
    with pytest.raises(CheckpointError, match="no model weights"):
        load_model(folder)


def test_weights_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    folder = tiny_vit(tmp_path / "v")
    _edit_config(folder, intermediate_size=48)  # the saved MLP is 64 wide
    with pytest.raises(CheckpointError, match="does not fit|cannot load"):
        load_model(folder)


def test_card_overrides_the_inferred_one(tmp_path: Path) -> None:
    folder = tiny_vit(tmp_path / "v")
    (folder / "card.json").write_text(json.dumps({
        "classes": ["a", "b", "c", "d"], "input": {"mean": [0.4, 0.4, 0.4]},
        "intended_use": "tests"}))
    loaded = load_model(folder)
    card = loaded.card
    assert card is not None and loaded.format == "hf-safetensors"
    assert card.classes == ["a", "b", "c", "d"] and card.intended_use == "tests"
    assert card.input.mean == [0.4, 0.4, 0.4] and card.input.std == [0.5, 0.5, 0.5]
    assert card.input.shape == (3, 32, 32) and card.extra == {"resize": 32}
    assert torch.allclose(_logits(folder, X),
                          _reference(folder, X, 1.0, [0.4] * 3, [0.5] * 3), atol=1e-5)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"classes": ["w", "x", "y", "z"], "name": "renamed"}))
    given = load_model(folder, card=other).card
    assert given is not None and given.classes == ["w", "x", "y", "z"]
    assert given.name == "renamed"
    other.write_text(json.dumps({"classes": ["only", "two"]}))
    with pytest.raises(CheckpointError, match="2 classes but"):
        load_model(folder, card=other)


def test_missing_transformers_is_a_usage_error(tmp_path: Path, cli: Cli,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tiny_vit(tmp_path / "v")
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers fails
    with pytest.raises(UsageError, match=r"pip install 'audit\[hf\]'"):
        load_model(folder)
    code, _, err = cli("run", str(folder), "--data", "shapes", "--checks", "performance")
    assert code == 4 and "audit[hf]" in err


def test_is_hf_folder_and_bundled_models_unchanged(tmp_path: Path) -> None:
    assert is_hf_folder(tiny_vit(tmp_path / "v"))
    assert not is_hf_folder(tmp_path / "v" / "config.json") and not is_hf_folder(tmp_path)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"lr": 0.1}')
    assert not is_hf_folder(tmp_path / "other")
    assert load_model("shapes-cnn").format == "safetensors"


@pytest.fixture
def shapes_vit(tmp_path: Path) -> Path:
    from audit.datasets.shapes import CLASSES

    labels = dict(enumerate(CLASSES))
    return tiny_vit(tmp_path / "shapes-vit", id2label=labels,
                    label2id={c: i for i, c in labels.items()})


def _run(cli: Cli, folder: Path, data: str, out: Path) -> dict[str, Any]:
    code, _, err = cli("run", str(folder), "--data", data, "--checks", "performance",
                       "--out", str(out / "r.html"))
    assert code in (0, 1), err
    result: dict[str, Any] = json.loads((out / "r.json").read_text())
    return result


def test_cli_audits_an_hf_folder(cli: Cli, shapes_vit: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.random((16, 3, 32, 32), dtype=np.float32),
             y=rng.integers(0, 4, 16))
    result = _run(cli, shapes_vit, str(tmp_path / "d.npz"), tmp_path)
    assert result["model"]["format"] == "hf-safetensors"
    assert result["model"]["arch"] == "transformers:ViTForImageClassification"
    assert result["model"]["name"] == "shapes-vit"


def test_cli_audits_an_hf_folder_on_an_image_folder(cli: Cli, shapes_vit: Path,
                                                     tmp_path: Path) -> None:
    from audit.datasets.shapes_folder import write_shapes_folder

    write_shapes_folder(tmp_path / "imgs")
    result = _run(cli, shapes_vit, f"{tmp_path / 'imgs'}/", tmp_path)
    assert result["model"]["format"] == "hf-safetensors" and result["data"]["size"] == 600




IMAGENET = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}


@pytest.mark.parametrize(("pre", "shape", "resize"), [
    ({"size": 224, **IMAGENET}, [3, 224, 224], 224),  # old ViT/Swin files: an int size
    ({"crop_pct": 0.875, "feature_extractor_type": "ConvNextFeatureExtractor", "size": 224,
      **IMAGENET}, [3, 224, 224], 256),  # old ConvNeXt/ResNet files
    ({"crop_size": 224, "do_center_crop": True, "size": 256, **IMAGENET}, [3, 224, 224], 256),
    ({"size": {"shortest_edge": 384}, "crop_pct": None,
      "image_processor_type": "ConvNextImageProcessor"}, [3, 384, 384], 384),
    ({"size": {"height": 64, "width": 48}, "do_resize": False}, [3, 64, 48], None),
])
def test_preprocessor_variants(pre: dict[str, Any], shape: list[int],
                               resize: int | None) -> None:
    from types import SimpleNamespace

    from audit.loading.hf import _input

    spec, got, _ = _input(pre, SimpleNamespace(num_channels=3, image_size=32))
    assert spec["shape"] == shape and got == resize
    assert spec["mean"] == pre.get("image_mean")
