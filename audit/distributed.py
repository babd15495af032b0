"""Where a process runs: its rank in a ``torchrun`` group (or a single process), with the few
collectives the trainer and a distributed audit need.

A distributed audit (``torchrun --nproc_per_node=K -m audit run ...``) runs the same program
on every rank. Each per-sample stage splits its work into *units* (batches of a size that does
not depend on the number of processes), gives every rank a contiguous block of units
(:meth:`Distributed.map`), and gathers the per-unit results in unit order on every rank. A
unit is computed exactly as a single process computes it (same samples in the batch, same
random stream: stages that draw random numbers reseed per unit), so per-sample results equal a
single process's; aggregates are computed from the gathered results on every rank (they are
cheap, and the ranks must agree on what to do next), and only rank 0 writes outputs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch

from audit.seeds import derive_seed

__all__ = ["Distributed", "current", "init_distributed", "units", "using"]

T = TypeVar("T")


@dataclass(frozen=True)
class Distributed:
    """This process's place in a distributed run (``world_size == 1``: a single process)."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Only the main process writes files and shows progress."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """Whether there are other processes to talk to."""
        return self.world_size > 1

    def barrier(self) -> None:
        """Wait for every rank (nothing to wait for in a single process)."""
        if self.enabled:
            torch.distributed.barrier()

    def sum(self, values: list[float]) -> list[float]:
        """Sum ``values`` over all ranks (float64)."""
        if not self.enabled:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return [float(v) for v in t.cpu()]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (on every rank), pickled over a gloo group (CPU tensors in
        ``obj`` stay on the CPU whatever the backend of the run)."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj, group=_object_group())
        return out

    def shard(self, n: int) -> tuple[int, int]:
        """This rank's slice ``[lo, hi)`` of ``n`` items split as evenly as possible."""
        base, extra = divmod(n, self.world_size)
        lo = self.rank * base + min(self.rank, extra)
        return lo, lo + base + (1 if self.rank < extra else 0)

    def map(self, fn: Callable[[int, slice], T], n: int, unit: int, *, seeded: bool = False,
            generators: Sequence[torch.Generator | None] = ()) -> list[T]:
        """``fn(k, samples)`` for every unit ``k`` of ``n`` samples in units of ``unit``, in
        unit order, on every rank; each rank computes a contiguous block of the units.

        ``seeded``: each unit runs with torch's and numpy's global generators seeded from one
        number drawn from torch's global generator before the map and from ``k``, and each of
        ``generators`` reseeded from its own seed and ``k``; afterwards the global generators
        are as before the map (less that one draw) and each of ``generators`` is reseeded
        from its seed. So the random numbers a unit draws, and those drawn after the map, do
        not depend on which rank computed which unit.

        Inside ``fn`` the run is a single process (:func:`current`), so a stage nested in
        another is not split again. An exception in ``fn`` on one rank is raised on every
        rank (after the gather), so no rank waits forever for the others.
        """
        spans = units(n, unit)
        lo, hi = self.shard(len(spans)) if self.enabled else (0, len(spans))
        gens = [g for g in generators if g is not None]
        base = int(torch.randint(0, 2**62, (1,))) if seeded else 0
        starts = [g.initial_seed() for g in gens]
        mine: list[T] = []
        error: BaseException | None = None
        with using(SINGLE), _kept_global_rng(seeded):
            try:
                for k in range(lo, hi):
                    if seeded:
                        _seed_unit(base, k, gens, starts)
                    mine.append(fn(k, spans[k]))
            except Exception as e:  # every rank must reach the gather
                if not self.enabled:
                    raise
                error = e
        for g, s in zip(gens, starts, strict=True):
            g.manual_seed(derive_seed(s, "after units"))
        if not self.enabled:
            return mine
        parts = self.gather((mine, _portable(error)))
        for rank, (_, failed) in enumerate(parts):
            if error is not None:
                raise error
            if isinstance(failed, BaseException):
                raise failed
            if failed is not None:
                raise RuntimeError(f"rank {rank} failed: {failed}")
        return [r for part, _ in parts for r in part]


def _portable(error: BaseException | None) -> BaseException | str | None:
    """``error`` as it can travel to the other ranks: itself when it survives pickling (so
    a user error is the same one-line error on every rank), else its repr."""
    if error is None:
        return None
    import pickle

    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return repr(error)
    return error


def _seed_unit(base: int, k: int, gens: list[torch.Generator], starts: list[int]) -> None:
    seed = derive_seed(base, f"unit {k}")
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    for g, s in zip(gens, starts, strict=True):
        g.manual_seed(derive_seed(s, f"unit {k}"))


@contextmanager
def _kept_global_rng(keep: bool) -> Iterator[None]:
    """Restore torch's (CPU and CUDA) and numpy's global generators after the block."""
    if not keep:
        yield
        return
    state = np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            np.random.set_state(state)


SINGLE = Distributed()
_current: list[Distributed] = [SINGLE]
_groups: dict[str, Any] = {}


def units(n: int, size: int) -> list[slice]:
    """``n`` samples as consecutive slices of ``size`` (the last one shorter)."""
    size = max(int(size), 1)
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def current() -> Distributed:
    """The world the running stage splits its work over (a single process by default)."""
    return _current[-1]


@contextmanager
def using(world: Distributed) -> Iterator[Distributed]:
    """Run the block with ``world`` as :func:`current`."""
    _current.append(world)
    try:
        yield world
    finally:
        _current.pop()


def _object_group() -> Any:
    """A gloo group over every rank, for pickled objects (NCCL moves only CUDA tensors)."""
    import torch.distributed as dist

    if dist.get_backend() == "gloo":
        return None
    if "gloo" not in _groups:
        _groups["gloo"] = dist.new_group(backend="gloo")
    return _groups["gloo"]


def init_distributed() -> Distributed:
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE``,
    ``RANK``, ``LOCAL_RANK``): NCCL with one GPU per process when CUDA is there, gloo on CPU.
    Without ``torchrun`` (or with one process) returns a single-process :class:`Distributed`.
    """
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    cuda = torch.cuda.is_available()
    if world <= 1:
        return Distributed(device=torch.device("cuda" if cuda else "cpu"))
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if cuda else "gloo"
    device = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return Distributed(rank=dist.get_rank(), world_size=dist.get_world_size(), device=device,
                       backend=backend)
