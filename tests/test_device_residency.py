"""Results stay on the audit's device inside attack and explainer loops: the only per-batch
copy is the input batch moving to the device (the audit data lives on the CPU); outputs are
joined where they were computed and copied back once, after the loop (``audit.devices``).

Counted on the CPU with a :class:`torch.overrides.TorchFunctionMode` that sees every
``Tensor.cpu()`` and ``Tensor.to("cpu")`` (the spellings of a copy back; inputs move with
``.to(device)``, a :class:`torch.device`): the count over 5 batches equals the count over 2,
so a per-batch copy that sneaks back into a loop fails here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from audit.card import ModelCard
from audit.certified.smoothing import Smoothing
from audit.robustness.attacks import APGD, APGDT, PGD, run_batched
from audit.robustness.corruptions import corruption_accuracy
from audit.saliency.gradcam import GradCAM
from audit.saliency.gradients import IntegratedGradientsExplainer, SmoothGrad
from audit.saliency.lime import predict_proba
from audit.subject import AuditData, Subject

BATCH = 4


class _HostCopies(TorchFunctionMode):
    """Counts ``Tensor.cpu()`` and ``Tensor.to("cpu")`` calls."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_function__(self, func: Any, types: Any, args: Any = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name == "cpu" or (name == "to" and _to_cpu(args[1:], kwargs)):
            self.count += 1
        return func(*args, **kwargs)


def _to_cpu(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """``.to("cpu")`` spelled out: a copy back. Inputs move with ``.to(device)`` (a
    :class:`torch.device`, the CPU in this test), which is the per-batch copy that stays."""
    return any(isinstance(a, str) and a.startswith("cpu") for a in (*args, kwargs.get("device")))


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 4)).eval()


def _data(batches: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    n = batches * BATCH
    return torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g)


def _subject(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Subject:
    card = ModelCard.from_dict({
        "name": "tiny", "arch": "tests:Tiny", "input": {"shape": [1, 8, 8], "range": [0, 1]},
        "classes": ["a", "b", "c", "d"]})
    data = AuditData(name="tiny", x=x, y=y, kind="image", classes=["a", "b", "c", "d"])
    return Subject(model=model, card=card, data=data, model_info={}, batch_size=BATCH)


Run = Callable[[nn.Module, torch.Tensor, torch.Tensor], object]

RUNS: dict[str, Run] = {
    "Subject.logits": lambda m, x, y: _subject(m, x, y).logits(x),
    "corruption_accuracy": lambda m, x, y: corruption_accuracy(
        lambda v: _subject(m, x, y).logits(v, on_device=True), x, y, ["gaussian_noise"], [1],
        kind="image", bounds=(0.0, 1.0), generator=torch.Generator().manual_seed(0),
        batch_size=BATCH),
    "IntegratedGradients": lambda m, x, y: IntegratedGradientsExplainer(
        m, steps=4, batch_size=BATCH).attribute(x, y),
    "SmoothGrad": lambda m, x, y: SmoothGrad(m, samples=2, batch_size=BATCH).attribute(x, y),
    "GradCAM": lambda m, x, y: GradCAM(m, m[2], batch_size=BATCH).attribute(x, y),
    "LIME predict_proba": lambda m, x, y: predict_proba(m, x, BATCH),
    "PGD run_batched": lambda m, x, y: run_batched(
        PGD(steps=3, bounds=(0.0, 1.0)), m, x, y, eps=0.1, batch_size=BATCH),
    "APGD run_batched": lambda m, x, y: run_batched(
        APGD(steps=3, bounds=(0.0, 1.0)), m, x, y, eps=0.1, batch_size=BATCH),
    "APGD-T run_batched": lambda m, x, y: run_batched(
        APGDT(steps=3, targets=1, bounds=(0.0, 1.0)), m, x, y, eps=0.1, batch_size=BATCH),
    "Smoothing.counts": lambda m, x, y: Smoothing(m, 0.25, 4, batch_size=BATCH).counts(
        x, 2, torch.Generator().manual_seed(0)),
}


@pytest.mark.parametrize("name", list(RUNS))
def test_host_copies_do_not_grow_with_the_batches(name: str) -> None:
    counts = []
    for batches in (2, 5):
        model = _model()
        x, y = _data(batches)
        with _HostCopies() as mode:
            RUNS[name](model, x, y)
        counts.append(mode.count)
    assert counts[0] == counts[1], f"{name}: {counts[0]} copies to the CPU over 2 batches, " \
                                   f"{counts[1]} over 5: a per-batch copy is back in the loop"
