"""Pickle safety: what a checkpoint's pickle would import, found without running it, and the
refusal (:class:`UnsafeCheckpointError`, exit 3) of anything beyond torch's tensor-rebuilding
pieces unless the user passed ``--trust-checkpoint``."""

from __future__ import annotations

import io
import pickle
import pickletools
import zipfile
from pathlib import Path
from typing import Any

import torch

from audit.errors import AuditError, CheckpointError, UnsafeCheckpointError
from audit.loading.arch import ensure_cwd_importable

_TRUST_HINT = ("pass --trust-checkpoint only if you trust its source (it can run arbitrary "
               "code), or re-save it as a state dict or safetensors")


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


def refuse_unsafe(path: Path, pickle_bytes: bytes) -> None:
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


def pickle_payload(raw: bytes, path: Path) -> bytes:
    """The pickle bytes of a torch.save blob (data.pkl inside a zip, or the raw bytes)."""
    if raw[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(raw)) as zf:
                pkl = [n for n in zf.namelist() if n.endswith("data.pkl")]
                return zf.read(pkl[0]) if pkl else b""
        except Exception as e:  # BadZipFile, KeyError, OSError, UnicodeDecodeError, ...
            raise CheckpointError(f"{path} is a damaged zip archive ({type(e).__name__}); "
                                  "save it again") from None
    return raw


def torch_load(path: Path, trust: bool) -> Any:
    """``torch.load`` with ``weights_only=True``; full pickle only when ``trust`` (the user's
    ``--trust-checkpoint``), else :class:`UnsafeCheckpointError` naming what it would import."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if not trust:
            refuse_unsafe(path, pickle_payload(path.read_bytes(), path))
    except Exception as e:  # torch raises many types on damaged files
        msg = str(e).splitlines()[0][:160] if str(e) else ""
        raise CheckpointError(f"{path} is corrupt or truncated ({type(e).__name__}: {msg}); "
                              "save it again") from None
    # trusted: the user consented to running the checkpoint's code; its classes live in their
    # own modules, found from the current folder as for --arch
    ensure_cwd_importable()
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except ModuleNotFoundError as e:
        raise CheckpointError(
            f"{path} pickles classes from module {e.name!r}, which is not importable from "
            f"{Path.cwd()}; run from the folder that holds {e.name}.py (or set PYTHONPATH to "
            "it)") from None
    except AttributeError as e:  # the module exists but lacks the class (renamed, moved)
        raise CheckpointError(f"{path} could not be unpickled: {str(e)[:160]}; the class it "
                              "was saved from is no longer in that module") from None
    except Exception as e:
        raise CheckpointError(f"{path} could not be loaded even with --trust-checkpoint: "
                              f"{type(e).__name__}: {str(e)[:160]}") from None


def check_export_archive(path: Path) -> None:
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
                        refuse_unsafe(path, pickle_payload(blob, path))
                elif blob[:1] == b"\x80" and len(blob) > 1 and 2 <= blob[1] <= 5:
                    try:
                        names = pickle_globals(blob)
                    except CheckpointError:
                        continue  # raw tensor bytes that happen to start like a pickle
                    if not all(is_safe_global(n) for n in names):
                        refuse_unsafe(path, blob)
    except AuditError:
        raise
    except Exception as e:  # zipfile raises many types on damaged archives
        raise CheckpointError(f"{path} is a damaged torch.export archive "
                              f"({type(e).__name__}: {str(e)[:120]})") from None
