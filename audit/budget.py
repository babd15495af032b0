"""Budgets that stop an attack or an explainer: model evaluations per sample and wall time.

An attack with a :class:`Budget` runs behind a :class:`CountingModel` that raises
:class:`BudgetExhausted` before the forward pass that would exceed it. The attack's own loop
is abandoned there, so the result is what :class:`BestSeen` recorded on the way: for every
forward pass over the whole batch, each row that the model misclassified and that lies within
the ball around its own input is a valid adversarial of that sample (whatever the attack meant
it to be), and the smallest one per sample is kept. A stopped attack therefore reports a lower
bound of what it would have found, never a point it did not see misclassified.

The evaluation budget is per sample and per call (attacks run batch by batch); the time budget
is over every call of the same attack object, so an attack that has spent it does not start
again on the next batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

__all__ = ["BestSeen", "Budget", "BudgetExhausted", "CountingModel", "Stop", "check_budget",
           "counted"]

Stop = Literal["", "evaluations", "time"]


@dataclass
class Budget:
    """How far an attack may go: ``evaluations`` forward passes per sample in one call (None:
    no limit) and ``seconds`` of wall time over all its calls (None: no limit). ``spent`` is
    the time used so far; a budget belongs to one attack object."""

    evaluations: int | None = None
    seconds: float | None = None
    spent: float = 0.0

    def deadline(self, now: float) -> float | None:
        """When the time budget runs out, counted from ``now``."""
        return None if self.seconds is None else now + self.seconds - self.spent

    def describe(self) -> str:
        """The budget in words, for reports: ``2000 evaluations per sample, 60 s``."""
        parts = []
        if self.evaluations is not None:
            parts.append(f"{self.evaluations} evaluations per sample")
        if self.seconds is not None:
            parts.append(f"{self.seconds:g} s")
        return ", ".join(parts) or "no limit"


def check_budget(rows: int, limit: int | None, deadline: float | None) -> None:
    """Raise :class:`BudgetExhausted` when ``rows`` evaluations would pass ``limit`` or the
    clock is past ``deadline`` (a ``time.perf_counter()`` value)."""
    if limit is not None and rows > limit:
        raise BudgetExhausted("evaluations")
    if deadline is not None and time.perf_counter() > deadline:
        raise BudgetExhausted("time")


class BudgetExhausted(Exception):
    """Raised by :class:`CountingModel` when the next forward pass would exceed the budget."""

    def __init__(self, reason: Stop) -> None:
        super().__init__(reason)
        self.reason: Stop = reason


class BestSeen:
    """The smallest in-ball misclassified point seen per sample (see the module doc)."""

    def __init__(self, x: Tensor, y: Tensor, eps: Tensor | None,
                 size: Callable[[Tensor], Tensor], bounds: tuple[float, float]) -> None:
        """``size`` gives the per-sample norm of a perturbation (the attack's own)."""
        self.x, self.y, self.eps, self.size = x, y, eps, size
        self.best = x.clone()
        self.norms = torch.full((int(x.shape[0]),), math.inf, device=x.device)
        scale = max(abs(bounds[0]), abs(bounds[1]), 1.0)
        self.slack = 8 * torch.finfo(x.dtype).eps * scale
        self.seen = False  # a pass over the whole batch was recorded

    def see(self, inputs: Tensor, logits: Tensor) -> None:
        """Record the rows of a forward pass over the whole batch."""
        if inputs.shape != self.x.shape:
            return
        self.seen = True
        with torch.no_grad():
            wrong = logits.detach().argmax(dim=1) != self.y
            d = self.size(inputs.detach() - self.x).to(self.norms.dtype)
            if self.eps is not None:
                wrong &= d <= self.eps * (1 + 1e-5) + self.slack
            better = wrong & (d < self.norms)
            if bool(better.any()):
                self.norms = torch.where(better, d, self.norms)
                self.best[better] = inputs.detach()[better]

    @property
    def found(self) -> Tensor:
        """(N,) bool: samples with an adversarial seen."""
        return torch.isfinite(self.norms)


class CountingModel(nn.Module):
    """Wraps a model and counts per-sample forward and backward passes; with a ``limit``
    (forward passes in all) or a ``deadline`` (``time.perf_counter()`` value) it raises
    :class:`BudgetExhausted` before a pass that would cross it, and with a ``tracker`` it
    shows every pass to a :class:`BestSeen`."""

    def __init__(self, model: nn.Module, *, limit: int | None = None,
                 deadline: float | None = None, tracker: BestSeen | None = None) -> None:
        super().__init__()
        self.model = model
        self.forwards = 0
        self.backwards = 0
        self.limit, self.deadline, self.tracker = limit, deadline, tracker
        # mirror the mode without .train(), which would reset every submodule's mode
        self.training = bool(getattr(model, "training", False))

    def forward(self, x: Tensor) -> Tensor:
        n = int(x.shape[0])
        check_budget(self.forwards + n, self.limit, self.deadline)
        out: Tensor = self.model(x)
        self.forwards += n
        if self.tracker is not None:
            self.tracker.see(x, out)
        if out.requires_grad:
            out.register_hook(lambda g: self._count_backward(n, g))
        return out

    def _count_backward(self, n: int, g: Tensor) -> Tensor:
        self.backwards += n
        return g


@contextmanager
def counted(model: nn.Module, budget: Budget | None, samples: int) -> Iterator[list[int]]:
    """Count the rows ``model`` evaluates inside the block (the yielded list's one item) and,
    with a ``budget``, raise :class:`BudgetExhausted` before a forward pass that would exceed
    ``budget.evaluations * samples`` rows or its time; the time used is added to
    ``budget.spent``. A pre-hook on ``model`` itself, so explainers that hook layers by name
    see the model unchanged."""
    t0 = time.perf_counter()
    rows = [0]
    limit = budget.evaluations * samples if budget and budget.evaluations is not None else None
    deadline = budget.deadline(t0) if budget else None

    def check(_module: nn.Module, args: tuple[object, ...]) -> None:
        first = args[0] if args else None
        n = int(first.shape[0]) if isinstance(first, Tensor) and first.ndim else 1
        check_budget(rows[0] + n, limit, deadline)
        rows[0] += n

    try:
        handle = model.register_forward_pre_hook(check)
    except (RuntimeError, AttributeError, NotImplementedError):
        handle = None  # a module without hooks (TorchScript): checked only as each run starts
    try:
        if deadline is not None and deadline <= t0:
            raise BudgetExhausted("time")
        yield rows
    finally:
        if handle is not None:
            handle.remove()
        if budget is not None:
            budget.spent += time.perf_counter() - t0
