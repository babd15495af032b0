"""What one sample costs the model, and how far each check's budgets shrink to fit it.

The defaults of every check are sized for models of up to :data:`REFERENCE_FLOPS` forward
FLOPs per sample on the device kind (the bundled models are 0.02 to 65 MFLOP). A ResNet-18
at 224 px is 3.6 GFLOP, 36 times more: run as they are, the defaults would take the better part
of a day on a 2-core CPU. So before the checks run, the runner counts the model's forward
FLOPs on one sample (``torch.utils.flop_counter``: the same count on any machine, so the same
seed gives the same audit) and scales the budget fields each check declares
(``Params.scaled``: field -> floor) by ``REFERENCE_FLOPS / flops``, never below the floor and
never a value the user set. The section of every check so shrunk says which fields changed and
how to run the defaults instead (``[audit] scale_budgets = false``).

The batch size is bounded the same way: module outputs of one forward pass are measured per
sample, and a batch holds at most :data:`ACTIVATION_BYTES` of them, so peak memory follows the
batch, not the model's input size.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

    from audit.result import Finding

REFERENCE_FLOPS = {"cpu": 1e8, "cuda": 5e9}
"""Forward FLOPs per sample the check defaults are sized for, per device kind."""

ACTIVATION_BYTES = 1 << 30
"""Most bytes of module outputs one forward batch may hold on the CPU (1 GiB); on a GPU, a
quarter of its free memory."""


@dataclass(frozen=True)
class ModelCost:
    """Forward FLOPs and bytes of module outputs per sample, on a device kind."""

    flops: float
    activation_bytes: float
    device: str = "cpu"

    @property
    def scale(self) -> float:
        """The share of the default budgets that fits: 1 for models up to the reference."""
        ref = REFERENCE_FLOPS.get(self.device, REFERENCE_FLOPS["cpu"])
        return 1.0 if self.flops <= ref else ref / self.flops

    def batch(self, requested: int) -> int:
        """``requested`` bounded so that one batch holds at most :data:`ACTIVATION_BYTES`."""
        fits = int(activation_limit(self.device) // max(self.activation_bytes, 1.0))
        return max(1, min(int(requested), fits))

    def describe(self) -> str:
        """``"3.6 GFLOP per sample on cpu"``."""
        for unit, size in (("GFLOP", 1e9), ("MFLOP", 1e6), ("kFLOP", 1e3)):
            if self.flops >= size:
                return f"{self.flops / size:.3g} {unit} per sample on {self.device}"
        return f"{self.flops:.0f} FLOP per sample on {self.device}"


def activation_limit(device: str) -> float:
    """Bytes of module outputs one batch may hold on ``device`` (see :data:`ACTIVATION_BYTES`)."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info()
        return free / 4
    return float(ACTIVATION_BYTES)


def measure_cost(model: nn.Module, sample: torch.Tensor) -> ModelCost:
    """The cost of ``model`` on one input of ``sample`` (a batch; its first row is used)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = sample[:1]
    sizes: list[int] = []

    def hook(module: nn.Module, args: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor) and not list(module.children()):
            sizes.append(out.numel() * out.element_size())

    handles = []
    try:
        handles = [m.register_forward_hook(hook) for m in model.modules()]
    except (RuntimeError, AttributeError):  # a module that takes no hooks
        handles = []
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model(x)
    except Exception:  # an exotic op the counter cannot follow: no scaling, no bound
        return ModelCost(0.0, 0.0, sample.device.type)
    finally:
        for h in handles:
            h.remove()
    return ModelCost(float(counter.get_total_flops()), float(sum(sizes)), sample.device.type)


def scaled_fields(params: Any, floors: Mapping[str, int], scale: float,
                  user_set: set[str]) -> dict[str, tuple[int, int]]:
    """The budget fields of ``params`` to shrink by ``scale`` down to their ``floors``,
    leaving those in ``user_set``: ``{field: (default, scaled)}`` for those that change."""
    out: dict[str, tuple[int, int]] = {}
    if scale >= 1.0:
        return out
    for name, floor in floors.items():
        if name in user_set:
            continue
        value = getattr(params, name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= floor:
            continue
        new = max(floor, math.floor(value * scale))
        if new < value:
            out[name] = (value, new)
    return out


def scale_params(params: Any, cost: ModelCost, user_set: set[str], quick: bool = False
                 ) -> tuple[Any, dict[str, tuple[int, int]]]:
    """``params`` with the budget fields its class declares (``scaled``: field -> floor)
    shrunk for ``cost``, and a ``batch_size`` field bounded as :meth:`ModelCost.batch` bounds
    it; fields in ``user_set`` stay. With ``quick`` the floors are halved (at least 2), so that
    ``--quick`` stays quicker than the default on a model both shrink to their floors.
    Returns the new params and ``{field: (before, after)}``."""
    floors = dict(getattr(type(params), "scaled", {}))
    if quick:
        floors = {k: max(2, (v + 1) // 2) for k, v in floors.items()}
    changes = scaled_fields(params, floors, cost.scale, user_set)
    batch = getattr(params, "batch_size", None)
    if isinstance(batch, int) and "batch_size" not in user_set and cost.batch(batch) < batch:
        changes["batch_size"] = (batch, cost.batch(batch))
    if not changes:
        return params, {}
    return dataclasses.replace(params, **{k: v for k, (_, v) in changes.items()}), changes


def budget_scaled(check: str, changes: Mapping[str, tuple[int, int]], cost: ModelCost
                  ) -> Finding:
    """The info finding of a check whose budgets :func:`scale_params` shrank."""
    from audit.policy import CHECK_BUDGET_SCALED
    from audit.result import Severity

    listed = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changes.items())
    only_batch = set(changes) == {"batch_size"}
    why = (f"one batch's activations must fit {activation_limit(cost.device) / 2**30:.1f} GiB"
           if only_batch else
           f"the model costs {cost.describe()}, {1 / cost.scale:.0f} times what the defaults "
           f"are sized for")
    return CHECK_BUDGET_SCALED(
        Severity.INFO, check=check,
        title=("Batch size bounded to fit memory" if only_batch
               else f"Budgets shrunk to {cost.scale:.2%} for a costly model"),
        detail=f"{why}, so: {listed}.",
        evidence={"changes": {k: list(v) for k, v in changes.items()}, "flops": cost.flops,
                  "scale": cost.scale},
        recommendation=("" if only_batch else
                        f"Set [audit] scale_budgets = false (or the fields in "
                        f"[checks.{check}]) to run the defaults, or run on a GPU."))
