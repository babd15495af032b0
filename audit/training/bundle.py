"""Writing a trained model as a bundle: ``model.safetensors`` + ``card.json``.

A card's ``recipe`` also records the build that trained it (:func:`training_build`): float
reductions differ between CPU instruction sets, CPU vendors (the same AVX-512 capability on
an AMD EPYC and an Intel Xeon takes other oneDNN/MKL kernels) and torch builds, so a recipe
reproduces its weights bit for bit only on the same CPU type and torch build
(:func:`build_mismatch` says whether this machine is one).
"""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from audit.card import ModelCard
from audit.io import atomic_save, atomic_write_text

__all__ = ["BUILD_KEYS", "build_mismatch", "cpu_model", "save_bundle", "training_build"]

#: The recipe keys :func:`training_build` writes.
BUILD_KEYS = ("torch", "cpu_capability", "cpu")


def cpu_model() -> str:
    """This CPU's model name (``/proc/cpuinfo``'s first ``model name``, else
    :func:`platform.processor`), or ``unknown``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def training_build() -> dict[str, str]:
    """The torch build, the CPU capability its kernels dispatch to here (``AVX512``,
    ``AVX2``, ``DEFAULT``...; ``ATEN_CPU_CAPABILITY`` can lower it) and the CPU model, as a
    recipe records them."""
    return {"torch": str(torch.__version__),
            "cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
            "cpu": cpu_model()}


def build_mismatch(recipe: Mapping[str, Any]) -> str | None:
    """``None`` when ``recipe`` was trained on this machine's torch build, CPU capability and
    CPU model (so retraining it here must give the same bits), otherwise the reason it need
    not."""
    here = training_build()
    missing = [k for k in BUILD_KEYS if k not in recipe]
    if missing:
        return f"the recipe does not record {' and '.join(missing)}"
    differ = [f"{k} {recipe[k]} (here {here[k]})" for k in BUILD_KEYS if recipe[k] != here[k]]
    if differ:
        return "trained with " + ", ".join(differ)
    return None


def save_bundle(model: nn.Module, card: ModelCard, out_dir: Path) -> None:
    """Write ``model.safetensors`` and ``card.json`` into ``out_dir``, each atomically; a card
    with a recipe gets the training build (:func:`training_build`) recorded in it (in place,
    so the caller's card is the one written)."""
    if card.recipe:
        card.recipe.update(training_build())
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_save(out_dir / "model.safetensors",
                lambda p: save_file(state, str(p), metadata={"format": "pt"}))
    atomic_write_text(out_dir / "card.json", json.dumps(card.to_dict(), indent=2) + "\n")
