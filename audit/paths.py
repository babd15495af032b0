"""Where the bundled models live.

:func:`models_dir` looks, in order, at:

1. ``$AUDIT_MODELS_DIR``, when set and not empty;
2. the source checkout's ``models/`` folder beside the package (a clone or an editable
   install: a ``models/`` folder next to ``pyproject.toml``, one level above ``audit/``);
3. the copy inside the installed package, ``audit/_models/``, which the build puts into
   wheels (see ``setup.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def source_models_dir() -> Path | None:
    """The checkout's ``models/`` folder, or ``None`` outside a source checkout.

    ``pyproject.toml`` must sit beside it, so that an unrelated top-level ``models`` folder in
    site-packages is never taken for ours.
    """
    root = PACKAGE_DIR.parent
    models = root / "models"
    return models if models.is_dir() and (root / "pyproject.toml").is_file() else None


def packaged_models_dir() -> Path:
    """The copy of the models inside the installed package (present in wheels only)."""
    return PACKAGE_DIR / "_models"


def models_dir() -> Path:
    """Folder of the bundled models: ``$AUDIT_MODELS_DIR``, the checkout's, or the packaged one.

    The packaged path is returned even when it does not exist (callers list nothing then).
    """
    return editable_models_dir() or packaged_models_dir()


def editable_models_dir() -> Path | None:
    """Where ``audit train NAME`` may write by default: ``$AUDIT_MODELS_DIR`` or the
    checkout's ``models/``; ``None`` for an installed package, whose bundled models are never
    overwritten in place."""
    env = os.environ.get("AUDIT_MODELS_DIR")
    return Path(env) if env else source_models_dir()
