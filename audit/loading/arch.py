"""Resolving ``--arch`` (and a card's ``arch``): the user's own model class, named as
``module:Class`` (importable from the current folder, as ``python -c "import module"`` there
would find it) or as a file, ``path/to/file.py:Class`` (relative to the current folder, or
absolute). This is the one place that turns such a name into a class."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import nn

from audit.errors import UsageError


def ensure_cwd_importable() -> None:
    """Put the current folder on the import path, where a user's own modules live.

    ``python script.py`` would put the script's folder there, but the ``audit`` console script
    puts its own; the path stays, so that modules imported later (by the user's code, by a
    pickle, by an isolated check's child process, which copies ``sys.path``) are found too."""
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))


def split_arch(target: str) -> tuple[str, str]:
    """``(module or file, class)``; the class follows the last ``:``, so a Windows drive letter
    (``C:\\nets\\x.py:Net``) stays in the path."""
    where, sep, cls_name = target.rpartition(":")
    if not sep or not where or not cls_name:
        raise UsageError(f"--arch must be 'module:Class' or 'file.py:Class', got {target!r}")
    return where, cls_name


def is_file_spec(where: str) -> bool:
    """Whether the part before ``:Class`` names a file rather than a dotted module."""
    return where.endswith(".py") or "/" in where or "\\" in where


def import_arch(target: str) -> type[nn.Module]:
    """Import ``module:Class`` or ``file.py:Class`` (the user's own code, which they named on the
    command line or in their card). Raises :class:`UsageError` naming what exists."""
    where, cls_name = split_arch(target)
    if is_file_spec(where):
        module, label = _import_file(where), f"{where}"
    else:
        module, label = _import_module(where), f"module {where!r}"
    obj: Any = module
    for part in cls_name.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            known = module_classes(module)
            raise UsageError(f"{label} has no class {cls_name!r}; nn.Module classes in it: "
                             f"{', '.join(known[:12]) or 'none'}; check --arch")
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise UsageError(f"{target} is not an nn.Module subclass")
    return obj


def module_classes(module: ModuleType) -> list[str]:
    """Names of the nn.Module subclasses defined in ``module`` (not those it imports)."""
    return sorted(name for name, v in vars(module).items()
                  if isinstance(v, type) and issubclass(v, nn.Module)
                  and v.__module__ == module.__name__)


def _import_module(name: str) -> ModuleType:
    ensure_cwd_importable()
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        raise UsageError(f"architecture module {name!r} not found ({e.name} is missing); "
                         f"run from the folder holding it (now {Path.cwd()}), set PYTHONPATH, "
                         "or pass the file as --arch path/to/file.py:Class") from None
    except Exception as e:
        raise UsageError(f"importing architecture module {name!r} failed: "
                         f"{type(e).__name__}: {e}") from None


def _import_file(where: str) -> ModuleType:
    path = Path(where).expanduser()
    path = path if path.is_absolute() else Path.cwd() / path
    if not path.is_file():
        folder = path.parent
        here = sorted(p.name for p in folder.glob("*.py")) if folder.is_dir() else []
        found = (f"Python files in {folder}: {', '.join(here[:12])}" if here else
                 f"{folder} holds no .py file" if folder.is_dir() else
                 f"folder {folder} does not exist")
        raise UsageError(f"--arch file {where} not found; {found}")
    path = path.resolve()
    # its own folder on the path, so the file's imports of its neighbours work, and so does
    # unpickling a module saved from it
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    name = path.stem if path.stem.isidentifier() else "_audit_arch"
    loaded = sys.modules.get(name)
    if loaded is not None and Path(getattr(loaded, "__file__", "") or "").resolve() == path:
        return loaded
    if loaded is not None:  # another module of that name is imported: do not replace it
        name = f"_audit_arch_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"--arch file {where} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before exec: dataclasses and pickles look it up there
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(name, None)
        raise UsageError(f"importing architecture file {where} failed: "
                         f"{type(e).__name__}: {e}") from None
    return module
