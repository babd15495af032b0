"""Loading checkpoints safely.

Formats, tried in this order of detection (by content, not by file extension):

* a folder with ``model.safetensors`` (or one ``*.safetensors``/``*.pt``) and ``card.json``;
* ``.safetensors`` weights plus a card (``--card`` or ``card.json`` beside it);
* a ``torch.save`` state dict, loaded with ``torch.load(weights_only=True)`` and built with
  ``--arch module:Class`` (or the card's ``arch``);
* a ``torch.export`` archive (``.pt2``); its pickled members are checked with
  ``weights_only=True`` first, because ``torch.export.load`` itself would fall back to full
  pickle silently;
* a TorchScript archive (``torch.jit.save``): TorchScript code runs in TorchScript's own
  interpreter and cannot call Python.

A checkpoint that needs full pickle (a pickled ``nn.Module``, custom classes, or a payload
calling ``os.system``) is refused with :class:`UnsafeCheckpointError` (exit 3) before anything
in it runs, unless ``trust_checkpoint=True``. Loading never falls back to full pickle silently.
"""

from __future__ import annotations

import importlib
import io
import json
import pickle
import pickletools
import sys
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from audit.card import InputSpec, ModelCard
from audit.errors import AuditError, CheckpointError, UnsafeCheckpointError, UsageError
from audit.io import sha256_file
from audit.loading.normalize import NormalizedModel
from audit.paths import models_dir

_WEIGHT_NAMES = ("model.safetensors", "model.pt", "model.pth", "model.pt2")
_TRUST_HINT = ("pass --trust-checkpoint only if you trust its source (it can run arbitrary "
               "code), or re-save it as a state dict or safetensors")


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
        model = _load_torchscript(weights)
        arch_name, fmt = "torchscript", "torchscript"
    elif kind == "export":
        model = _load_export(weights, trust_checkpoint)
        arch_name, fmt = "torch.export", "torch.export"
    elif kind in ("torch-zip", "pickle"):
        obj = _torch_load(weights, trust_checkpoint)
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
    if len(head) >= 9 and head[8:9] == b"{":
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


def pickle_globals(data: bytes) -> list[str]:
    """The ``module.name`` globals a pickle stream would import, found without running it.

    Raises :class:`CheckpointError` when the bytes are not a well-formed pickle.
    """
    found: list[str] = []
    stream = io.BytesIO(data)
    while stream.tell() < len(data):
        strings: list[str] = []
        try:
            for op, arg, _pos in pickletools.genops(stream):
                if op.name in ("GLOBAL", "INST"):
                    found.append(str(arg).replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(f"{strings[-2]}.{strings[-1]}")
                elif isinstance(arg, str):
                    strings.append(arg)
        except Exception as e:  # pickletools raises ValueError or others on junk
            raise CheckpointError(f"not a valid pickle stream ({type(e).__name__}: "
                                  f"{str(e)[:80]})") from None
    return sorted(set(found))


_SAFE_GLOBALS = {"collections.OrderedDict", "builtins.set", "builtins.frozenset",
                 "_codecs.encode", "torch.Size", "torch.device", "torch.storage.UntypedStorage",
                 "torch.storage.TypedStorage"}


def is_safe_global(name: str) -> bool:
    """Whether a pickle global is one of torch's tensor-rebuilding pieces (no code runs)."""
    if name in _SAFE_GLOBALS:
        return True
    if name.startswith(("torch._utils._rebuild_", "torch._tensor._rebuild_")):
        return True
    module, _, attr = name.rpartition(".")
    return module == "torch" and (attr.endswith("Storage")
                                  or isinstance(getattr(torch, attr, None), torch.dtype))


def _refuse_unsafe(path: Path, pickle_bytes: bytes) -> None:
    """Raise UnsafeCheckpointError naming the globals that need full pickle, or
    CheckpointError when the pickle is damaged."""
    try:
        names = pickle_globals(pickle_bytes)
    except CheckpointError as e:
        raise CheckpointError(f"{path} is corrupt or not a checkpoint: {e}") from None
    unsafe = [n for n in names if not is_safe_global(n)]
    shown = ", ".join(unsafe[:5]) + (f" and {len(unsafe) - 5} more" if len(unsafe) > 5 else "")
    raise UnsafeCheckpointError(
        f"refused {path}: it needs full pickle to load"
        + (f" (it imports {shown})" if shown else "") + f"; {_TRUST_HINT}")


def _pickle_payload(path: Path) -> bytes:
    """The pickle bytes of a torch.save file (data.pkl inside a zip, or the raw file)."""
    raw = path.read_bytes()
    if raw[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(raw)) as zf:
                pkl = [n for n in zf.namelist() if n.endswith("data.pkl")]
                return zf.read(pkl[0]) if pkl else b""
        except Exception as e:  # BadZipFile, KeyError, OSError, UnicodeDecodeError, ...
            raise CheckpointError(f"{path} is a damaged zip archive ({type(e).__name__}); "
                                  "save it again") from None
    return raw


def _torch_load(path: Path, trust: bool) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if not trust:
            _refuse_unsafe(path, _pickle_payload(path))
    except Exception as e:  # torch raises many types on damaged files
        msg = str(e).splitlines()[0][:160] if str(e) else ""
        raise CheckpointError(f"{path} is corrupt or truncated ({type(e).__name__}: {msg}); "
                              "save it again") from None
    # trusted: the user consented to running the checkpoint's code
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise CheckpointError(f"{path} could not be loaded even with --trust-checkpoint: "
                              f"{type(e).__name__}: {str(e)[:160]}") from None


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


def import_arch(target: str) -> type[nn.Module]:
    """Import ``module:Class`` (the user's own code, which they named on the command line)."""
    if ":" not in target:
        raise UsageError(f"--arch must be 'module:Class', got {target!r}")
    mod_name, _, cls_name = target.partition(":")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(mod_name)
    except ModuleNotFoundError as e:
        raise UsageError(f"architecture module {mod_name!r} not found ({e.name} is missing); "
                         "run from the folder holding it or install it") from None
    except Exception as e:
        raise UsageError(f"importing architecture module {mod_name!r} failed: "
                         f"{type(e).__name__}: {e}") from None
    obj: Any = module
    for part in cls_name.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise UsageError(f"module {mod_name!r} has no class {cls_name!r}; check --arch")
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise UsageError(f"{target} is not an nn.Module subclass")
    return obj


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


def load_weights(model: nn.Module, state: Mapping[str, torch.Tensor], where: Path | str) -> None:
    """Load ``state`` strictly, listing missing, unexpected and mis-shaped keys by name."""
    own = model.state_dict()
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
        raise CheckpointError(f"{where} does not fit the architecture {type(model).__name__}: "
                              + "; ".join(problems))
    model.load_state_dict(dict(state), strict=True)


def _load_torchscript(path: Path) -> nn.Module:
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except Exception as e:
        raise CheckpointError(f"{path} is a damaged TorchScript archive: "
                              f"{str(e).splitlines()[0][:160] if str(e) else type(e).__name__}"
                              ) from None


class _ExportedModule(nn.Module):
    """Wraps an ExportedProgram's module so it behaves like an ordinary nn.Module."""

    def __init__(self, program: Any) -> None:
        super().__init__()
        self.inner = program.module()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        return out[0] if isinstance(out, tuple | list) else out

    def eval(self) -> _ExportedModule:  # exported graphs do not support .train()/.eval()
        return self

    def train(self, mode: bool = True) -> _ExportedModule:
        return self


def _check_archive_members(path: Path) -> None:
    """Refuse a torch.export archive if any member would need full pickle.

    ``torch.export.load`` unpickles weights, constants and example inputs with
    ``weights_only=False`` (or falls back to it), and opaque objects with plain
    ``pickle.loads``; so every member that is a pickle is checked here first: nested
    ``torch.save`` archives must load with ``weights_only=True``, bare pickle streams may only
    import torch's own rebuild functions. Members that are raw tensor bytes are not pickles
    and pass.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                blob = zf.read(name)
                if blob[:4] == b"PK\x03\x04":
                    try:
                        torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
                    except pickle.UnpicklingError:
                        _refuse_unsafe(path, _pickle_payload_from_bytes(blob))
                elif blob[:1] == b"\x80" and len(blob) > 1 and 2 <= blob[1] <= 5:
                    try:
                        names = pickle_globals(blob)
                    except CheckpointError:
                        continue  # raw tensor bytes that happen to start like a pickle
                    if not all(is_safe_global(n) for n in names):
                        _refuse_unsafe(path, blob)
    except AuditError:
        raise
    except Exception as e:  # zipfile raises many types on damaged archives
        raise CheckpointError(f"{path} is a damaged torch.export archive "
                              f"({type(e).__name__}: {str(e)[:120]})") from None


def _load_export(path: Path, trust: bool) -> nn.Module:
    if not trust:
        _check_archive_members(path)
    try:
        program = torch.export.load(str(path))
    except Exception as e:
        raise CheckpointError(f"{path} could not be loaded as torch.export: "
                              f"{type(e).__name__}: {str(e).splitlines()[0][:160]}") from None
    return _ExportedModule(program)


def _pickle_payload_from_bytes(blob: bytes) -> bytes:
    if blob[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(blob)) as zf:
            pkl = [n for n in zf.namelist() if n.endswith("data.pkl")]
            return zf.read(pkl[0]) if pkl else b""
    return blob


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
