"""Hardening a model end to end: load the parent, train it adversarially (or with Gaussian
data augmentation, for randomized smoothing), write a new bundle.

:func:`harden` is what ``audit harden`` and the ``digits-cnn-robust`` and
``digits-cnn-smoothed`` recipes run: it loads the parent checkpoint and its card, takes the
training split of the card's dataset (or ``data``), finds the test data (``test_data``, a
bundled test split, or a held-out share of ``data``: :mod:`audit.apps.harden_data`), holds out
a stratified validation share, trains with :func:`audit.robustness.losses.adversarial_trainer` (an
:class:`AdversarialConfig`) or :func:`audit.certified.training.smoothing_trainer` (a
:class:`SmoothingConfig`: the card then lists the sigma in ``robustness.smoothing_sigmas``,
which the ``certified`` check reads), saving ``<out>/training/checkpoint.pt`` after every
epoch, atomically, and writes ``<out>/model.safetensors`` + ``<out>/card.json`` with the
best-robust (best noisy-accuracy) weights, the recipe (exact
command and settings, what it trained and was tested on), the metrics on the test data and the
parent's name and sha256; everything else of the parent's card that still holds (input spec,
classes, target, sensitive columns, ``extra`` such as a tabular encoder) is carried over. In
a distributed run every rank trains on its shard and only rank 0 writes.
"""

from __future__ import annotations

import dataclasses
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from audit.apps.harden_data import (
    TEST_FRACTION,
    HardenData,
    hardening_data,
    split_validation,
    training_data,
)
from audit.card import ModelCard
from audit.certified.params import CARD_KEY as SIGMAS_KEY
from audit.certified.training import NoisyValidation, SmoothingConfig, smoothing_trainer
from audit.errors import UsageError
from audit.loading import LoadedModel, NormalizedModel, load_model
from audit.robustness.adversarial import AdversarialConfig
from audit.robustness.attacks import PGD, run_batched
from audit.robustness.losses import adversarial_trainer
from audit.training import (
    Augment,
    Distributed,
    EpochFn,
    EpochStats,
    ProgressFn,
    Trainer,
    init_distributed,
    reproducible,
    save_bundle,
)

CHECKPOINT = Path("training") / "checkpoint.pt"
TEST_PGD_STEPS = 20

__all__ = ["CHECKPOINT", "AdversarialConfig", "HardenData", "HardenOutcome", "SmoothingConfig",
           "harden", "split_validation", "training_data"]

HardenConfig = AdversarialConfig | SmoothingConfig


@dataclass
class HardenOutcome:
    """What :func:`harden` did: the card written, the training history, where it went."""

    card: ModelCard
    out_dir: Path
    parent: LoadedModel
    history: list[EpochStats]
    resumed_epoch: int
    dist: Distributed
    data: HardenData
    events: list[str] = field(default_factory=list)


@dataclass
class _Run:
    """One hardening run's inputs, as :func:`harden` resolved them."""

    model: str | Path
    out_dir: Path
    config: HardenConfig
    parent: LoadedModel
    card: ModelCard
    dist: Distributed
    data: str | Path | None
    split: HardenData


def harden(
    model: str | Path,
    out: str | Path,
    config: HardenConfig,
    *,
    data: str | Path | None = None,
    test_data: str | Path | None = None,
    test_fraction: float | None = None,
    val_fraction: float = 0.1,
    resume: bool = False,
    name: str | None = None,
    command: str | None = None,
    augment: Augment | None = None,
    augment_name: str | None = None,
    keep_checkpoint: bool = False,
    arch: str | None = None,
    card: str | Path | None = None,
    trust_checkpoint: bool = False,
    dist: Distributed | None = None,
    on_batch: ProgressFn | None = None,
    on_epoch: EpochFn | None = None,
    description: str | None = None,
    threads: int | None = None,
) -> HardenOutcome:
    """Adversarially fine-tune ``model`` (an :class:`AdversarialConfig`), or fine-tune it
    under Gaussian noise for randomized smoothing (a :class:`SmoothingConfig`), and write the
    hardened bundle into ``out``.

    The training bounds are the card's input range (``config`` itself is not changed). With
    ``resume`` the run continues from ``<out>/training/checkpoint.pt`` when it exists (same
    settings required); without it an unfinished run in ``out`` is refused rather than
    overwritten. ``threads`` sets torch's CPU threads (small models train fastest on one;
    results are bitwise reproducible for a fixed thread count). ``test_data`` (a file or a
    bundled dataset name) is what the card's test metrics, and the CLI's before/after audits,
    measure; without it, the test split of the bundled dataset, else ``test_fraction`` (by
    default :data:`~audit.apps.harden_data.TEST_FRACTION`) of ``data`` held out from training
    (:func:`~audit.apps.harden_data.hardening_data`). Returns what was done, with the card
    written.
    """
    if threads is not None and threads < 1:
        raise UsageError(f"--threads must be >= 1, got {threads}")
    with reproducible(seed=None, threads=threads):
        dist = dist or init_distributed()
        parent = load_model(model, arch=arch, card=card, trust_checkpoint=trust_checkpoint)
        run = _prepare(model, Path(out), config, parent, (data, test_data, test_fraction),
                       val_fraction, resume, dist)
        train, val = run.split.train, run.split.val
        if isinstance(run.config, SmoothingConfig):
            trainer = smoothing_trainer(parent.model, run.config, train, val,
                                        checkpoint=run.out_dir / CHECKPOINT, dist=run.dist,
                                        augment=augment, on_batch=on_batch, on_epoch=on_epoch)
        else:
            trainer = adversarial_trainer(parent.model, run.config, train, val,
                                          checkpoint=run.out_dir / CHECKPOINT, dist=run.dist,
                                          augment=augment, on_batch=on_batch,
                                          on_epoch=on_epoch)
        resumed = trainer.epoch if resume and trainer.load_checkpoint() else 0
        trainer.fit()
        trainer.module.load_state_dict(trainer.best_state)
        parent.model.eval()
        new_card = _card(run, trainer, name, command, augment_name, description, resumed)
        _write(run, parent.model, new_card, keep_checkpoint)
    return HardenOutcome(card=new_card, out_dir=run.out_dir, parent=parent,
                         history=list(trainer.history), resumed_epoch=resumed, dist=run.dist,
                         data=run.split, events=list(trainer.events))


def _prepare(model: str | Path, out_dir: Path, config: HardenConfig, parent: LoadedModel,
             data: tuple[str | Path | None, str | Path | None, float | None],
             val_fraction: float, resume: bool, dist: Distributed) -> _Run:
    """Check the parent and the output folder, load and split the data (``data``: training,
    test, test fraction), seed the run."""
    if parent.card is None:
        raise UsageError(f"{parent.path} has no card.json; hardening needs the card (input "
                         "range, classes, dataset): pass --card card.json")
    pcard = parent.card
    config = dataclasses.replace(config, bounds=(float(pcard.input.range[0]),
                                                 float(pcard.input.range[1])))
    config.validate()
    ckpt = out_dir / CHECKPOINT
    if ckpt.is_file() and not resume:
        raise UsageError(f"{out_dir} holds the checkpoint of an earlier hardening run ({ckpt}); "
                         f"pass --resume to continue it, or delete {ckpt.parent} to start over")
    if dist.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    spec, test_spec, test_fraction = data
    split = hardening_data(spec, test_spec, pcard, val_fraction=val_fraction,
                           test_fraction=test_fraction, seed=config.seed)
    random.seed(config.seed)
    np.random.seed(config.seed % (2**32))
    torch.manual_seed(config.seed)
    return _Run(model=model, out_dir=out_dir, config=config, parent=parent, card=pcard,
                dist=dist, data=spec, split=split)


def _trainable(model: nn.Module) -> nn.Module:
    """The module whose weights the bundle stores (without the loader's normalisation)."""
    return model.model if isinstance(model, NormalizedModel) else model


def _write(run: _Run, model: nn.Module, card: ModelCard, keep_checkpoint: bool) -> None:
    """Write the bundle and drop the checkpoint (rank 0), then wait for every rank."""
    if run.dist.is_main:
        save_bundle(_trainable(model), card, run.out_dir)
        ckpt = run.out_dir / CHECKPOINT
        if not keep_checkpoint:
            ckpt.unlink(missing_ok=True)
            if ckpt.parent.is_dir() and not any(ckpt.parent.iterdir()):
                shutil.rmtree(ckpt.parent, ignore_errors=True)
    run.dist.barrier()


def _pgd_accuracy(model: nn.Module, x: Tensor, y: Tensor, config: AdversarialConfig,
                  device: torch.device) -> tuple[float, float]:
    """(clean, robust) test accuracy against PGD-20 (a quick robust number for the card; the
    robustness check's full attack suite is the one to rely on)."""
    model.eval()
    with torch.no_grad():
        clean = torch.cat([model(x[i:i + 512].to(device)).argmax(1).cpu()
                           for i in range(0, len(x), 512)]) == y
    attack = PGD(norm=config.norm, steps=TEST_PGD_STEPS, bounds=config.bounds,
                 generator=torch.Generator().manual_seed(config.seed))
    r = run_batched(attack, model, x, y, eps=config.eps, device=device)
    return float(clean.float().mean()), float((clean & ~r.success).float().mean())


def _fmt(v: float) -> str:
    return f"{v:g}"


def _metrics(run: _Run, model: nn.Module, trainer: Trainer) -> dict[str, float]:
    """The card's metrics: PGD-20 (smoothing: accuracy under the training noise) on the
    test data, the best epoch's validation numbers, and the time spent."""
    c = run.config
    if isinstance(c, SmoothingConfig):
        return {**_smoothing_metrics(run, c, model, trainer), **_times(trainer)}
    suffix = f"_accuracy_{c.norm}_{_fmt(c.eps)}"
    metrics: dict[str, float] = {}
    if run.dist.is_main:
        test = run.split.test
        clean, robust = _pgd_accuracy(model, test.x, test.y, c, run.dist.device)
        metrics["test_accuracy"] = round(clean, 4)
        metrics[f"test_pgd{TEST_PGD_STEPS}{suffix}"] = round(robust, 4)
    if trainer.best_epoch > 0:
        best = trainer.history[trainer.best_epoch - 1]
        metrics["val_accuracy"] = round(best.val_clean_accuracy, 4)
        metrics[f"val_pgd{c.eval_steps}{suffix}"] = round(best.val_robust_accuracy, 4)
    return {**metrics, **_times(trainer)}


def _smoothing_metrics(run: _Run, c: SmoothingConfig, model: nn.Module, trainer: Trainer
                       ) -> dict[str, float]:
    """Clean and noisy (``val_draws`` draws per sample) accuracy on the test data and the
    best epoch's validation split; the certified numbers are the ``certified`` check's."""
    suffix = f"_noisy_accuracy_sigma_{_fmt(c.sigma)}"
    metrics: dict[str, float] = {}
    if run.dist.is_main:
        test = run.split.test
        m = NoisyValidation(c, (test.x, test.y))(model, Distributed(device=run.dist.device))
        metrics["test_accuracy"] = round(m["val_clean_accuracy"], 4)
        metrics[f"test{suffix}"] = round(m["val_noisy_accuracy"], 4)
    if trainer.best_epoch > 0:
        best = trainer.history[trainer.best_epoch - 1]
        metrics["val_accuracy"] = round(best.val_clean_accuracy, 4)
        metrics[f"val{suffix}"] = round(best.val_noisy_accuracy, 4)
    return metrics


def _times(trainer: Trainer) -> dict[str, float]:
    """The best epoch and the time spent training and validating."""
    return {"best_epoch": float(trainer.best_epoch),
            "train_seconds": round(trainer.train_seconds, 1),
            "train_cpu_seconds": round(trainer.train_cpu_seconds, 1),
            "validation_seconds": round(trainer.val_seconds, 1),
            "validation_cpu_seconds": round(trainer.val_cpu_seconds, 1)}


def _recipe(run: _Run, command: str | None, augment_name: str | None) -> dict[str, Any]:
    c, split = run.config, run.split
    if split.test_from == "dataset" and split.test_spec == run.card.dataset:
        # the wording the bundled recipes were written with (their recipes must reproduce)
        data = f"{split.full.name} ({split.n_train} training samples, {split.n_val} held out " \
               f"for validation); test metrics on {split.tested_on}"
    else:
        size = "" if split.test_from == "held-out" else f" ({len(split.test)} samples)"
        data = f"trained on {split.trained_on} ({split.n_train} training samples, " \
               f"{split.n_val} held out for validation); test metrics and before/after " \
               f"audits on {split.tested_on}{size}"
    return {
        "command": command or _command(run),
        **_threat(c), "epochs": c.epochs, "seed": c.seed,
        "settings": c.to_dict(),
        "augmentation": augment_name,
        "data": data,
        "world_size": run.dist.world_size,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "select": "the epoch with the best "
                  f"{'noisy' if isinstance(c, SmoothingConfig) else 'PGD'} accuracy on the "
                  "validation split",
    }


def _threat(c: HardenConfig) -> dict[str, Any]:
    """What the model was trained against, as the recipe records it."""
    if isinstance(c, SmoothingConfig):
        return {"method": c.method, "sigma": c.sigma}
    return {"method": c.method, "eps": c.eps, "norm": c.norm}


def _card(run: _Run, trainer: Trainer, name: str | None, command: str | None,
          augment_name: str | None, description: str | None, resumed: int) -> ModelCard:
    """The hardened model's card: the parent's, with the new metrics, recipe and lineage."""
    c, pcard = run.config, run.card
    robustness = dict(pcard.robustness)
    key, value = (SIGMAS_KEY, c.sigma) if isinstance(c, SmoothingConfig) else \
        (f"{c.norm}_eps", c.eps)
    eps_list = [float(e) for e in robustness.get(key, [])]
    if value not in eps_list:
        robustness[key] = sorted([*eps_list, value])
    if not isinstance(c, SmoothingConfig):
        robustness["threat_model"] = {c.norm: c.eps}  # the claim the audit holds it to
    how = f"trained under Gaussian noise (sigma {_fmt(c.sigma)}) for randomized smoothing" \
        if isinstance(c, SmoothingConfig) else \
        f"adversarially trained ({c.method}, {c.norm} eps {_fmt(c.eps)})"
    return ModelCard(
        name=name or run.out_dir.resolve().name, arch=pcard.arch,
        arch_kwargs=dict(pcard.arch_kwargs), input=pcard.input, classes=list(pcard.classes),
        dataset=pcard.dataset, task=pcard.task,
        metrics=_metrics(run, run.parent.model, trainer),
        recipe=_recipe(run, command, augment_name),
        description=description or f"{pcard.name} {how} by audit harden.",
        intended_use=pcard.intended_use, limitations=pcard.limitations,
        robustness=robustness, sensitive=list(pcard.sensitive), target=pcard.target,
        parent={"name": pcard.name, "sha256": run.parent.sha256,
                "path": _shown_path(run.model)},
        checks=pcard.checks, training_data=dict(pcard.training_data),
        # the parent's extras still hold (a tabular model's encoder reads its raw CSV columns);
        # a parent's own hardening record is its card's, so this run's replaces it
        extra={**{k: v for k, v in pcard.extra.items() if k != "hardening"}, "hardening": {
            "history": [_rounded(s.to_dict()) for s in trainer.history],
            "events": list(trainer.events), "resumed_from_epoch": resumed,
            "stopped_early": trainer.stopped, "data": run.split.summary()}},
    )


def _shown_path(model: str | Path) -> str:
    """The parent as given, relative to the working folder when it is a path inside it."""
    path = Path(model)
    if path.exists():
        try:
            return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
        except ValueError:
            return path.as_posix()
    return str(model)


def _rounded(d: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 5) if isinstance(v, float) else v for k, v in d.items()}


def _command(run: _Run) -> str:
    """The ``audit harden`` command line of an API call (the CLI records its own)."""
    model, out, c, data, split = run.model, run.out_dir, run.config, run.data, run.split
    budget = ["--sigma", _fmt(c.sigma)] if isinstance(c, SmoothingConfig) else \
        ["--eps", _fmt(c.eps)]
    parts = ["audit harden", str(model), "--method", c.method, *budget,
             "--epochs", str(c.epochs), "--out", out.as_posix(), "--seed", str(c.seed)]
    if data is not None:
        parts += ["--data", str(data)]
    if split.test_from == "file" or (split.test_from == "dataset"
                                     and split.test_spec not in (data, run.card.dataset)):
        parts += ["--test-data", str(split.test_spec)]
    elif split.test_fraction not in (None, TEST_FRACTION):
        parts += ["--test-fraction", _fmt(float(split.test_fraction or 0))]
    return " ".join(parts)
