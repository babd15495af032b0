"""A corpus of bad inputs. Each gives a one-line error naming the problem and the fix, the
documented exit code, no traceback, and no report file left behind."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from audit.cli import main
from audit.loading import load_model
from audit.paths import models_dir

DIGITS = models_dir() / "digits-cnn"
ARCH = "audit.zoo.digits:DigitsCNN"


@dataclass
class Case:
    """Arguments for ``audit`` (built in a temp folder), expected code, expected message."""

    build: Callable[[Path], list[str]]
    code: int
    message: str


class CreatesFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.path), "w"))


def _state(t: Path) -> dict[str, torch.Tensor]:
    return load_model("digits-cnn").model.state_dict()


def _write(t: Path, name: str, data: bytes) -> Path:
    (t / name).write_bytes(data)
    return t / name


def _npz(t: Path, x: np.ndarray, y: np.ndarray) -> Path:
    np.savez(t / "d.npz", x=x, y=y)
    return t / "d.npz"


def _digits_run(t: Path, *extra: str) -> list[str]:
    return ["run", "digits-cnn", "--checks", "performance", *extra]


def _tab_model(t: Path) -> list[str]:
    from toy_models import TinyTabular

    torch.save(TinyTabular().state_dict(), t / "tab.pt")
    card = {"name": "tab", "arch": "toy_models:TinyTabular", "classes": ["no", "yes"],
            "input": {"kind": "tabular", "shape": [3], "range": [-100, 100],
                      "feature_names": ["a", "b", "c"]}}
    (t / "tab.json").write_text(json.dumps(card))
    return ["run", str(t / "tab.pt"), "--card", str(t / "tab.json"), "--checks", "performance"]


def _csv(t: Path, text: str) -> Path:
    (t / "d.csv").write_text(text)
    return t / "d.csv"


def _junk_with_brace() -> bytes:
    """Random bytes with '{' at offset 8: the 1-in-256 draw that once passed for safetensors."""
    junk = bytearray(np.random.default_rng(0).integers(0, 256, 2048, dtype=np.uint8).tobytes())
    junk[8] = ord("{")
    return bytes(junk)


def _trunc_safetensors(t: Path) -> list[str]:
    raw = (DIGITS / "model.safetensors").read_bytes()
    p = _write(t, "w.safetensors", raw[: len(raw) // 3])
    return ["run", str(p), "--arch", ARCH, "--card", str(DIGITS / "card.json")]


def _full_pickle(t: Path) -> list[str]:
    torch.save(load_model("digits-cnn").model, t / "full.pt")
    return ["run", str(t / "full.pt"), "--card", str(DIGITS / "card.json")]


def _reduce_pickle(t: Path) -> list[str]:
    torch.save({"w": torch.zeros(1), "evil": CreatesFile(t / "PWNED")}, t / "evil.pt")
    return ["run", str(t / "evil.pt"), "--arch", ARCH, "--card", str(DIGITS / "card.json")]


def _plain_reduce_pickle(t: Path) -> list[str]:
    _write(t, "evil.pkl", pickle.dumps(CreatesFile(t / "PWNED")))
    return ["run", str(t / "evil.pkl"), "--arch", ARCH, "--card", str(DIGITS / "card.json")]


def _mismatch(t: Path) -> list[str]:
    state = _state(t)
    state.pop("features.0.weight")
    state["head.bias"] = torch.zeros(3)
    save_file(state, str(t / "w.safetensors"))
    return ["run", str(t / "w.safetensors"), "--arch", ARCH, "--card",
            str(DIGITS / "card.json")]


def _state_pt(t: Path, arch: str) -> list[str]:
    torch.save(_state(t), t / "w.pt")
    return ["run", str(t / "w.pt"), "--arch", arch, "--card", str(DIGITS / "card.json")]


def _broken_model(t: Path, arch: str) -> list[str]:
    from toy_models import Raises

    torch.save(Raises().state_dict(), t / "w.pt")
    return ["run", str(t / "w.pt"), "--arch", arch, "--card", str(DIGITS / "card.json")]


def _bad_card(t: Path, text: str) -> list[str]:
    (t / "m").mkdir()
    (t / "m" / "model.safetensors").write_bytes((DIGITS / "model.safetensors").read_bytes())
    (t / "m" / "card.json").write_text(text)
    return ["run", str(t / "m")]


def _config(t: Path, text: str) -> list[str]:
    (t / "audit.toml").write_text(text)
    return ["run", "digits-cnn", "--config", str(t / "audit.toml")]


X_OK = np.zeros((6, 1, 8, 8), np.float32)
Y_OK = np.arange(6)

CASES: dict[str, Case] = {
    "missing path": Case(lambda t: ["run", str(t / "nope.pt")], 2,
                         "no such file or bundled model"),
    "a directory": Case(lambda t: ["run", str(t)], 2, "directory without model weights"),
    "empty file": Case(lambda t: ["run", str(_write(t, "e.pt", b""))], 2, "is empty"),
    "truncated safetensors": Case(_trunc_safetensors, 2, "not a valid safetensors file"),
    "random bytes": Case(lambda t: ["run", str(_write(t, "r.pt", _junk_with_brace())), "--arch",
                                    ARCH], 2, "not a recognised checkpoint"),
    "pickle-looking junk": Case(lambda t: ["run", str(_write(t, "j.pt", b"\x80\x04junkjunk")),
                                           "--arch", ARCH], 2, "corrupt"),
    "needs full pickle": Case(_full_pickle, 3, "pass --trust-checkpoint only if you trust"),
    "__reduce__ payload in torch.save": Case(_reduce_pickle, 3, "it imports io.open"),
    "__reduce__ payload in plain pickle": Case(_plain_reduce_pickle, 3, "it imports io.open"),
    "state dict vs architecture": Case(
        _mismatch, 2, "missing keys: features.0.weight; unexpected keys: head.bias"),
    "state dict without --arch": Case(
        lambda t: (torch.save(_state(t), t / "w.pt"), ["run", str(t / "w.pt")])[1], 4,
        "pass --arch module:Class"),
    "--arch missing module": Case(lambda t: _state_pt(t, "nosuchmodule_q:Net"), 4,
                                  "architecture module 'nosuchmodule_q' not found"),
    "--arch missing class": Case(lambda t: _state_pt(t, "audit.zoo.digits:Nope"), 4,
                                 "has no class 'Nope'"),
    "--arch not module:Class": Case(lambda t: _state_pt(t, "DigitsCNN"), 4, "module:Class"),
    "input shape vs card": Case(
        lambda t: _digits_run(t, "--data", str(_npz(t, np.zeros((6, 64), np.float32), Y_OK))),
        2, "expects (1, 8, 8); reshape the data"),
    "value range vs card": Case(
        lambda t: _digits_run(t, "--data", str(_npz(t, X_OK + 255, Y_OK))), 2,
        "scale the data (e.g. divide pixels by 255)"),
    "NaN in data": Case(lambda t: _digits_run(t, "--data", str(_npz(t, X_OK * np.nan, Y_OK))),
                        2, "contain NaN or inf"),
    "inf in data": Case(lambda t: _digits_run(t, "--data", str(_npz(t, X_OK + np.inf, Y_OK))),
                        2, "contain NaN or inf"),
    "labels out of range": Case(
        lambda t: _digits_run(t, "--data", str(_npz(t, X_OK, Y_OK + 7))), 2,
        "labels span 7..12 but the model has 10 classes"),
    "npz without y": Case(lambda t: (np.savez(t / "d.npz", x=X_OK),
                                     _digits_run(t, "--data", str(t / "d.npz")))[1], 2,
                          "lacks array(s) y"),
    "data file missing": Case(lambda t: _digits_run(t, "--data", str(t / "nope.npz")), 2,
                              "data file not found"),
    "unknown dataset": Case(lambda t: _digits_run(t, "--data", "mnist"), 2,
                            "--data mnist is neither a bundled dataset (adult, digits"),
    "--layer naming no layer": Case(
        lambda t: ["run", "digits-cnn", "--checks", "saliency", "--quick", "--layer", "nope"],
        4, "not a module"),
    "unsupported data format": Case(
        lambda t: _digits_run(t, "--data", str(_write(t, "d.parquet", b"PAR1"))), 2,
        "unsupported data file d.parquet"),
    "CSV missing column": Case(
        lambda t: [*_tab_model(t), "--data", str(_csv(t, "a,b,label\n1,2,yes\n")),
                   "--target", "label"], 2, "missing feature column(s) c"),
    "CSV non-numeric column": Case(
        lambda t: [*_tab_model(t), "--data", str(_csv(t, "a,b,c,label\n1,x,3,yes\n")),
                   "--target", "label"], 2, "non-numeric column(s) b"),
    "CSV missing target": Case(
        lambda t: [*_tab_model(t), "--data", str(_csv(t, "a,b,c\n1,2,3\n")), "--target",
                   "label"], 2, "target column 'label' not found"),
    "CSV without --target": Case(
        lambda t: [*_tab_model(t), "--data", str(_csv(t, "a,b,c\n1,2,3\n"))], 2,
        "pass --target COLUMN"),
    "CSV unknown label": Case(
        lambda t: [*_tab_model(t), "--data", str(_csv(t, "a,b,c,label\n1,2,3,maybe\n")),
                   "--target", "label"], 2, "unknown label(s) maybe"),
    "forward raises": Case(lambda t: _broken_model(t, "toy_models:Raises"), 2,
                           "forward raised RuntimeError"),
    "forward returns NaN": Case(lambda t: _broken_model(t, "toy_models:ReturnsNaN"), 2,
                                "returned NaN or inf logits"),
    "unwritable output": Case(
        lambda t: (_write(t, "f", b"x"), _digits_run(t, "--out", str(t / "f" / "r.html")))[1],
        2, "cannot write"),
    "output is a directory": Case(lambda t: _digits_run(t, "--out", str(t) + ".html/")
                                  if (t.parent / (t.name + ".html")).mkdir() is None else [],
                                  2, "is a directory"),
    "output not .html": Case(lambda t: _digits_run(t, "--out", str(t / "r.pdf")), 4,
                             "must end in .html"),
    "invalid TOML": Case(lambda t: _config(t, "[audit\n"), 4, "invalid TOML"),
    "unknown audit.toml key": Case(lambda t: _config(t, "[audit]\nseeds = 2\n"), 4,
                                   "unknown key 'seeds' in [audit]"),
    "unknown check param": Case(lambda t: _config(t, "[checks.performance]\nece = 2\n"), 4,
                                "unknown key 'ece' in [checks.performance]"),
    "wrong param type": Case(lambda t: _config(t, "[checks.performance]\nece_medium = 'x'\n"), 4,
                             "ece_medium must be a number"),
    "config file missing": Case(lambda t: ["run", "digits-cnn", "--config", str(t / "a.toml")],
                                4, "config file not found"),
    "unknown check name": Case(lambda t: ["run", "digits-cnn", "--checks", "salience"], 4,
                               "unknown check 'salience'; available checks: performance"),
    "unknown severity": Case(lambda t: _digits_run(t, "--fail-on", "urgent"), 4,
                             "unknown severity 'urgent'"),
    "card is not JSON": Case(lambda t: _bad_card(t, "{nope"), 2, "invalid JSON at line 1"),
    "card unknown key": Case(lambda t: _bad_card(t, json.dumps(
        {"name": "x", "arch": ARCH, "input": {"shape": [1, 8, 8]}, "classes": ["a", "b"],
         "clases": []})), 2, "unknown key(s) clases"),
    "card bad shape": Case(lambda t: _bad_card(t, json.dumps(
        {"name": "x", "arch": ARCH, "input": {"shape": [0]}, "classes": ["a", "b"]})), 2,
        "'input.shape' must be a list of positive integers"),
    "report of a non-result": Case(
        lambda t: ["report", str(_write(t, "r.json", b'{"a": 1}')), "--out", str(t / "o.html")],
        2, "is not an audit result"),
    "report of broken JSON": Case(
        lambda t: ["report", str(_write(t, "r.json", b"{")), "--out", str(t / "o.html")], 2,
        "is not valid JSON"),
    "unknown option": Case(lambda t: ["run", "digits-cnn", "--chekcs", "x"], 4,
                           "No such option: --chekcs"),
    "unknown command": Case(lambda t: ["audti"], 4, "No such command"),
    "unknown recipe": Case(lambda t: ["train", "resnet"], 4, "no recipe named 'resnet'"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                   monkeypatch: pytest.MonkeyPatch) -> None:
    case = CASES[name]
    work = tmp_path / "w"
    work.mkdir()
    monkeypatch.chdir(work)
    args = case.build(work)
    out = work / "out" / "report.html"
    if "--out" not in args and args and args[0] == "run":
        args = [*args, "--out", str(out)]
    code = main(args)
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert code == case.code, captured.err
    assert len(lines) == 1, captured.err
    assert case.message in lines[0], lines[0]
    assert "Traceback" not in captured.err + captured.out
    left = [p for p in work.rglob("*") if p.suffix in (".html", ".json", ".tmp")
            and p.name not in ("tab.json", "r.json", "card.json")]
    assert left == []
    assert not (work / "PWNED").exists()


def test_corpus_size() -> None:
    assert len(CASES) >= 40
