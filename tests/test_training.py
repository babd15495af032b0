"""The shared training layer: a custom BatchLoss plugs into the trainer (its context, tallies,
hooks and state), validation keeps the best epoch, checkpoints resume bit for bit, the config
is parsed like every settings table, and the small pieces (augmentation, shards, DDP scaling,
determinism). Adversarial training on top of it: test_adversarial_training.py."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audit.errors import CheckpointError, ConfigError, UsageError
from audit.robustness.adversarial import AdversarialConfig
from audit.training import (
    BatchContext,
    BatchLoss,
    CrossEntropy,
    Distributed,
    EpochStats,
    TrainConfig,
    Trainer,
    Validator,
    random_shift,
    reproducible,
)


def _data(n: int = 200, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return x, (x[:, 0] + 0.5 * x[:, 1] > 0).long()


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))


class Recording(BatchLoss):
    """Cross-entropy on inputs with noise from the loss's own stream; records what the trainer
    passes, tallies a constant, shows a counter, and stops after ``stop_after`` steps."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.calls: list[tuple[int, int, int, tuple[int, int], list[int], float]] = []
        self.steps = 0
        self.stop_after = stop_after

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, idx: Tensor,
                 ctx: BatchContext) -> Tensor:
        self.calls.append((ctx.epoch, ctx.batch, ctx.batches, ctx.shard, idx.tolist(),
                           ctx.progress))
        noisy = x + 0.1 * torch.randn(x.shape, generator=ctx.generator)
        ctx.tally("rows", float(len(x)))
        return F.cross_entropy(model(noisy), y, label_smoothing=0.1)

    def epoch_info(self) -> dict[str, Any]:
        return {"steps": self.steps}

    def after_step(self, trainer: Trainer, ctx: BatchContext) -> None:
        self.steps += 1
        if self.stop_after is not None and self.steps >= self.stop_after:
            trainer.report(f"stopped after {self.steps} steps")
            trainer.stop()

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.steps = int(state["steps"])


def test_a_custom_batch_loss_plugs_into_the_trainer() -> None:
    x, y = _data()
    model = _mlp()
    before = [p.detach().clone() for p in model.parameters()]
    loss = Recording()
    history = Trainer(model, TrainConfig(epochs=2, batch_size=64, lr=1e-2), loss, (x, y)).fit()
    assert len(loss.calls) == 2 * 4  # ceil(200 / 64) batches per epoch
    for epoch in (0, 1):
        calls = [c for c in loss.calls if c[0] == epoch]
        assert [c[1] for c in calls] == [0, 1, 2, 3] and {c[2] for c in calls} == {4}
        assert [c[3] for c in calls] == [(0, 64), (0, 64), (0, 64), (0, 8)]
        rows = sorted(i for c in calls for i in c[4])
        assert rows == list(range(200)), "every row once per epoch"
        assert [c[5] for c in calls] == [epoch + b / 4 for b in range(4)]
    assert [c[4] for c in loss.calls[:4]] != [c[4] for c in loss.calls[4:]], "reshuffled"
    assert not all(torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
    # tallies are per training row; the loss's info and the values are attributes too
    assert [h.train["rows"] for h in history] == [1.0, 1.0]
    assert [h.steps for h in history] == [4, 8] and history[-1].to_dict()["steps"] == 8
    assert history[-1].best and not model.training
    with pytest.raises(AttributeError):
        _ = history[0].no_such_value


def test_a_loss_can_stop_training_and_report() -> None:
    x, y = _data()
    t = Trainer(_mlp(), TrainConfig(epochs=5, batch_size=64), Recording(stop_after=6), (x, y))
    t.fit()
    assert t.stopped and len(t.history) == 2 and t.history[-1].steps == 6
    assert t.events == ["stopped after 6 steps"] == t.history[-1].events


def test_resume_restores_the_loss_state_and_gives_bitwise_identical_weights(
        tmp_path: Path) -> None:
    """Two epochs, a fresh process-like start (other global RNG state), resume: the same
    weights as four uninterrupted epochs, and the loss's own state and stream continue."""
    x, y = _data()
    config = TrainConfig(epochs=4, batch_size=32, lr=1e-2, seed=5)
    full = Trainer(_mlp(), config, Recording(), (x, y))
    full.fit()
    first = Trainer(_mlp(), config, Recording(), (x, y), checkpoint=tmp_path / "c.pt")
    for _ in range(2):
        first.train_epoch()
        first.save_checkpoint()
    torch.manual_seed(123)
    second_loss = Recording()
    second = Trainer(_mlp(), config, second_loss, (x, y), checkpoint=tmp_path / "c.pt")
    second.fit(resume=True)
    assert second_loss.steps == full.loss.steps  # type: ignore[attr-defined]
    for a, b in zip(full.module.parameters(), second.module.parameters(), strict=True):
        assert torch.equal(a, b)
    assert [h.epoch for h in second.history] == [1, 2, 3, 4]
    other = Trainer(_mlp(), TrainConfig(epochs=4, batch_size=32, lr=3e-2, seed=5), Recording(),
                    (x, y), checkpoint=tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="other settings: lr 0.01"):
        other.fit(resume=True)


class Scripted(Validator):
    """Returns the next score of a script (and the metric the trainer records)."""

    def __init__(self, scores: list[float]) -> None:
        self.scores = iter(scores)

    def __call__(self, model: nn.Module, dist: Distributed) -> dict[str, float]:
        return {"val_score": next(self.scores)}


def test_validation_keeps_the_best_epoch_ties_going_to_the_later_one() -> None:
    x, y = _data()
    states: list[dict[str, Tensor]] = []

    def keep(stats: EpochStats) -> None:
        states.append({k: v.clone() for k, v in t.module.state_dict().items()})

    t = Trainer(_mlp(), TrainConfig(epochs=4, batch_size=64), CrossEntropy(), (x, y),
                validator=Scripted([0.5, 0.8, 0.8, 0.6]), on_epoch=keep)
    t.fit()
    assert t.best_epoch == 3 and [h.best for h in t.history] == [True, True, True, False]
    assert [h.val_score for h in t.history] == [0.5, 0.8, 0.8, 0.6]
    assert all(torch.equal(v, states[2][k]) for k, v in t.best_state.items())
    assert not all(torch.equal(v, states[3][k]) for k, v in t.best_state.items())


def test_cross_entropy_matches_the_plain_loop_and_weights() -> None:
    """Known answer: the trainer with CrossEntropy is the textbook loop (same shuffling);
    sample weights of 2 on every row give the unweighted model (the weighted mean)."""
    x, y = _data(130)
    config = TrainConfig(epochs=2, batch_size=50, lr=1e-2, weight_decay=1e-4, seed=1)
    a = _mlp()
    Trainer(a, config, CrossEntropy(), (x, y)).fit()
    b = _mlp()
    opt = torch.optim.AdamW(b.parameters(), lr=1e-2, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=2 * 3)
    gen = torch.Generator().manual_seed(1)
    for _ in range(2):
        perm = torch.randperm(130, generator=gen)
        for i in range(0, 130, 50):
            idx = perm[i:i + 50]
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(b(x[idx]), y[idx]).backward()
            opt.step()
            sched.step()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    c = _mlp()
    Trainer(c, config, CrossEntropy(torch.full((130,), 2.0)), (x, y)).fit()
    assert all(torch.allclose(p, q, atol=1e-6) for p, q in zip(a.parameters(), c.parameters(),
                                                                strict=True))


@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_rank_shares_average_to_the_global_mean(weighted: bool) -> None:
    """DDP averages the ranks' gradients: the ranks' losses must average to the global one."""
    per_sample = torch.rand(10)
    weight = torch.rand(10) + 0.5 if weighted else None
    rows = torch.arange(10)
    loss = CrossEntropy(weight)
    single = Distributed()
    whole = loss.reduce(per_sample, rows, BatchContext(0, 0, 1, rows, (0, 10), single,
                                                       torch.Generator()))
    shares = []
    for rank in (0, 1):
        d = Distributed(rank=rank, world_size=2)
        lo, hi = d.shard(10)
        ctx = BatchContext(0, 0, 1, rows, (lo, hi), d, torch.Generator())
        shares.append(float(loss.reduce(per_sample[lo:hi], rows[lo:hi], ctx)))
    assert sum(shares) / 2 == pytest.approx(float(whole), rel=1e-6)


def test_config_is_parsed_like_every_settings_table() -> None:
    assert TrainConfig.from_dict({"epochs": 3, "lr": 1}).lr == 1.0
    with pytest.raises(ConfigError, match="epochs must be an integer"):
        TrainConfig.from_dict({"epochs": "3"})
    with pytest.raises(ConfigError, match="unknown key 'eps'"):
        TrainConfig.from_dict({"eps": 0.1})
    with pytest.raises(ConfigError, match="optimizer must be one of 'adam', 'sgd'"):
        TrainConfig(optimizer="lbfgs").validate()  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="epochs must be >= 1"):
        TrainConfig(epochs=0).validate()
    adv = AdversarialConfig.from_dict({"eps": 0.2, "bounds": [0, 2], "epochs": 3})
    assert adv.bounds == (0.0, 2.0) and adv.to_dict()["bounds"] == [0.0, 2.0]
    assert AdversarialConfig.from_dict(adv.to_dict()) == adv
    for bad in ({"method": "free"}, {"eps": 0.0}, {"eps": math.nan}, {"epochs": 0},
                {"co_action": "panic"}, {"norm": "l1"}, {"bounds": (1.0, 0.0)}):
        with pytest.raises(UsageError):
            AdversarialConfig.from_dict(bad).validate()


def test_sgd_and_schedules() -> None:
    x, y = _data()
    for optimizer, schedule in (("sgd", "cosine"), ("adam", "constant")):
        t = Trainer(_mlp(), TrainConfig.from_dict({"epochs": 2, "optimizer": optimizer,
                                                   "schedule": schedule, "lr": 0.05}),
                    CrossEntropy(), (x, y))
        assert isinstance(t.optimizer, torch.optim.SGD if optimizer == "sgd"
                          else torch.optim.AdamW)
        t.fit()
        lrs = [h.lr for h in t.history]
        assert lrs[0] == 0.05 if schedule == "constant" else lrs[-1] < 0.05 * 1e-3
    with pytest.raises(UsageError, match="no training data"):
        Trainer(_mlp(), TrainConfig(), CrossEntropy(), (x[:0], y[:0]))


def test_random_shift_moves_images_by_the_drawn_offsets() -> None:
    x = torch.rand(16, 2, 8, 8)
    out = random_shift(x, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)  # the same draws: dx then dy per image
    dx = torch.randint(0, 3, (16,), generator=g)
    dy = torch.randint(0, 3, (16,), generator=g)
    pad = F.pad(x, (1, 1, 1, 1))
    for i in range(16):
        expected = pad[i, :, dy[i]:dy[i] + 8, dx[i]:dx[i] + 8]
        assert torch.equal(out[i], expected), i
    rgb = torch.rand(5, 3, 6, 7)
    assert random_shift(rgb, torch.Generator(), max_shift=2).shape == rgb.shape
    with pytest.raises(UsageError, match="needs images"):
        random_shift(torch.rand(4, 3), torch.Generator())


def test_shards_cover_the_batch_once() -> None:
    for n in (0, 1, 5, 64, 65):
        for k in (1, 2, 3):
            parts = [Distributed(rank=r, world_size=k).shard(n) for r in range(k)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(a[1] == b[0] for a, b in itertools.pairwise(parts))
            assert max(h - lo for lo, h in parts) - min(h - lo for lo, h in parts) <= 1


def test_reproducible_restores_the_torch_settings() -> None:
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    with reproducible(seed=7, threads=1):
        assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
        a = torch.rand(3)
    with reproducible(seed=7, threads=1):
        assert torch.equal(torch.rand(3), a)
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == det


def test_bundles_record_the_build_that_trained_them(tmp_path: Path) -> None:
    """``save_bundle`` writes the torch build, CPU capability and CPU model into a card's
    recipe (what bitwise reproduction depends on); ``build_mismatch`` compares a recipe with
    this machine."""
    import json

    from audit.card import InputSpec, ModelCard
    from audit.training.bundle import build_mismatch, cpu_model, save_bundle, training_build

    here = training_build()
    assert here == {"torch": torch.__version__,
                    "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                    "cpu": cpu_model()}
    assert here["cpu"] and here["cpu"] != "unknown"
    card = ModelCard(name="m", arch="x:Y", classes=["a", "b"], input=InputSpec(shape=(2,)),
                     recipe={"command": "audit train m", "seed": 0})
    save_bundle(nn.Linear(2, 2), card, tmp_path)
    written = json.loads((tmp_path / "card.json").read_text())["recipe"]
    assert written == {"command": "audit train m", "seed": 0, **here} == card.recipe
    assert build_mismatch(written) is None
    assert build_mismatch({"torch": here["torch"]}) == ("the recipe does not record "
                                                        "cpu_capability and cpu")
    other = {**here, "cpu_capability": "ZEN9"}
    assert build_mismatch(other) == (f"trained with cpu_capability ZEN9 "
                                     f"(here {here['cpu_capability']})")
    save_bundle(nn.Linear(2, 2), ModelCard(name="n", arch="x:Y", classes=["a", "b"],
                                           input=InputSpec(shape=(2,))), tmp_path / "n")
    assert json.loads((tmp_path / "n" / "card.json").read_text())["recipe"] == {}  # no recipe
