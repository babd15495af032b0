"""Where the project's files live: the bundled models folder (overridable by environment)."""

from __future__ import annotations

import os
from pathlib import Path


def models_dir() -> Path:
    """Folder of the bundled models: ``$AUDIT_MODELS_DIR`` or ``models/`` beside the package."""
    env = os.environ.get("AUDIT_MODELS_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / "models"
