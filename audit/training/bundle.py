"""Writing a trained model as a bundle: ``model.safetensors`` + ``card.json``."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file
from torch import nn

from audit.card import ModelCard
from audit.io import atomic_save, atomic_write_text

__all__ = ["save_bundle"]


def save_bundle(model: nn.Module, card: ModelCard, out_dir: Path) -> None:
    """Write ``model.safetensors`` and ``card.json`` into ``out_dir``, each atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_save(out_dir / "model.safetensors",
                lambda p: save_file(state, str(p), metadata={"format": "pt"}))
    atomic_write_text(out_dir / "card.json", json.dumps(card.to_dict(), indent=2) + "\n")
