"""Whole-data drift tests: the MMD permutation test and the classifier two-sample test hold
their level on data without a shift and find planted shifts; the embedding layer is found on
architectures the drift code never saw; drift of a user's own image model end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from audit.drift.embeddings import find_head
from audit.drift.twosample import classifier_test, mmd_test
from tests.user_models import write_image_project

REPEATS = 100
ALPHA = 0.05
# the nominal level plus three Monte Carlo standard errors of a rate over REPEATS repeats
LIMIT = ALPHA + 3 * (ALPHA * (1 - ALPHA) / REPEATS) ** 0.5


def _direct_mmd2(a: np.ndarray, b: np.ndarray, bandwidth: float) -> float:
    """The biased MMD² written out: mean k(a, a') + mean k(b, b') - 2 mean k(a, b)."""
    def k(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        d2 = ((u[:, None, :] - v[None, :, :]) ** 2).sum(-1)
        return np.exp(-d2 / (2 * bandwidth ** 2))
    return float(k(a, a).mean() + k(b, b).mean() - 2 * k(a, b).mean())


def test_mmd_statistic_is_the_textbook_one() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(40, 5)), rng.normal(0.3, 1.0, size=(60, 5))
    r = mmd_test(a, b, permutations=50)
    assert r.mmd2 == pytest.approx(_direct_mmd2(a, b, r.bandwidth), rel=1e-9)


def test_mmd_false_alarms_at_most_nominal_and_finds_a_planted_shift() -> None:
    rng = np.random.default_rng(1)
    alarms, found = 0, 0
    for seed in range(REPEATS):
        a, b = rng.normal(size=(80, 8)), rng.normal(size=(80, 8))
        alarms += mmd_test(a, b, permutations=200, seed=seed).p_value < ALPHA
        b[:, 0] += 0.8  # a mean shift of 0.8 SD in one of 8 dimensions
        found += mmd_test(a, b, permutations=200, seed=seed).p_value < ALPHA
    print(f"MMD: false alarms {alarms}/{REPEATS}, planted 0.8 SD shift found {found}/{REPEATS}")
    assert alarms / REPEATS <= LIMIT
    assert found / REPEATS >= 0.8


def test_classifier_test_false_alarms_at_most_nominal_and_names_the_shifted_feature() -> None:
    rng = np.random.default_rng(2)
    alarms = 0
    for seed in range(REPEATS):
        a, b = rng.normal(size=(150, 6)), rng.normal(size=(150, 6))
        alarms += classifier_test(a, b, model="logistic", seed=seed).p_value < ALPHA
    print(f"classifier test: false alarms {alarms}/{REPEATS}")
    assert alarms / REPEATS <= LIMIT
    a, b = rng.normal(size=(1500, 6)), rng.normal(size=(1500, 6))
    b[:, 4] = rng.exponential(1.0, 1500) - 1  # same mean and SD, other shape
    r = classifier_test(a, b, groups={f"f{i}": [i] for i in range(6)}, seed=0)
    assert r.p_value < 1e-3 and r.auc > 0.55
    assert r.importances[0][0] == "f4"
    null = classifier_test(a, a[rng.permutation(1500)], groups={"f0": [0]}, seed=0)
    assert null.importances == []  # nothing is named when the sets are not told apart


class _ConvHead(nn.Module):
    """A fully convolutional classifier: a 1x1 convolution head, then global pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.GELU())
        self.head = nn.Conv2d(12, 4, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.head(self.body(x))).flatten(1)


class _SoftmaxOut(nn.Module):
    """An MLP whose forward ends in LogSoftmax after the last Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 3),
                                 nn.LogSoftmax(dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@pytest.mark.parametrize(("model", "shape", "head", "dim"), [
    (_SoftmaxOut(), (10,), "net.2", 16),
    (_ConvHead(), (3, 8, 8), None, 12),
])
def test_embedding_layer_found_on_unseen_architectures(model: nn.Module, shape: tuple[int, ...],
                                                       head: str | None, dim: int) -> None:
    found = find_head(model.eval(), torch.rand(2, *shape))
    assert found is not None
    if head is not None:
        assert found.name == head
    grabbed: list[torch.Tensor] = []
    found.module.register_forward_pre_hook(lambda m, a: grabbed.append(a[0]))
    model(torch.rand(2, *shape))
    assert grabbed[0].shape[1] == dim


@pytest.mark.slow
def test_user_image_model_drift_end_to_end(tmp_path: Path) -> None:
    from audit import run_audit

    project = write_image_project(tmp_path / "p", "byte", n_test=300)
    with np.load(project.test) as npz:
        x, y = npz["x"], npz["y"]
    np.savez(tmp_path / "ref.npz", x=x[:150], y=y[:150])
    np.savez(tmp_path / "same.npz", x=x[150:], y=y[150:])
    np.savez(tmp_path / "dark.npz", x=(x[150:] * 0.6).astype(np.float32))  # no labels
    kw = {"reference": tmp_path / "ref.npz", "card": project.card, "checks": ["drift"],
          "arch": str(tmp_path / "p" / "mynets.py") + ":Net"}
    same = run_audit(project.weights, data=tmp_path / "same.npz", **kw)
    dark = run_audit(project.weights, data=tmp_path / "dark.npz", labels=False, **kw)
    ids = [{f.id for f in r.sections[0].findings} for r in (same, dark)]
    assert not {"drift.representation", "drift.dataset"} & ids[0]
    assert "drift.representation" in ids[1]
    assert "head" in dark.sections[0].tables[0].rows[1][0]  # the embeddings' layer is named
