"""How does the peak memory of ``audit run`` grow with the dataset?

    python bench/bench_memory.py [--tabular 10000,100000,1000000] [--image 1000,10000]
                                 [--folder 1000,10000] [--baseline 100] [--timeout 600]
                                 [--out bench/results/bench_memory.md]

Data, made here (seed 0, resampled with replacement):

* ``adult-mlp``: ``.csv`` files (``--target income``) of rows of the Adult test split;
* ``digits-cnn``: ``.npz`` files (``np.savez``, uncompressed) of the digits test split;
* ``shapes-cnn``: image folders (one sub-folder per class, 3x32x32 PNGs) of the shapes test
  split, the way a user's folder of images is read.

Each size runs ``python -m audit run MODEL --data DATA --quick --no-progress --out DIR/r.html``
in a fresh process (all default checks), then again with ``--checks performance`` alone
(loading + predicting every row: the data path without the checks' own memory). A
``--baseline``-row run of each model and mode is the fixed cost (interpreter, torch, model).
The largest size of each model runs a third time with ``AUDIT_SPILL_MIB=0`` (the data always
memory-mapped), to show the mapped path on data that fits the default 64 MiB.

Memory is read from ``/proc/PID/smaps_rollup`` of the audit process and its children (isolated
checks run in their own process) every 20 ms: ``anon`` is the peak of Pss_Anon summed over the
tree, the memory the audit owns; ``file`` is Pss_File, clean file-backed pages (the mapped data
among them) that the kernel drops under pressure; ``VmHWM`` is the audit process's own peak
RSS (both kinds, exact). ``per row`` = (anon - the baseline run's anon) / rows: the memory
each row costs at the peak, against ``f32 row``, the bytes of one sample as float32.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FEATURES = {"adult-mlp": 91, "digits-cnn": 64, "shapes-cnn": 3 * 32 * 32}  # card input.shape
MIB = 2 ** 20


def make_tabular(folder: Path, n: int, seed: int = 0) -> Path:
    """n Adult test rows, resampled with replacement, as a CSV with the ``income`` column."""
    from audit.datasets.adult import read_raw
    rng = np.random.default_rng(seed)
    test = read_raw("test")
    path = folder / f"adult-{n}.csv"
    test.iloc[rng.integers(0, len(test), n)].to_csv(path, index=False)
    return path


def make_folder(folder: Path, n: int, seed: int = 0) -> Path:
    """n shapes test images, resampled with replacement, as PNGs in class sub-folders."""
    from PIL import Image

    from audit.datasets import load_dataset
    from audit.datasets.shapes import CLASSES
    rng = np.random.default_rng(seed)
    d = load_dataset("shapes", "test")
    pixels = np.round(d.x.numpy().transpose(0, 2, 3, 1) * 255).astype(np.uint8)
    out = folder / f"shapes-{n}"
    for name in CLASSES:
        (out / name).mkdir(parents=True, exist_ok=True)
    for k, i in enumerate(rng.integers(0, len(pixels), n)):
        Image.fromarray(pixels[i]).save(out / CLASSES[int(d.y[i])] / f"{k:06d}.png")
    return out


def make_images(folder: Path, n: int, seed: int = 0) -> Path:
    """n digits test images, resampled with replacement, as an .npz with ``x`` and ``y``."""
    from audit.datasets import load_dataset
    rng = np.random.default_rng(seed)
    d = load_dataset("digits", "test")
    idx = rng.integers(0, len(d.x), n)
    path = folder / f"digits-{n}.npz"
    np.savez(path, x=d.x.numpy()[idx], y=d.y.numpy()[idx])
    return path


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (isolated checks run in child processes)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in task.read_text().split()]
    return out


def _status(pid: int) -> dict[str, float]:
    """Pss_Anon and Pss_File (``/proc/PID/smaps_rollup``) summed over ``pid``'s process tree,
    and ``pid``'s own VmHWM (the kernel's peak RSS), in MiB ({} once gone). Proportional sizes:
    a child between fork and exec shares its parent's pages and would double them as RSS."""
    out: dict[str, float] = {}
    for p in _tree(pid):
        for name, keys in (("smaps_rollup", ("Pss_Anon", "Pss_File")), ("status", ("VmHWM",))):
            if name == "status" and p != pid:
                continue
            try:
                text = Path(f"/proc/{p}/{name}").read_text()
            except OSError:
                continue
            for key in keys:
                m = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
                if m:
                    out[key] = out.get(key, 0.0) + int(m.group(1)) / 1024
    return out


def run_one(model: str, data: Path, target: str | None, perf_only: bool, out: Path,
            timeout: float, env: dict[str, str] | None = None,
            checks: str | None = None) -> dict[str, Any]:
    """One ``audit run`` in a fresh process, its memory read every 20 ms (:func:`_status`):
    wall s, peak RSS (VmHWM, exact), peak anonymous memory (Pss_Anon, sampled: what the audit
    owns), peak file-backed memory (Pss_File: clean pages of code and of memory-mapped data,
    which the kernel drops under pressure), exit code and the checks' durations."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "audit", "run", model, "--data",
           str(data), *(["--target", target] if target else []), "--quick", "--no-progress",
           *(["--checks", checks or "performance"] if perf_only or checks else []),
           "--out", str(out / "r.html")]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, env={**os.environ, **(env or {})})
    peak = {"VmHWM": 0.0, "Pss_Anon": 0.0, "Pss_File": 0.0}
    rc: int | str = "timeout"
    while time.perf_counter() - start < timeout:
        for k, v in _status(proc.pid).items():
            peak[k] = max(peak[k], v)
        if proc.poll() is not None:
            rc = proc.returncode
            break
        time.sleep(0.02)
    if rc == "timeout":
        os.killpg(proc.pid, signal.SIGKILL)
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - start
    durations: dict[str, float] = {}
    js = out / "r.json"
    if js.exists():
        for sec in json.loads(js.read_text()).get("sections", []):
            durations[sec["check"]] = float(sec.get("duration_s") or 0.0)
    if rc not in (0, 1):  # 1: findings at or above --fail-on; anything else is a failure
        print(f"  rc={rc}: {(stdout + stderr).strip()[-600:]}", flush=True)
    return {"wall": wall, "rss": peak["VmHWM"], "anon": peak["Pss_Anon"],
            "file": peak["Pss_File"], "rc": rc, "durations": durations}


def _size(path: Path) -> float:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / MIB
    return path.stat().st_size / MIB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tabular", default="10000,100000,1000000", help="adult-mlp sizes (rows)")
    ap.add_argument("--image", default="1000,10000", help="digits-cnn .npz sizes (images)")
    ap.add_argument("--folder", default="1000,10000", help="shapes-cnn folder sizes (images)")
    ap.add_argument("--baseline", type=int, default=100, help="rows of the fixed-cost run")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per run")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/bench_memory.md")
    args = ap.parse_args()
    import torch
    command = "python bench/bench_memory.py " + " ".join(sys.argv[1:])
    head = (f"`{command.strip()}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
            f"load average {tuple(round(v, 2) for v in os.getloadavg())}, "
            f"{os.cpu_count()} cores, torch {torch.__version__}, "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print(head, flush=True)
    plan = [("adult-mlp", "income", make_tabular, args.tabular),
            ("digits-cnn", None, make_images, args.image),
            ("shapes-cnn", None, make_folder, args.folder)]
    rows: list[dict[str, Any]] = []
    largest: dict[str, tuple[int, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for model, target, make, spec in plan:
            sizes = [int(v) for v in spec.split(",") if v]
            if not sizes:
                continue
            base: dict[str, float] = {}
            for n in [args.baseline, *sizes]:
                data = make(folder, n)
                modes = [("all", None), ("performance", None)]
                if n == sizes[-1]:
                    modes.append(("all", "0"))
                for checks, spill in modes:
                    env = {"AUDIT_SPILL_MIB": spill} if spill is not None else None
                    r = run_one(model, data, target, checks == "performance",
                                folder / f"{model}-{n}-{checks}-{spill}", args.timeout, env=env)
                    if n == args.baseline:
                        base[checks] = r["anon"]
                    row = {"model": model, "n": n, "checks": checks,
                           "spill": "0" if spill == "0" else "64 (default)",
                           "size": _size(data), "f32": n * FEATURES[model] * 4 / MIB, **r,
                           "per_row": None if n == args.baseline
                           else (r["anon"] - base[checks]) * MIB / n}
                    rows.append(row)
                    if checks == "all" and spill is None and n != args.baseline:
                        largest[model] = (n, r["durations"])
                    print(f"  {model} n={n:,} checks={checks} spill={row['spill']}: "
                          f"{r['wall']:.1f} s, anon {r['anon']:.0f} MiB, file "
                          f"{r['file']:.0f} MiB, rc={r['rc']}", flush=True)
                if data.is_dir():
                    import shutil
                    shutil.rmtree(data)
                else:
                    data.unlink()
    table = ["| model | rows | checks | AUDIT_SPILL_MIB | data on disk (MiB) | f32 (MiB) | "
             "wall (s) | anon peak (MiB) | file peak (MiB) | VmHWM (MiB) | anon per row (B) | "
             "f32 row (B) | exit |", "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"
             "---:|---:|"]
    for r in rows:
        per_row = "baseline" if r["per_row"] is None else f"{r['per_row']:.0f}"
        table.append(f"| {r['model']} | {r['n']:,} | {r['checks']} | {r['spill']} | "
                     f"{r['size']:.1f} | {r['f32']:.1f} | {r['wall']:.1f} | {r['anon']:.0f} | "
                     f"{r['file']:.0f} | {r['rss']:.0f} | {per_row} | "
                     f"{FEATURES[r['model']] * 4} | {r['rc']} |")
    durations = []
    for model, (n, durs) in largest.items():
        top = sorted(durs.items(), key=lambda kv: -kv[1])
        durations.append(f"- {model} at n={n:,}: " + ", ".join(f"{k} {v:.1f} s" for k, v in top
                                                                if v > 0))
    report = ["# bench_memory", "", head, "", *table, "",
              "exit 1 = findings at or above --fail-on (the audit ran). anon: Pss_Anon of the "
              "audit's process tree, sampled every 20 ms; file: Pss_File (clean file-backed "
              "pages, the mapped data among them); anon per row: (anon - the "
              f"{args.baseline}-row run's, same checks) / rows.", "",
              "Check durations (duration_s from the JSON) at the largest size:", "",
              *durations, ""]
    out = "\n".join(report) + "\n"
    print(out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(out)


if __name__ == "__main__":
    main()
