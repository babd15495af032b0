"""``--device``: auto, cpu, cuda and cuda:N resolve as documented; a device that is not there
is a one-line usage error (exit 4) before anything loads; an audit on CUDA when one is
present."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from audit.devices import resolve_device
from audit.errors import UsageError
from tests.conftest import Cli

CUDA = torch.cuda.is_available()


def test_auto_and_cpu() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type == ("cuda" if CUDA else "cpu")
    assert resolve_device("AUTO") == resolve_device("auto")


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "cuda:-1", ""])
def test_bad_names(spec: str) -> None:
    if spec == "":
        assert resolve_device(spec) == resolve_device("auto")  # empty is the default
        return
    with pytest.raises(UsageError, match="--device"):
        resolve_device(spec)


def test_a_missing_cuda_device_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    spec = f"cuda:{torch.cuda.device_count()}"  # one past the last device there is
    code, _, stderr = cli("run", "digits-cnn", "--checks", "performance", "--device", spec,
                          "--out", str(tmp_path / "r.html"))
    assert code == 4 and "--device" in stderr and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("device", ["cpu", *(["cuda"] if CUDA else [])])
def test_the_result_records_the_device(cli: Cli, tmp_path: Path, device: str) -> None:
    out = tmp_path / "r.html"
    code, _, _ = cli("run", "digits-cnn", "--checks", "performance", "--device", device,
                     "--out", str(out))
    assert code == 0
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["run"]["device"].startswith(device)


def _accuracy(doc: dict[str, Any]) -> float:
    return next(s for s in doc["sections"] if s["check"] == "performance")["metrics"]["accuracy"]


def test_amp_on_the_cpu_keeps_the_accuracy_and_is_recorded(cli: Cli, tmp_path: Path) -> None:
    docs = []
    for flags in ([], ["--amp"]):
        out = tmp_path / f"r{len(docs)}.html"
        code, _, _ = cli("run", "digits-cnn", "--checks", "performance", "--device", "cpu",
                         *flags, "--out", str(out))
        assert code == 0
        docs.append(json.loads(out.with_suffix(".json").read_text()))
    exact, amp = docs
    assert exact["run"]["amp"] is False and amp["run"]["amp"] is True
    assert abs(_accuracy(amp) - _accuracy(exact)) <= 0.02  # bfloat16 autocast on the CPU


@pytest.mark.skipif(not CUDA, reason="no CUDA device on this machine")
def test_an_audit_on_cuda_matches_the_cpu() -> None:
    from audit.runner import run_audit

    checks = ["performance", "saliency", "robustness"]
    on = {d: run_audit("digits-cnn", checks=checks, quick=True, device=d).to_dict()
          for d in ("cpu", "cuda")}
    assert on["cuda"]["run"]["device"].startswith("cuda")
    assert on["cpu"]["run"]["device"] == "cpu"
    assert abs(_accuracy(on["cuda"]) - _accuracy(on["cpu"])) <= 0.01
    for d, doc in on.items():
        done = {s["check"]: s["status"] for s in doc["sections"]}
        assert set(checks) <= set(done), (d, done)
        assert all(done[c] not in ("error", "skipped") for c in checks), (d, done)
