"""Attacks: budgets and value ranges respected, agreement with foolbox, known answers of the
losses and of APGD's schedule, evaluation counts, no side effects on the model."""

from __future__ import annotations

import math
import warnings

import foolbox as fb
import pytest
import torch
from torch import nn

from audit.datasets import load_dataset
from audit.loading import LoadedModel
from audit.robustness.attacks import (
    APGD,
    FGSM,
    PGD,
    Attack,
    CountingModel,
    Square,
    apgd_checkpoints,
    dlr_loss,
    margin_loss,
    perturbation_norms,
    project,
    run_batched,
)
from audit.robustness.foolbox_attacks import FMN, CarliniWagner, DeepFool, HopSkipJump


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    d = load_dataset("digits", "test")
    return d.x, d.y


@pytest.fixture(scope="module")
def cnn(digits_loaded: LoadedModel) -> nn.Module:
    return digits_loaded.model.eval()


class Shifted(nn.Module):
    """digits-cnn taking inputs in [-1, 1] (so attacks must respect a non-[0, 1] range)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner((x + 1) / 2)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


OWN = [
    lambda n, b: FGSM(norm=n, bounds=b),
    lambda n, b: PGD(norm=n, steps=10, restarts=2, bounds=b, generator=gen()),
    lambda n, b: APGD(norm=n, loss="ce", steps=10, bounds=b, generator=gen()),
    lambda n, b: APGD(norm=n, loss="dlr", steps=10, bounds=b, generator=gen()),
]


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 1.0)])
@pytest.mark.parametrize("make", OWN)
def test_own_attacks_stay_in_ball_and_range(cnn, digits, norm, eps, make) -> None:
    x, y = digits
    x = x[:64] * 2 - 1
    model = Shifted(cnn).eval()
    attack = make(norm, (-1.0, 1.0))
    assert isinstance(attack, Attack)
    r = attack(model, x, y[:64], eps=eps)
    assert r.x_adv.min() >= -1 and r.x_adv.max() <= 1
    assert (perturbation_norms(r.x_adv - x, norm) <= eps * (1 + 1e-5)).all()
    assert torch.allclose(r.norms, perturbation_norms(r.x_adv - x, norm))
    with torch.no_grad():
        wrong = model(r.x_adv).argmax(1) != y[:64]
    # success means exactly: the returned input is misclassified
    assert torch.equal(r.success, wrong)
    assert r.success.any() and r.evaluations > 0


def test_square_stays_in_ball_and_finds_what_pgd_finds(cnn, digits) -> None:
    x, y = digits[0][:64], digits[1][:64]
    sq = Square(queries=500, generator=gen(1))(cnn, x, y, eps=0.1)
    assert (perturbation_norms(sq.x_adv - x, "linf") <= 0.1 + 1e-6).all()
    assert sq.x_adv.min() >= 0 and sq.x_adv.max() <= 1
    assert sq.gradients == 0
    with torch.no_grad():
        assert torch.equal(sq.success, cnn(sq.x_adv).argmax(1) != y)
    pgd = PGD(steps=20, generator=gen(1))(cnn, x, y, eps=0.1)
    # a score-based attack without gradients gets most of the way on an undefended model
    assert sq.success_rate >= 0.75 * pgd.success_rate > 0.3


def test_square_handles_tabular_inputs() -> None:
    torch.manual_seed(0)
    model = nn.Linear(12, 2).eval()
    x = torch.rand(40, 12)
    with torch.no_grad():  # put the boundary through the data
        score = model(x)[:, 1] - model(x)[:, 0]
        model.bias[1] -= score.median()
        y = model(x).argmax(1)
    r = Square(queries=200, generator=gen())(model, x, y, eps=0.1)
    assert r.x_adv.shape == x.shape
    assert (perturbation_norms(r.x_adv - x, "linf") <= 0.1 + 1e-6).all()
    pgd = PGD(steps=20, generator=gen())(model, x, y, eps=0.1)
    assert 0 < pgd.success_rate < 1
    assert r.success_rate >= 0.8 * pgd.success_rate


def test_pgd_matches_foolbox_linf_pgd(cnn, digits) -> None:
    """Same inputs, same settings (20 steps, step 0.01/0.3 eps, random start, last iterate).
    Both draw the random start from the same seed, so they agree sample by sample."""
    x, y = digits[0][:160], digits[1][:160]
    fmodel = fb.PyTorchModel(cnn, bounds=(0, 1))
    for eps in (0.05, 0.1):
        torch.manual_seed(3)
        _, _, fb_success = fb.attacks.LinfPGD(steps=20)(fmodel, x, y, epsilons=eps)
        ours = PGD(norm="linf", steps=20, rel_step=0.01 / 0.3, early_stop=False,
                   generator=gen(3))(cnn, x, y, eps=eps)
        assert abs(ours.success_rate - float(fb_success.float().mean())) <= 1 / len(x) + 1e-9
        assert float((ours.success == fb_success).float().mean()) >= 0.95


@pytest.mark.slow
def test_pgd_l2_matches_foolbox_l2_pgd(cnn, digits) -> None:
    x, y = digits
    fmodel = fb.PyTorchModel(cnn, bounds=(0, 1))
    torch.manual_seed(0)
    _, _, fb_success = fb.attacks.L2PGD(steps=40)(fmodel, x, y, epsilons=0.5)
    ours = PGD(norm="l2", steps=40, rel_step=0.025, early_stop=False,
               generator=gen(0))(cnn, x, y, eps=0.5)
    # random starts are drawn differently in L2, so agreement is statistical
    assert abs(ours.success_rate - float(fb_success.float().mean())) <= 0.04


def test_iterative_beats_single_step_and_restarts_help(cnn, digits) -> None:
    x, y = digits[0][:160], digits[1][:160]
    fgsm = FGSM()(cnn, x, y, eps=0.1)
    pgd1 = PGD(steps=20, generator=gen())(cnn, x, y, eps=0.1)
    pgd3 = PGD(steps=20, restarts=3, generator=gen())(cnn, x, y, eps=0.1)
    assert fgsm.success_rate < pgd1.success_rate <= pgd3.success_rate
    # restarts only re-run the samples not yet fooled
    assert pgd3.evaluations < 3 * pgd1.evaluations


def test_evaluation_counts(cnn, digits) -> None:
    x, y = digits[0][:50], digits[1][:50]
    r = PGD(steps=7, early_stop=False, generator=gen())(cnn, x, y, eps=0.05)
    assert r.gradients == 50 * 7 and r.evaluations == 50 * 8  # + the final success check
    quiet = PGD(steps=7, early_stop=False, check_success=False, generator=gen())
    assert quiet(cnn, x, y, eps=0.05).evaluations == 50 * 7
    counting = CountingModel(cnn)
    with torch.no_grad():
        counting(x)
    xg = x.clone().requires_grad_(True)
    counting(xg).sum().backward()
    assert counting.forwards == 100 and counting.backwards == 50


def test_foolbox_wrappers_count_and_find_minimal_perturbations(cnn, digits) -> None:
    x, y = digits[0][:32], digits[1][:32]
    fmn = FMN(norm="l2", steps=20, max_stepsize=0.1)(cnn, x, y)
    df = DeepFool(norm="l2", candidates=4, steps=20)(cnn, x, y)
    for r in (fmn, df):
        assert r.evaluations > 32 and r.gradients > 0
        found = r.info["minimal_norms"]
        assert torch.isfinite(found).float().mean() > 0.9
        with torch.no_grad():
            adv = cnn(r.x_adv).argmax(1) != y
        assert torch.equal(adv, r.success)
    # with eps: success means adversarial within eps
    bounded = FMN(norm="l2", steps=20, max_stepsize=0.1)(cnn, x, y, eps=0.5)
    assert (bounded.norms[bounded.success] <= 0.5 + 1e-5).all()
    # what FMN finds within 0.5, a bounded attack at 0.5 finds too
    pgd = PGD(norm="l2", steps=20, restarts=2, generator=gen())(cnn, x, y, eps=0.5)
    fmn_at = fmn.info["minimal_norms"] <= 0.5
    assert pgd.success_rate >= float(fmn_at.float().mean()) - 2 / 32


@pytest.mark.slow
def test_cw_and_hopskipjump_run(cnn, digits) -> None:
    x, y = digits[0][:16], digits[1][:16]
    cw = CarliniWagner(steps=30)(cnn, x, y, eps=1.0)
    hsj = HopSkipJump(norm="l2", steps=4)(cnn, x, y, eps=1.0)
    assert hsj.gradients == 0 and hsj.evaluations > 16
    assert cw.success.any() and hsj.info["minimal_norms"].isfinite().all()


def test_attacks_leave_model_alone() -> None:
    """Usable from a training loop: train mode kept, parameter gradients untouched."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.3),
                          nn.Linear(32, 10))
    model.train()
    x, y = torch.rand(20, 1, 8, 8), torch.randint(0, 10, (20,))
    for attack in (PGD(steps=3, early_stop=False, check_success=False), FGSM(random_start=True,
                   rel_step=1.25), APGD(steps=4)):
        r = attack(model, x, y, eps=0.1)
        assert model.training
        assert all(p.grad is None for p in model.parameters())
        loss = nn.functional.cross_entropy(model(r.x_adv), y)
        loss.backward()  # the adversarial batch trains like any batch
        assert all(p.grad is not None for p in model.parameters())
        model.zero_grad(set_to_none=True)


def test_custom_loss_is_used() -> None:
    """TRADES-style: maximise KL to the clean prediction through a closure."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    x = torch.rand(16, 1, 8, 8)
    y = model(x).argmax(1)
    clean = torch.log_softmax(model(x), 1).detach()

    def kl(logits: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
        return nn.functional.kl_div(torch.log_softmax(logits, 1), clean, log_target=True,
                                    reduction="none").sum(1)

    # TRADES starts near x: the KL is flat (zero gradient) exactly at x
    r = PGD(steps=5, loss=kl, early_stop=False, generator=gen())(model, x, y, eps=0.05)
    with torch.no_grad():
        assert (kl(model(r.x_adv), y) > kl(model(x), y) + 1e-6).all()


def test_losses_known_answers() -> None:
    z = torch.tensor([[3.0, 1.0, 0.0, -1.0], [0.0, 2.0, 1.0, -5.0]])
    y = torch.tensor([0, 0])
    # sample 0: correct, margin 3-1=2, z_pi1 - z_pi3 = 3-0 -> DLR = -2/3
    # sample 1: wrong, z_y - max_other = 0-2 = -2, z_pi1 - z_pi3 = 2-0 -> DLR = 1
    assert torch.allclose(dlr_loss(z, y), torch.tensor([-2 / 3, 1.0]), atol=1e-6)
    assert torch.allclose(margin_loss(z, y), torch.tensor([-2.0, 2.0]))
    # DLR ignores a shift and a positive scale of the logits
    assert torch.allclose(dlr_loss(z * 1e4 + 7, y), dlr_loss(z, y), atol=1e-5)


def test_apgd_dlr_is_immune_to_scaled_logits(cnn, digits) -> None:
    x, y = digits[0][:96], digits[1][:96]

    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = cnn

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return self.inner(t) * 1e6

    scaled = Scaled().eval()
    plain = APGD(loss="dlr", steps=20, generator=gen(5))(cnn, x, y, eps=0.1)
    big = APGD(loss="dlr", steps=20, generator=gen(5))(scaled, x, y, eps=0.1)
    assert abs(plain.success_rate - big.success_rate) <= 2 / 96
    ce_big = APGD(loss="ce", steps=20, generator=gen(5))(scaled, x, y, eps=0.1)
    assert ce_big.success_rate < 0.5 * big.success_rate  # saturated softmax: no gradient


def test_apgd_checkpoints_match_the_paper() -> None:
    # Croce & Hein 2020: p = 0, 0.22, then p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)
    assert apgd_checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert apgd_checkpoints(1000)[:3] == [220, 410, 570]


def test_projection_invariants() -> None:
    torch.manual_seed(0)
    x = torch.rand(30, 3, 4, 4)
    far = x + torch.randn_like(x) * 5
    eps = torch.full((30,), 0.2)
    for norm in ("linf", "l2"):
        p = project(far, x, eps, norm, (0.0, 1.0))  # type: ignore[arg-type]
        assert (perturbation_norms(p - x, norm) <= 0.2 + 1e-6).all()  # type: ignore[arg-type]
        assert p.min() >= 0 and p.max() <= 1
        inside = x + (p - x) * 0.5
        assert torch.allclose(project(inside, x, eps, norm, (0.0, 1.0)), inside,  # type: ignore[arg-type]
                              atol=1e-6)


def test_run_batched_joins_batches(cnn, digits) -> None:
    x, y = digits[0][:70], digits[1][:70]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = run_batched(FMN(norm="linf", steps=10), cnn, x, y, eps=None, batch_size=32)
    assert r.x_adv.shape == x.shape and r.success.shape == (70,)
    assert r.info["minimal_norms"].shape == (70,)
    per_sample = PGD(steps=5, early_stop=False, generator=gen())
    b = run_batched(per_sample, cnn, x, y, eps=torch.full((70,), 0.05), batch_size=32)
    assert (b.norms <= 0.05 + 1e-6).all() and b.evaluations == 70 * 6
    assert math.isclose(b.success_rate, float(b.success.float().mean()))
