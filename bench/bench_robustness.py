"""Our PGD against foolbox's LinfPGD and a bare loop; the robustness check against a standard
per-epsilon PGD evaluation. Everything measured in this run, on digits-cnn (360 test images).

    python bench/bench_robustness.py [threads] [rounds]

1. PGD time per sample (L-inf, eps 0.1, 40 steps of 0.01/0.3 eps, random start, same inputs):
   foolbox ``LinfPGD`` vs ours with the same work (``early_stop=False``: every sample takes
   every step) vs a bare loop of the same number of forward+backward passes (no projection,
   no bookkeeping). Median of ``rounds`` interleaved rounds. Goals: faster than foolbox,
   <= 1.05x the bare loop. Ours with early stopping (the default) is shown too.
2. Cost of the default ``robustness`` check (curves in L-inf and L2 at the card's 4 + 4
   epsilons, plus attack suite, diagnostics, corruptions, gallery) against PGD with 100
   steps and 5 restarts run at each of the 8 epsilons on all samples: model evaluations
   (per-sample forward passes), counted for the reference both with a fixed budget (what
   foolbox's LinfPGD does) and with per-sample early stopping (the cheapest way to run it),
   and the largest difference between the two curves. Goal: >= 5x fewer evaluations for the
   same curve within 1 point.

``threads`` (default 1) sets torch's intra-op threads for both sides.
"""

from __future__ import annotations

import statistics
import sys
import time
import warnings

import foolbox as fb
import torch

from audit.datasets import load_dataset
from audit.loading import load_model
from audit.robustness.attacks import PGD
from audit.runner import run_audit

EPS = 0.1
STEPS = 40
REL = 0.01 / 0.3


def bare_loop(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> None:
    """``steps`` forward+backward passes with respect to the input, nothing else."""
    xg = x.clone().requires_grad_(True)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(xg), y, reduction="sum")
        torch.autograd.grad(loss, xg)


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def pgd_timing(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, rounds: int) -> None:
    fmodel = fb.PyTorchModel(model, bounds=(0, 1))
    fb_pgd = fb.attacks.LinfPGD(steps=STEPS, rel_stepsize=REL)
    same = PGD(steps=STEPS, rel_step=REL, early_stop=False, generator=torch.Generator())
    early = PGD(steps=STEPS, rel_step=REL, generator=torch.Generator())
    runs = {
        "foolbox LinfPGD": lambda: fb_pgd(fmodel, x, y, epsilons=EPS),
        "ours, same work": lambda: same(model, x, y, eps=EPS),
        "bare loop (f+b only)": lambda: bare_loop(model, x, y, STEPS),
        "ours, early stop": lambda: early(model, x, y, eps=EPS),
    }
    for fn in runs.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(rounds):
        for k, fn in runs.items():
            times[k].append(timed(fn))
    n = len(x)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"PGD L-inf eps {EPS}, {STEPS} steps, {n} samples, median of {rounds} rounds")
    for k, t in med.items():
        print(f"  {k:22s} {t / n * 1e6:9.1f} us/sample")
    torch.manual_seed(0)
    _, _, fb_success = fb_pgd(fmodel, x, y, epsilons=EPS)
    ours = PGD(steps=STEPS, rel_step=REL, early_stop=False,
               generator=torch.Generator().manual_seed(0))(model, x, y, eps=EPS)
    print(f"  success rate: foolbox {float(fb_success.float().mean()):.4f}, ours "
          f"{ours.success_rate:.4f}")
    fool, same_t = med["foolbox LinfPGD"], med["ours, same work"]
    print(f"  ratio foolbox / ours (same work):   {fool / same_t:.2f}x  (goal > 1)")
    print(f"  ratio ours (same work) / bare loop: "
          f"{same_t / med['bare loop (f+b only)']:.3f}x  (goal <= 1.05)")
    print(f"  ratio foolbox / ours (early stop):  {fool / med['ours, early stop']:.2f}x")


def check_cost(model_name: str) -> None:
    loaded = load_model(model_name)
    card = loaded.card
    assert card is not None
    eps = {"linf": card.robustness["linf_eps"], "l2": card.robustness["l2_eps"]}
    start = time.perf_counter()
    res = run_audit(loaded, checks=["robustness"], seed=0)
    t_check = time.perf_counter() - start
    sec = res.sections[0]
    ours_total = int(sec.metrics["model_evaluations"])
    cost = next(t for t in sec.tables if t.id == "robustness-cost")
    ours_curve = sum(int(r[1]) for r in cost.rows if str(r[0]).startswith("curve"))
    d = load_dataset(card.dataset or "digits", "test")
    n = len(d)
    ref_early = 0
    diffs = []
    start = time.perf_counter()
    print(f"\nrobust accuracy, {n} samples: check (default) vs PGD 100 steps x 5 restarts")
    for norm, values in eps.items():
        for e in values:
            ref = PGD(norm=norm, steps=100, restarts=5,  # type: ignore[arg-type]
                      generator=torch.Generator().manual_seed(0))
            r = ref(loaded.model, d.x, d.y, eps=e)
            ref_early += r.evaluations
            ref_acc = 1 - r.success_rate
            ours = sec.metrics[f"robust_accuracy_{norm}_{e:g}"]
            diffs.append((ours - ref_acc) * 100)
            print(f"  {norm:4s} eps {e:<5g} check {ours:7.2%}   reference {ref_acc:7.2%}   "
                  f"diff {diffs[-1]:+.2f} points")
    t_ref = time.perf_counter() - start
    n_eps = sum(len(v) for v in eps.values())
    ref_fixed = n * 5 * (100 + 1) * n_eps
    print(f"  largest |diff| {max(abs(v) for v in diffs):.2f} points (goal <= 1); check at most "
          f"{max(diffs):+.2f} points above the reference")
    print(f"model evaluations: check total {ours_total} ({t_check:.1f} s, incl. suite, "
          f"diagnostics, corruptions), its curves {ours_curve}")
    print(f"  reference, fixed budget {ref_fixed}; with early stopping {ref_early} "
          f"({t_ref:.1f} s)")
    print(f"  ratio reference / check total: fixed {ref_fixed / ours_total:.1f}x, early-stopped "
          f"{ref_early / ours_total:.1f}x  (goal >= 5)")
    print(f"  ratio reference / check curves only: fixed {ref_fixed / ours_curve:.1f}x, "
          f"early-stopped {ref_early / ours_curve:.1f}x")


def main(threads: int = 1, rounds: int = 5) -> None:
    torch.set_num_threads(threads)
    warnings.simplefilter("ignore")
    loaded = load_model("digits-cnn")
    d = load_dataset("digits", "test")
    print(f"torch {torch.__version__}, {threads} thread(s)")
    pgd_timing(loaded.model, d.x, d.y, rounds)
    check_cost("digits-cnn")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
