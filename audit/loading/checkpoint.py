"""Loading checkpoints safely.

Formats, tried in this order of detection (by content, not by file extension):

* a folder with ``model.safetensors`` (or one ``*.safetensors``/``*.pt``) and ``card.json``;
* a Hugging Face ``save_pretrained`` image-classifier folder (``config.json``; no card needed;
  :mod:`audit.loading.hf`);
* ``.safetensors`` weights plus a card (``--card`` or ``card.json`` beside it);
* a ``torch.save`` state dict, loaded with ``torch.load(weights_only=True)`` and built with
  ``--arch module:Class`` or ``--arch file.py:Class`` (or the card's ``arch``; see
  :mod:`audit.loading.arch`);
* a ``torch.export`` archive (``.pt2``); its pickled members are checked with
  ``weights_only=True`` first, because ``torch.export.load`` itself would fall back to full
  pickle silently; one exported with a fixed batch size runs in chunks of it
  (:mod:`audit.loading.exported`);
* a TorchScript archive (``torch.jit.save``): TorchScript code runs in TorchScript's own
  interpreter and cannot call Python; its layers are reached by :mod:`audit.loading.scripted`.

A checkpoint that needs full pickle (a pickled ``nn.Module``, custom classes, or a payload
calling ``os.system``) is refused with :class:`UnsafeCheckpointError` (exit 3) before anything
in it runs, unless ``trust_checkpoint=True``; then its classes are imported from the current
folder too, as ``--arch`` would. Loading never falls back to full pickle silently.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from audit.card import InputSpec, ModelCard
from audit.errors import CheckpointError, UsageError
from audit.io import sha256_file
from audit.loading.arch import import_arch
from audit.loading.exported import from_program, load_export
from audit.loading.normalize import NormalizedModel
from audit.loading.pickles import torch_load
from audit.loading.scripted import ScriptedModel, load_torchscript
from audit.paths import models_dir

_WEIGHT_NAMES = ("model.safetensors", "model.pt", "model.pth", "model.pt2")

@dataclass
class LoadedModel:
    """A model in eval mode with its card (``None`` when the checkpoint has none) and identity."""

    model: nn.Module
    card: ModelCard | None
    path: Path
    format: str
    sha256: str
    arch: str
    notes: list[str] = field(default_factory=list)

    def info(self, card: ModelCard) -> dict[str, Any]:
        """The ``model`` block of the result."""
        return {
            "name": card.name, "path": str(self.path), "sha256": self.sha256,
            "format": self.format, "arch": self.arch,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "input": card.input.to_dict(), "classes": list(card.classes),
        }


def bundled_models() -> dict[str, Path]:
    """Bundled model folders (those with a ``card.json``) by name."""
    root = models_dir()
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if (p / "card.json").is_file()}


def resolve(spec: str | Path) -> Path:
    """Turn a path or a bundled model's name into an existing path."""
    path = Path(spec)
    if path.exists():
        return path
    bundled = bundled_models()
    if str(spec) in bundled:
        return bundled[str(spec)]
    names = ", ".join(bundled) or "none"
    raise CheckpointError(f"no such file or bundled model: {spec}; bundled models: {names}")


def load_model(
    spec: str | Path,
    *,
    arch: str | None = None,
    arch_kwargs: Mapping[str, Any] | None = None,
    card: str | Path | None = None,
    trust_checkpoint: bool = False,
) -> LoadedModel:
    """Load a model from a bundled name, a folder, or a checkpoint file, safely.

    ``arch`` (``module:Class``) overrides the card's architecture; ``card`` names a card file.
    Raises :class:`CheckpointError`, :class:`UnsafeCheckpointError` or :class:`UsageError`.
    """
    path = resolve(spec)
    if path.is_dir():
        from audit.loading.hf import is_hf_folder, is_own_bundle, load_hf_folder

        if is_hf_folder(path) and not is_own_bundle(path):  # a save_pretrained folder
            return load_hf_folder(path, card=Path(card) if card else None,
                                  trust_checkpoint=trust_checkpoint)
    card_obj: ModelCard | None = None
    if path.is_dir():
        weights = _weights_in(path)
        card_path = Path(card) if card else path / "card.json"
        card_obj = ModelCard.load(card_path) if card_path.is_file() or card else None
    else:
        weights = path
        card_path = Path(card) if card else path.parent / "card.json"
        if card or card_path.is_file():
            card_obj = ModelCard.load(card_path)
    if weights.stat().st_size == 0:
        raise CheckpointError(f"{weights} is empty (0 bytes); the file was not saved completely")
    kind = sniff(weights)
    arch_name = arch or (card_obj.arch if card_obj else None)
    kwargs = dict(arch_kwargs) if arch_kwargs is not None else (
        dict(card_obj.arch_kwargs) if card_obj else {})
    notes: list[str] = []
    if kind == "safetensors":
        state = _load_safetensors(weights)
        model = _build(arch_name, kwargs, state, weights)
        fmt = "safetensors"
    elif kind == "torchscript":
        model = load_torchscript(weights)
        arch_name, fmt = "torchscript", "torchscript"
    elif kind == "export":
        model, fmt = load_export(weights, trust_checkpoint)
        arch_name = "torch.export"
        if fmt != "torch.export":
            notes.append(f"the program was {fmt.partition('(')[2].rstrip(')')}")
    elif kind in ("torch-zip", "pickle"):
        obj = torch_load(weights, trust_checkpoint)
        if isinstance(obj, nn.Module):
            model, fmt = obj, "pickled-module"
            arch_name = f"{type(obj).__module__}:{type(obj).__qualname__}"
            notes.append("loaded a fully pickled module because --trust-checkpoint was given")
        else:
            state = _state_dict_from(obj, weights)
            model = _build(arch_name, kwargs, state, weights)
            fmt = "state-dict"
    else:
        raise CheckpointError(
            f"{weights} is not a recognised checkpoint (safetensors, torch.save state dict, "
            "torch.export .pt2 or TorchScript); it may be corrupt or another kind of file")
    if card_obj is not None and card_obj.input.mean is not None and card_obj.input.std is not None:
        model = NormalizedModel(model, card_obj.input.mean, card_obj.input.std,
                                ndim=len(card_obj.input.shape))
    model.eval()
    return LoadedModel(model=model, card=card_obj, path=path, format=fmt,
                       sha256=sha256_file(weights), arch=arch_name or "unknown", notes=notes)


def hookable(model: Any) -> nn.Module:
    """``model`` with layers that take forward hooks: a TorchScript module (whose own layers
    refuse hooks) as a :class:`~audit.loading.scripted.ScriptedModel`, an ``ExportedProgram``
    as the module :func:`~audit.loading.exported.from_program` makes; others unchanged."""
    if isinstance(model, torch.jit.ScriptModule):
        # a fresh trace or script is not yet in the form torch.jit.load gives, whose graph
        # ScriptedModel taps: a round trip through memory makes it so
        buffer = io.BytesIO()
        torch.jit.save(model, buffer)
        buffer.seek(0)
        return ScriptedModel(torch.jit.load(buffer, map_location="cpu"))
    if isinstance(model, torch.export.ExportedProgram):
        return from_program(model)[0]
    if not isinstance(model, nn.Module):
        raise UsageError(f"expected an nn.Module, a TorchScript module or an ExportedProgram, "
                         f"not {type(model).__name__}")
    return model


def _weights_in(folder: Path) -> Path:
    for name in _WEIGHT_NAMES:
        if (folder / name).is_file():
            return folder / name
    candidates = sorted(p for p in folder.iterdir()
                        if p.suffix in (".safetensors", ".pt", ".pth", ".pt2") and p.is_file())
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise CheckpointError(f"{folder} is a directory without model weights; expected "
                              "model.safetensors and card.json inside it")
    raise CheckpointError(f"{folder} holds several weight files "
                          f"({', '.join(p.name for p in candidates)}); pass one of them")


def sniff(path: Path) -> str:
    """Classify a file by its bytes: safetensors, torchscript, export, torch-zip, pickle,
    or unknown."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    # A '{' at byte 8 alone matches 1 in 256 random files; the u64 header length must also
    # be within safetensors' own 100 MB header limit.
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000:
        return "safetensors"
    if head[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except Exception as e:  # BadZipFile, OSError, UnicodeDecodeError, ...
            raise CheckpointError(f"{path} is a damaged zip archive ({type(e).__name__}); it "
                                  "may be truncated; save it again") from None
        if any(n.endswith("serialized_exported_program.json") or n.endswith("/archive_format")
               for n in names):
            return "export"
        if any(n.endswith("constants.pkl") for n in names) and any("/code/" in n for n in names):
            return "torchscript"
        if any(n.endswith("data.pkl") for n in names):
            return "torch-zip"
        return "unknown"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "pickle"
    return "unknown"


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{path} is not a valid safetensors file ({msg}); it may be "
                              "truncated; save it again") from None


def _state_dict_from(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """Accept a plain state dict or a training checkpoint holding one under a usual key."""
    if isinstance(obj, Mapping):
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj)
        for key in ("state_dict", "model_state_dict", "model", "net", "weights"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(
                    isinstance(v, torch.Tensor) for v in inner.values()):
                return dict(inner)
    raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict of tensors; "
                          "save model.state_dict() instead")


def _build(arch: str | None, kwargs: dict[str, Any], state: dict[str, torch.Tensor],
           path: Path) -> nn.Module:
    if not arch:
        raise UsageError(f"{path} holds weights only; pass --arch module:Class (or a card.json "
                         "with 'arch') to say which architecture they belong to")
    cls = import_arch(arch)
    try:
        model = cls(**kwargs)
    except Exception as e:
        raise UsageError(f"cannot build {arch}({json.dumps(kwargs)}): "
                         f"{type(e).__name__}: {e}") from None
    load_weights(model, state, path)
    return model


WRAPPER_PREFIXES = ("module.", "_orig_mod.")
"""Key prefixes that wrappers add: ``nn.DataParallel``/DDP (``module.``) and ``torch.compile``
(``_orig_mod.``); a state dict saved from the wrapper carries them on every key."""


def unwrap_keys(state: Mapping[str, torch.Tensor], own: Mapping[str, object]
                ) -> Mapping[str, torch.Tensor]:
    """``state`` without the wrapper prefixes every key carries (nested ones too), when the
    stripped keys are exactly the model's; else ``state`` unchanged."""
    keys = dict(state)
    while set(keys) != set(own):
        prefix = next((p for p in WRAPPER_PREFIXES
                       if keys and all(k.startswith(p) for k in keys)), None)
        if prefix is None:
            return state
        keys = {k[len(prefix):]: v for k, v in keys.items()}
    return keys


def load_weights(model: nn.Module, state: Mapping[str, torch.Tensor], where: Path | str) -> None:
    """Load ``state`` strictly, listing missing, unexpected and mis-shaped keys by name.

    Keys saved from a ``DataParallel``/DDP or ``torch.compile`` wrapper (``module.``,
    ``_orig_mod.`` on every key) are matched without the prefix."""
    own = model.state_dict()
    state = unwrap_keys(state, own)
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    problems = []
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                        ("shape mismatches (checkpoint vs model)", shapes)):
        if keys:
            shown = ", ".join(keys[:8]) + (f" (+{len(keys) - 8} more)" if len(keys) > 8 else "")
            problems.append(f"{label}: {shown}")
    if problems:
        wrapped = [p for p in WRAPPER_PREFIXES if state and all(k.startswith(p) for k in state)]
        hint = (f" (every key starts with {wrapped[0]!r}, as a wrapper saves them, but the "
                "keys do not fit without it either)" if wrapped else "")
        raise CheckpointError(f"{where} does not fit the architecture {type(model).__name__}: "
                              + "; ".join(problems) + hint)
    model.load_state_dict(dict(state), strict=True)


def infer_card(loaded: LoadedModel, sample_x: torch.Tensor, classes: list[str] | None,
               kind: str, name: str | None = None) -> ModelCard:
    """A minimal card for a checkpoint without one, read off the data and the model's output."""
    with torch.no_grad():
        try:
            out = loaded.model(sample_x[:2])
        except Exception as e:
            from audit.errors import ModelError
            raise ModelError(f"the model's forward raised {type(e).__name__} on the data "
                             f"(shape {tuple(sample_x.shape[1:])}): {str(e)[:160]}") from None
    n_out = int(out.shape[-1]) if isinstance(out, torch.Tensor) and out.ndim == 2 else 0
    if n_out < 2:
        from audit.errors import ModelError
        raise ModelError("the model must return logits of shape (N, classes) with at least "
                         f"two classes; got {getattr(out, 'shape', type(out).__name__)}")
    if classes is None or len(classes) != n_out:
        classes = [str(i) for i in range(n_out)]
    lo, hi = float(sample_x.min()), float(sample_x.max())
    rng = (0.0, 1.0) if lo >= 0.0 and hi <= 1.0 else (lo, hi if hi > lo else lo + 1.0)
    return ModelCard(
        name=name or loaded.path.stem, arch=loaded.arch if ":" in loaded.arch else "n/a:n/a",
        input=InputSpec(shape=tuple(int(s) for s in sample_x.shape[1:]), range=rng,
                        kind="image" if kind == "image" else "tabular"),
        classes=classes, description="No card was given; input spec inferred from the data.",
    )
