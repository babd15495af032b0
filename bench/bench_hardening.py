"""PGD adversarial training against fast FGSM-RS training with the same budget, in one run.

    python bench/bench_hardening.py [--quick] [--epochs N] [--threads T]

Both start from the bundled digits-cnn and use the bundled digits-cnn-robust recipe (30
epochs, AdamW lr 3e-3 one-cycle, eps warm-up over 5 epochs, global batch 64, validation every
epoch on 10% of the training split); only ``method`` differs (``pgd``: 10-step PGD;
``fast``: one FGSM step of 1.25 eps from a random start, with the catastrophic-overfitting
monitor on). Training time is the trainer's time in training steps over all epochs, including
the fast method's catastrophic-overfitting probes, wall-clock and CPU (the CPU time of a
one-thread run is the steadier number on a shared machine), on ``--threads`` CPU threads; the
per-epoch validation (the same PGD-10 on the same 144 images for both methods) is shown
separately and in the total. Each model is then audited by the robustness check
(its full attack suite; ``--quick`` uses the check's quick budgets) at L-inf eps 0.1.

Goals: the PGD model (= the bundled digits-cnn-robust; the bench says whether its weights are
identical) has clean accuracy >= 97% and robust accuracy >= 85%; the fast model reaches >= 95%
of PGD's robust accuracy in <= 35% of its training time.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from audit.apps.harden import harden
from audit.io import sha256_file
from audit.paths import models_dir
from audit.runner import run_audit
from audit.zoo.robust import PARENT, config

EPS_KEY = "robust_accuracy_linf_0.1"


def train(method: str, out: Path, epochs: int, threads: int) -> dict[str, float]:
    """Harden digits-cnn with ``method``; returns the trainer's wall and CPU seconds over all
    epochs, in total and for the per-epoch validation alone (not loading or the final test
    metrics)."""
    cfg = replace(config(), method=method, epochs=epochs)
    outcome = harden(models_dir() / PARENT, out, cfg, threads=threads, name=f"bench-{method}")
    if outcome.events:
        print(f"  {method}: {len(outcome.events)} catastrophic-overfitting event(s): "
              f"{outcome.events[0]}")
    m = outcome.card.metrics
    return {k: float(m[k]) for k in ("train_seconds", "train_cpu_seconds",
                                     "validation_seconds", "validation_cpu_seconds")}


def evaluate(folder: Path, quick: bool) -> tuple[float, float, float]:
    """(clean accuracy, robust accuracy at L-inf 0.1, audit seconds) from the robustness
    check."""
    start = time.perf_counter()
    result = run_audit(folder, checks=["robustness"], seed=0, quick=quick)
    sec = result.sections[0]
    if sec.status == "error":
        raise SystemExit(f"robustness check failed on {folder}: {sec.error}")
    return sec.metrics["clean_accuracy"], sec.metrics[EPS_KEY], time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="robustness check's quick budgets")
    ap.add_argument("--epochs", type=int, default=config().epochs)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    bundled = models_dir() / "digits-cnn-robust" / "model.safetensors"
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in ("pgd", "fast"):
            out = Path(tmp) / method
            print(f"training {method} ({args.epochs} epochs, {args.threads} thread(s)) ...",
                  flush=True)
            times = train(method, out, args.epochs, args.threads)
            print(f"auditing {method} (robustness check{', quick' if args.quick else ''}) ...",
                  flush=True)
            clean, robust, t_audit = evaluate(out, args.quick)
            same = bundled.is_file() and sha256_file(out / "model.safetensors") == \
                sha256_file(bundled)
            rows[method] = (clean, robust, times, t_audit, same)

    print()
    print(f"{'method':<8} {'clean':>7} {'robust@0.1':>11} {'steps s':>8} {'steps CPU s':>12} "
          f"{'+val s':>7} {'total s':>8} {'audit s':>8}")
    steps: dict[str, tuple[float, float, float]] = {}
    for method, (clean, robust, t, t_audit, _) in rows.items():
        wall = t["train_seconds"] - t["validation_seconds"]
        cpu = t["train_cpu_seconds"] - t["validation_cpu_seconds"]
        steps[method] = (wall, cpu, t["train_seconds"])
        print(f"{method:<8} {clean:>7.2%} {robust:>11.2%} {wall:>8.1f} {cpu:>12.1f} "
              f"{t['validation_seconds']:>7.1f} {t['train_seconds']:>8.1f} {t_audit:>8.1f}")
    pc, pr, *_, p_same = rows["pgd"]
    _, fr, *_ = rows["fast"]
    robust_ratio = fr / pr if pr else float("nan")
    wall_ratio, cpu_ratio, total_ratio = (f / p if p else float("nan")
                                          for f, p in zip(steps["fast"], steps["pgd"],
                                                          strict=True))
    print()
    print(f"PGD model identical to bundled digits-cnn-robust: {'yes' if p_same else 'no'}")
    print(f"PGD-AT clean {pc:.2%} (goal >= 97%): {'ok' if pc >= 0.97 else 'MISSED'}; "
          f"robust {pr:.2%} (goal >= 85%): {'ok' if pr >= 0.85 else 'MISSED'}")
    print(f"fast / PGD robust accuracy: {robust_ratio:.3f} (goal >= 0.95): "
          f"{'ok' if robust_ratio >= 0.95 else 'MISSED'}")
    print(f"fast / PGD training time (training steps, incl. the fast method's overfitting "
          f"probes): {wall_ratio:.3f} wall, {cpu_ratio:.3f} CPU (goal <= 0.35): "
          f"{'ok' if max(wall_ratio, cpu_ratio) <= 0.35 else 'MISSED'}")
    print(f"fast / PGD including the identical per-epoch validation: {total_ratio:.3f} wall")


if __name__ == "__main__":
    main()
