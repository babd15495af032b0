"""Ctrl-C and SIGTERM during an audit: non-zero exit with a message, previous report intact,
no temporary files left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

SCRIPT = textwrap.dedent(f"""
    import sys, time
    sys.path.insert(0, {str(TESTS)!r})
    from audit.checks import Check, register

    @register
    class Sleepy(Check):
        name = "sleepy"
        title = "Sleepy"

        def run(self, subject):
            print("check started", flush=True)
            time.sleep(120)
            raise AssertionError("not interrupted")

    from audit.cli import main
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.parametrize("sig", [signal.SIGINT,
                                 pytest.param(signal.SIGTERM, marks=pytest.mark.slow)])
def test_interrupt_keeps_previous_report(sig: signal.Signals, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    out.write_text("previous report")
    out.with_suffix(".json").write_text("{}")
    (tmp_path / "run.py").write_text(SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(tmp_path / "run.py"), "run", "digits-cnn", "--checks",
         "performance,sleepy", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    line = ""
    while "check started" not in line and time.monotonic() < deadline:
        line = proc.stdout.readline()
    assert "check started" in line
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted" in err and "Traceback" not in err
    assert out.read_text() == "previous report"
    assert out.with_suffix(".json").read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_atomic_write_leaves_old_file_on_failure(tmp_path: Path) -> None:
    from audit.io import atomic_path

    target = tmp_path / "r.html"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("half-written")
        raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["r.html"]
