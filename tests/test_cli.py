"""The command line: verbs, outputs, and documented exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from audit.cli import main
from audit.paths import models_dir
from audit.report.render import validate_result
from audit.zoo.digits import DigitsCNN

CARD = str(models_dir() / "digits-cnn" / "card.json")
Run = Callable[..., subprocess.CompletedProcess[str]]


def test_run_writes_html_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sub" / "r.html"
    code = main(["run", "digits-cnn", "--checks", "performance", "--out", str(out),
                 "--no-progress"])
    assert code == 0
    doc = json.loads(out.with_suffix(".json").read_text())
    validate_result(doc)
    assert doc["model"]["name"] == "digits-cnn"
    assert doc["config"]["checks"] == ["performance"]
    assert doc["run"]["command"].startswith("audit run digits-cnn")
    html = out.read_text()
    assert "digits-cnn" in html and "Performance and calibration" in html
    assert "PASS" in capsys.readouterr().out


def test_report_rerenders_identically(tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    assert main(["run", "digits-cnn", "--checks", "performance", "--out", str(out)]) == 0
    again = tmp_path / "again.html"
    assert main(["report", str(out.with_suffix(".json")), "--out", str(again)]) == 0
    assert again.read_bytes() == out.read_bytes()


def test_findings_give_exit_1(tmp_path: Path) -> None:
    torch.manual_seed(0)
    torch.save(DigitsCNN().state_dict(), tmp_path / "untrained.pt")  # ~10% accuracy
    out = tmp_path / "r.html"
    args = ["run", str(tmp_path / "untrained.pt"), "--arch", "audit.zoo.digits:DigitsCNN",
            "--card", CARD, "--checks", "performance", "--out", str(out)]
    assert main(args) == 1
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["summary"]["status"] == "fail" and doc["summary"]["counts"]["high"] > 0
    assert main([*args, "--fail-on", "critical"]) == 0


@pytest.mark.parametrize(("args", "code", "message"), [
    (["run", "digits-cnn", "--checks", "nope"], 4, "unknown check 'nope'"),
    (["run", "digits-cnn", "--fail-on", "severe"], 4, "unknown severity"),
    (["run", "digits-cnn", "--bogus"], 4, "No such option"),
    (["run"], 4, "Missing argument"),
    (["run", "digits-cnn", "--out", "r.txt"], 4, "must end in .html"),
    (["run", "no-such-model"], 2, "no such file or bundled model"),
    (["run", "digits-cnn", "--data", "mnist"], 2, "neither a bundled dataset"),
    (["train", "nope"], 4, "no recipe named 'nope'"),
    (["report", "missing.json", "--out", "x.html"], 2, "result file not found"),
])
def test_error_exit_codes(args: list[str], code: int, message: str, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(args) == code
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert not list(tmp_path.glob("**/*.html"))


def test_unsafe_checkpoint_exit_3_and_trust(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from audit.loading import load_model

    torch.save(load_model("digits-cnn").model, tmp_path / "full.pt")
    out = tmp_path / "r.html"
    args = ["run", str(tmp_path / "full.pt"), "--card", CARD, "--checks", "performance",
            "--out", str(out)]
    assert main(args) == 3
    err = capsys.readouterr().err
    assert "--trust-checkpoint" in err and "Traceback" not in err
    assert not out.exists()
    assert main([*args, "--trust-checkpoint"]) == 0
    assert json.loads(out.with_suffix(".json").read_text())["model"]["format"] == \
        "pickled-module"


@pytest.mark.parametrize(("arch", "message"), [
    ("toy_models:Raises", "forward raised RuntimeError: boom in forward"),
    ("toy_models:ReturnsNaN", "NaN or inf logits for 360 of 360"),
])
def test_broken_models_exit_2(arch: str, message: str, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    from toy_models import Raises

    torch.save(Raises().state_dict(), tmp_path / "w.pt")
    out = tmp_path / "r.html"
    assert main(["run", str(tmp_path / "w.pt"), "--arch", arch, "--card", CARD,
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_debug_shows_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tmp_path / "none.pt"), "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_models_lists_bundled(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "digits-cnn" in out and "test_accuracy" in out


def test_python_m_audit_and_help(run_cli: Run) -> None:
    res = run_cli("--help")
    assert res.returncode == 0
    text = " ".join(res.stdout.split())
    for phrase in ("0 no finding at or above --fail-on", "3 unsafe checkpoint refused",
                   "4 usage error"):
        assert phrase in text
    res = run_cli("run", "--help")
    assert res.returncode == 0 and "--trust-checkpoint" in res.stdout


def test_console_script_installed() -> None:
    script = Path(sys.executable).parent / "audit"
    assert script.exists()
    res = subprocess.run([str(script), "models"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "digits-cnn" in res.stdout


def test_unwritable_output_is_refused_before_work(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["run", "digits-cnn", "--out", str(blocker / "r.html")]) == 2
    assert "cannot write" in capsys.readouterr().err


@pytest.mark.slow
def test_train_reproduces_bundled_digits(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    assert main(["train", "digits-cnn", "--out", str(tmp_path / "d")]) == 0
    card = json.loads((tmp_path / "d" / "card.json").read_text())
    assert card["metrics"]["test_accuracy"] >= 0.98
    bundled = json.loads((models_dir() / "digits-cnn" / "card.json").read_text())
    assert card["recipe"] == bundled["recipe"]
    ours = load_file(str(tmp_path / "d" / "model.safetensors"))
    ref = load_file(str(models_dir() / "digits-cnn" / "model.safetensors"))
    assert ours.keys() == ref.keys()
    for k in ref:
        torch.testing.assert_close(ours[k], ref[k], atol=1e-4, rtol=1e-3)
