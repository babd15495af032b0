"""Build hook: copy the top-level ``models/`` folder into the package as ``audit/_models/``.

``models/`` stays the single source in the repository (``audit train`` writes there, editable
installs read it in place); wheels carry a copy so ``audit models`` works after a plain
``pip install``. Every folder under ``models/`` is included, whatever its name. The sdist carries
``models/`` itself (MANIFEST.in), so a wheel built from the sdist gets the same copy.
Everything else is configured in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

MODELS_SRC = "models"
MODELS_DEST = ("audit", "_models")
_IGNORE = shutil.ignore_patterns(".*", "__pycache__", "*.py[cod]", "*.tmp")


class BuildPyWithModels(build_py):
    """``build_py`` that also copies ``models/`` into ``<build_lib>/audit/_models/``."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads models/ from the checkout (audit.paths)
        src = Path(MODELS_SRC)
        if not src.is_dir():
            raise SystemExit(f"setup.py: no {MODELS_SRC}/ folder beside setup.py to bundle")
        dest = Path(self.build_lib).joinpath(*MODELS_DEST)
        if dest.exists():
            shutil.rmtree(dest)  # a stale build/ must not keep models deleted since
        shutil.copytree(src, dest, ignore=_IGNORE)


setup(cmdclass={"build_py": BuildPyWithModels})
