"""Hugging Face ``save_pretrained`` image classifiers: a folder with ``config.json``,
``model.safetensors`` (or a sharded ``model.safetensors.index.json``) and, optionally,
``preprocessor_config.json``, loaded without a card and offline.

Safety rules (the same as for our own checkpoints):

* weights are read from safetensors only; a folder with only ``pytorch_model.bin`` (pickle) is
  refused with :class:`UnsafeCheckpointError` (exit 3) unless ``trust_checkpoint``;
* a config with ``auto_map`` (the model's own Python code) is refused likewise;
  ``trust_remote_code`` is passed to transformers only with ``trust_checkpoint``;
* only architectures of the ``AutoModelForImageClassification`` mapping load.

The card is inferred: classes from ``config.id2label`` (by id); the input is images in [0, 1],
shape ``(C, H, W)`` from the preprocessor's ``crop_size`` (with ``do_center_crop``) or ``size``,
else ``config.image_size``/``num_channels``; ``extra.resize`` (the shorter side the image-folder
loader resizes to before its centre crop) from ``size`` or ConvNeXt's ``crop_pct``.

Pixel scale: Hugging Face feeds ``(pixels_0_255 * rescale_factor - image_mean) / image_std``.
Our inputs are ``x = pixels / 255``, so the model sees ``(x * s - mean) / std`` with
``s = 255 * rescale_factor`` (``255`` when ``do_rescale`` is false). The scale is folded into the
card's normalisation, ``input.mean = mean / s`` and ``input.std = std / s`` (identical maths),
so the card stays true in its own [0, 1] input space; for the usual ``rescale_factor = 1/255``
they are the file's values unchanged. :class:`HFImageClassifier` applies them in front of the
model, as :class:`~audit.loading.normalize.NormalizedModel` does for other checkpoints.

A ``card.json`` in the folder (or ``--card``) overrides the inferred card and may be partial:
its top-level keys replace the inferred ones, except ``input`` and ``extra``, whose keys replace
the inferred keys one by one. The merged card is then validated as any card is.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from audit.card import ModelCard
from audit.errors import CheckpointError, UnsafeCheckpointError, UsageError
from audit.io import sha256_file
from audit.loading.checkpoint import LoadedModel
from audit.loading.normalize import Normalize

SAFETENSORS = ("model.safetensors", "model.safetensors.index.json")
PICKLES = ("pytorch_model.bin", "pytorch_model.bin.index.json")


class HFImageClassifier(nn.Module):
    """A transformers image classifier taking images in [0, 1] and returning logits.

    ``forward(x)`` is ``model(pixel_values=normalize(x)).logits``, a plain ``(N, classes)``
    tensor; the transformers model stays the attribute ``model`` (its layers are named
    ``model.vit.layers.1``, ...) and ``normalize`` is the card's mean/std (module docstring),
    or the identity without them."""

    def __init__(self, model: nn.Module, mean: list[float] | None = None,
                 std: list[float] | None = None) -> None:
        super().__init__()
        self.model = model
        self.normalize: nn.Module = (Normalize(mean, std, ndim=3)
                                     if mean is not None and std is not None else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model(pixel_values=self.normalize(x)).logits
        return logits


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object at the top level")
    return data


def is_hf_folder(path: Path) -> bool:
    """Whether ``path`` is a directory with a ``config.json`` holding ``model_type`` or
    ``architectures`` (a Hugging Face ``save_pretrained`` folder)."""
    config = path / "config.json"
    if not path.is_dir() or not config.is_file():
        return False
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and ("model_type" in data or "architectures" in data)


def is_own_bundle(path: Path) -> bool:
    """Whether ``path`` holds our own ``model.safetensors`` + ``card.json`` pair: a card whose
    ``arch`` is set and is not ``transformers:...`` (an HF folder's override card has none or
    a ``transformers:`` one)."""
    card = path / "card.json"
    if not ((path / "model.safetensors").is_file() and card.is_file()):
        return False
    try:
        arch = json.loads(card.read_text(encoding="utf-8")).get("arch")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return True  # let the card loader report the broken card
    return isinstance(arch, str) and bool(arch) and not arch.startswith("transformers:")


def _transformers(path: Path) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # read by huggingface_hub when imported
    try:
        import transformers
    except ImportError:
        raise UsageError(f"{path} is a Hugging Face folder; loading it needs the optional "
                         "extra: pip install 'audit[hf]'") from None
    return transformers


@contextmanager
def _quiet(transformers: Any) -> Iterator[None]:
    """Offline, without transformers' log messages and progress bars; restored afterwards."""
    log = transformers.utils.logging
    verbosity, bars = log.get_verbosity(), log.is_progress_bar_enabled()
    offline = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    log.set_verbosity_error()
    log.disable_progress_bar()
    try:
        yield
    finally:
        log.set_verbosity(verbosity)
        if bars:
            log.enable_progress_bar()
        if offline is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = offline


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def _weights(folder: Path, trust: bool) -> tuple[Path, str]:
    """The weights file (or index) and the format name; refuses pickle unless ``trust``."""
    for name in SAFETENSORS:
        if (folder / name).is_file():
            return folder / name, "hf-safetensors"
    for name in PICKLES:
        if (folder / name).is_file():
            if not trust:
                raise UnsafeCheckpointError(
                    f"{folder / name} is a pickle, which can run code when loaded, and the "
                    "folder has no model.safetensors; pass --trust-checkpoint if you trust "
                    "its source, or save it with save_pretrained(safe_serialization=True)")
            return folder / name, "hf-pickle"
    raise CheckpointError(f"{folder} has a config.json but no model weights; expected "
                          "model.safetensors (save_pretrained(folder, safe_serialization=True))")


def _architecture(folder: Path, config: dict[str, Any]) -> str:
    """The image-classifier class the config names; refuses any other."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES as names,
    )

    archs, model_type = config.get("architectures") or [], config.get("model_type")
    arch = str(archs[0]) if archs else None
    if config.get("auto_map"):
        if "AutoModelForImageClassification" not in config["auto_map"]:
            raise CheckpointError(f"{folder}/config.json: its auto_map has no "
                                  "AutoModelForImageClassification; not an image classifier")
        return arch or str(config["auto_map"]["AutoModelForImageClassification"])
    known = {n for v in names.values() for n in ((v,) if isinstance(v, str) else v)}
    default = names.get(model_type) if isinstance(model_type, str) else None
    arch = arch or (default if isinstance(default, str) else default[0] if default else None)
    if arch is None or arch not in known or (model_type is not None and default is None):
        raise CheckpointError(f"{folder}: {arch or model_type} (model_type {model_type!r}) is "
                              "not an image classifier (AutoModelForImageClassification)")
    return arch


def _size(value: Any) -> tuple[int, int] | None:
    """``(H, W)`` from an image-processor size: ``{height, width}``, ``{shortest_edge}`` or a
    number."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value), int(value)
    if isinstance(value, dict):
        if "height" in value and "width" in value:
            return int(value["height"]), int(value["width"])
        if "shortest_edge" in value:
            return int(value["shortest_edge"]), int(value["shortest_edge"])
    return None


def _per_channel(value: Any, channels: int) -> list[float] | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [float(value)] * channels
    if isinstance(value, list) and value and all(isinstance(v, int | float) for v in value):
        return [float(v) for v in value]
    return None


def _input(pre: dict[str, Any], config: Any) -> tuple[dict[str, Any], int | None, list[str]]:
    """The card's ``input``, ``extra.resize`` and notes, from the preprocessor config."""
    channels = int(getattr(config, "num_channels", 3) or 3)
    image_size = getattr(config, "image_size", None)
    notes: list[str] = []
    size, crop = _size(pre.get("size")), _size(pre.get("crop_size"))
    resize: int | None = None
    processor = f"{pre.get('image_processor_type')} {pre.get('feature_extractor_type')}"
    crop_pct = pre.get("crop_pct", 0.875 if "ConvNext" in processor else None)  # its default
    raw_size = pre.get("size")  # ConvNext reads an int size (older files) as shortest_edge
    shortest = raw_size.get("shortest_edge") if isinstance(raw_size, dict) else raw_size
    if pre.get("do_center_crop", True) and crop is not None:  # the default with one
        hw = crop
        resize = min(size) if size is not None and pre.get("do_resize", True) else None
    elif (isinstance(shortest, int) and isinstance(crop_pct, int | float) and crop_pct > 0
          and shortest < 384):  # ConvNeXt's processor: resize to edge/crop_pct, crop edge
        hw, resize = (shortest, shortest), int(shortest / crop_pct)
    elif size is not None:
        hw = size
        resize = min(size) if pre.get("do_resize", True) else None
    elif isinstance(image_size, int):
        hw = (image_size, image_size)
    elif isinstance(image_size, list | tuple) and image_size:
        hw = (int(image_size[0]), int(image_size[-1]))
    else:
        raise CheckpointError("cannot tell the input size: neither preprocessor_config.json "
                              "(size, crop_size) nor config.json (image_size) gives it; "
                              "add a card.json with input.shape")
    if not pre:
        notes.append("no preprocessor_config.json: assumed images in [0, 1] without "
                     "normalisation; give a card.json with input.mean/std if it needs them")
    scale = (255.0 * float(pre.get("rescale_factor") or 1 / 255)
             if pre.get("do_rescale", True) else 255.0) if pre else 1.0
    normalize = pre.get("do_normalize", True)  # the processors' default
    mean = _per_channel(pre.get("image_mean"), channels) if normalize else None
    std = _per_channel(pre.get("image_std"), channels) if normalize else None
    rescaled = abs(scale - 1) > 1e-6
    if (mean is None or std is None) and rescaled:
        mean, std = [0.0] * channels, [1.0] * channels
    if mean is None or std is None:
        mean = std = None
    elif rescaled:
        mean, std = [m / scale for m in mean], [v / scale for v in std]
        notes.append(f"the model expects pixels/255 times {scale:g} (rescale_factor); "
                     "folded into input.mean/std")
    spec = {"kind": "image", "shape": [channels, int(hw[0]), int(hw[1])], "range": [0.0, 1.0],
            "mean": mean, "std": std}
    return spec, resize, notes


def _classes(config: Any, folder: Path) -> list[str]:
    id2label = getattr(config, "id2label", None) or {}
    n = int(getattr(config, "num_labels", len(id2label)) or len(id2label))
    if n < 2:
        raise CheckpointError(f"{folder}/config.json: num_labels is {n}; a classifier needs "
                              "at least two classes")
    labels = {int(k): str(v) for k, v in id2label.items()}
    return [labels.get(i, str(i)) for i in range(n)]


def _merge(inferred: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    merged = {**inferred, **user}
    for key in ("input", "extra"):
        if isinstance(user.get(key), dict):
            merged[key] = {**inferred.get(key, {}), **user[key]}
    return merged


def load_hf_folder(path: Path, *, card: ModelCard | Path | None = None,
                   trust_checkpoint: bool = False) -> LoadedModel:
    """Load a Hugging Face image-classifier folder offline, with an inferred card.

    ``card``: a card file (may be partial; see the module docstring), a complete
    :class:`ModelCard` (used as it is), or ``None`` for the folder's ``card.json`` if any.
    Raises :class:`CheckpointError` (not loadable), :class:`UnsafeCheckpointError` (pickle
    weights or custom code without ``trust_checkpoint``) or :class:`UsageError` (transformers
    not installed)."""
    path = Path(path)
    raw = _read_json(path / "config.json")
    if raw.get("auto_map") and not trust_checkpoint:
        raise UnsafeCheckpointError(
            f"{path}/config.json has auto_map: the model needs its own Python code, which "
            "would run on loading; pass --trust-checkpoint if you trust its source")
    weights, fmt = _weights(path, trust_checkpoint)
    transformers = _transformers(path)
    arch = _architecture(path, raw)
    remote = bool(trust_checkpoint and raw.get("auto_map"))
    with _quiet(transformers):
        try:
            config = transformers.AutoConfig.from_pretrained(
                path, local_files_only=True, trust_remote_code=remote)
            model, info = transformers.AutoModelForImageClassification.from_pretrained(
                path, local_files_only=True, use_safetensors=fmt == "hf-safetensors",
                trust_remote_code=remote, dtype=torch.float32, output_loading_info=True,
                ignore_mismatched_sizes=True)  # reported below, by name
        except Exception as e:  # transformers raises many kinds; report one line
            raise CheckpointError(f"{path}: transformers cannot load it: "
                                  f"{_first_line(e)}") from None
    shapes = [f"{k} {tuple(a)} vs {tuple(b)}" for k, a, b in info.get("mismatched_keys") or []]
    bad = [f"{label}: {', '.join(sorted(keys)[:5])}" + (" ..." if len(keys) > 5 else "")
           for label, keys in (("missing keys", list(map(str, info.get("missing_keys") or []))),
                               ("shape mismatches (checkpoint vs model)", shapes)) if keys]
    if bad:
        raise CheckpointError(f"{weights} does not fit {arch}: " + "; ".join(bad))
    pre_path = path / "preprocessor_config.json"
    pre = _read_json(pre_path) if pre_path.is_file() else {}
    spec, resize, notes = _input(pre, config)
    if weights.name.endswith(".index.json"):
        notes.append(f"sharded weights: sha256 is that of {weights.name}")
    if info.get("unexpected_keys"):
        notes.append(f"{len(info['unexpected_keys'])} unused tensor(s) in the weights")
    if fmt == "hf-pickle":
        notes.append("loaded pickle weights because --trust-checkpoint was given")
    inferred: dict[str, Any] = {
        "name": path.resolve().name, "arch": f"transformers:{arch}", "input": spec,
        "classes": _classes(config, path),
        "description": f"Hugging Face {arch}; card read from config.json"
                       + (" and preprocessor_config.json" if pre else "") + ".",
        "extra": {"resize": resize} if resize is not None else {},
    }
    card_path = card if isinstance(card, Path) else path / "card.json"
    if isinstance(card, ModelCard):
        card_obj = card
    elif card_path.is_file() or card is not None:
        user = _read_json(card_path) if card_path.is_file() else {}
        if not user:
            raise CheckpointError(f"model card not found or empty: {card_path}")
        card_obj = ModelCard.from_dict(_merge(inferred, user), where=str(card_path))
    else:
        card_obj = ModelCard.from_dict(inferred, where=f"{path}/config.json")
    if len(card_obj.classes) != int(config.num_labels):
        raise CheckpointError(f"the card lists {len(card_obj.classes)} classes but {arch} in "
                              f"{path} has {config.num_labels} outputs")
    wrapped = HFImageClassifier(model, card_obj.input.mean, card_obj.input.std).eval()
    return LoadedModel(model=wrapped, card=card_obj, path=path, format=fmt,
                       sha256=sha256_file(weights), arch=f"transformers:{arch}", notes=notes)
