"""The one plugin loader: registries name the modules that register their entries on import.

A listed module that does not exist is a packaging or spelling error, so it raises instead of
silently dropping a check, dataset, recipe, command or example.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable


class PluginError(ImportError):
    """A registry lists a module that cannot be found."""


def import_plugins(modules: Iterable[str]) -> None:
    """Import every module in ``modules``; :class:`PluginError` names one that is missing."""
    for mod in modules:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name is not None and (mod == e.name or mod.startswith(e.name + ".")):
                raise PluginError(f"plugin module {mod!r} is listed in a registry but does "
                                  "not exist") from e
            raise
