"""Checkpoint plumbing: random-generator states, CPU copies of weights and optimizer states,
and reading/writing checkpoint files (``weights_only``-loadable, written atomically)."""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from audit.errors import CheckpointError, ConfigError
from audit.io import atomic_save
from audit.training.config import TrainConfig

CHECKPOINT_VERSION = 2

__all__ = ["CHECKPOINT_VERSION", "check_settings", "cpu_state", "read_checkpoint",
           "rng_state", "set_rng_state", "to_cpu", "write_checkpoint"]


def rng_state() -> dict[str, Any]:
    """This process's global generators (torch, numpy, python) as weights_only-safe objects."""
    np_state = np.random.get_state()
    assert isinstance(np_state, tuple)
    name, keys, pos, has_gauss, cached = np_state
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": _py_state(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _py_state(s: Any) -> Any:
    return [_py_state(v) for v in s] if isinstance(s, tuple | list) else s


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def cpu_state(module: nn.Module) -> dict[str, Tensor]:
    """A CPU copy of ``module``'s weights."""
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def to_cpu(obj: Any) -> Any:
    """Deep copy with every tensor on the CPU (optimizer states)."""
    if isinstance(obj, Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(to_cpu(v) for v in obj)
    return copy.deepcopy(obj)


def write_checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (a kill leaves the previous file intact)."""
    atomic_save(path, lambda p: torch.save(dict(state), p))


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint at ``path``, loaded without pickle; :class:`CheckpointError` when it is
    unreadable or of another format version."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"cannot read checkpoint {path} ({type(e).__name__}: "
                              f"{str(e)[:120]}); delete it to start over") from None
    version = state.get("version") if isinstance(state, dict) else None
    if version != CHECKPOINT_VERSION:
        raise CheckpointError(f"checkpoint format {version} is not {CHECKPOINT_VERSION}; "
                              "delete the checkpoint to start over")
    return state


def check_settings(saved: Mapping[str, Any], config: TrainConfig, path: Path | None) -> None:
    """Raise :class:`CheckpointError` unless the checkpoint's settings ``saved`` (read with the
    same parser as ``config``) equal ``config``: a run resumes only with its own settings."""
    where = f"the checkpoint {path or ''}"
    try:
        theirs = type(config).from_dict(saved, where=where).to_dict()
    except ConfigError as e:
        raise CheckpointError(f"{e}; delete the checkpoint to start over") from None
    mine = config.to_dict()
    diffs = [f"{k} {theirs[k]} (checkpoint) vs {mine[k]}" for k in mine
             if theirs.get(k) != mine[k]]
    if diffs:
        raise CheckpointError(f"{where} was written with other settings: "
                              + "; ".join(diffs[:4]) + "; resume with the same settings, or "
                              "delete the checkpoint to start over")
