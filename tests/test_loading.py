"""Safe loading: every supported format gives the same predictions; anything that needs full
pickle is refused before it runs."""

from __future__ import annotations

import io
import os
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from audit.datasets import load_dataset
from audit.errors import CheckpointError, UnsafeCheckpointError, UsageError
from audit.io import sha256_file
from audit.loading import LoadedModel, load_model, pickle_globals, sniff
from audit.paths import models_dir
from audit.zoo.digits import DigitsCNN

ARCH = "audit.zoo.digits:DigitsCNN"


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return load_dataset("digits", "test").x[:32]


@pytest.fixture(scope="module")
def reference(x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return load_model("digits-cnn").model(x)


def _state() -> dict[str, torch.Tensor]:
    return load_model("digits-cnn").model.state_dict()


def _same(loaded: LoadedModel, x: torch.Tensor, reference: torch.Tensor) -> None:
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), reference)


class Payload:
    """Pickling this runs ``open(path, 'w')`` on load: the file must never appear."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.path), "w"))


def test_bundled_by_name_and_by_folder(x: torch.Tensor, reference: torch.Tensor) -> None:
    by_name = load_model("digits-cnn")
    by_path = load_model(models_dir() / "digits-cnn")
    assert by_name.format == "safetensors" and by_name.card is not None
    assert by_name.card.name == "digits-cnn" and by_name.arch == ARCH
    assert by_name.sha256 == sha256_file(models_dir() / "digits-cnn" / "model.safetensors")
    _same(by_path, x, reference)
    assert not by_name.model.training


def test_state_dict_pt_with_arch(tmp_path: Path, x: torch.Tensor,
                                 reference: torch.Tensor) -> None:
    torch.save(_state(), tmp_path / "w.pt")
    loaded = load_model(tmp_path / "w.pt", arch=ARCH)
    assert loaded.format == "state-dict" and loaded.card is None
    _same(loaded, x, reference)
    # a training checkpoint that nests the state dict is accepted too
    torch.save({"epoch": 3, "model_state_dict": _state()}, tmp_path / "ckpt.pt")
    _same(load_model(tmp_path / "ckpt.pt", arch=ARCH), x, reference)


def test_wrapper_prefixes_are_stripped(tmp_path: Path, x: torch.Tensor,
                                       reference: torch.Tensor) -> None:
    """Saved from DataParallel/DDP (``module.``), torch.compile (``_orig_mod.``) or both, as a
    user does with ``torch.save(wrapped.state_dict(), ...)``."""
    from audit.zoo.digits import DigitsCNN

    net = DigitsCNN()
    net.load_state_dict(_state())
    for name, wrapped in (("dp", nn.DataParallel(net)), ("compiled", torch.compile(net)),
                          ("both", torch.compile(nn.DataParallel(net)))):
        torch.save(wrapped.state_dict(), tmp_path / f"{name}.pt")
        _same(load_model(tmp_path / f"{name}.pt", arch=ARCH), x, reference)
    # prefixed keys that do not fit even without the prefix: the error says what it saw
    bad = {f"module.{k}": v for k, v in list(_state().items())[1:]}
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="every key starts with 'module.'"):
        load_model(tmp_path / "bad.pt", arch=ARCH)


def test_state_dict_needs_arch(tmp_path: Path) -> None:
    torch.save(_state(), tmp_path / "w.pt")
    with pytest.raises(UsageError, match="--arch module:Class"):
        load_model(tmp_path / "w.pt")


def test_key_mismatch_lists_names(tmp_path: Path) -> None:
    state = _state()
    state["extra.weight"] = torch.zeros(1)
    del state["classifier.4.bias"]
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(CheckpointError) as e:
        load_model(tmp_path / "w.pt", arch=ARCH)
    msg = str(e.value)
    assert "missing keys: classifier.4.bias" in msg and "unexpected keys: extra.weight" in msg
    state = _state()
    state["classifier.4.weight"] = torch.zeros(3, 128)
    save_file(state, str(tmp_path / "w.safetensors"))
    with pytest.raises(CheckpointError, match=r"classifier.4.weight \(3, 128\) vs \(10, 128\)"):
        load_model(tmp_path / "w.safetensors", arch=ARCH)


def test_torch_export_pt2(tmp_path: Path, x: torch.Tensor, reference: torch.Tensor) -> None:
    model = load_model("digits-cnn").model
    program = torch.export.export(model, (x[:4],),
                                  dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    torch.export.save(program, tmp_path / "m.pt2")
    loaded = load_model(tmp_path / "m.pt2")
    assert loaded.format == "torch.export"
    _same(loaded, x, reference)


def test_torchscript(tmp_path: Path, x: torch.Tensor, reference: torch.Tensor) -> None:
    scripted = torch.jit.script(load_model("digits-cnn").model)
    torch.jit.save(scripted, str(tmp_path / "m.ts"))
    assert sniff(tmp_path / "m.ts") == "torchscript"
    loaded = load_model(tmp_path / "m.ts")
    assert loaded.format == "torchscript"
    _same(loaded, x, reference)


def test_pickled_module_refused_then_trusted(tmp_path: Path, x: torch.Tensor,
                                             reference: torch.Tensor) -> None:
    model = DigitsCNN()
    model.load_state_dict(_state())
    torch.save(model, tmp_path / "full.pt")
    with pytest.raises(UnsafeCheckpointError) as e:
        load_model(tmp_path / "full.pt")
    assert "--trust-checkpoint" in str(e.value)
    assert "audit.zoo.digits.DigitsCNN" in str(e.value)
    loaded = load_model(tmp_path / "full.pt", trust_checkpoint=True)
    assert loaded.format == "pickled-module"
    _same(loaded, x, reference)


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_malicious_pickle_never_runs(tmp_path: Path, how: str) -> None:
    marker = tmp_path / "pwned"
    target = tmp_path / "evil.pt"
    if how == "torch.save":
        torch.save({"weight": torch.zeros(2), "x": Payload(marker)}, target)
    else:
        import pickle

        target.write_bytes(pickle.dumps(Payload(marker), protocol=4))
    with pytest.raises(UnsafeCheckpointError, match=r"io\.open"):
        load_model(target, arch=ARCH)
    assert not marker.exists()


def test_export_archive_with_pickle_payload_is_refused(tmp_path: Path, x: torch.Tensor) -> None:
    """torch.export.load would fall back to full pickle on its own; we must refuse first."""
    model = load_model("digits-cnn").model
    torch.export.save(torch.export.export(model, (x[:2],)), tmp_path / "m.pt2")
    marker = tmp_path / "pwned"
    evil = io.BytesIO()
    torch.save({"c": Payload(marker)}, evil)
    src, dst = tmp_path / "m.pt2", tmp_path / "evil.pt2"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("sample_inputs/model.pt"):
                data = evil.getvalue()
            zout.writestr(item, data)
    with pytest.raises(UnsafeCheckpointError):
        load_model(dst)
    assert not marker.exists()


def test_corrupt_files(tmp_path: Path) -> None:
    src = models_dir() / "digits-cnn" / "model.safetensors"
    raw = src.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_model(tmp_path / "trunc.safetensors", arch=ARCH)
    (tmp_path / "rand.pt").write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match="not a recognised checkpoint"):
        load_model(tmp_path / "rand.pt", arch=ARCH)
    (tmp_path / "junk.pt").write_bytes(b"\x80\x02" + os.urandom(4096))
    with pytest.raises(CheckpointError) as e:
        load_model(tmp_path / "junk.pt", arch=ARCH)
    assert not isinstance(e.value, UnsafeCheckpointError)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="is empty"):
        load_model(tmp_path / "empty.pt")
    torch.save(_state(), tmp_path / "full.pt")
    zraw = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "trunc.pt").write_bytes(zraw[: len(zraw) // 2])
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "trunc.pt", arch=ARCH)


def test_missing_paths_and_bad_arch(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such file or bundled model"):
        load_model(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="without model weights"):
        load_model(tmp_path)
    torch.save(_state(), tmp_path / "w.pt")
    with pytest.raises(UsageError, match="not found"):
        load_model(tmp_path / "w.pt", arch="no_such_module_xyz:Net")
    with pytest.raises(UsageError, match="has no class 'Nope'"):
        load_model(tmp_path / "w.pt", arch="audit.zoo.digits:Nope")
    with pytest.raises(UsageError, match="module:Class"):
        load_model(tmp_path / "w.pt", arch="audit.zoo.digits.DigitsCNN")


def test_folder_with_card(tmp_path: Path, x: torch.Tensor, reference: torch.Tensor) -> None:
    shutil.copytree(models_dir() / "digits-cnn", tmp_path / "copy")
    loaded = load_model(tmp_path / "copy")
    assert loaded.card is not None and loaded.card.classes[3] == "3"
    _same(loaded, x, reference)


def test_pickle_globals_static_scan() -> None:
    import pickle

    names = pickle_globals(pickle.dumps(Payload(Path("/tmp/x")), protocol=2))
    assert names == ["io.open"]
    names4 = pickle_globals(pickle.dumps(Payload(Path("/tmp/x")), protocol=4))
    assert names4 == ["io.open"]
    with pytest.raises(CheckpointError):
        pickle_globals(b"\x80\x04not a pickle at all")


def test_safe_global_allowlist() -> None:
    from audit.loading import is_safe_global

    assert is_safe_global("torch._utils._rebuild_tensor_v2")
    assert is_safe_global("torch.float32") and is_safe_global("torch.FloatStorage")
    assert is_safe_global("collections.OrderedDict")
    for bad in ("torch.load", "torch.hub.load", "os.system", "builtins.eval", "io.open",
                "torch.serialization.load", "torch.jit.load"):
        assert not is_safe_global(bad), bad


def test_card_normalisation_must_match_the_channels() -> None:
    """A card ``std`` with 2 values for 3 channels is the card's fault, said so on loading
    (it used to surface as an error in the model's forward)."""
    import json

    from audit.card import ModelCard

    base = json.loads((models_dir() / "shapes-cnn" / "card.json").read_text())
    for std in ([0.2, 0.2, 0.2], [0.2]):  # one per channel, or one for all
        ModelCard.from_dict({**base, "input": {**base["input"], "std": std}})
    with pytest.raises(CheckpointError, match="'input.std' has 2 values for 3 channel"):
        ModelCard.from_dict({**base, "input": {**base["input"], "std": [0.2, 0.2]}})
    with pytest.raises(CheckpointError, match="'input.mean' has 4 values"):
        ModelCard.from_dict({**base, "input": {**base["input"], "mean": [0.5] * 4}})
