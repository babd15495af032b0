"""``--resume``: finished checks are saved atomically and read back by a rerun of the same
audit; a changed input reruns them; a killed ``audit run`` continues to the same JSON."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from audit.loading import LoadedModel
from audit.result import Section
from audit.resume import Checkpoint
from audit.runner import run_audit

ROOT = Path(__file__).resolve().parents[1]
CHECKS = ["performance", "surrogate"]


def _comparable(doc: dict[str, Any]) -> dict[str, Any]:
    """A result without what differs between two runs of the same audit: timings (of
    sections, and the time columns of their tables), the creation time and the command line,
    and which checks were read back."""
    doc = json.loads(json.dumps(doc))
    for s in doc["sections"]:
        s.pop("duration_s", None)
        for t in s["tables"]:
            timed = [i for i, c in enumerate(t["columns"]) if c.startswith("time")]
            t["rows"] = [[v for i, v in enumerate(r) if i not in timed] for r in t["rows"]]
    doc["summary"].pop("duration_s", None)
    for k in ("created_at", "command", "resumed"):
        doc["run"].pop(k, None)
    return doc


def test_rerun_reads_every_finished_check_back(tmp_path: Path,
                                               digits_loaded: LoadedModel) -> None:
    folder = tmp_path / "r.partial"
    first = run_audit(digits_loaded, checks=CHECKS, seed=3, quick=True, resume=folder)
    assert first.run["resumed"] == []
    assert sorted(p.name for p in folder.iterdir()) == ["performance.json", "surrogate.json"]
    again = run_audit(digits_loaded, checks=CHECKS, seed=3, quick=True, resume=folder)
    assert again.run["resumed"] == CHECKS
    assert _comparable(again.to_dict()) == _comparable(first.to_dict())
    # a section read back keeps the time its check took (rounded to ms in the JSON)
    assert [s.duration_s for s in again.sections] == \
        [round(s.duration_s, 3) for s in first.sections]


def test_changed_seed_params_or_broken_file_run_again(tmp_path: Path,
                                                      digits_loaded: LoadedModel) -> None:
    folder = tmp_path / "r.partial"
    run_audit(digits_loaded, checks=CHECKS, seed=3, quick=True, resume=folder)
    other_seed = run_audit(digits_loaded, checks=CHECKS, seed=4, quick=True, resume=folder)
    assert other_seed.run["resumed"] == []  # and it overwrote both files with seed 4's
    changed = run_audit(digits_loaded, checks=CHECKS, seed=4, quick=True, resume=folder,
                        params={"surrogate": {"min_samples_leaf": 7}})
    assert changed.run["resumed"] == ["performance"]
    (folder / "performance.json").write_text('{"key": "truncated', encoding="utf-8")
    broken = run_audit(digits_loaded, checks=CHECKS, seed=4, quick=True, resume=folder,
                       params={"surrogate": {"min_samples_leaf": 7}})
    assert broken.run["resumed"] == ["surrogate"]


def test_errored_check_is_not_saved(tmp_path: Path) -> None:
    section = Section(check="x", title="X", status="error", error="boom")
    ckpt = Checkpoint(tmp_path / "p", {"seed": 0})
    assert ckpt.load("x", {}) is None
    ckpt.save(Section(check="x", title="X"), {"a": 1})
    assert ckpt.load("x", {"a": 2}) is None  # another parameter: another fingerprint
    loaded = ckpt.load("x", {"a": 1})
    assert loaded is not None and loaded.check == "x" and ckpt.resumed == ["x"]
    reader = Checkpoint(tmp_path / "q", {"seed": 0}, writer=False)
    reader.save(section, {})
    assert not (tmp_path / "q").exists()


def _env() -> dict[str, str]:
    return {**os.environ, "AUDIT_MODELS_DIR": str(ROOT / "models"), "OMP_NUM_THREADS": "1",
            "AUDIT_ISOLATE": "none", "PYTHONPATH": str(ROOT)}


@pytest.mark.slow
def test_killed_audit_resumes_to_the_same_json(tmp_path: Path) -> None:
    """SIGKILL a real ``audit run --resume`` while its last check runs, rerun it: the
    finished checks are read back, the rest run, and the JSON equals an uninterrupted run's
    (timings aside)."""
    args = [sys.executable, "-m", "audit", "run", "digits-cnn", "--quick", "--seed", "1",
            "--checks", "performance,surrogate,robustness", "--no-progress", "--resume"]
    ref = tmp_path / "ref" / "r.html"
    done = subprocess.run([*args, "--out", str(ref)], capture_output=True, text=True,
                          env=_env(), timeout=600)
    assert done.returncode in (0, 1), done.stderr
    assert not ref.with_suffix(".partial").exists()  # spent once the outputs are written

    out = tmp_path / "killed" / "r.html"
    partial = out.with_suffix(".partial")
    proc = subprocess.Popen([*args, "--out", str(out)], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 300
    while not (partial / "surrogate.json").exists() and time.monotonic() < deadline \
            and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)  # into the robustness check
    assert proc.poll() is None, "the audit finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists() and not out.with_suffix(".json").exists()
    assert sorted(p.name for p in partial.iterdir()) == ["performance.json", "surrogate.json"]

    resumed = subprocess.run([*args, "--out", str(out)], capture_output=True, text=True,
                             env=_env(), timeout=600)
    assert resumed.returncode == done.returncode, resumed.stderr
    assert "resumed 2 finished check(s)" in resumed.stderr
    a = json.loads(ref.with_suffix(".json").read_text(encoding="utf-8"))
    b = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert b["run"]["resumed"] == ["performance", "surrogate"]
    assert _comparable(a) == _comparable(b)
    assert not partial.exists()
