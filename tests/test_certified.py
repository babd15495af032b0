"""Randomized smoothing (the ``certified`` check): the bounds, CERTIFY against the closed form
of a linear model, against an L2 attack on the smoothed classifier, against ART's
certification, the findings on hand-built evaluations, the check, and Gaussian-augmentation
hardening."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import Cli
from scipy.stats import binomtest, norm
from torch import Tensor, nn

from audit.certified.evaluation import CertifiedEvaluation, SigmaCertification, rate
from audit.certified.findings import abstentions, certified_findings, noise_gap
from audit.certified.params import CertifiedParams
from audit.certified.smoothing import ABSTAIN, Smoothing, max_radius
from audit.certified.stats import lower_confidence_bound, top_two_pvalue
from audit.certified.training import GaussianAugmentLoss, SmoothingConfig, smoothing_trainer
from audit.training import TrainConfig, Trainer

ROOT = Path(__file__).resolve().parents[1]


# --- the bounds ----------------------------------------------------------------------------

def test_bounds_match_scipy_and_statsmodels() -> None:
    sm = pytest.importorskip("statsmodels.stats.proportion")
    n, alpha = 200, 0.001
    ks = np.arange(0, n + 1)
    ours = lower_confidence_bound(ks, n, alpha)
    ref = np.array([sm.proportion_confint(int(k), n, alpha=2 * alpha, method="beta")[0]
                    for k in ks])
    np.testing.assert_allclose(ours, np.nan_to_num(ref), atol=1e-12)
    for k in (0, 1, 17, 100, 199, 200):
        ci = binomtest(int(k), n).proportion_ci(0.95, method="exact")
        r = rate(np.arange(n) < k)
        assert (r.ci_low, r.ci_high) == pytest.approx((ci.low, ci.high), abs=1e-12)
    for a, b in [(10, 0), (7, 3), (5, 5), (60, 40), (3, 9), (0, 0)]:
        want = binomtest(a, a + b, 0.5).pvalue if a + b else 1.0
        assert top_two_pvalue([a], [b])[0] == pytest.approx(want, rel=1e-9, abs=1e-15)


# --- (a) a linear model: the closed form ---------------------------------------------------

class Linear2(nn.Module):
    """Two-class linear model: logits (0, w.x + b)."""

    def __init__(self, w: Tensor, b: float) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone(), requires_grad=False)
        self.b = b

    def forward(self, x: Tensor) -> Tensor:
        z = x.flatten(1) @ self.w + self.b
        return torch.stack([torch.zeros_like(z), z], dim=1)


def test_linear_model_radius_matches_the_closed_form() -> None:
    """For f(x) = sign(w.x + b) the top class's probability under N(0, sigma^2 I) is exactly
    pA = Phi(|w.x + b| / (sigma ||w||)). CERTIFY's count nA is Binomial(n, pA), so its radius
    must be sigma * Phi^-1(LCB(nA)) with nA within binomial error of n pA; the radius of the
    exact pA, sigma * Phi^-1(pA) = |w.x + b| / ||w||, is the true distance to the boundary and
    bounds every certificate from above (each fails with probability <= alpha)."""
    gen = torch.Generator().manual_seed(0)
    d, sigma, n0, n, alpha = 16, 0.5, 100, 4000, 0.001
    w = torch.randn(d, generator=gen)
    model = Linear2(w, 0.3)
    dist = torch.linspace(0.05, 1.6, 40)  # signed distances to the boundary
    direction = w / w.norm()
    base = torch.randn(40, d, generator=gen)
    base = base - ((base @ w + 0.3) / w.norm())[:, None] * direction  # onto the boundary
    sign = torch.where(torch.arange(40) % 2 == 0, 1.0, -1.0)
    x = base + (sign * dist)[:, None] * direction
    cert = Smoothing(model, sigma, 2, batch_size=7000).certify(x, n0, n, alpha, seed=1)
    p_exact = norm.cdf(dist.numpy() / sigma)
    n_a = cert.counts[np.arange(40), np.where(sign.numpy() > 0, 1, 0)]
    sd = np.sqrt(n * p_exact * (1 - p_exact))
    assert np.all(np.abs(n_a - n * p_exact) <= 4.5 * sd + 1)
    ok = cert.prediction != ABSTAIN
    assert np.array_equal(cert.prediction[ok], np.where(sign.numpy() > 0, 1, 0)[ok])
    closed = np.where(ok, sigma * norm.ppf(lower_confidence_bound(n_a, n, alpha)), 0.0)
    np.testing.assert_allclose(cert.radius, closed, rtol=1e-9, atol=1e-12)
    assert np.all(cert.radius <= dist.numpy() + 1e-9)
    # the radius of the expected count, within the delta-method error of the count
    expect = sigma * norm.ppf(lower_confidence_bound(np.round(n * p_exact), n, alpha))
    slope = sigma / norm.pdf(norm.ppf(np.clip(p_exact, 1e-6, 1 - 1e-6)))
    tol = 4.5 * slope * np.sqrt(p_exact * (1 - p_exact) / n) + 1e-3
    keep = ok & (p_exact < 1 - 1e-4)
    assert np.all(np.abs(cert.radius - expect)[keep] <= tol[keep])
    assert keep.sum() >= 30
    # the largest radius the budget allows, and abstention on the boundary
    assert cert.radius.max() <= max_radius(sigma, n, alpha) + 1e-12
    on_edge = Smoothing(model, sigma, 2).certify(base[:20], n0, 1000, alpha, seed=2)
    assert np.all(on_edge.prediction == ABSTAIN) and np.all(on_edge.radius == 0)
    assert np.all(on_edge.predict == ABSTAIN)


def test_noise_is_batched_one_forward_per_chunk() -> None:
    calls: list[int] = []
    model = Linear2(torch.ones(4), 0.0)
    model.register_forward_hook(lambda m, i, o: calls.append(int(i[0].shape[0])))
    x = torch.zeros(7, 4)
    counts = Smoothing(model, 0.25, 2, batch_size=1000).counts(
        x, 300, torch.Generator().manual_seed(0))
    assert calls == [1000, 1000, 100]  # 7 * 300 noisy copies in 3 forwards
    assert counts.sum(1).tolist() == [300] * 7


# --- a small certifiable model -------------------------------------------------------------

@pytest.fixture(scope="module")
def noisy_mlp() -> tuple[nn.Module, Tensor, Tensor]:
    """An MLP trained on digits with Gaussian augmentation (sigma 0.5), and 40 test images."""
    from audit.datasets import load_dataset

    torch.manual_seed(0)
    tr, te = load_dataset("digits", "train"), load_dataset("digits", "test")
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    Trainer(model, TrainConfig(epochs=15, lr=1e-2, batch_size=64), GaussianAugmentLoss(0.5),
            (tr.x, tr.y)).fit()
    model.eval()
    return model, te.x[:40], te.y[:40]


def _smoothadv_pgd(model: nn.Module, x: Tensor, y: Tensor, sigma: float, radius: float,
                   steps: int = 20, m: int = 32, seed: int = 0) -> Tensor:
    """L2 PGD on the smoothed soft classifier (Salman et al.'s SmoothAdv): maximise the
    cross-entropy of the mean softmax over ``m`` noise draws (fresh each step), projected on
    the L2 ball of ``radius``."""
    gen = torch.Generator().manual_seed(seed)
    delta = torch.zeros_like(x)
    step = 2.5 * radius / steps
    for _ in range(steps):
        delta.requires_grad_(True)
        noise = sigma * torch.randn((m, *x.shape), generator=gen)
        logits = model((x + delta)[None].add(noise).flatten(0, 1))
        proba = F.softmax(logits, 1).view(m, len(x), -1).mean(0)
        loss = F.nll_loss(torch.log(proba + 1e-12), y)
        (g,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            g = g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            delta = delta + step * g
            norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
            delta = delta * (radius / norms).clamp(max=1.0).view(-1, 1, 1, 1)
    return (x + delta).detach()


def test_certified_accuracy_never_exceeds_attacked_accuracy(
        noisy_mlp: tuple[nn.Module, Tensor, Tensor]) -> None:
    """A certificate at radius r says no input within r changes the smoothed prediction, so
    the certified accuracy at r can never be above the accuracy of the smoothed classifier
    (majority of 2000 draws) on SmoothAdv-PGD inputs at r. The attack is strong enough to
    catch certificates inflated four-fold (at r = 1, where it breaks most samples; below, the
    certificates are far from tight: they are lower bounds)."""
    model, x, y = noisy_mlp
    sigma = 0.5
    sm = Smoothing(model, sigma, 10)
    cert = sm.certify(x, 100, 1000, 0.001, seed=3)
    yy = y.numpy()
    for r in (0.25, 0.5, 1.0):
        x_adv = _smoothadv_pgd(model, x, y, sigma, r)
        assert float((x_adv - x).flatten(1).norm(dim=1).max()) <= r + 1e-5
        votes = sm.counts(x_adv, 2000, torch.Generator().manual_seed(4)).argmax(1).numpy()
        robust = float((votes == yy).mean())
        certified = float(cert.certified_correct(yy, r).mean())
        assert certified <= robust, (r, certified, robust)
        inflated = float(((cert.prediction == yy) & (4 * cert.radius >= r)).mean())
        if r >= 1.0:  # where the attack breaks most samples
            assert inflated > robust, (r, inflated, robust)
    assert cert.certified_correct(yy, 0.5).mean() > 0.2  # the inequality is not vacuous


# --- (c) agreement with ART ----------------------------------------------------------------

def test_agrees_with_art_randomized_smoothing(
        noisy_mlp: tuple[nn.Module, Tensor, Tensor]) -> None:
    """ART's PyTorchRandomizedSmoothing.certify on the same model, sigma, n0 (ART's
    sample_size), n and alpha. Both draw independent noise, so per-sample radii differ by
    Monte Carlo error only; the paired mean difference of radii, and of the certified-correct
    indicators at each radius, must be within 4 standard errors of the paired differences
    (plus one sample's worth, 1/N): a false alarm has probability about 1e-4 per comparison,
    while a wrong bound, a missing sigma factor or another selection rule shifts the mean by
    many standard errors. The lower bound of the same counts is identical."""
    rs = pytest.importorskip("art.estimators.certification.randomized_smoothing")
    pytest.importorskip("statsmodels")
    model, x, y = noisy_mlp
    sigma, n0, n, alpha = 0.5, 100, 500, 0.001
    art = rs.PyTorchRandomizedSmoothing(model=model, loss=nn.CrossEntropyLoss(),
                                        input_shape=(1, 8, 8), nb_classes=10,
                                        device_type="cpu", sample_size=n0, scale=sigma,
                                        alpha=alpha, clip_values=(0.0, 1.0))
    np.random.seed(0)
    art_pred, art_radius = art.certify(x.numpy(), n=n, batch_size=1000)
    ours = Smoothing(model, sigma, 10).certify(x, n0, n, alpha, seed=5)
    for k in (0, 1, 250, 480, 500):
        assert art._lower_confidence_bound(k, n) == pytest.approx(
            float(lower_confidence_bound([k], n, alpha)[0]), abs=1e-12)
    assert set(np.unique(art_pred)) <= set(range(-1, 10))
    assert np.all(art_radius[art_pred == -1] == 0) and np.all(ours.radius[ours.abstained] == 0)
    N = len(y)

    def close(a: np.ndarray, b: np.ndarray) -> None:
        d = a.astype(float) - b.astype(float)
        assert abs(d.mean()) <= 4 * d.std(ddof=1) / math.sqrt(N) + 1 / N, (a.mean(), b.mean())

    close(ours.radius, art_radius)
    yy = y.numpy()
    for r in (0.0, 0.25, 0.5, 1.0):
        close(ours.certified_correct(yy, r), (art_pred == yy) & (art_radius >= r))
    close(ours.abstained, art_pred == -1)
    assert np.mean(ours.prediction == art_pred) >= 0.8


# --- findings on hand-built evaluations ----------------------------------------------------

def _sigma(sigma: float, y: list[int], pred: list[int], radius: list[float],
           predict: list[int] | None = None) -> SigmaCertification:
    return SigmaCertification(sigma=sigma, y=np.array(y), prediction=np.array(pred),
                              radius=np.array(radius, dtype=float),
                              predict=np.array(predict if predict is not None else pred),
                              n0=100, n=1000, alpha=0.001)


def _ev(sigmas: list[SigmaCertification], base: list[bool],
        card: dict[str, float] | None = None) -> CertifiedEvaluation:
    return CertifiedEvaluation(samples=len(base), base_correct=np.array(base), sigmas=sigmas,
                               radii=[0.25, 0.5, 1.0], card_metrics=card or {})


def test_findings_on_hand_built_evaluations() -> None:
    p = CertifiedParams()
    y = [0] * 20
    good = _sigma(0.25, y, [0] * 19 + [ABSTAIN], [0.6] * 19 + [0.0])  # 95% certified at 0.5
    ev = _ev([good], [True] * 20)
    assert certified_findings(ev, p) == []
    # card claims are judged by the cross-check against the section's metrics: a claim
    # inside the interval is fine; above it, a high finding
    from audit.certified.section import metrics as certified_metrics
    from audit.crosscheck import Audited
    from audit.crosscheck.claims import CardClaims
    from audit.result import Section

    sec = Section(check="certified", title="c", metrics=certified_metrics(ev))

    def claims(card: dict[str, float]) -> list[Any]:
        res = CardClaims().run(Audited([sec], {"dataset": "d", "metrics": card},
                                       {"name": "d/test"}))
        assert res is not None
        return res.findings

    assert claims({"certified_accuracy_sigma_0.25_l2_0.5": 0.9}) == []
    (f,) = claims({"certified_accuracy_l2_1": 0.5,
                   "certified_accuracy_sigma_0.25_l2_1_ci_low": 0.9,
                   "certified_accuracy_sigma_0.5_l2_0.25": 0.99})  # ci keys are not claims
    assert f.id == "crosscheck.claim.certified_accuracy_l2_1" and f.severity == "high"
    assert f.evidence["measured"] == 0.0 and f.evidence["ci_high"] < 0.5
    # abstentions: 5 of 20 -> medium, 11 of 20 -> high
    some = _sigma(0.5, y, [0] * 15 + [ABSTAIN] * 5, [0.3] * 20)
    many = _sigma(1.0, y, [0] * 9 + [ABSTAIN] * 11, [0.3] * 20)
    found = {f.id: f.severity for f in abstentions(_ev([some, many], [True] * 20), p)}
    assert found == {"certified.abstentions.sigma_0.5": "medium",
                     "certified.abstentions.sigma_1": "high"}
    # smoothed accuracy 15 points below the base model's: medium; 5 points: nothing
    gap = _sigma(0.5, y, [0] * 20, [0.3] * 20, predict=[0] * 17 + [1] * 3)
    (g,) = noise_gap(_ev([gap], [True] * 20), p)
    assert g.id == "certified.noise-gap.sigma_0.5" and g.evidence["gap"] == pytest.approx(0.15)
    small = _sigma(0.5, y, [0] * 20, [0.3] * 20, predict=[0] * 19 + [ABSTAIN])
    assert noise_gap(_ev([small], [True] * 20), p) == []


def test_best_sigma_per_radius_and_rates_with_intervals() -> None:
    y = [0] * 10
    a = _sigma(0.25, y, [0] * 10, [0.4] * 10)
    b = _sigma(0.5, y, [0] * 6 + [ABSTAIN] * 4, [0.9] * 6 + [0.0] * 4)
    ev = _ev([a, b], [True] * 10)
    assert ev.best(0.25) is a and ev.best(0.5) is b
    r = b.certified_accuracy(0.5)
    assert (r.k, r.n, r.value) == (6, 10, 0.6) and r.ci_low < 0.6 < r.ci_high
    assert b.abstentions.k == 4 and a.certified_accuracy(1.0).k == 0


# --- the check -----------------------------------------------------------------------------

def test_check_is_skipped_without_sigmas_and_runs_with_them() -> None:
    from audit.errors import DataError
    from audit.runner import run_audit

    # asked for by name without a noise level: the run's error (exit 2), not a green skip;
    # in the default selection the same message is the skip reason (tests/test_user_fairness.py)
    with pytest.raises(DataError, match="smoothing_sigmas"):
        run_audit("digits-cnn", checks=["certified"], seed=0)
    params = {"certified": {"sigmas": [0.25], "max_samples": 24, "n0": 20, "n": 100}}
    sec = run_audit("digits-cnn", checks=["certified"], seed=0, params=params).sections[0]
    again = run_audit("digits-cnn", checks=["certified"], seed=0, params=params).sections[0]
    assert sec.status in ("pass", "warn", "fail") and sec.error is None
    assert sec.metrics == again.metrics  # seeded
    m = sec.metrics
    assert m["samples"] == 24 and m["model_evaluations"] == 24 * 120
    for name in ("certified_accuracy_sigma_0.25_l2_0.25", "smoothed_accuracy_sigma_0.25",
                 "abstention_rate_sigma_0.25", "certified_accuracy_l2_0.5", "base_accuracy"):
        assert m[f"{name}_ci_low"] <= m[name] <= m[f"{name}_ci_high"]
    assert m["max_certifiable_radius_sigma_0.25"] == pytest.approx(
        0.25 * norm.ppf(0.001 ** (1 / 100)), rel=1e-6)
    assert [f.id for f in sec.figures] == ["certified-curve"]
    assert [t.id for t in sec.tables] == ["certified-radii", "certified-curve",
                                          "certified-smoothed", "samples"]
    assert next(t for t in sec.tables if t.id == "samples").rows[0][2] == 24
    assert "input units" in sec.reading
    rates = sec.outcomes["rates"]  # per-sample successes: paired comparisons of two models
    assert sec.outcomes["samples"] == 24 and {"base_accuracy", "smoothed_accuracy_sigma_0.25",
                                              "certified_accuracy_sigma_0.25_l2_0.5"} <= set(rates)


# --- hardening with Gaussian augmentation --------------------------------------------------

def test_gaussian_augment_loss_trains_on_noise() -> None:
    x = torch.rand(64, 1, 8, 8)
    y = (x.mean((1, 2, 3)) > 0.5).long()
    seen: list[Tensor] = []
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    model.register_forward_pre_hook(lambda m, i: seen.append(i[0].detach().clone()))
    cfg = SmoothingConfig(sigma=0.3, epochs=1, batch_size=64)
    t = smoothing_trainer(model, cfg, (x, y), (x, y))
    t.fit()
    noise = seen[0] - x[torch.randperm(64, generator=torch.Generator().manual_seed(0))]
    assert float(noise.std()) == pytest.approx(0.3, rel=0.1)
    h = t.history[0].to_dict()
    assert h["method"] == "smoothing" and h["sigma"] == 0.3
    assert {"train_noisy_accuracy", "val_noisy_accuracy", "val_clean_accuracy"} <= set(h)
    with pytest.raises(Exception, match="sigma must be > 0"):
        SmoothingConfig(sigma=0.0).validate()


@pytest.mark.slow  # trains and runs two certified audits (~11 s); the loss is tested above
def test_harden_smoothing_cli(cli: Cli, tmp_path: Path, small_digits_file: Path) -> None:
    out = tmp_path / "m"
    report = tmp_path / "cmp.html"
    code, stdout, err = cli("harden", "digits-cnn", "--method", "smoothing", "--sigma", "0.25",
                            "--out", str(out), "--data", str(small_digits_file), "--epochs",
                            "2", "--threads", "1", "--checks", "certified", "--quick",
                            "--report", str(report), "--no-progress")
    assert code == 0, err
    card = json.loads((out / "card.json").read_text())
    assert card["robustness"]["smoothing_sigmas"] == [0.25]
    rec = card["recipe"]
    assert (rec["method"], rec["sigma"]) == ("smoothing", 0.25) and "eps" not in rec
    assert "--method smoothing --sigma 0.25" in rec["command"]
    assert "test_noisy_accuracy_sigma_0.25" in card["metrics"]
    assert "smoothing, sigma 0.25" in stdout
    for side in ("before", "after"):
        doc = json.loads((tmp_path / f"cmp-{side}.json").read_text())
        (sec,) = doc["sections"]
        assert sec["check"] == "certified" and sec["status"] != "skipped", side
        assert "certified_accuracy_sigma_0.25_l2_0.25" in sec["metrics"]


def test_harden_smoothing_needs_a_sigma(cli: Cli, tmp_path: Path) -> None:
    code, _, err = cli("harden", "digits-cnn", "--method", "smoothing", "--out",
                       str(tmp_path / "n"), "--no-audit")
    assert code == 4 and "--sigma" in err and len(err.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def small_digits_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from audit.datasets import load_dataset

    d = load_dataset("digits", "train")
    path = tmp_path_factory.mktemp("data") / "digits-small.npz"
    np.savez(path, x=d.x[:160].numpy(), y=d.y[:160].numpy())
    return path



# --- the bundled model ---------------------------------------------------------------------

def test_bundled_smoothed_model_card_states_its_certificates() -> None:
    from audit.zoo import get_recipe

    path = ROOT / "models" / "digits-cnn-smoothed" / "card.json"
    if not path.is_file():
        pytest.skip("models/digits-cnn-smoothed not built yet (audit train digits-cnn-smoothed)")
    card = json.loads(path.read_text())
    sigmas = card["robustness"]["smoothing_sigmas"]
    assert sigmas and card["recipe"]["method"] == "smoothing"
    m = card["metrics"]
    for s in sigmas:
        for r in ("0.25", "0.5", "1"):
            name = f"certified_accuracy_sigma_{s:g}_l2_{r}"
            assert m[f"{name}_ci_low"] <= m[name] <= m[f"{name}_ci_high"]
    assert get_recipe("digits-cnn-smoothed").train is not None
