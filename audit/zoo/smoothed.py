"""``digits-cnn-smoothed``: digits-cnn fine-tuned under Gaussian noise (sigma 0.5) for
randomized smoothing, with the certified accuracies of the ``certified`` check in its card.

The recipe is :data:`COMMAND` (``audit harden --method smoothing``) from the bundled
``digits-cnn`` on the digits training split, then the ``certified`` check (default budget:
n0 = 100, n = 1000, alpha = 0.001, all 360 test images, seed 0) at :data:`SIGMAS`: the
training sigma and 0.25 (a model trained at 0.5 classifies the milder noise well and gets
tighter certificates at small radii). The check's numbers, each with its Clopper-Pearson 95%
interval, are written into the card's metrics, so a later audit flags a claim its own
measurement contradicts. Deterministic on CPU (one thread).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from audit.apps.harden import harden
from audit.card import ModelCard
from audit.certified.params import CARD_KEY, key
from audit.certified.training import SmoothingConfig
from audit.io import atomic_write_text
from audit.paths import models_dir
from audit.runner import run_audit
from audit.zoo import Recipe, register_recipe

NAME = "digits-cnn-smoothed"
PARENT = "digits-cnn"
SEED = 0
SIGMA = 0.5
SIGMAS = [0.25, SIGMA]
EPOCHS = 60
LR = 3e-3
THREADS = 1
RADII = (0.25, 0.5, 1.0)
COMMAND = (f"audit harden models/{PARENT} --method smoothing --sigma {SIGMA:g} --epochs "
           f"{EPOCHS} --lr {LR:g} --seed {SEED} --threads {THREADS} --no-audit --out "
           f"models/{NAME}")

__all__ = ["COMMAND", "NAME", "SIGMAS", "certified_metrics", "config", "train"]


def config(seed: int = SEED) -> SmoothingConfig:
    """The training settings of the bundled model (the CLI's defaults plus :data:`COMMAND`'s
    flags)."""
    return SmoothingConfig(sigma=SIGMA, epochs=EPOCHS, lr=LR, seed=seed)


def certified_metrics(section_metrics: dict[str, float]) -> dict[str, float]:
    """The card's share of the check's metrics: per sigma the smoothed accuracy, CERTIFY's
    abstention rate and the certified accuracy at :data:`RADII`, the best sigma's certified
    accuracy at each radius, all with their intervals (rounded to 4 places)."""
    names = ["smoothed_accuracy", "abstention_rate"]
    keep = [f"{n}_sigma_{key(s)}" for s in SIGMAS for n in names]
    keep += [f"certified_accuracy_sigma_{key(s)}_l2_{key(r)}" for s in SIGMAS for r in RADII]
    keep += [f"certified_accuracy_l2_{key(r)}" for r in RADII]
    return {f"{k}{suffix}": round(float(section_metrics[f"{k}{suffix}"]), 4)
            for k in keep for suffix in ("", "_ci_low", "_ci_high")}


def train(out_dir: Path, seed: int = SEED, quiet: bool = False) -> ModelCard:
    """Fine-tune the bundled digits-cnn under noise into ``out_dir``, certify it, and write
    the certified accuracies into its card."""
    command = COMMAND if seed == SEED else COMMAND.replace(f"--seed {SEED}", f"--seed {seed}")
    outcome = harden(models_dir() / PARENT, out_dir, config(seed), name=NAME, command=command,
                     threads=THREADS)
    card = outcome.card
    card.robustness[CARD_KEY] = sorted({*card.robustness.get(CARD_KEY, []), *SIGMAS})
    _write_card(card, out_dir)
    result = run_audit(out_dir, checks=["certified"], seed=seed)
    sec = result.sections[0]
    if sec.status in ("error", "skipped"):
        raise RuntimeError(f"the certified check did not run on {out_dir}: "
                           f"{sec.error or sec.summary}")
    card.metrics.update(certified_metrics(sec.metrics))
    card.recipe["certification"] = _certification(sec.params, seed)
    card.verdict = {"expected": "pass",
                    "reason": "Its certified accuracies are those its card states; it claims no "
                              "empirical L-inf robustness (a medium exposure)."}
    _write_card(card, out_dir)
    return card


def _certification(params: dict[str, Any], seed: int) -> dict[str, Any]:
    return {"command": f"audit run models/{NAME} --checks certified --seed {seed}",
            "sigmas": SIGMAS, "n0": params["n0"], "n": params["n"], "alpha": params["alpha"],
            "max_samples": params["max_samples"],
            "metrics": "certified accuracy and its Clopper-Pearson 95% interval as measured "
                       "by the certified check on digits/test"}


def _write_card(card: ModelCard, out_dir: Path) -> None:
    atomic_write_text(out_dir / "card.json", json.dumps(card.to_dict(), indent=2) + "\n")


register_recipe(Recipe(name=NAME, description="digits-cnn trained under Gaussian noise "
                                              "(sigma 0.5) for randomized smoothing",
                       train=train, default_seed=SEED))
