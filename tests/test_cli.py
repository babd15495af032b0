"""The command line: verbs, outputs, and documented exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from reproduction import (
    ACCURACY_TOLERANCE,
    assert_same_weights,
    bundled_card,
    skip_unless_same_build,
    without_build,
)

from audit.cli import main
from audit.paths import models_dir
from audit.report.render import validate_result
from audit.result import AuditResult
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


@pytest.fixture(scope="module")
def retrained_digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``audit train digits-cnn`` run once here (40 epochs): the folder it wrote."""
    out = tmp_path_factory.mktemp("train") / "d"
    assert main(["train", "digits-cnn", "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_train_reproduces_bundled_digits(retrained_digits: Path) -> None:
    """Any machine: the same recipe, and the test accuracy within ACCURACY_TOLERANCE."""
    card = json.loads((retrained_digits / "card.json").read_text())
    bundled = bundled_card("digits-cnn")
    assert without_build(card["recipe"]) == without_build(bundled["recipe"])
    assert card["metrics"]["test_accuracy"] >= 0.98
    assert card["metrics"]["test_accuracy"] == pytest.approx(
        bundled["metrics"]["test_accuracy"], abs=ACCURACY_TOLERANCE)


@pytest.mark.slow
def test_train_reproduces_bundled_digits_weights(retrained_digits: Path) -> None:
    """Bit for bit, on the CPU type and torch build the card records (skipped elsewhere)."""
    skip_unless_same_build(bundled_card("digits-cnn")["recipe"])
    assert_same_weights(retrained_digits / "model.safetensors",
                        models_dir() / "digits-cnn" / "model.safetensors")


# --- output formats: one registry feeds write_outputs and every command's options ------------

_EXTRA_FORMAT = """
import sys
import audit.report.formats as f
f.FORMATS += (f.OutputFormat("compact", ".json", "json:dumps", "compact JSON",
                             option="--compact"),)
from audit.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_registered_format_is_an_option_of_every_command(
        tmp_path: Path, digits_performance: AuditResult) -> None:
    """One line in FORMATS (here a renderer from the standard library) gives ``--compact`` to
    run, report and fairness, with help, writing and the usage hint, and no CLI change."""
    src = tmp_path / "r.json"
    src.write_text(json.dumps(digits_performance.to_dict()))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", _EXTRA_FORMAT, *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)

    res = cli("report", str(src), "--compact", "c.json", "--md", "c.md")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "c.json").read_text() == json.dumps(json.loads(src.read_text()))
    assert res.stdout.split() == ["markdown:", "c.md", "compact:", "c.json"]
    res = cli("report", str(src))
    assert res.returncode == 4
    assert "--md X.md, --junit X.xml and/or --compact X.json" in " ".join(res.stderr.split())
    helps = {cmd: " ".join(cli(cmd, "--help").stdout.split()) for cmd in
             ("run", "report", "fairness")}
    assert "--compact <path> Also write compact JSON here." in helps["run"]
    assert "--compact <path> Compact JSON to write." in helps["report"]
    assert "--compact <path> Also write compact JSON." in helps["fairness"]


def test_write_outputs_iterates_the_registry(tmp_path: Path,
                                            digits_performance: AuditResult) -> None:
    from audit.report.formats import FORMATS, get_format, option_formats, write_outputs
    from audit.report.junit import render_junit

    assert [f.name for f in FORMATS] == ["html", "json", "markdown", "junit"]
    assert [f.option for f in option_formats()] == ["--md", "--junit"]
    written = write_outputs(digits_performance, junit=tmp_path / "j.xml", md=None,
                            fail_on="info")
    assert written == [tmp_path / "j.xml"]
    assert written[0].read_text() == render_junit(digits_performance, "info") \
        == get_format("junit").render(digits_performance, "info")
    with pytest.raises(TypeError, match="unknown format"):
        write_outputs(digits_performance, sarif=tmp_path / "x.sarif")
    with pytest.raises(KeyError, match="no output format 'sarif'"):
        get_format("sarif")


def test_every_verb_comes_from_a_module_of_the_command_registry() -> None:
    import importlib

    from audit.cli import app
    from audit.cli._main import COMMAND_MODULES

    verbs = [c.name for c in app.registered_commands]
    assert verbs == ["run", "models", "report", "train", "harden", "fairness", "mitigate",
                     "drift", "diff", "examples", "config", "history", "card"]
    owners = {c.callback.__module__ for c in app.registered_commands if c.callback}
    assert owners == set(COMMAND_MODULES)
    assert all(callable(importlib.import_module(m).register) for m in COMMAND_MODULES)
