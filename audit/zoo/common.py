"""Shared pieces of the bundled models: a plain training loop, bundle saving."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from audit.card import ModelCard
from audit.io import atomic_save, atomic_write_text


@contextmanager
def reproducible(seed: int | None = None, threads: int | None = 1) -> Iterator[None]:
    """Seed torch, use deterministic kernels and ``threads`` CPU threads (one: the bundled
    models are small, one thread is fastest, and a float sum's order then does not depend on
    the machine's core count), restoring the previous settings afterwards."""
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    if seed is not None:
        torch.manual_seed(seed)
    if threads is not None:
        torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det, warn_only=old_warn)


def train_classifier(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    weight_decay: float = 0.0,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    sample_weight: torch.Tensor | None = None,
    extra_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> nn.Module:
    """AdamW + one-cycle schedule + (optionally weighted) cross-entropy; deterministic for a
    given seed on CPU. ``extra_loss(logits, idx)`` is added per batch (``idx``: the batch's row
    indices), e.g. a fairness penalty."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * ((len(x) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    model.train()
    for epoch in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x), batch_size):
            idx = perm[i : i + batch_size]
            xb, yb = x[idx], y[idx]
            if augment is not None:
                xb = augment(xb, gen)
            logits = model(xb)
            loss_each = nn.functional.cross_entropy(logits, yb, reduction="none")
            if sample_weight is not None:
                w = sample_weight[idx]
                loss = (loss_each * w).sum() / w.sum()
            else:
                loss = loss_each.mean()
            if extra_loss is not None:
                loss = loss + extra_loss(logits, idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        if on_epoch is not None:
            on_epoch(epoch, total / len(x))
    model.eval()
    return model


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)``."""
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += int((model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
    return correct / max(len(x), 1)


def save_bundle(model: nn.Module, card: ModelCard, out_dir: Path) -> None:
    """Write ``model.safetensors`` and ``card.json`` into ``out_dir``, each atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_save(out_dir / "model.safetensors",
                lambda p: save_file(state, str(p), metadata={"format": "pt"}))
    atomic_write_text(out_dir / "card.json", json.dumps(card.to_dict(), indent=2) + "\n")
