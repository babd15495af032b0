"""Robust accuracy curves against known answers, diagnostics' decision rules, and the
corruptions against scipy / scikit-image."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage.color import hsv2rgb, rgb2hsv
from torch import nn

from audit.robustness import diagnostics as dg
from audit.robustness.attacks import AttackResult
from audit.robustness.corruptions import (
    CORRUPTIONS,
    SEVERITY,
    applicable,
    corrupt,
    corruption_accuracy,
)
from audit.robustness.evaluate import AttackStats, Curve, CurveConfig, robustness_curve


def linear_problem(seed: int = 0, n: int = 120, d: int = 10, k: int = 3
                   ) -> tuple[nn.Linear, torch.Tensor, torch.Tensor, dict[str, np.ndarray]]:
    """A linear classifier with exact minimal adversarial distances: for class c and rival j
    the distance to the hyperplane is (z_c - z_j) / ||w_c - w_j||_q (q = 2 for L2, 1 for
    L-inf); the exact minimum over j is the distance to leave the polyhedral region of c."""
    g = torch.Generator().manual_seed(seed)
    model = nn.Linear(d, k)
    with torch.no_grad():
        model.weight.copy_(torch.randn(k, d, generator=g) * 3)
        model.bias.zero_()
    x = 0.2 + 0.6 * torch.rand(n, d, generator=g)
    with torch.no_grad():
        z = model(x)
        model.bias.copy_(-z.mean(0))  # spread predictions over the classes
        z = model(x)
    pred = z.argmax(1)
    y = pred.clone()
    y[:6] = (pred[:6] + 1) % k  # six misclassified samples: distance 0
    w = model.weight.detach()
    exact = {}
    for norm, q in (("l2", 2), ("linf", 1)):
        dist = torch.full((n,), math.inf)
        for j in range(k):
            diff = w[pred] - w[j]
            gap = z[torch.arange(n), pred] - z[:, j]
            dj = gap / diff.norm(p=q, dim=1).clamp_min(1e-12)
            dist = torch.where(j != pred, torch.minimum(dist, dj), dist)
        dist[:6] = 0.0
        exact[norm] = dist.detach().double().numpy()
    return model.eval(), x, y, exact


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_curve_matches_exact_minimal_distances(norm: str) -> None:
    model, x, y, exact = linear_problem()
    d = exact[norm]
    eps = [float(np.quantile(d[d > 0], q)) for q in (0.2, 0.5, 0.8)]
    eps = [e for e in eps if e < 0.19]  # the box [0, 1] never binds below 0.2
    assert len(eps) >= 2
    cfg = CurveConfig(minimal_steps=40, bounded_steps=10, bounded=(("ce", 2), ("dlr", 1)),
                      batch_size=50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = robustness_curve(model, x, y, norm, eps, bounds=(0.0, 1.0), config=cfg,  # type: ignore[arg-type]
                             generator=torch.Generator().manual_seed(0))
    assert c.correct.sum() == len(x) - 6
    for e in eps:
        truth = float((d > e).mean())
        ours = c.robust_accuracy(e)
        # an attack never finds less than the minimal perturbation: ours is an upper bound,
        # and on a linear model the attacks get (almost) all the way down to the truth
        assert truth - 1e-9 <= ours <= truth + 2 / len(x)
    found = c.minimal[c.correct]
    ratio = found / d[c.correct]
    assert np.all(ratio > 1 - 1e-3)  # FMN cannot beat the exact minimum
    # and near it on a linear model (FMN's L2 steps are coarser: 30-40 steps end ~9% above)
    assert np.median(ratio) < (1.05 if norm == "linf" else 1.15)
    assert (c.worst <= c.minimal).all()
    grid = np.linspace(0, max(eps) * 2, 50)
    acc = c.accuracy_at(grid)
    assert np.all(np.diff(acc) <= 0) and acc[0] == pytest.approx((c.worst > 0).mean())


def test_merge_ignores_failures_and_clamps_to_eps() -> None:
    c = Curve(norm="linf", eps=[0.1], correct=np.ones(3, bool), minimal=np.full(3, 0.3),
              worst=np.full(3, 0.3))
    r = AttackResult(name="a", norm="linf", eps=0.1, x_adv=torch.zeros(3, 2),
                     success=torch.tensor([True, False, True]),
                     norms=torch.tensor([0.1000001, 0.05, 0.02]), time=0.0, evaluations=3)
    assert c.merge(np.arange(3), r) == 2
    # float rounding at the ball's edge counts as within eps; a failure never lowers a norm
    assert c.worst.tolist() == [0.1, 0.3, pytest.approx(0.02)]
    assert c.robust_accuracy(0.1) == pytest.approx(1 / 3)


def fake(name: str, success: list[bool], norms: list[float] | None = None,
         info: dict | None = None, role: str = "iterative") -> AttackResult:
    s = torch.tensor(success)
    return AttackResult(name=name, norm="linf", eps=0.1, x_adv=torch.zeros(len(s), 1),
                        success=s, norms=torch.tensor(norms or [0.1] * len(s)), time=0.0,
                        evaluations=len(s), info=info or {}, role=role)


def test_single_step_rule() -> None:
    th = dg.Thresholds()
    it = fake("PGD", [True, False, False, False])
    weak = fake("FGSM", [True, False, False, False], role="single-step")
    strong = fake("FGSM", [True, True, True, False], role="single-step")
    assert not dg.single_step([weak, it], th).triggered
    assert dg.single_step([strong, it], th).triggered
    # attacks are told apart by role, not name: a minimal-norm attack is no iterative one
    other = fake("PGD", [False] * 4, role="minimal-norm")
    assert not dg.single_step([weak, other], th).evaluated


def test_iterations_rule() -> None:
    th = dg.Thresholds()
    n = 10
    info = {"success_step": torch.full((n,), -1), "steps": 20,
            "loss_start": torch.full((n,), 0.5)}
    stalled = fake("Mine", [False] * n, info={**info, "loss_end": torch.full((n,), 0.5)})
    rising = fake("Mine", [False] * n, info={**info, "loss_end": torch.full((n,), 2.0)})
    untraced = fake("APGD", [False] * n)  # no loss trace: skipped for the traced one
    assert dg.iterations([untraced, stalled], th).triggered
    assert not dg.iterations([untraced, rising], th).triggered
    few = fake("Mine", [True] * 8 + [False] * 2, info={**info, "loss_end": torch.zeros(n)})
    assert not dg.iterations([few], th).evaluated
    assert not dg.iterations([untraced], th).evaluated


def test_black_box_rule() -> None:
    th = dg.Thresholds()
    white = fake("PGD", [True] * 5 + [False] * 45)
    many = fake("Square", [True] * 5 + [True] * 4 + [False] * 41, role="black-box")
    one = fake("Square", [True] * 5 + [True] + [False] * 44, role="black-box")
    assert dg.black_box([white, many], 0.1, th).triggered
    assert not dg.black_box([white, one], 0.1, th).triggered  # a single sample: noise
    outside = fake("Square", [True] * 50, norms=[0.5] * 50, role="black-box")
    assert not dg.black_box([white, outside], 0.1, th).triggered  # beyond eps: not counted
    assert not dg.black_box([white], 0.1, th).evaluated


def test_minimal_success_reads_roles_from_curve_and_suite() -> None:
    c = Curve(norm="linf", eps=[0.1], correct=np.ones(4, bool), minimal=np.zeros(4),
              worst=np.zeros(4))
    st = AttackStats("FMN-LINF", "minimal", "linf", None, role="minimal-norm", samples=4,
                     successes=3)
    c.stats = {st.name: st, "APGD": AttackStats("APGD", "white-box", "linf", None,
                                                role="iterative", samples=4, successes=4)}
    df = fake("DeepFool", [True] * 4, role="minimal-norm",
              info={"minimal_norms": torch.tensor([0.1, math.inf, 0.2, 0.3])})
    assert dg.minimal_success(c, [df, fake("PGD", [True] * 4)]) == {"FMN-LINF": 0.75,
                                                                   "DeepFool": 0.75}


def test_unbounded_rule() -> None:
    th = dg.Thresholds()
    assert dg.unbounded({"FMN": 0.3, "DeepFool": 0.99}, "linf", th).triggered is False
    assert dg.unbounded({"FMN": 0.3, "DeepFool": 0.5}, "linf", th).triggered


def test_loss_surface_flags_a_step_function_not_a_linear_model() -> None:
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(16, 4)).eval()

    class Rounded(nn.Module):
        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return lin(torch.round(t * 4) / 4)

    x = torch.rand(30, 1, 4, 4)
    y = lin(x).argmax(1)
    th = dg.Thresholds()
    (flat, noisy), evals = dg.loss_surface(lin, x, y, "linf", 0.1, (0.0, 1.0), th)
    assert not flat.triggered and not noisy.triggered and evals == 30 * 10
    y2 = Rounded()(x).argmax(1)
    (flat2, _), _ = dg.loss_surface(Rounded().eval(), x, y2, "l2", 0.5, (0.0, 1.0), th)
    assert flat2.triggered and flat2.value == 1.0


# ------------------------------------------------------------------------ corruptions


def test_blur_matches_scipy() -> None:
    torch.manual_seed(0)
    x = torch.rand(3, 2, 9, 11)
    for s, sigma in enumerate(SEVERITY["gaussian_blur"], start=1):
        ours = corrupt(x, "gaussian_blur", s).numpy()
        ref = gaussian_filter(x.double().numpy(), sigma=(0, 0, sigma, sigma), mode="nearest",
                              truncate=4.0)
        np.testing.assert_allclose(ours, np.clip(ref, 0, 1), atol=1e-5)


def test_brightness_matches_skimage_hsv() -> None:
    torch.manual_seed(1)
    x = torch.rand(4, 3, 6, 6)
    x[0, :, 0, 0] = 0.0  # a black pixel: hue and saturation undefined
    for s, c in enumerate(SEVERITY["brightness"], start=1):
        ours = corrupt(x, "brightness", s).numpy()
        for i in range(len(x)):
            hsv = rgb2hsv(x[i].permute(1, 2, 0).double().numpy())
            hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
            ref = np.clip(hsv2rgb(hsv), 0, 1).transpose(2, 0, 1)
            np.testing.assert_allclose(ours[i], ref, atol=1e-5)
    grey = torch.rand(2, 1, 5, 5)
    assert torch.allclose(corrupt(grey, "brightness", 3), (grey + 0.15).clamp(0, 1))


def test_contrast_and_noise_known_answers() -> None:
    torch.manual_seed(2)
    x = 0.25 + 0.5 * torch.rand(5, 3, 8, 8)
    out = corrupt(x, "contrast", 2)  # c = 0.5, no clipping in [0.25, 0.75]
    m = x.mean(dim=(-2, -1), keepdim=True)
    assert torch.allclose(out, (x - m) * 0.5 + m, atol=1e-6)
    assert torch.allclose(out.mean(dim=(-2, -1)), x.mean(dim=(-2, -1)), atol=1e-6)
    flat = torch.full((200, 1, 16, 16), 0.5)
    noisy = corrupt(flat, "gaussian_noise", 5, generator=torch.Generator().manual_seed(0))
    assert (noisy - 0.5).std().item() == pytest.approx(0.10, rel=0.02)
    again = corrupt(flat, "gaussian_noise", 5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(noisy, again)


def test_corruptions_respect_the_value_range() -> None:
    torch.manual_seed(3)
    u = torch.rand(4, 1, 8, 8)
    x = u * 2 - 1  # the same images in [-1, 1]
    for name in CORRUPTIONS:
        g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
        a = corrupt(x, name, 4, bounds=(-1.0, 1.0), generator=g1)
        b = corrupt(u, name, 4, generator=g2) * 2 - 1
        assert a.min() >= -1 and a.max() <= 1
        assert torch.allclose(a, b, atol=1e-5)


def test_corruption_accuracy_skips_image_corruptions_on_tabular() -> None:
    torch.manual_seed(4)
    model = nn.Linear(6, 2).eval()
    x = torch.rand(50, 6)
    y = model(x).argmax(1)

    def logits(t: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(t)

    assert applicable("contrast", x, "tabular") is not None
    assert applicable("gaussian_noise", x, "tabular") is None
    acc = corruption_accuracy(logits, x, y, list(CORRUPTIONS), [1, 5], kind="tabular",
                              bounds=(0.0, 1.0), generator=torch.Generator().manual_seed(0),
                              batch_size=16)
    assert list(acc) == ["gaussian_noise"]
    assert 0.5 < acc["gaussian_noise"][0] <= 1.0 and acc["gaussian_noise"][1] <= 1.0
