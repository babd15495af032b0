"""Loading a new user's own model the ways they save it (issue 23): a pickled module whose
class lives in their ``mynets.py``, TorchScript and ``.pt2`` exports (Grad-CAM must reach their
layers), ``--arch`` as a file path, a ``.pt2`` exported with a fixed batch, and string labels
in their ``.npz``. Each test runs in the user's folder, as they would."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from user_models import IMAGE_CLASSES, Project, write_image_project

from audit.card import ModelCard
from audit.cli._main import main
from audit.datasets.files import load_data_file
from audit.errors import CheckpointError, DataError, UsageError
from audit.loading import hookable, import_arch, load_model
from audit.saliency.gradcam import GradCAM
from audit.saliency.layers import find_target_layer, spatial_layers
from audit.saliency.metrics import randomize_parameters

SIDE_EFFECT = '''
"""A user's module that leaves a mark when it is imported (so a refusal can be seen)."""
from pathlib import Path
from torch import nn

Path(__file__).with_name("imported.marker").write_text("imported")


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 32 * 32, 5)

    def forward(self, x):
        return self.fc(x.flatten(1))
'''

FAST_SALIENCY = "[checks.saliency]\nmethods = [\"gradcam\"]\nfeatvis = false\nsamples = 6\n"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return write_image_project(tmp_path_factory.mktemp("user") / "proj", "unit",
                               n_train=300, n_test=60, epochs=2)


@pytest.fixture(autouse=True)
def fresh_imports() -> Iterator[None]:
    """Each test starts like a new process: the user's modules are not imported and the import
    path is as before (loading may add the current folder, as it does for a real run)."""
    path, modules = list(sys.path), set(sys.modules)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        if name in ("mynets", "sidefx") or name.startswith("_audit_arch"):
            del sys.modules[name]


def _user_module(root: Path, name: str = "mynets") -> Any:
    """The user's own module, imported the way their training script did (from their folder);
    kept importable until :func:`_forget` so that torch.save can pickle its classes."""
    sys.path.insert(0, str(root))
    sys.modules.pop(name, None)
    return __import__(name)


def _forget(root: Path, name: str = "mynets") -> None:
    sys.path.remove(str(root))
    sys.modules.pop(name, None)


def _net(project: Project) -> nn.Module:
    mynets = _user_module(project.root)
    net = mynets.Net()
    net.load_state_dict(torch.load(project.weights, weights_only=True))
    return net.eval()


def _images(project: Project, n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    with np.load(project.test) as npz:
        return torch.from_numpy(npz["x"][:n]), torch.from_numpy(npz["y"][:n])


def _run(*args: str) -> int:
    return main(["run", *args, "--no-progress"])


# ------------------------------------------------------------------ 1. pickles from the folder


def test_trusted_pickle_imports_the_users_module_from_the_current_folder(
        project: Project, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    start_path = list(sys.path)
    net = _net(project)
    torch.save(net, project.root / "full.pt")  # the whole model, class from mynets
    _forget(project.root)
    monkeypatch.chdir(project.root)
    assert _run("full.pt", "--data", "test.npz", "--checks", "performance", "--quick",
                "--out", str(tmp_path / "r.html")) == 3  # refused without --trust-checkpoint
    assert "mynets" not in sys.modules
    loaded = load_model("full.pt", card="card.json", trust_checkpoint=True)
    assert loaded.format == "pickled-module" and loaded.arch == "mynets:Net"
    x, _ = _images(project)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), net(x))
    sys.modules.pop("mynets")
    assert _run("full.pt", "--trust-checkpoint", "--data", "test.npz", "--checks",
                "performance", "--quick", "--out", str(tmp_path / "r.html")) in (0, 1)
    # from another folder (a new process: the user's folder is not on the import path) the
    # module is missing: one line naming it and the fix
    sys.modules.pop("mynets")
    # as in a new process: earlier in-process runs (--arch adds the folder it runs from) may
    # have left other users' folders on the path
    sys.path[:] = [p for p in start_path if not (Path(p or ".") / "mynets.py").exists()]
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert _run(str(project.root / "full.pt"), "--trust-checkpoint", "--data",
                str(project.test), "--checks", "performance", "--quick",
                "--out", str(tmp_path / "r.html")) == 2
    err = capsys.readouterr().err.strip()
    assert "'mynets'" in err and "run from the folder that holds mynets.py" in err
    assert "PYTHONPATH" in err and "Traceback" not in err


def test_untrusted_pickle_never_imports_the_users_module(project: Project,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    root = tmp_path / "other"
    root.mkdir()
    (root / "sidefx.py").write_text(SIDE_EFFECT)
    sidefx = _user_module(root, "sidefx")
    torch.save(sidefx.Tiny().eval(), root / "tiny.pt")
    _forget(root, "sidefx")
    (root / "imported.marker").unlink()
    (root / "card.json").write_text(project.card.read_text())
    monkeypatch.chdir(root)
    assert _run("tiny.pt", "--data", str(project.test), "--out", str(tmp_path / "r.html")) == 3
    assert not (root / "imported.marker").exists() and "sidefx" not in sys.modules


# ------------------------------------------------------- 2. TorchScript and .pt2 spatial layers


def _exports(project: Project, net: nn.Module) -> dict[str, Path]:
    x = torch.zeros(4, 3, 32, 32)
    out = {"script": project.root / "net_script.pt", "trace": project.root / "net_trace.pt",
           "export": project.root / "net.pt2", "fixed": project.root / "net_fixed.pt2"}
    torch.jit.save(torch.jit.script(net), str(out["script"]))
    torch.jit.save(torch.jit.trace(net, x), str(out["trace"]))
    torch.export.save(torch.export.export(
        net, (x,), dynamic_shapes={"x": {0: torch.export.Dim("batch")}}), out["export"])
    torch.export.save(torch.export.export(net, (torch.zeros(2, 3, 32, 32),)), out["fixed"])
    return out


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


def test_gradcam_on_torchscript_and_exported_matches_eager(project: Project,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    net = _net(project)
    paths = _exports(project, net)
    _forget(project.root)
    monkeypatch.chdir(project.root)
    x, _ = _images(project, 7)  # odd: the fixed-batch export pads its last chunk
    target = net(x).argmax(1)
    eager_names = [li.name for li in spatial_layers(net, x[:1])]
    assert len([n for n in eager_names if "conv" in n or n.endswith(".0")]) >= 3
    for kind, path in paths.items():
        loaded = load_model(path.name, card="card.json")
        model = loaded.model
        assert [li.name for li in spatial_layers(model, x[:1])] == eager_names, kind
        auto = find_target_layer(model, x[:1])
        assert auto is not None and auto.name == "down", kind
        for layer in ("down", "block", "block.conv1", "stem.0"):
            chosen = find_target_layer(model, x[:1], layer)  # --layer NAME
            assert chosen is not None and chosen.name == layer
            mine = GradCAM(model, chosen.module, batch_size=3).explain(x, target)
            ref = GradCAM(net, dict(net.named_modules())[layer]).explain(x, target)
            assert _corr(mine, ref) > 0.999, (kind, layer)
        # what an isolated check's child process receives: the pickled model
        buf = io.BytesIO()
        torch.save(model, buf)
        buf.seek(0)
        with torch.no_grad():
            torch.testing.assert_close(torch.load(buf, weights_only=False)(x), net(x))
        with pytest.raises(UsageError, match="spatial layers: .*block") as e:
            find_target_layer(model, x[:1], "head.2")
        assert "none" not in str(e.value)
        if kind in ("export", "fixed"):  # unwatched passes run the faster flat graph
            assert model.flat.module is not None
        # the sanity check's randomised copy is independent, and the original intact
        rand = randomize_parameters(model, 0)
        with torch.no_grad():
            assert not torch.allclose(rand(x), net(x))
            torch.testing.assert_close(model(x), net(x))
    # the same through the CLI
    (project.root / "audit.toml").write_text(FAST_SALIENCY)
    for name in ("net_script.pt", "net_fixed.pt2"):
        assert _run(name, "--card", "card.json", "--data", "test.npz", "--checks", "saliency",
                    "--quick", "--config", "audit.toml", "--layer", "block",
                    "--out", f"{name}.html") in (0, 1)
        result = json.loads((project.root / f"{name}.json").read_text())
        section = result["sections"][0]
        assert section["error"] is None and "gradcam.gain_over_random" in section["metrics"]
        assert "Grad-CAM target layer: block" in section["summary"]
        assert "gradcam.sanity_spearman" in section["metrics"]


def test_in_memory_torchscript_is_made_hookable(project: Project) -> None:
    net = _net(project)
    scripted = torch.jit.script(net)
    _forget(project.root)
    x, _ = _images(project, 2)
    with pytest.raises(UsageError, match="TorchScript module in memory"):
        find_target_layer(scripted, x[:1], "block")
    layer = find_target_layer(hookable(scripted), x[:1])
    assert layer is not None and layer.name == "down"


# ------------------------------------------------------------------- 3. --arch as a file path


def test_arch_as_a_file_path(project: Project, monkeypatch: pytest.MonkeyPatch,
                             tmp_path: Path) -> None:
    monkeypatch.chdir(project.root)
    assert _run("net.pt", "--arch", "./mynets.py:Net", "--data", "test.npz", "--checks",
                "performance", "--quick", "--out", str(tmp_path / "r.html")) in (0, 1)
    assert json.loads((tmp_path / "r.json").read_text())["model"]["arch"] == "./mynets.py:Net"
    sub = project.root / "sub"
    sub.mkdir(exist_ok=True)
    (sub / "othernets.py").write_text((project.root / "mynets.py").read_text())
    for spec in ("mynets.py:Net", "sub/othernets.py:Net", f"{project.root / 'mynets.py'}:Net",
                 "mynets:Net"):
        cls = import_arch(spec)
        assert cls.__name__ == "Net"
        model = load_model("net.pt", arch=spec).model
        assert type(model).__name__ == "Net"
    with pytest.raises(UsageError, match=r"not found; Python files in .*: mynets\.py"):
        import_arch("./mynet.py:Net")
    with pytest.raises(UsageError, match="nn.Module classes in it: Block, Net, TabNet"):
        import_arch("./mynets.py:Nett")
    with pytest.raises(UsageError, match="does not exist"):
        import_arch("nowhere/x.py:Net")


# ---------------------------------------------------------------- 4. .pt2 with a fixed batch


def test_fixed_batch_export_runs_in_chunks(project: Project, monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    net = _net(project)
    torch.export.save(torch.export.export(net, (torch.zeros(2, 3, 32, 32),)),
                      project.root / "fixed2.pt2")
    _forget(project.root)
    monkeypatch.chdir(project.root)
    loaded = load_model("fixed2.pt2", card="card.json")
    assert "fixed batch 2" in loaded.format and "chunks" in loaded.format
    assert any("fixed batch 2" in n for n in loaded.notes)
    x, _ = _images(project, 5)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), net(x))
    assert _run("fixed2.pt2", "--card", "card.json", "--data", "test.npz", "--checks",
                "performance", "--quick", "--out", str(tmp_path / "r.html")) in (0, 1)
    model_block = json.loads((tmp_path / "r.json").read_text())["model"]
    assert "exported with fixed batch 2; run in chunks" in model_block["format"]


# ---------------------------------------------------------------- 5. string labels in a .npz


def test_string_labels_in_npz_map_through_the_card(project: Project, tmp_path: Path) -> None:
    card = ModelCard.load(project.card)
    with np.load(project.test) as npz:
        x, y = npz["x"], npz["y"]
    names = np.array(IMAGE_CLASSES)[y]
    np.savez(tmp_path / "str.npz", x=x, y=names)
    data = load_data_file(tmp_path / "str.npz", card)
    assert data.y.tolist() == y.tolist()
    np.savez(tmp_path / "bytes.npz", x=x, y=names.astype("S"))
    assert load_data_file(tmp_path / "bytes.npz", card).y.tolist() == y.tolist()
    bad = names.copy()
    bad[:3] = "180deg"
    np.savez(tmp_path / "bad.npz", x=x, y=bad)
    with pytest.raises(DataError, match=r"unknown label\(s\) 180deg; the card's classes are "
                                        r"'0deg', '36deg'"):
        load_data_file(tmp_path / "bad.npz", card)
    np.savez(tmp_path / "obj.npz", x=x, y=names.astype(object))
    with pytest.raises(DataError, match="object arrays are refused"):
        load_data_file(tmp_path / "obj.npz", card)


def test_missing_module_message_for_a_pickle_saved_elsewhere(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    root = tmp_path / "saved"
    root.mkdir()
    (root / "sidefx.py").write_text(SIDE_EFFECT)
    sidefx = _user_module(root, "sidefx")
    torch.save(sidefx.Tiny(), root / "tiny.pt")
    _forget(root, "sidefx")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match="module 'sidefx'.*holds sidefx.py"):
        load_model(root / "tiny.pt", trust_checkpoint=True)


def test_in_memory_torchscript_and_export_get_grad_cam() -> None:
    """``run_audit`` on a TorchScript module or an ExportedProgram object (not a file) gives
    them hookable layers, so Grad-CAM runs as on the file."""
    from audit.paths import models_dir
    from audit.runner import run_audit

    eager = load_model("digits-cnn").model
    x = torch.zeros(2, 1, 8, 8)
    card = models_dir() / "digits-cnn" / "card.json"
    for obj in (torch.jit.trace(eager, x), torch.export.export(eager, (x,), dynamic_shapes={
            "x": {0: torch.export.Dim("batch", min=1, max=4096)}})):
        res = run_audit(obj, card=card, checks=["saliency"], quick=True,
                        params={"saliency": {"featvis": False}})
        sal = res.sections[0]
        assert sal.error is None and "gradcam.gain_over_random" in sal.metrics, type(obj)
