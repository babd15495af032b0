"""``--device``: auto, cpu, cuda and cuda:N resolve as documented; a device that is not there
is a one-line usage error (exit 4) before anything loads; an audit on CUDA when one is
present."""

from __future__ import annotations

import json
from pathlib import Path

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
