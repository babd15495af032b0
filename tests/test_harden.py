"""``audit harden``: the bundle and card it writes, the before/after audits, bad input, exact
resume after killing a real process, the bundled digits-cnn-robust and its recipe."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import Cli
from reproduction import (
    ACCURACY_TOLERANCE,
    ROBUST_ACCURACY_TOLERANCE,
    bundled_card,
    skip_unless_same_build,
    without_build,
)

from audit.card import ModelCard
from audit.io import sha256_file
from audit.loading import load_model

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
TINY = ["--epochs", "2", "--steps", "2", "--batch-size", "32", "--threads", "1",
        "--val-fraction", "0.2"]


@pytest.fixture(scope="module")
def small_digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """160 digits training images as a user .npz file (fast training in tests)."""
    from audit.datasets import load_dataset

    d = load_dataset("digits", "train")
    path = tmp_path_factory.mktemp("data") / "digits-small.npz"
    np.savez(path, x=d.x[:160].numpy(), y=d.y[:160].numpy())
    return path



def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(TESTS), "AUDIT_MODELS_DIR": str(ROOT / "models"),
            "OMP_NUM_THREADS": "1"}


def test_harden_writes_bundle_card_and_before_after_report(cli: Cli, tmp_path: Path,
                                                           small_digits: Path) -> None:
    out = tmp_path / "models" / "digits-hard"
    report = tmp_path / "reports" / "cmp.html"
    code, stdout, stderr = cli("harden", "digits-cnn", "--eps", "0.1", "--method", "trades",
                               "--out", str(out), "--data", str(small_digits), *TINY,
                               "--checks", "performance", "--report", str(report))
    assert code == 0, stderr
    assert "hardened digits-cnn" in stdout and "comparison:" in stdout
    assert "epoch 2/2 trades" in stderr  # one line per epoch with the validation numbers
    card = ModelCard.load(out / "card.json")
    parent = ROOT / "models" / "digits-cnn" / "model.safetensors"
    assert card.name == "digits-hard" and card.arch == "audit.zoo.digits:DigitsCNN"
    assert card.parent == {"name": "digits-cnn", "sha256": sha256_file(parent),
                           "path": "digits-cnn"}
    rec = card.recipe
    assert rec["command"].startswith("audit harden digits-cnn --eps 0.1 --method trades")
    assert (rec["method"], rec["eps"], rec["epochs"], rec["seed"]) == ("trades", 0.1, 2, 0)
    assert rec["settings"]["beta"] == 6.0 and rec["settings"]["batch_size"] == 32
    assert rec["threads"] == 1 and rec["world_size"] == 1
    for key in ("test_accuracy", "test_pgd20_accuracy_linf_0.1", "val_accuracy",
                "val_pgd10_accuracy_linf_0.1", "best_epoch", "train_seconds"):
        assert key in card.metrics, key
    assert 0.1 in card.robustness["linf_eps"]
    history = card.extra["hardening"]["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert not (out / "training").exists(), "the checkpoint is removed after success"
    # the hardened model loads, differs from its parent, and is the best-robust epoch
    hard, base = load_model(out), load_model("digits-cnn")
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        assert not torch.allclose(hard.model(x), base.model(x))
    best = max(reversed(history), key=lambda h: (h["val_robust_accuracy"],
                                                 h["val_clean_accuracy"]))
    assert card.metrics["best_epoch"] == best["epoch"]
    # before/after audits and their comparison
    before = json.loads((report.parent / "cmp-before.json").read_text())
    after = json.loads((report.parent / "cmp-after.json").read_text())
    assert before["model"]["name"] == "digits-cnn" and after["model"]["name"] == "digits-hard"
    assert after["model"]["sha256"] == sha256_file(out / "model.safetensors")
    html = report.read_text()
    assert "digits-hard" in html and "digits-cnn" in html and "before" in html
    assert report.with_suffix(".md").is_file()


@pytest.mark.parametrize(("args", "message"), [
    (["--method", "free"], "method must be one of 'pgd', 'trades', 'fast'"),
    (["--eps", "0"], "eps must be > 0"),
    (["--epochs", "0"], "epochs must be >= 1"),
    (["--augment", "flip"], "--augment must be none or shift"),
    (["--co-action", "panic"], "co_action must be one of 'fallback', 'stop', 'warn'"),
    (["--threads", "0"], "--threads must be >= 1"),
    (["--val-fraction", "1.5"], "--val-fraction must be in [0, 1)"),
])
def test_bad_flags_are_one_line_usage_errors(cli: Cli, tmp_path: Path, args: list[str],
                                             message: str, small_digits: Path) -> None:
    base = {"--eps": "0.1", "--epochs": "1"}
    extra = list(args)
    for flag, value in base.items():
        if flag not in extra:
            extra += [flag, value]
    code, _, err = cli("harden", "digits-cnn", "--out", str(tmp_path / "m"), "--data",
                       str(small_digits), "--no-audit", *extra)
    assert code == 4, err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m" / "model.safetensors").exists()


def test_missing_model_and_data_are_one_line_errors(cli: Cli, tmp_path: Path) -> None:
    code, _, err = cli("harden", "no-such-model", "--eps", "0.1", "--out", str(tmp_path / "m"))
    assert code == 2 and "no such file or bundled model" in err
    code, _, err = cli("harden", "digits-cnn", "--eps", "0.1", "--out", str(tmp_path / "m"),
                       "--data", str(tmp_path / "nope.npz"))
    assert code == 2 and "nope.npz" in err and "Traceback" not in err
    code, _, err = cli("harden", "digits-cnn", "--out", str(tmp_path / "m"))
    assert code == 4 and "--eps" in err


def test_existing_checkpoint_needs_resume_and_same_settings(cli: Cli, tmp_path: Path,
                                                            small_digits: Path) -> None:
    out = tmp_path / "m"
    common = ["harden", "digits-cnn", "--out", str(out), "--data", str(small_digits),
              "--no-audit", "--eps", "0.1", *TINY]
    code, _, err = cli(*common, "--keep-checkpoint")
    assert code == 0, err
    assert (out / "training" / "checkpoint.pt").is_file()
    code, _, err = cli(*common)
    assert code == 4 and "pass --resume" in err
    code, _, err = cli(*[a if a != "0.1" else "0.2" for a in common], "--resume")
    assert code == 2 and "other settings" in err and "eps 0.1" in err
    # resuming a finished run only rewrites the bundle: same weights
    before = (out / "model.safetensors").read_bytes()
    code, stdout, err = cli(*common, "--resume")
    assert code == 0 and "resumed from epoch 2" in stdout, err
    assert (out / "model.safetensors").read_bytes() == before


def _checkpoint_epoch(path: Path) -> int:
    try:
        return int(torch.load(path, weights_only=True)["epoch"])
    except Exception:  # not written yet (the rename is atomic, so never half-written)
        return 0


@pytest.mark.slow
@pytest.mark.parametrize("method", ["pgd", "fast"])
def test_killed_run_resumes_to_identical_weights(tmp_path: Path, small_digits: Path,
                                                 method: str) -> None:
    """SIGKILL a real ``audit harden`` process in the middle of epoch 2, then ``--resume``:
    the final bundle is byte-identical to an uninterrupted run's (same seed, CPU,
    deterministic kernels, one thread)."""
    args = [sys.executable, "-m", "audit", "harden", "digits-cnn", "--eps", "0.1",
            "--method", method, "--data", str(small_digits), "--epochs", "4", "--steps", "3",
            "--batch-size", "32", "--threads", "1", "--warmup-epochs", "1", "--no-audit",
            "--no-progress"]
    ref = tmp_path / "ref"
    done = subprocess.run([*args, "--out", str(ref)], capture_output=True, text=True,
                          env=_env(), timeout=600)
    assert done.returncode == 0, done.stderr

    out = tmp_path / "killed"
    ckpt = out / "training" / "checkpoint.pt"
    proc = subprocess.Popen([*args, "--out", str(out)], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while _checkpoint_epoch(ckpt) < 1 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # into epoch 2
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "model.safetensors").exists()
    killed_at = _checkpoint_epoch(ckpt)
    assert 1 <= killed_at < 4

    resumed = subprocess.run([*args, "--out", str(out), "--resume"], capture_output=True,
                             text=True, env=_env(), timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from epoch {killed_at}" in resumed.stdout
    assert (out / "model.safetensors").read_bytes() == (ref / "model.safetensors").read_bytes()
    a = json.loads((ref / "card.json").read_text())
    b = json.loads((out / "card.json").read_text())
    strip = ("seconds", "cpu_seconds", "val_seconds")
    hist_a = [{k: v for k, v in h.items() if k not in strip}
              for h in a["extra"]["hardening"]["history"]]
    hist_b = [{k: v for k, v in h.items() if k not in strip}
              for h in b["extra"]["hardening"]["history"]]
    assert hist_a == hist_b
    assert b["extra"]["hardening"]["resumed_from_epoch"] == killed_at


# ----------------------------------------------------------------------------- bundled model


def test_bundled_robust_model_card_and_recipe() -> None:
    from audit.zoo import get_recipe
    from audit.zoo.robust import COMMAND, config

    folder = ROOT / "models" / "digits-cnn-robust"
    card = ModelCard.load(folder / "card.json")
    parent = ROOT / "models" / "digits-cnn" / "model.safetensors"
    assert card.parent is not None and card.parent["name"] == "digits-cnn"
    assert card.parent["sha256"] == sha256_file(parent)
    assert card.recipe["command"] == COMMAND
    assert card.recipe["settings"] == config(card.recipe["seed"]).to_dict()
    assert card.metrics["test_accuracy"] >= 0.97
    assert (folder / "model.safetensors").stat().st_size < 5_000_000
    assert get_recipe("digits-cnn-robust").train is not None


@pytest.fixture(scope="module")
def retrained_robust(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``audit train digits-cnn-robust`` run once here (30 PGD epochs): the folder it wrote."""
    out = tmp_path_factory.mktemp("robust") / "m"
    r = subprocess.run([sys.executable, "-m", "audit", "train", "digits-cnn-robust", "--out",
                        str(out)], capture_output=True, text=True, env=_env(), timeout=1800)
    assert r.returncode == 0, r.stderr
    return out


@pytest.mark.slow
def test_train_reproduces_bundled_robust_metrics(retrained_robust: Path) -> None:
    """Any machine: ``audit train digits-cnn-robust`` follows the bundled recipe, and its clean
    and robust test accuracies are the card's within the stated tolerances."""
    card = json.loads((retrained_robust / "card.json").read_text())
    bundled = bundled_card("digits-cnn-robust")
    assert without_build(card["recipe"]) == without_build(bundled["recipe"])
    assert card["parent"] == bundled["parent"]
    got, want = card["metrics"], bundled["metrics"]
    assert got["test_accuracy"] == pytest.approx(want["test_accuracy"], abs=ACCURACY_TOLERANCE)
    key = "test_pgd20_accuracy_linf_0.1"
    assert got[key] == pytest.approx(want[key], abs=ROBUST_ACCURACY_TOLERANCE)


@pytest.mark.slow
def test_train_reproduces_bundled_robust_model(retrained_robust: Path) -> None:
    """``audit train digits-cnn-robust`` gives the committed weights, bit for bit, on the CPU
    type and torch build the card records (skipped elsewhere)."""
    skip_unless_same_build(bundled_card("digits-cnn-robust")["recipe"])
    assert (retrained_robust / "model.safetensors").read_bytes() == \
        (ROOT / "models" / "digits-cnn-robust" / "model.safetensors").read_bytes()


@pytest.mark.slow
def test_bundled_robust_model_meets_the_goal() -> None:
    """Clean >= 97% and robust >= 85% at L-inf 0.1 under the robustness check's full suite;
    the undefended parent is far below."""
    from audit.runner import run_audit

    hard = run_audit("digits-cnn-robust", checks=["robustness"], seed=0)
    sec = hard.sections[0]
    assert sec.status != "error", sec.error
    assert sec.metrics["clean_accuracy"] >= 0.97
    assert sec.metrics["robust_accuracy_linf_0.1"] >= 0.85


def test_examples_compare_the_bundled_pair(tmp_path: Path) -> None:
    """``audit examples`` compares digits-cnn-robust with its card's parent (the report's
    automatic before/after example; audits reused from the run, here cheap ones)."""
    from audit.apps.examples import ExampleContext, planned_examples
    from audit.runner import run_audit

    plans = {name: make for name, _, make in planned_examples()}
    make = plans["digits-cnn-vs-digits-cnn-robust"]
    ctx = ExampleContext(out_dir=tmp_path)
    for name in ("digits-cnn", "digits-cnn-robust"):
        ctx.results[name] = run_audit(name, checks=["performance"], seed=0)
    files = make(ctx)
    assert [p.name for p in files] == ["digits-cnn-vs-digits-cnn-robust.html",
                                       "digits-cnn-vs-digits-cnn-robust.md"]
    html = files[0].read_text()
    assert "digits-cnn-robust" in html and sha256_file(
        ROOT / "models" / "digits-cnn-robust" / "model.safetensors") in html
