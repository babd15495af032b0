"""Adversarial training: the drop-in loss, the epsilon schedule, the overfitting monitor and its
guard, and the shared trainer with the adversarial loss (checkpoints and exact resume in
process; the real-process kill test is in test_harden.py, the generic trainer in
test_training.py)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from audit.errors import CheckpointError, UsageError
from audit.loading import LoadedModel
from audit.robustness.adversarial import (
    METHODS,
    AdversarialConfig,
    adversarial_batch,
    adversarial_loss,
    eps_schedule,
    random_unit_noise,
)
from audit.robustness.attacks import PGD
from audit.robustness.losses import AdversarialLoss, adversarial_trainer
from audit.robustness.overfitting import CatastrophicOverfittingWarning, CoMonitor
from audit.training import BatchContext, Trainer


def _digits_batch(n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    from audit.datasets import load_dataset

    d = load_dataset("digits", "test")
    return d.x[:n], d.y[:n]


D = 25


def _blobs(n: int, seed: int, margin: float = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
    """Two tabular classes in [0, 1]^D: feature 0 separates them with a margin of ``margin``
    (robust); the other D - 1 separate them too, each by less than 0.1 (predictive, fragile)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    sign = (2 * y.float() - 1)[:, None]
    x = torch.empty(n, D)
    x[:, :1] = 0.5 + sign * (margin + 0.1 * torch.rand(n, 1, generator=g))
    x[:, 1:] = 0.5 + sign * 0.08 + 0.02 * torch.randn(n, D - 1, generator=g)
    return x.clamp(0, 1), y


class MLP(nn.Module):
    def __init__(self, d: int = D, h: int = 32, k: int = 2) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# ----------------------------------------------------------------------------- the loss


@pytest.mark.parametrize("method", METHODS)
def test_loss_has_gradients_and_leaves_model_alone(digits_loaded: LoadedModel,
                                                   method: str) -> None:
    model = digits_loaded.model
    x, y = _digits_batch()
    model.train()
    for p in model.parameters():
        p.grad = None
    loss = adversarial_loss(model, x, y, method=method, eps=0.1, steps=3,
                            generator=torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and math.isfinite(float(loss.detach()))
    assert model.training, "the attack must restore the model's mode"
    assert all(p.grad is None for p in model.parameters()), "attack touched parameter grads"
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()


@pytest.mark.parametrize("method", METHODS)
def test_adversarial_inputs_stay_in_ball_and_range(digits_loaded: LoadedModel,
                                                   method: str) -> None:
    x, y = _digits_batch()
    out = adversarial_batch(digits_loaded.model, x, y, method=method, eps=0.1, steps=3,
                            generator=torch.Generator().manual_seed(1))
    assert float((out.x_adv - x).abs().max()) <= 0.1 + 1e-6
    assert float(out.x_adv.min()) >= 0.0 and float(out.x_adv.max()) <= 1.0
    assert out.loss.shape == (len(x),)


@pytest.mark.parametrize("method", METHODS)
def test_zero_eps_gives_the_clean_loss(digits_loaded: LoadedModel, method: str) -> None:
    """Known answer: with eps 0 every method's loss is the clean cross-entropy (TRADES' KL
    term is KL(p || p) = 0)."""
    model = digits_loaded.model.eval()
    x, y = _digits_batch()
    loss = adversarial_loss(model, x, y, method=method, eps=0.0, steps=2,
                            generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        clean = F.cross_entropy(model(x), y)
    # TRADES starts from x + 0.001 N(0, 1), projected back into the (empty) ball
    assert float(loss.detach()) == pytest.approx(float(clean), rel=1e-5, abs=1e-6)


def test_pgd_loss_exceeds_clean_loss_and_fast_is_weaker(digits_loaded: LoadedModel) -> None:
    """Invariant: PGD's last iterate raises the loss of a clean-trained model, and more
    steps raise it at least as much as one FGSM step (averaged over the batch)."""
    model = digits_loaded.model.eval()
    x, y = _digits_batch(64)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        clean = float(F.cross_entropy(model(x), y))
    pgd = float(adversarial_loss(model, x, y, method="pgd", eps=0.1, steps=10,
                                 generator=gen).detach())
    fast = float(adversarial_loss(model, x, y, method="fast", eps=0.1, generator=gen).detach())
    assert pgd > clean * 5
    assert pgd >= fast


def test_per_sample_eps(digits_loaded: LoadedModel) -> None:
    x, y = _digits_batch(8)
    eps = torch.tensor([0.0, 0.05] * 4)
    out = adversarial_batch(digits_loaded.model, x, y, method="pgd", eps=eps, steps=3,
                            generator=torch.Generator().manual_seed(0))
    size = (out.x_adv - x).flatten(1).abs().amax(1)
    assert torch.all(size <= eps + 1e-6)
    assert float(size[1::2].min()) > 0.01


def test_bad_method_is_a_usage_error(digits_loaded: LoadedModel) -> None:
    x, y = _digits_batch(4)
    with pytest.raises(UsageError, match="unknown adversarial training method"):
        adversarial_loss(digits_loaded.model, x, y, method="free", eps=0.1)


def test_noise_shapes_and_l2_ball() -> None:
    g = torch.Generator().manual_seed(0)
    u = random_unit_noise((500, 3, 4), "linf", g)
    assert float(u.abs().max()) <= 1 and float(u.min()) < -0.9 and float(u.max()) > 0.9
    v = random_unit_noise((500, 12), "l2", g)
    norms = v.norm(dim=1)
    assert float(norms.max()) <= 1 + 1e-6 and float(norms.median()) > 0.8  # mass near sphere


def test_eps_schedule() -> None:
    assert eps_schedule(0.0, 0.1, 0) == 0.1
    assert eps_schedule(0.0, 0.1, 2) == 0.0
    assert eps_schedule(1.0, 0.1, 2) == pytest.approx(0.05)
    assert eps_schedule(5.0, 0.1, 2) == 0.1


# ----------------------------------------------------------------------------- monitor


def test_co_monitor_flags_a_collapse_not_a_wobble() -> None:
    flailing = CoMonitor(drop=0.2, floor=0.56)  # a constant classifier scores 0.56
    assert not any(flailing.update(p, f) for p, f in ((0.56, 0.56), (0.03, 0.5), (0.44, 0.44)))
    m = CoMonitor(drop=0.2)
    assert not any(m.update(a, a + 0.1) for a in (0.1, 0.3, 0.5, 0.45, 0.55, 0.4))
    assert not m.update(0.05, 0.1), "PGD and FGSM falling together is instability, not CO"
    assert m.update(0.05, 0.8), "PGD collapsing while FGSM accuracy stays high is CO"
    m2 = CoMonitor(drop=0.2)
    m2.load_state_dict(m.state_dict())
    assert m2.best == 0.55 and m2.update(0.3, 0.9) and not m2.update(0.4, 0.9)


# ----------------------------------------------------------------------------- trainer


def _tabular_trainer(method: str, epochs: int = 8, ckpt: Path | None = None,
                     **kw: object) -> Trainer:
    torch.manual_seed(0)
    x, y = _blobs(512, 0)
    xv, yv = _blobs(256, 1)
    cfg = AdversarialConfig.from_dict({"method": method, "eps": 0.2, "epochs": epochs,
                                       "batch_size": 64, "lr": 3e-2, "steps": 5,
                                       "eval_steps": 10, **kw})
    return adversarial_trainer(MLP(), cfg, (x, y), (xv, yv), checkpoint=ckpt)


def _loss(t: Trainer) -> AdversarialLoss:
    assert isinstance(t.loss, AdversarialLoss)
    return t.loss


@pytest.mark.parametrize("method", METHODS)
def test_tabular_adversarial_training_beats_standard_training(method: str) -> None:
    """Known answer on tabular data: one feature separates the classes by a margin of 0.3,
    24 others by less than 0.1 each; at eps 0.2 adversarial training must rely on the robust
    feature and reaches high robust accuracy, while standard training uses the fragile ones
    and is broken."""
    robust = _tabular_trainer(method)
    robust.fit()
    xv, yv = _blobs(256, 1)
    attack = PGD(steps=20, generator=torch.Generator().manual_seed(0))
    model = robust.module.eval()
    model.load_state_dict(robust.best_state)
    acc_robust = 1 - attack(model, xv, yv, eps=0.2).success.float().mean()

    torch.manual_seed(0)
    plain = MLP()
    opt = torch.optim.Adam(plain.parameters(), lr=1e-2)
    x, y = _blobs(512, 0)
    for _ in range(200):
        opt.zero_grad()
        F.cross_entropy(plain(x), y).backward()
        opt.step()
    plain.eval()
    acc_plain = 1 - attack(plain, xv, yv, eps=0.2).success.float().mean()
    assert float(acc_robust) >= 0.9, robust.history
    assert float(acc_plain) <= float(acc_robust) - 0.2


def test_history_best_and_val_metrics() -> None:
    t = _tabular_trainer("pgd", epochs=3)
    hist = t.fit()
    assert [h.epoch for h in hist] == [1, 2, 3]
    best = max(reversed(hist), key=lambda h: (h.val_robust_accuracy, h.val_clean_accuracy))
    assert t.best_epoch == best.epoch and best.best
    assert all(0 <= h.val_robust_accuracy <= h.val_clean_accuracy <= 1 for h in hist)


def test_warmup_ramps_eps_in_the_history() -> None:
    t = _tabular_trainer("pgd", epochs=4, warmup_epochs=2)
    hist = t.fit()
    eps = [h.eps for h in hist]
    assert eps[0] < eps[1] <= 0.2 and eps[2] == eps[3] == 0.2


@pytest.mark.parametrize("method", ["pgd", "trades", "fast"])
def test_resume_gives_bitwise_identical_weights(tmp_path: Path, method: str) -> None:
    """Stop after epoch 2 (a fresh trainer, global RNGs disturbed), resume from the
    checkpoint, and end with exactly the weights of an uninterrupted run."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    full = _tabular_trainer(method, epochs=4, warmup_epochs=1)
    full.fit()

    first = _tabular_trainer(method, epochs=4, ckpt=tmp_path / "c.pt", warmup_epochs=1)
    for _ in range(2):
        first.train_epoch()
        first.save_checkpoint()
    torch.manual_seed(999)  # the resumed process starts with other global RNG states
    torch.rand(10)
    second = _tabular_trainer(method, epochs=4, ckpt=tmp_path / "c.pt", warmup_epochs=1)
    second.fit(resume=True)
    for k, v in full.module.state_dict().items():
        assert torch.equal(v, second.module.state_dict()[k]), k
    for k, v in full.best_state.items():
        assert torch.equal(v, second.best_state[k]), k
    assert [h.to_dict()["val_robust_accuracy"] for h in full.history] == \
        [h.to_dict()["val_robust_accuracy"] for h in second.history]


def test_checkpoint_is_weights_only_and_refuses_other_settings(tmp_path: Path) -> None:
    t = _tabular_trainer("pgd", epochs=1, ckpt=tmp_path / "c.pt")
    t.fit()
    state = torch.load(tmp_path / "c.pt", weights_only=True)  # no pickle needed
    assert state["epoch"] == 1 and state["config"]["eps"] == 0.2
    other = _tabular_trainer("pgd", epochs=1, ckpt=tmp_path / "c.pt", eps=0.3)
    with pytest.raises(CheckpointError, match="eps 0.2"):
        other.fit(resume=True)
    (tmp_path / "c.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        _tabular_trainer("pgd", epochs=1, ckpt=tmp_path / "c.pt").fit(resume=True)


def test_co_fallback_and_stop_restore_the_last_good_weights() -> None:
    """Drive the guard with probe accuracies that collapse at the epoch's second probe:
    fallback restores the weights of the first probe and switches to PGD; stop restores them
    and ends training; warn only warns."""
    for action in ("fallback", "stop", "warn"):
        t = _tabular_trainer("fast", epochs=2, co_action=action, co_checks=2)
        loss = _loss(t)
        guard = loss.guard
        assert guard is not None
        probes = iter([(0.9, 0.95), (0.05, 0.9), (0.9, 0.95), (0.9, 0.95)])
        restored: list[bool] = []
        check = guard.check

        def measure(trainer: Trainer, ctx: BatchContext,
                    probes: Iterator[tuple[float, float]] = probes) -> tuple[float, float]:
            return next(probes)

        def checked(trainer: Trainer, ctx: BatchContext, check: Any = check,
                    guard: Any = guard, restored: list[bool] = restored) -> str | None:
            good = guard.snapshot
            action = check(trainer, ctx)
            if action is not None:
                restored.append(all(torch.equal(v, good["model"][k])
                                    for k, v in trainer.module.state_dict().items()))
            return action

        guard.measure = measure  # type: ignore[method-assign]
        guard.check = checked  # type: ignore[method-assign]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t.fit()
        assert any(issubclass(w.category, CatastrophicOverfittingWarning) for w in caught)
        assert len(t.events) == 1 and "catastrophic overfitting" in t.events[0]
        assert t.history[0].events == t.events
        if action == "fallback":
            assert restored == [True] and loss.method == "pgd" and not t.stopped
            assert [h.method for h in t.history] == ["pgd", "pgd"]
        elif action == "stop":
            assert restored == [True] and t.stopped and len(t.history) == 1
        else:
            assert restored == [False] and loss.method == "fast" and len(t.history) == 2


class WideMLP(nn.Module):
    def __init__(self, h: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(D, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(),
                                 nn.Linear(h, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _fast_run(rel_step: float, action: str, epochs: int = 8) -> Trainer:
    torch.manual_seed(0)
    x, y = _blobs(1024, 0)
    cfg = AdversarialConfig.from_dict({"method": "fast", "eps": 0.25, "epochs": epochs,
                                       "batch_size": 64, "lr": 1e-2, "rel_step": rel_step,
                                       "co_action": action, "co_checks": 4,
                                       "schedule": "constant"})
    t = adversarial_trainer(WideMLP(), cfg, (x, y), _blobs(256, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CatastrophicOverfittingWarning)
        t.fit()
    return t


def test_catastrophic_overfitting_is_caught_in_real_fast_training() -> None:
    """A model with the problem: FGSM training with a step of 2 eps (the random start no
    longer matters: every value lands on the ball's corner) overfits catastrophically on the
    tabular task (PGD accuracy on the probe collapses while FGSM accuracy stays high, Wong et
    al.'s failure mode); the monitor catches it and falls back to PGD, which ends robust.
    One without: FGSM-RS with the recommended step of 1.25 eps trains without a collapse."""
    bad = _fast_run(2.0, "fallback")
    assert len(bad.events) == 1 and "catastrophic overfitting" in bad.events[0]
    assert _loss(bad).method == "pgd" and bad.history[-1].method == "pgd"
    guard = _loss(bad).guard
    assert guard is not None
    pgd, fgsm = guard.monitor.history[-1]  # the probe that triggered the fallback
    assert guard.monitor.best > guard.monitor.floor
    assert pgd < guard.monitor.best - 0.2 and fgsm > pgd + 0.2
    assert bad.history[-1].val_robust_accuracy >= 0.9

    good = _fast_run(1.25, "warn")
    assert good.events == [] and _loss(good).method == "fast"
    assert good.history[-1].val_robust_accuracy >= 0.9
