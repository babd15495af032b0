"""Shared fixtures: the bundled digits model, audits run once per session, CLI runner."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its thread pool
# Checks run in-process in the tests (also in the audits they start as subprocesses): a check
# that isolates itself by default (saliency) otherwise starts a fresh interpreter per audit,
# measured 117 s instead of 27 s for tests/test_saliency_check.py alone. Isolation has its own
# tests (test_crash.py passes ``isolate`` explicitly; test_saliency_check.py runs the default,
# isolated path once) and CI's smoke job runs the README's audit with the defaults. Set
# AUDIT_ISOLATE yourself (e.g. to "saliency") to run the whole suite the default way.
os.environ.setdefault("AUDIT_ISOLATE", "none")
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
# One intra-op thread: the models are tiny, and on 2-core machines spinning worker threads cost
# far more than they give (measured 10x slower checks under load).
torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).resolve().parent))

from audit.loading import LoadedModel, load_model  # noqa: E402
from audit.result import AuditResult  # noqa: E402
from audit.runner import run_audit  # noqa: E402


@pytest.fixture(scope="session")
def digits_loaded() -> LoadedModel:
    return load_model("digits-cnn")


def with_model(loaded: LoadedModel, model: nn.Module, name: str | None = None) -> LoadedModel:
    """A copy of ``loaded`` whose model is replaced (same card, renamed if asked)."""
    card = dataclasses.replace(loaded.card, name=name) if name and loaded.card else loaded.card
    return dataclasses.replace(loaded, model=model.eval(), card=card)


@pytest.fixture(scope="session")
def digits_performance(digits_loaded: LoadedModel) -> AuditResult:
    """The performance check on digits-cnn, run once."""
    return run_audit(digits_loaded, checks=["performance"], seed=0)


Cli = Callable[..., tuple[int, str, str]]
"""The in-process CLI runner's type: ``cli(*args) -> (exit code, stdout, stderr)``."""


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run ``audit ARGS`` in this process: (exit code, stdout, stderr)."""
    from audit.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture
def run_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``python -m audit ARGS`` in a subprocess (cwd = tmp_path unless given)."""

    def run(*args: str, cwd: Path | None = None, timeout: float = 300,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent),
                    "AUDIT_MODELS_DIR": str(ROOT / "models"), **(env or {})}
        return subprocess.run([sys.executable, "-m", "audit", *args], cwd=cwd or tmp_path,
                              capture_output=True, text=True, timeout=timeout, env=full_env)

    return run


class Scaled(nn.Module):
    """Multiplies another model's logits by a constant (an overconfident model when > 1)."""

    def __init__(self, inner: nn.Module, scale: float) -> None:
        super().__init__()
        self.inner, self.scale = inner, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) * self.scale


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Close the shared headless Chromium, if a browser test started it."""
    browser = sys.modules.get("browser")
    if browser is not None:
        browser.close_shared_browser()


#: The per-test timeout of slow tests (the default, ``timeout`` in pyproject.toml, is 300 s):
#: they train bundled models for minutes on a 2-core machine.
SLOW_TIMEOUT = 1800


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow tests without their own ``timeout`` marker get :data:`SLOW_TIMEOUT`."""
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT))
