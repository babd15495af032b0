"""A distributed audit (``torchrun -m audit run``): each rank computes a block of every
per-sample stage, the results are gathered in order, and the audit equals one process's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from audit.distributed import SINGLE, Distributed, current, units, using

ROOT = Path(__file__).resolve().parents[1]


def _draws(k: int, rows: slice, g: torch.Generator) -> dict[str, Any]:
    """What a seeded unit computes: its rows, and numbers from every stream it may use."""
    assert current() is SINGLE  # a nested stage is not split again
    return {"unit": k, "rows": (rows.start, rows.stop), "torch": torch.rand(2).tolist(),
            "numpy": np.random.rand(2).tolist(),
            "own": torch.rand(2, generator=g).tolist()}


def _mapped(world: Distributed) -> dict[str, Any]:
    torch.manual_seed(5)
    np.random.seed(5)
    g = torch.Generator().manual_seed(11)
    out = world.map(lambda k, rows: _draws(k, rows, g), 10, 3, seeded=True, generators=[g])
    after = {"torch": torch.rand(1).item(), "numpy": float(np.random.rand()),
             "own": torch.rand(1, generator=g).item()}
    mine = [k for k in range(len(units(10, 3)))
            if world.shard(len(units(10, 3)))[0] <= k < world.shard(len(units(10, 3)))[1]]
    failed = ""
    try:
        world.map(lambda k, rows: 1 // (k - 3), 10, 3)  # the last unit fails on the last rank
    except ZeroDivisionError as e:
        failed = type(e).__name__
    return {"out": out, "after": after, "mine": mine, "failed": failed}


def _rank(rank: int, size: int, store: str, folder: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=size)
    try:
        world = Distributed(rank=rank, world_size=size, backend="gloo")
        with using(world):
            got = _mapped(current())
        torch.save(got, Path(folder) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_map_gives_every_rank_one_process_results_in_unit_order(tmp_path: Path) -> None:
    mp.spawn(_rank, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    single = _mapped(SINGLE)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert single["mine"] == [0, 1, 2, 3]
    assert [r["mine"] for r in ranks] == [[0, 1], [2, 3]]  # contiguous blocks of units
    assert [u["rows"] for u in single["out"]] == [(0, 3), (3, 6), (6, 9), (9, 10)]
    for r in ranks:  # same per-unit numbers, same streams after the map, same error
        assert r["out"] == single["out"]
        assert r["after"] == single["after"]
        assert r["failed"] == single["failed"] == "ZeroDivisionError"
    # units draw different numbers from each other (reseeded per unit, not one shared seed)
    assert len({tuple(u["torch"]) for u in single["out"]}) == 4


def _comparable(doc: dict[str, Any]) -> dict[str, Any]:
    """A result without what differs between two runs of the same audit: timings, the
    creation time, the command line and the world size."""
    doc = json.loads(json.dumps(doc))
    for s in doc["sections"]:
        s.pop("duration_s", None)
        for t in s["tables"]:
            timed = [i for i, c in enumerate(t["columns"]) if c.startswith("time")]
            t["rows"] = [[v for i, v in enumerate(r) if i not in timed] for r in t["rows"]]
    doc["summary"].pop("duration_s", None)
    for k in ("created_at", "command", "resumed", "world_size"):
        doc["run"].pop(k, None)
    return doc


AUDITS = {"digits-cnn": ["--checks", "performance,robustness,saliency,fairness,slices,drift",
                         "--reference", "digits:train"],
          "digits-cnn-smoothed": ["--checks", "certified,saliency"]}


def _audit(out: Path, procs: int, model: str = "digits-cnn") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                 f"--nproc_per_node={procs}"] if procs > 1 else [sys.executable])
    return subprocess.run(
        [*launcher, "-m", "audit", "run", model, "--quick", "--no-progress", *AUDITS[model],
         "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
@pytest.mark.parametrize("model", list(AUDITS))
def test_torchrun_audit_equals_one_process(tmp_path: Path, model: str) -> None:
    one = _audit(tmp_path / "one.html", 1, model)
    two = _audit(tmp_path / "two.html", 2, model)
    assert one.returncode == two.returncode == 0, two.stderr[-2000:]
    assert two.stdout.count("report:") == 1  # rank 0 alone writes and prints
    a = json.loads((tmp_path / "one.json").read_text())
    b = json.loads((tmp_path / "two.json").read_text())
    assert (a["run"]["world_size"], b["run"]["world_size"]) == (1, 2)
    ran = {s["check"]: s for s in b["sections"]}
    assert all(ran[c]["status"] != "skipped" for c in ("saliency", "robustness", "certified")
               if c in AUDITS[model][1])
    if "robustness" in ran:
        assert ran["robustness"]["outcomes"], "the robustness section records per-sample outcomes"
    assert _comparable(b) == _comparable(a)  # per-sample outcomes included
    assert not any(s["error"] for s in b["sections"])
