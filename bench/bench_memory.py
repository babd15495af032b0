"""How does the peak resident memory of ``audit run`` grow with the dataset? The baseline for a
later streaming-data change.

    python bench/bench_memory.py [--tabular 10000,100000,1000000] [--image 1000,10000]
                                 [--baseline 100] [--timeout 600] [--max-gib 8]
                                 [--trace 100000] [--out bench/results/bench_memory.md]

For the bundled ``adult-mlp`` it writes ``.csv`` files (``--target income``) of rows resampled,
with replacement (seed 0), from the Adult test split (``audit/datasets/files/adult.test.gz``);
for the bundled ``digits-cnn`` ``.npz`` files with ``x``/``y`` resampled from the digits test
split (the same files as ``bench/bench_cost.py`` makes). Each size runs

    python -m audit run MODEL --data FILE [--target income] --quick --no-progress --out DIR/r.html

in a fresh subprocess under ``/usr/bin/time -v`` (its "Maximum resident set size" is the peak
RSS), in a new session, killed by process group after ``--timeout`` seconds; then the same with
``--checks performance`` alone, which is loading + prediction + one cheap check, so that the
memory of the data path is separated from the checks' own. A ``--baseline``-row run of each
model and mode is the fixed cost (interpreter, torch, model); ``factor`` = (peak RSS - that
baseline) / (rows x features x 4), the data's bytes as float32 in the model's input space: how
many copies of the data the run holds at its peak. The largest tabular size is skipped (with an
estimate from the one before, linear in rows) when that estimate exceeds ``--timeout`` or
``--max-gib``. For the largest size of each model that ran, the checks' ``duration_s`` (from the
JSON beside the HTML) are listed, largest first.

``--trace N`` (0: off) then loads an N-row adult CSV in this process under ``tracemalloc`` the
way the runner does (:func:`audit.runner.load_data`) and runs the model over it, printing the
peak traced bytes of each stage and the top allocation sites: where the data path's memory goes
(numpy and pandas buffers are traced; torch's own allocator is not, so RSS is shown too).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FEATURES = {"adult-mlp": 91, "digits-cnn": 64}  # card input.shape: [91] and [1, 8, 8]
MIB = 2 ** 20


def make_tabular(folder: Path, n: int, seed: int = 0) -> Path:
    """n Adult test rows, resampled with replacement, as a CSV with the ``income`` column."""
    from audit.datasets.adult import read_raw
    rng = np.random.default_rng(seed)
    test = read_raw("test")
    path = folder / f"adult-{n}.csv"
    test.iloc[rng.integers(0, len(test), n)].to_csv(path, index=False)
    return path


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
            try:
                todo += [int(c) for c in task.read_text().split()]
            except OSError:
                pass
    return out


def _status(pid: int) -> dict[str, float]:
    """RssAnon and RssFile summed over ``pid``'s process tree, and ``pid``'s own VmHWM (the
    kernel's peak RSS), in MiB ({} once gone)."""
    out: dict[str, float] = {}
    for p in _tree(pid):
        try:
            text = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        for key in ("VmHWM", "RssAnon", "RssFile"):
            if key == "VmHWM" and p != pid:
                continue
            m = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
            if m:
                out[key] = out.get(key, 0.0) + int(m.group(1)) / 1024
    return out


def run_one(model: str, data: Path, target: str | None, perf_only: bool, out: Path,
            timeout: float, env: dict[str, str] | None = None,
            checks: str | None = None) -> dict[str, Any]:
    """One ``audit run`` in a fresh process, its ``/proc/PID/status`` read every 20 ms: wall s,
    peak RSS (VmHWM, exact), peak anonymous RSS (RssAnon, sampled: the memory the process
    owns; RssFile is the clean, file-backed pages of memory-mapped data, which the kernel drops
    under pressure), exit code and the checks' durations."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "audit", "run", model, "--data",
           str(data), *(["--target", target] if target else []), "--quick", "--no-progress",
           *(["--checks", checks or "performance"] if perf_only or checks else []),
           "--out", str(out / "r.html")]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, env={**os.environ, **(env or {})})
    peak = {"VmHWM": 0.0, "RssAnon": 0.0, "RssFile": 0.0}
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
    return {"wall": wall, "rss": peak["VmHWM"], "anon": peak["RssAnon"],
            "file": peak["RssFile"], "rc": rc, "durations": durations}


def trace_load(n: int, folder: Path) -> str:
    """tracemalloc + RSS of loading an n-row adult CSV and predicting it, stage by stage."""
    import torch

    from audit.loading import load_model
    from audit.runner import load_data
    torch.set_num_threads(1)
    data = make_tabular(folder, n)
    loaded = load_model("adult-mlp")
    model = loaded.model.to("cpu").eval()

    def rss() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    lines = [f"## tracemalloc: adult-mlp, {n} rows ({data.stat().st_size / MIB:.1f} MiB CSV, "
             f"float32 data {n * FEATURES['adult-mlp'] * 4 / MIB:.1f} MiB)", "",
             "| stage | traced peak (MiB) | traced after (MiB) | process peak RSS (MiB) |",
             "|---|---:|---:|---:|"]
    tracemalloc.start(25)
    base = rss()
    lines.append(f"| before (model loaded) | | | {base:.0f} |")
    loaded_data = load_data(data, loaded.card, target="income")
    cur, peak = tracemalloc.get_traced_memory()
    snap = tracemalloc.take_snapshot()
    lines.append(f"| load_data (CSV -> encoded x, y) | {peak / MIB:.1f} | {cur / MIB:.1f} | "
                 f"{rss():.0f} |")
    tracemalloc.reset_peak()
    x = loaded_data.x
    with torch.no_grad():
        logits = torch.cat([model(x[i:i + 4096]) for i in range(0, len(x), 4096)])
    cur, peak = tracemalloc.get_traced_memory()
    lines.append(f"| predict (batches of 4096) | {peak / MIB:.1f} | {cur / MIB:.1f} | "
                 f"{rss():.0f} |")
    tracemalloc.stop()
    lines += ["", f"x: {type(x).__name__} {tuple(x.shape)} {x.dtype}; logits "
              f"{tuple(logits.shape)}", "", "Top allocation sites still held after load_data:",
              "", "```"]
    for stat in snap.statistics("lineno")[:10]:
        lines.append(f"{stat.size / MIB:8.1f} MiB  {stat.count:7d} blocks  {stat.traceback[0]}")
    lines.append("```")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tabular", default="10000,100000,1000000", help="adult-mlp sizes (rows)")
    ap.add_argument("--image", default="1000,10000", help="digits-cnn sizes (images)")
    ap.add_argument("--baseline", type=int, default=100, help="rows of the fixed-cost run")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per run")
    ap.add_argument("--max-gib", type=float, default=8.0,
                    help="skip the largest tabular size if its estimated peak RSS exceeds this")
    ap.add_argument("--trace", type=int, default=0,
                    help="rows of an in-process tracemalloc run of load_data (0: off)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/bench_memory.md")
    args = ap.parse_args()
    import torch
    command = "python bench/bench_memory.py " + " ".join(sys.argv[1:])
    head = (f"`{command.strip()}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
            f"load average {tuple(round(v, 2) for v in os.getloadavg())}, "
            f"{os.cpu_count()} cores, torch {torch.__version__}, "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print(head, flush=True)
    plan = [("adult-mlp", "income", make_tabular,
             [int(s) for s in args.tabular.split(",") if s]),
            ("digits-cnn", None, make_images, [int(s) for s in args.image.split(",") if s])]
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    largest: dict[str, tuple[int, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for model, target, make, sizes in plan:
            if not sizes:
                continue
            base: dict[bool, float] = {}
            prev: dict[bool, dict[str, Any]] = {}
            for n in [args.baseline, *sizes]:
                if n == sizes[-1] and len(sizes) > 1 and prev:
                    k = n / prev[False]["n"]
                    est_wall = max(prev[p]["wall"] for p in prev) * k
                    est_rss = base[False] + (prev[False]["rss"] - base[False]) * k
                    if est_wall > args.timeout or est_rss > args.max_gib * 1024:
                        notes.append(f"{model} n={n:,} skipped: estimated from n="
                                     f"{prev[False]['n']:,} (linear in rows) {est_wall:.0f} s "
                                     f"and peak RSS {est_rss / 1024:.1f} GiB for the full run, "
                                     f"over the {args.timeout:.0f} s / {args.max_gib:g} GiB limit")
                        print(notes[-1], flush=True)
                        continue
                data = make(folder, n)
                size = data.stat().st_size
                for perf in (False, True):
                    r = run_one(model, data, target, perf, folder / f"{model}-{n}-{int(perf)}",
                                args.timeout)
                    if n == args.baseline:
                        base[perf] = r["rss"]
                    databytes = n * FEATURES[model] * 4
                    over = r["rss"] - base[perf]
                    row = {"model": model, "n": n, "checks": "performance" if perf else "all",
                           "file": size / MIB, "bytes": databytes / MIB, "wall": r["wall"],
                           "rss": r["rss"], "over": over,
                           "factor": over * MIB / databytes if n != args.baseline else None,
                           "rc": r["rc"]}
                    rows.append(row)
                    prev[perf] = row
                    if not perf and r["durations"] and n != args.baseline:
                        largest[model] = (n, r["durations"])
                    print(f"  {model} n={n:,} checks={row['checks']}: {r['wall']:.1f} s, "
                          f"{r['rss']:.0f} MiB, rc={r['rc']}", flush=True)
                data.unlink()
        trace = trace_load(args.trace, folder) if args.trace else ""
    table = ["| model | rows | checks | file (MiB) | data f32 (MiB) | wall (s) | peak RSS (MiB) | "
             "RSS - baseline (MiB) | factor (x data) | exit |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        factor = "baseline" if r["factor"] is None else f"{r['factor']:.1f}"
        table.append(f"| {r['model']} | {r['n']:,} | {r['checks']} | {r['file']:.2f} | "
                     f"{r['bytes']:.2f} | {r['wall']:.1f} | {r['rss']:.0f} | {r['over']:.0f} | "
                     f"{factor} | {r['rc']} |")
    durations = []
    for model, (n, durs) in largest.items():
        top = sorted(durs.items(), key=lambda kv: -kv[1])
        durations.append(f"- {model} at n={n:,}: " + ", ".join(f"{k} {v:.1f} s" for k, v in top
                                                                if v > 0))
    report = ["# bench_memory", "", head, "", *table, "",
              "exit 1 = findings at or above --fail-on (the audit ran); factor = (peak RSS - the "
              f"{args.baseline}-row run of the same model and checks) / (rows x features x 4 "
              "bytes); features: adult-mlp 91 (encoded), digits-cnn 64 (1x8x8).", "",
              *([f"- {n}" for n in notes] or []), *([""] if notes else []),
              "Check durations (duration_s from the JSON) at the largest size that ran:", "",
              *durations, ""]
    if trace:
        report += [trace, ""]
    out = "\n".join(report) + "\n"
    print(out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(out)


if __name__ == "__main__":
    main()
