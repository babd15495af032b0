"""The user-model matrix: formats x input conventions x tasks, each through the default
``audit run --quick`` to a complete report, from the user's own folder.

Formats: a state dict with ``--arch``, safetensors in a folder with the card, ``torch.export``
with a static and with a dynamic batch, TorchScript. Conventions (images): floats in [0, 1],
floats in 0..255, uint8 in 0..255, [-1, 1], mean/std normalisation in the card. Tasks: the
5-class image CNN, a binary and a 3-class tabular MLP on a CSV with a categorical sensitive
column. A cell passes when the exit code is 0 or 1 (a verdict), the HTML, JSON, Markdown and
JUnit files are written, and no section errored. The whole matrix is slow (about a minute an
image cell on two cores); ``test_matrix_corner`` runs one hard cell in the default suite.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from user_models import Project, import_mynets, write_image_project, write_tabular_project

from audit.cli._main import main

FORMATS = ["state-dict", "safetensors", "export-static", "export-dynamic", "torchscript"]
CONVENTIONS = ["unit", "byte", "byte-uint8", "signed", "normalized"]
TIMES: dict[str, float] = {}


def _user_model(project: Project) -> torch.nn.Module:
    card = json.loads(project.card.read_text())
    model: torch.nn.Module = getattr(import_mynets(project.root), project.arch.split(":")[1])(
        **card.get("arch_kwargs", {}))
    model.load_state_dict(torch.load(project.weights, weights_only=True))
    return model.eval()


def save_as(project: Project, fmt: str) -> list[str]:
    """Save the user's model in ``fmt`` as a user would; the ``audit run`` arguments."""
    card = json.loads(project.card.read_text())
    shape = [2, *card["input"]["shape"]]
    if fmt == "state-dict":
        return [str(project.weights.name), "--arch", project.arch, "--card", "card.json"]
    model = _user_model(project)
    example = torch.rand(*shape)
    if fmt == "safetensors":
        folder = project.root / "model"
        folder.mkdir()
        save_file(model.state_dict(), str(folder / "model.safetensors"))
        shutil.copy(project.card, folder / "card.json")
        return ["model"]
    if fmt == "torchscript":
        torch.jit.trace(model, example).save(str(project.root / "net.ts"))
        return ["net.ts", "--card", "card.json"]
    dynamic = {"x": {0: torch.export.Dim("batch", min=1, max=4096)}} \
        if fmt == "export-dynamic" else None
    program = torch.export.export(model, (example,), dynamic_shapes=dynamic)
    torch.export.save(program, str(project.root / "net.pt2"))
    return ["net.pt2", "--card", "card.json"]


def audit_cell(project: Project, fmt: str, monkeypatch: pytest.MonkeyPatch, key: str,
               extra: list[str] | None = None) -> dict[str, Any]:
    """``audit run --quick`` on the saved model; asserts a complete report."""
    monkeypatch.chdir(project.root)
    args = save_as(project, fmt)
    t0 = time.perf_counter()
    code = main(["run", *args, "--data", project.test.name, "--quick", "--out", "r.html",
                 "--md", "r.md", "--junit", "r.xml", "--no-progress", *(extra or [])])
    TIMES[key] = time.perf_counter() - t0
    assert code in (0, 1), f"{key}: exit {code}"
    for name in ("r.html", "r.json", "r.md", "r.xml"):
        assert (project.root / name).stat().st_size > 0, name
    result: dict[str, Any] = json.loads((project.root / "r.json").read_text())
    errored = [(s["check"], s["error"]) for s in result["sections"] if s["status"] == "error"]
    assert not errored, f"{key}: {errored}"
    return result


def image_project(root: Path, convention: str) -> Project:
    uint8 = convention == "byte-uint8"
    return write_image_project(root, "byte" if uint8 else convention, uint8=uint8)


@pytest.mark.slow
@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_image_matrix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str,
                      convention: str) -> None:
    project = image_project(tmp_path / "user", convention)
    result = audit_cell(project, fmt, monkeypatch, f"image {fmt} {convention}")
    checks = {s["check"]: s for s in result["sections"]}
    assert {"performance", "robustness", "saliency"} <= set(checks)
    assert checks["performance"]["metrics"]["accuracy"] > 0.8
    # the saliency maps come from Grad-CAM on the model's own conv layers in every format
    assert "gradcam.gain_over_random" in checks["saliency"]["metrics"], fmt


@pytest.mark.slow
@pytest.mark.parametrize("classes", [2, 3])
@pytest.mark.parametrize("fmt", ["state-dict", "safetensors", "export-dynamic", "torchscript"])
def test_tabular_matrix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str,
                        classes: int) -> None:
    project = write_tabular_project(tmp_path / "user", classes)
    extra = [] if classes == 2 else ["--config", str(_positive(project))]
    result = audit_cell(project, fmt, monkeypatch, f"tabular-{classes} {fmt}", extra)
    checks = {s["check"]: s for s in result["sections"]}
    assert checks["performance"]["metrics"]["accuracy"] > 0.7
    assert checks["fairness"]["status"] != "skipped"  # the categorical sensitive column


def _positive(project: Project) -> Path:
    """audit.toml naming the favourable class, which fairness needs with three classes."""
    path = project.root / "audit.toml"
    path.write_text('[checks.fairness]\npositive_class = "high"\n')
    return path


def test_matrix_corner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hardest image cell in the default suite: uint8 0..255 data, a fixed-batch
    torch.export archive, the default quick audit."""
    project = image_project(tmp_path / "user", "byte-uint8")
    result = audit_cell(project, "export-static", monkeypatch, "image export-static uint8")
    rob = next(s for s in result["sections"] if s["check"] == "robustness")
    assert "robust_accuracy_linf_8" in rob["metrics"]  # 8/255 of the range: 8 on 0..255


@pytest.fixture(scope="module", autouse=True)
def _print_times() -> Any:
    yield
    if TIMES:
        width = max(len(k) for k in TIMES)
        lines = [f"{k:<{width}}  {v:6.1f} s" for k, v in sorted(TIMES.items())]
        print("\nuser-model matrix (run with -s to see):\n" + "\n".join(lines))
