"""The wheel is the product: it carries the bundled models and works from a fresh venv.

The resolution-order tests are fast. The build tests build the sdist and, from it, the wheel
(``python -m build --no-isolation``: offline, with this venv's setuptools) once per module; the
install test puts that wheel into a fresh venv whose only link to this one is a ``.pth`` line
naming this venv's site-packages (so torch and friends resolve without a download), and runs
the ``audit`` script from a directory outside the repository.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

from audit import paths

ROOT = Path(__file__).resolve().parents[1]
MODEL_FILES = ("card.json", "model.safetensors")


# --- models_dir(): resolution order --------------------------------------------------------

def _layout(tmp_path: Path, *, checkout: bool, packaged: bool) -> Path:
    """A fake install: ``tmp_path/site/audit`` with optional checkout and packaged models."""
    package = tmp_path / "site" / "audit"
    package.mkdir(parents=True)
    if checkout:
        (tmp_path / "site" / "models" / "a").mkdir(parents=True)
        (tmp_path / "site" / "pyproject.toml").write_text("[project]\n")
    if packaged:
        (package / "_models" / "b").mkdir(parents=True)
    return package


def test_models_dir_env_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paths, "PACKAGE_DIR", _layout(tmp_path, checkout=True, packaged=True))
    monkeypatch.setenv("AUDIT_MODELS_DIR", str(tmp_path / "mine"))
    assert paths.models_dir() == tmp_path / "mine"


def test_models_dir_prefers_the_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paths, "PACKAGE_DIR", _layout(tmp_path, checkout=True, packaged=True))
    monkeypatch.setenv("AUDIT_MODELS_DIR", "")  # empty counts as unset
    assert paths.models_dir() == tmp_path / "site" / "models"


def test_models_dir_falls_back_to_the_package(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    package = _layout(tmp_path, checkout=False, packaged=True)
    monkeypatch.setattr(paths, "PACKAGE_DIR", package)
    monkeypatch.delenv("AUDIT_MODELS_DIR", raising=False)
    assert paths.models_dir() == package / "_models"
    # a stray top-level models/ in site-packages (no pyproject.toml beside it) is not ours
    (tmp_path / "site" / "models").mkdir()
    assert paths.models_dir() == package / "_models"


def test_train_needs_out_in_an_installed_package(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed package's bundled models are never overwritten by ``audit train NAME``."""
    from audit.cli import main

    package = _layout(tmp_path, checkout=False, packaged=True)
    monkeypatch.setattr(paths, "PACKAGE_DIR", package)
    monkeypatch.delenv("AUDIT_MODELS_DIR", raising=False)
    assert paths.editable_models_dir() is None
    assert main(["train", "adult-mlp"]) == 4  # usage error
    assert list((package / "_models").iterdir()) == [package / "_models" / "b"]
    monkeypatch.setenv("AUDIT_MODELS_DIR", str(tmp_path / "mine"))
    assert paths.editable_models_dir() == tmp_path / "mine"
    monkeypatch.setattr(paths, "PACKAGE_DIR", _layout(tmp_path / "co", checkout=True,
                                                      packaged=False))
    monkeypatch.delenv("AUDIT_MODELS_DIR")
    assert paths.editable_models_dir() == tmp_path / "co" / "site" / "models"


def test_models_dir_in_this_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUDIT_MODELS_DIR", raising=False)
    assert paths.models_dir() == ROOT / "models"


# --- the built distributions ---------------------------------------------------------------

def _bundled() -> dict[str, bytes]:
    """Every file under models/ (relative posix path -> sha256), as the build must copy it."""
    return {p.relative_to(ROOT / "models").as_posix(): hashlib.sha256(p.read_bytes()).digest()
            for p in sorted((ROOT / "models").rglob("*"))
            if p.is_file() and not any(part.startswith((".", "__pycache__"))
                                       for part in p.relative_to(ROOT).parts)
            and p.suffix not in {".pyc", ".tmp"}}


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist and the wheel built from it (what ``python -m build`` ships)."""
    pytest.importorskip("build", reason="needs the 'build' package (pip install -e '.[dev]')")
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out),
                           str(ROOT)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (wheel,) = out.glob("audit-*.whl")
    (sdist,) = out.glob("audit-*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


def test_sdist_carries_the_models_folder(dists: dict[str, Path]) -> None:
    with tarfile.open(dists["sdist"]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert "models/digits-cnn/model.safetensors" in names
    assert {f"models/{rel}" for rel in _bundled()} <= names
    assert {"setup.py", "MANIFEST.in", "pyproject.toml", "audit/paths.py"} <= names


def test_wheel_carries_every_model_and_dataset(dists: dict[str, Path]) -> None:
    with zipfile.ZipFile(dists["wheel"]) as whl:
        packaged = {n.removeprefix("audit/_models/"): hashlib.sha256(whl.read(n)).digest()
                    for n in whl.namelist() if n.startswith("audit/_models/")}
        names = set(whl.namelist())
    assert packaged == _bundled()  # every folder, byte for byte, and nothing else
    folders = {p.name for p in (ROOT / "models").iterdir() if p.is_dir()}
    assert {f"{f}/{m}" for f in folders for m in MODEL_FILES} <= set(packaged)
    datasets = {f"audit/datasets/files/{p.name}"
                for p in (ROOT / "audit" / "datasets" / "files").iterdir() if p.is_file()}
    assert datasets <= names
    assert {"audit/schema/result.schema.json", "audit/report/static/report.css",
            "audit/py.typed"} <= names  # PEP 561: type checkers read the package's hints
    assert not any(n.startswith(("models/", "tests/")) for n in names)


# --- the wheel in a fresh venv -------------------------------------------------------------

def _fresh_venv(where: Path, wheel: Path) -> Path:
    """A new venv with only the wheel installed; dependencies come from this venv by ``.pth``."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True,
                   timeout=120)
    python = where / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", "--no-index", "--no-compile", str(wheel)], check=True,
                   timeout=300)
    site = Path(subprocess.run([str(python), "-c",
                                "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    ours = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "_audit_test_deps.pth").write_text("".join(f"{p}\n" for p in ours))
    return site


@pytest.mark.slow
def test_wheel_installs_and_audits_from_elsewhere(dists: dict[str, Path],
                                                  tmp_path: Path) -> None:
    site = _fresh_venv(tmp_path / "venv", dists["wheel"])
    bin_dir = tmp_path / "venv" / "bin"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in {"AUDIT_MODELS_DIR", "PYTHONPATH", "VIRTUAL_ENV"}}
    env.update(COLUMNS="200", OMP_NUM_THREADS="1")

    def run(*cmd: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(cmd, cwd=elsewhere, env={**env, **extra}, capture_output=True,
                              text=True, timeout=300)

    probe = run(str(bin_dir / "python"), "-c",
                "import audit, audit.paths; print(audit.__file__); "
                "print(audit.paths.models_dir())")
    assert probe.returncode == 0, probe.stderr
    module, models = (Path(line) for line in probe.stdout.split())
    assert module.is_relative_to(site) and models == site / "audit" / "_models"

    listed = run(str(bin_dir / "audit"), "models")
    assert listed.returncode == 0, listed.stderr
    for name in (p.name for p in (ROOT / "models").iterdir() if (p / "card.json").is_file()):
        assert name in listed.stdout

    report = tmp_path / "out" / "r.html"
    audited = run(str(bin_dir / "audit"), "run", "digits-cnn", "--quick", "--checks",
                  "performance", "--out", str(report), "--no-progress")
    assert audited.returncode in (0, 1), audited.stdout + audited.stderr  # 1 = failing verdict
    assert report.is_file()
    trained = run(str(bin_dir / "audit"), "train", "digits-cnn")
    assert trained.returncode == 4 and "pass --out DIR" in trained.stderr, trained.stderr
    doc = json.loads(report.with_suffix(".json").read_text())
    model_path = Path(doc["model"]["path"]).resolve()
    assert model_path.is_relative_to(site / "audit" / "_models")
    assert not model_path.is_relative_to(ROOT)

    override = tmp_path / "override"
    shutil.copytree(ROOT / "models" / "digits-cnn", override / "my-digits")
    listed = run(str(bin_dir / "audit"), "models", AUDIT_MODELS_DIR=str(override))
    assert listed.returncode == 0, listed.stderr
    assert "my-digits" in listed.stdout and "adult-mlp" not in listed.stdout
    mine = tmp_path / "out" / "mine.html"
    audited = run(str(bin_dir / "audit"), "run", "my-digits", "--quick", "--checks",
                  "performance", "--out", str(mine), "--no-progress",
                  AUDIT_MODELS_DIR=str(override))
    assert audited.returncode in (0, 1), audited.stdout + audited.stderr
    doc = json.loads(mine.with_suffix(".json").read_text())
    assert Path(doc["model"]["path"]).resolve() == (override / "my-digits").resolve()
