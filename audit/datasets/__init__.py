"""Datasets by name (bundled) and user data files (``.npz``; more formats in ``files``).

``load_dataset(name, split)`` returns an :class:`~audit.result.AuditData` in the model's input
space. Bundled datasets register a loader in ``_DATASET_MODULES``.
"""

from __future__ import annotations

from collections.abc import Callable

from audit.errors import DataError
from audit.plugins import import_plugins
from audit.subject import AuditData

# Modules that register bundled datasets when imported.
_DATASET_MODULES = [
    "audit.datasets.digits",
    "audit.datasets.shapes",
    "audit.datasets.adult",
]

Loader = Callable[[str, int], AuditData]
_DATASETS: dict[str, Loader] = {}


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    """Decorator registering ``loader(split, seed) -> AuditData`` under ``name``."""

    def deco(fn: Loader) -> Loader:
        _DATASETS[name] = fn
        return fn

    return deco


def dataset_names() -> list[str]:
    """Names of the bundled datasets."""
    import_plugins(_DATASET_MODULES)
    return sorted(_DATASETS)


def load_dataset(name: str, split: str = "test", seed: int = 0) -> AuditData:
    """Load bundled dataset ``name``; ``split`` is ``train`` or ``test``."""
    names = dataset_names()
    if name not in _DATASETS:
        raise DataError(f"unknown dataset {name!r}; bundled datasets: {', '.join(names)}; "
                        "or pass a .npz/.csv file to --data")
    if split not in ("train", "test"):
        raise DataError(f"unknown split {split!r}; use 'train' or 'test'")
    return _DATASETS[name](split, seed)
