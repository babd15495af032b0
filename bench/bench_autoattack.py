"""Our AutoAttack standard protocol against pyautoattack's (the authors' code) in the same run.

    python bench/bench_autoattack.py [--samples N] [--models a,b] [--norms linf,l2] [--seed 0]

For each bundled model (default digits-cnn, digits-cnn-robust, shapes-cnn) and norm, on the
samples the robustness check attacks (its seeded subset of the card's test data; the first
``--samples`` of them when given, default all), at the card's headline eps (the middle one of
its list, as the check), both run AutoAttack ``version='standard'`` with the same seed and
batch size (250): ``AutoAttack(model, norm, eps, version='standard', seed).run_standard_
evaluation`` and ``audit.robustness.autoattack.autoattack``. With fewer than 10 classes both
use ``classes - 1`` targets (the reference's ``n_target_classes`` must be lowered to run at
all). Prints both robust accuracies with exact (Clopper-Pearson) 95% intervals, the samples
on which they disagree, both wall times and the ratio ours / reference (goal: <= 1). One
intra-op thread for both, as the test suite.
"""

from __future__ import annotations

import argparse
import logging
import math
import time

import numpy as np
import torch

from audit.robustness.autoattack import autoattack
from audit.robustness.params import RobustnessParams, epsilons, headline_eps
from audit.runner import build_subject
from audit.stats import clopper_pearson

MODELS = ("digits-cnn", "digits-cnn-robust", "shapes-cnn")


def check_sample(name: str, samples: int | None) -> tuple[object, torch.Tensor, torch.Tensor,
                                                          dict[str, float], int]:
    """The model, the robustness check's samples (the first ``samples``), the headline eps per
    norm and the number of classes."""
    s = build_subject(name)
    p = RobustnessParams()
    n = len(s.data)
    rng = s.rng("robustness.samples")  # as audit.robustness.measure picks them
    idx = np.sort(rng.choice(n, p.max_samples, replace=False)) if n > p.max_samples \
        else np.arange(n)
    idx = idx[:samples] if samples else idx
    pick = torch.as_tensor(idx)
    eps = {nm: headline_eps(p, nm, e) for nm, e in epsilons(p, s).items() if e}
    return s.model, s.data.x[pick], s.data.y[pick], eps, len(s.card.classes)


def reference(model: object, x: torch.Tensor, y: torch.Tensor, norm: str, eps: float,
              seed: int, classes: int) -> tuple[np.ndarray, float]:
    from pyautoattack import AutoAttack

    aa = AutoAttack(model, norm={"linf": "Linf", "l2": "L2"}[norm], eps=eps,
                    version="standard", seed=seed)
    aa.apgd_targeted.n_target_classes = min(9, classes - 1)
    aa.fab.n_target_classes = min(9, classes - 1)
    t = time.perf_counter()
    _, y_adv = aa.run_standard_evaluation(x, y, batch_size=250)
    return (y_adv == y).numpy(), time.perf_counter() - t


def ci(k: int, n: int) -> str:
    lo, hi = clopper_pearson(k, n)
    return f"{k / n:6.1%} [{lo:5.1%}, {hi:5.1%}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=None, help="first N of the check's sample")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--norms", default="linf,l2")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    logging.getLogger("auto-attack").setLevel(logging.ERROR)
    rows = []
    for name in args.models.split(","):
        model, x, y, eps, classes = check_sample(name, args.samples)
        for norm in args.norms.split(","):
            if norm not in eps:
                continue
            e = eps[norm]
            theirs, t_ref = reference(model, x, y, norm, e, args.seed, classes)
            t = time.perf_counter()
            ours = autoattack(model, x, y, norm=norm, eps=e, seed=args.seed,  # type: ignore[arg-type]
                              num_classes=classes)
            t_ours = time.perf_counter() - t
            n = len(x)
            k_ref, k_ours = int(theirs.sum()), int(ours.robust.sum())
            rows.append((t_ref, t_ours))
            print(f"{name:18s} {norm:4s} eps {e:<5g} n {n:4d} | pyautoattack {ci(k_ref, n)} "
                  f"{t_ref:7.1f} s | ours {ci(k_ours, n)} {t_ours:7.1f} s | "
                  f"diff {100 * (k_ours - k_ref) / n:+.2f} pt, samples differing: "
                  f"{int((ours.robust != theirs).sum())} | time ours/ref "
                  f"{t_ours / t_ref:.2f}", flush=True)
            print("    ours by stage: " + ", ".join(
                f"{st.attack} {st.broken}/{st.attacked} {st.time:.1f} s" for st in ours.stages),
                flush=True)
    if rows:
        total_ref, total_ours = sum(r[0] for r in rows), sum(r[1] for r in rows)
        geo = math.exp(sum(math.log(o / r) for r, o in rows) / len(rows))
        print(f"total: pyautoattack {total_ref:.1f} s, ours {total_ours:.1f} s, "
              f"ratio ours/ref {total_ours / total_ref:.2f} (geometric mean of the runs' "
              f"ratios {geo:.2f})")


if __name__ == "__main__":
    main()
