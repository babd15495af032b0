"""The runtime subject of an audit: the data (:class:`AuditData`) and the model with its card
(:class:`Subject`), plus seed derivation. Checks receive a Subject; the result model
(:mod:`audit.result`) knows nothing of it."""

from __future__ import annotations

import hashlib
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from audit.errors import ModelError
from audit.seeds import derive_seed

if TYPE_CHECKING:
    import torch

    from audit.card import ModelCard
    from audit.cost import ModelCost


UNLABELLED = -1
"""The label of every sample of data loaded without labels (production data for the drift
check): :attr:`AuditData.labelled` is False."""


@dataclass
class AuditData:
    """Data for an audit, in the model's input space.

    ``x`` is float32 ``(N, *input_shape)``, ``y`` int64 class indices ``(N,)``. ``extras`` holds
    what some checks need: ``masks`` (N, H, W) object masks, ``frame`` (a pandas DataFrame of raw
    tabular columns), ``sensitive`` (names of sensitive columns in ``frame``), ``encoder``.
    """

    name: str
    x: torch.Tensor
    y: torch.Tensor
    kind: Literal["image", "tabular"]
    classes: list[str]
    feature_names: list[str] | None = None
    source: str = ""
    extras: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getstate__(self) -> dict[str, Any]:
        # a memory-mapped x travels as its file reference, not its bytes (audit.store)
        from audit.store import mapped_rows

        state = dict(self.__dict__)
        ref = mapped_rows(self.x)
        if ref is not None:
            state["x"] = ref
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        from audit.store import MappedRows

        if isinstance(state.get("x"), MappedRows):
            state = {**state, "x": state["x"].open()}
        self.__dict__.update(state)

    @property
    def labelled(self) -> bool:
        """False for data loaded without labels (every label is :data:`UNLABELLED`)."""
        return not bool((self.y == UNLABELLED).any()) if len(self) else True

    @cached_property
    def sha256(self) -> str:
        """Hash of the exact tensors audited (x as float32 bytes, then y as int64 bytes), read
        a block of rows at a time so that a memory-mapped ``x`` is not copied whole."""
        import torch

        from audit.store import chunks

        h = hashlib.sha256()
        for t, dtype in ((self.x, torch.float32), (self.y, torch.int64)):
            for block in chunks(t.detach().cpu()):
                h.update(block.contiguous().to(dtype).numpy().reshape(-1).view(np.uint8).data)
        return h.hexdigest()

    def info(self) -> dict[str, Any]:
        """The ``data`` block of the result."""
        return {"name": self.name, "size": len(self), "sha256": self.sha256, "kind": self.kind,
                "source": self.source, "shape": list(self.x.shape[1:]),
                "feature_names": self.feature_names}

    def subset(self, index: torch.Tensor | np.ndarray | list[int]) -> AuditData:
        """A new AuditData holding the rows in ``index`` (extras with N rows are subset too)."""
        import torch

        idx = torch.as_tensor(np.asarray(index), dtype=torch.long)
        n = len(self)
        extras: dict[str, Any] = {}
        for k, v in self.extras.items():
            if isinstance(v, torch.Tensor) and v.shape[:1] == (n,):
                extras[k] = v[idx]
            elif isinstance(v, np.ndarray) and v.shape[:1] == (n,):
                extras[k] = v[idx.numpy()]
            elif hasattr(v, "iloc") and len(v) == n:
                extras[k] = v.iloc[idx.numpy()].reset_index(drop=True)
            else:
                extras[k] = v
        return AuditData(name=self.name, x=self.x[idx], y=self.y[idx], kind=self.kind,
                         classes=self.classes, feature_names=self.feature_names,
                         source=self.source, extras=extras)


@dataclass
class Subject:
    """What is audited: a model in eval mode, its card, the data, and run settings."""

    model: torch.nn.Module
    card: ModelCard
    data: AuditData
    model_info: dict[str, Any]
    seed: int = 0
    quick: bool = False
    device: torch.device = field(default_factory=lambda: _cpu())
    batch_size: int = 256
    amp: bool = False
    """Run :meth:`logits` (forward passes where exactness is not needed) under
    ``torch.autocast``: float16 on CUDA, bfloat16 on the CPU (``--amp``). Gradient-based
    attacks, explainers and certification call the model directly and stay exact."""
    reference: AuditData | None = None
    """Labelled data the current data is compared with (the drift check); ``None``: none."""

    @cached_property
    def cost(self) -> ModelCost:
        """Forward FLOPs and activation bytes per sample (:mod:`audit.cost`), measured once."""
        from audit.cost import measure_cost

        return measure_cost(self.model, self.data.x[:1].to(self.device))

    def logits(self, x: torch.Tensor, batch_size: int | None = None, *,
               on_device: bool = False) -> torch.Tensor:
        """Model outputs for ``x`` in batches, without gradients, float32 on the CPU (on
        :attr:`device` with ``on_device=True``, for a consumer that stays there).

        Each batch of ``x`` moves to the device (the audit data lives on the CPU); the outputs
        stay there and are copied back once, after the loop. In a distributed audit
        (:mod:`audit.distributed`) each rank computes a block of the batches. Under ``amp``
        the forward runs in ``torch.autocast`` (see :attr:`amp`). Raises :class:`ModelError`
        when the forward fails or returns NaN/inf.
        """
        import torch

        from audit.distributed import current

        world = current()

        def forward(_: int, sl: slice) -> torch.Tensor:
            xb = x[sl].to(self.device)
            try:
                out = self.model(xb)
            except Exception as e:  # the user's model failed; say so in one line
                raise ModelError(
                    f"the model's forward raised {type(e).__name__}: {e}".splitlines()[0]
                ) from e
            if not isinstance(out, torch.Tensor):
                raise ModelError(
                    f"the model's forward returned {type(out).__name__}, expected a tensor "
                    "of logits (N, classes)"
                )
            out = out.detach().float()
            return out.cpu() if world.enabled else out  # gathered over ranks as CPU tensors

        with torch.no_grad(), self.autocast():
            outs = world.map(forward, int(x.shape[0]), batch_size or self.batch_size)
        if world.enabled:
            outs = [o.to(self.device) for o in outs]
        logits = torch.cat(outs) if outs else torch.empty(0, len(self.card.classes),
                                                          device=self.device)
        finite = torch.isfinite(logits)
        if not finite.all():
            bad = int((~finite).any(dim=-1).sum())
            raise ModelError(f"the model returned NaN or inf logits for {bad} of "
                             f"{logits.shape[0]} inputs; check its weights and input range")
        return logits if on_device else logits.cpu()

    def autocast(self) -> AbstractContextManager[Any]:
        """``torch.autocast`` on the subject's device when :attr:`amp` is set (float16 on
        CUDA, bfloat16 elsewhere), else a no-op context."""
        import torch

        if not self.amp:
            return nullcontext()
        kind = self.device.type
        return torch.autocast(kind, dtype=torch.float16 if kind == "cuda" else torch.bfloat16)

    @cached_property
    def data_logits(self) -> torch.Tensor:
        """Logits on the audit data, computed once and shared by checks."""
        return self.logits(self.data.x)

    @property
    def data_pred(self) -> torch.Tensor:
        """Predicted class index per audit sample."""
        return self.data_logits.argmax(dim=1)

    @property
    def data_proba(self) -> torch.Tensor:
        """Softmax probabilities on the audit data."""
        import torch

        return torch.softmax(self.data_logits, dim=1)

    def generator(self, salt: str) -> torch.Generator:
        """A torch Generator seeded from the run seed and ``salt`` (e.g. a check name)."""
        import torch

        return torch.Generator().manual_seed(derive_seed(self.seed, salt))

    def rng(self, salt: str) -> np.random.Generator:
        """A numpy Generator seeded from the run seed and ``salt``."""
        return np.random.default_rng(derive_seed(self.seed, salt))


def _cpu() -> torch.device:
    import torch

    return torch.device("cpu")


