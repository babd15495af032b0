"""Hardening a model end to end: load the parent, train it adversarially, write a new bundle.

:func:`harden` is what ``audit harden`` and the ``digits-cnn-robust`` recipe run: it loads the
parent checkpoint and its card, takes the training split of the card's dataset (or ``data``),
holds out a stratified validation share, trains with :class:`AdversarialTrainer` (checkpoint
``<out>/training/checkpoint.pt`` after every epoch, atomically), and writes
``<out>/model.safetensors`` + ``<out>/card.json`` with the best-robust weights, the recipe (exact
command and settings), the metrics and the parent's name and sha256. In a distributed run every
rank trains on its shard and only rank 0 writes.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from audit.card import ModelCard
from audit.datasets import dataset_names, load_dataset
from audit.datasets.files import load_data_file
from audit.errors import DataError, UsageError
from audit.loading import LoadedModel, NormalizedModel, load_model
from audit.robustness.attacks import PGD, run_batched
from audit.robustness.training import (
    AdversarialTrainer,
    Distributed,
    EpochFn,
    EpochStats,
    ProgressFn,
    TrainConfig,
    init_distributed,
)
from audit.subject import AuditData
from audit.zoo.common import reproducible, save_bundle

CHECKPOINT = Path("training") / "checkpoint.pt"
TEST_PGD_STEPS = 20

__all__ = ["CHECKPOINT", "HardenOutcome", "harden", "split_validation", "training_data"]


@dataclass
class HardenOutcome:
    """What :func:`harden` did: the card written, the training history, where it went."""

    card: ModelCard
    out_dir: Path
    parent: LoadedModel
    history: list[EpochStats]
    resumed_epoch: int
    dist: Distributed
    events: list[str] = field(default_factory=list)


def training_data(spec: str | Path | None, card: ModelCard) -> AuditData:
    """The training data: the train split of a bundled dataset (``spec`` or the card's), or a
    ``.npz``/``.csv`` file checked against the card."""
    if spec is None:
        if not card.dataset or card.dataset not in dataset_names():
            raise UsageError(f"the card of {card.name} names no bundled dataset; pass --data "
                             "(a bundled dataset name or a .npz/.csv training file)")
        return load_dataset(card.dataset, "train")
    if str(spec) in dataset_names() and not Path(spec).exists():
        return load_dataset(str(spec), "train")
    path = Path(spec)
    if not path.exists():
        raise DataError(f"--data {spec} is neither a bundled dataset "
                        f"({', '.join(dataset_names())}) nor an existing file")
    return load_data_file(path, card, card.target)


def split_validation(x: Tensor, y: Tensor, fraction: float, seed: int
                     ) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor] | None]:
    """Hold out a stratified ``fraction`` of ``(x, y)`` for validation (seeded)."""
    if fraction <= 0:
        return (x, y), None
    if not 0 < fraction < 1:
        raise UsageError(f"--val-fraction must be in [0, 1), got {fraction}")
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(x))
    labels = y.numpy()
    counts = np.bincount(labels) if labels.size else np.array([])
    stratify = labels if counts.size and counts[counts > 0].min() >= 2 else None
    try:
        tr, va = train_test_split(idx, test_size=fraction, random_state=seed, stratify=stratify)
    except ValueError as e:
        raise DataError(f"cannot hold out {fraction:.0%} of {len(x)} samples for validation "
                        f"({e}); lower --val-fraction or use more data") from None
    tr, va = np.sort(tr), np.sort(va)
    return (x[tr], y[tr]), (x[va], y[va])


def _trainable(model: nn.Module) -> nn.Module:
    """The module whose weights the bundle stores (without the loader's normalisation)."""
    return model.model if isinstance(model, NormalizedModel) else model


def _pgd_accuracy(model: nn.Module, x: Tensor, y: Tensor, eps: float, config: TrainConfig,
                  device: torch.device) -> tuple[float, float]:
    """(clean, robust) test accuracy against PGD-20 (a quick robust number for the card; the
    robustness check's full attack suite is the one to rely on)."""
    model.eval()
    with torch.no_grad():
        clean = torch.cat([model(x[i:i + 512].to(device)).argmax(1).cpu()
                           for i in range(0, len(x), 512)]) == y
    attack = PGD(norm=config.norm, steps=TEST_PGD_STEPS, bounds=config.bounds,
                 generator=torch.Generator().manual_seed(config.seed))
    r = run_batched(attack, model, x, y, eps=eps, device=device)
    return float(clean.float().mean()), float((clean & ~r.success).float().mean())


def _fmt(v: float) -> str:
    return f"{v:g}"


def harden(
    model: str | Path,
    out: str | Path,
    config: TrainConfig,
    *,
    data: str | Path | None = None,
    val_fraction: float = 0.1,
    resume: bool = False,
    name: str | None = None,
    command: str | None = None,
    augment: Callable[[Tensor, torch.Generator], Tensor] | None = None,
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
    """Adversarially fine-tune ``model`` and write the hardened bundle into ``out``.

    ``config.bounds`` is taken from the card's input range. With ``resume`` the run continues
    from ``<out>/training/checkpoint.pt`` when it exists (same settings required); without it
    an unfinished run in ``out`` is refused rather than overwritten. ``threads`` sets torch's
    CPU threads (small models train fastest on one; results are bitwise reproducible for a
    fixed thread count). Returns what was done, with the card written.
    """
    if threads is not None and threads < 1:
        raise UsageError(f"--threads must be >= 1, got {threads}")
    with _torch_settings(threads):
        return _harden(model, out, config, data=data, val_fraction=val_fraction,
                       resume=resume, name=name, command=command, augment=augment,
                       augment_name=augment_name, keep_checkpoint=keep_checkpoint, arch=arch,
                       card=card, trust_checkpoint=trust_checkpoint, dist=dist,
                       on_batch=on_batch, on_epoch=on_epoch, description=description)


def _torch_settings(threads: int | None) -> AbstractContextManager[None]:
    """Deterministic kernels (and ``threads`` CPU threads) while hardening; restored after."""
    return reproducible(seed=None, threads=threads)


def _harden(model: str | Path, out: str | Path, config: TrainConfig, *,
            data: str | Path | None, val_fraction: float, resume: bool, name: str | None,
            command: str | None, augment: Callable[[Tensor, torch.Generator], Tensor] | None,
            augment_name: str | None, keep_checkpoint: bool, arch: str | None,
            card: str | Path | None, trust_checkpoint: bool, dist: Distributed | None,
            on_batch: ProgressFn | None, on_epoch: EpochFn | None,
            description: str | None) -> HardenOutcome:
    out_dir = Path(out)
    dist = dist or init_distributed()
    parent = load_model(model, arch=arch, card=card, trust_checkpoint=trust_checkpoint)
    if parent.card is None:
        raise UsageError(f"{parent.path} has no card.json; hardening needs the card (input "
                         "range, classes, dataset): pass --card card.json")
    pcard = parent.card
    config.bounds = (float(pcard.input.range[0]), float(pcard.input.range[1]))
    config.validate()
    ckpt = out_dir / CHECKPOINT
    if ckpt.is_file() and not resume:
        raise UsageError(f"{out_dir} holds the checkpoint of an earlier hardening run ({ckpt}); "
                         f"pass --resume to continue it, or delete {ckpt.parent} to start over")
    if dist.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    full = training_data(data, pcard)
    (x_tr, y_tr), val = split_validation(full.x, full.y, val_fraction, config.seed)

    random.seed(config.seed)
    np.random.seed(config.seed % (2**32))
    torch.manual_seed(config.seed)
    net = parent.model
    trainer = AdversarialTrainer(net, config, (x_tr, y_tr), val, checkpoint=ckpt, dist=dist,
                                 augment=augment, on_batch=on_batch, on_epoch=on_epoch)
    resumed = 0
    if resume and trainer.load_checkpoint():
        resumed = trainer.epoch
    trainer.fit()
    trainer.module.load_state_dict(trainer.best_state)
    net.eval()

    new_name = name or out_dir.resolve().name
    metrics: dict[str, float] = {}
    if pcard.dataset and pcard.dataset in dataset_names() and dist.is_main:
        test = load_dataset(pcard.dataset, "test")
        clean, robust = _pgd_accuracy(net, test.x, test.y, config.eps, config, dist.device)
        metrics["test_accuracy"] = round(clean, 4)
        metrics[f"test_pgd{TEST_PGD_STEPS}_accuracy_{config.norm}_{_fmt(config.eps)}"] = \
            round(robust, 4)
    best = trainer.history[trainer.best_epoch - 1] if trainer.best_epoch > 0 else None
    if best is not None:
        metrics["val_accuracy"] = round(best.val_clean_accuracy, 4)
        metrics[f"val_pgd{config.eval_steps}_accuracy_{config.norm}_{_fmt(config.eps)}"] = \
            round(best.val_robust_accuracy, 4)
    metrics["best_epoch"] = float(trainer.best_epoch)
    metrics["train_seconds"] = round(trainer.train_seconds, 1)
    metrics["train_cpu_seconds"] = round(trainer.train_cpu_seconds, 1)
    metrics["validation_seconds"] = round(trainer.val_seconds, 1)
    metrics["validation_cpu_seconds"] = round(trainer.val_cpu_seconds, 1)

    robustness = dict(pcard.robustness)
    key = f"{config.norm}_eps"
    eps_list = [float(e) for e in robustness.get(key, [])]
    if config.eps not in eps_list:
        robustness[key] = sorted([*eps_list, config.eps])
    recipe: dict[str, Any] = {
        "command": command or _command(model, out_dir, config, data),
        "method": config.method, "eps": config.eps, "norm": config.norm,
        "epochs": config.epochs, "seed": config.seed,
        "settings": config.to_dict(),
        "augmentation": augment_name,
        "data": f"{full.name} ({len(x_tr)} training samples, {len(val[0]) if val else 0} "
                f"held out for validation); test metrics on {pcard.dataset}/test"
                if pcard.dataset else f"{full.name}",
        "world_size": dist.world_size,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "select": "the epoch with the best PGD accuracy on the validation split",
    }
    new_card = ModelCard(
        name=new_name, arch=pcard.arch, arch_kwargs=dict(pcard.arch_kwargs), input=pcard.input,
        classes=list(pcard.classes), dataset=pcard.dataset, task=pcard.task, metrics=metrics,
        recipe=recipe,
        description=description or (
            f"{pcard.name} adversarially trained ({config.method}, {config.norm} eps "
            f"{_fmt(config.eps)}) by audit harden."),
        intended_use=pcard.intended_use, limitations=pcard.limitations,
        robustness=robustness, sensitive=list(pcard.sensitive), target=pcard.target,
        parent={"name": pcard.name, "sha256": parent.sha256, "path": _shown_path(model)},
        checks=pcard.checks, training_data=dict(pcard.training_data),
        extra={"hardening": {
            "history": [_rounded(s.to_dict()) for s in trainer.history],
            "events": list(trainer.events), "resumed_from_epoch": resumed,
            "stopped_early": trainer.stopped}},
    )
    if dist.is_main:
        save_bundle(_trainable(net), new_card, out_dir)
        if not keep_checkpoint:
            ckpt.unlink(missing_ok=True)
            if ckpt.parent.is_dir() and not any(ckpt.parent.iterdir()):
                shutil.rmtree(ckpt.parent, ignore_errors=True)
    dist.barrier()
    return HardenOutcome(card=new_card, out_dir=out_dir, parent=parent,
                         history=list(trainer.history), resumed_epoch=resumed, dist=dist,
                         events=list(trainer.events))


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


def _command(model: str | Path, out: Path, c: TrainConfig, data: str | Path | None) -> str:
    parts = ["audit harden", str(model), "--method", c.method, "--eps", _fmt(c.eps),
             "--epochs", str(c.epochs), "--out", out.as_posix(), "--seed", str(c.seed)]
    if data is not None:
        parts += ["--data", str(data)]
    return " ".join(parts)
