"""How a torchrun-distributed audit scales on the CPU: ``audit run`` in one process against
``python -m torch.distributed.run --standalone --nproc_per_node=K -m audit run`` (gloo), with
``OMP_NUM_THREADS=1`` in every process, so the comparison is 1 core against K cores. Everything
is measured in the same run on the same machine, 1-process and K-process runs interleaved.

Run: ``python bench/bench_scaling.py [--model digits-cnn] [--reference digits:train]
[--procs 2] [--repeats 3] [--default-repeats 1] [--unit 45] [--modes robustness,default]
[--timeout 900]``. About 8 minutes on a quiet 2-core machine with the defaults.

1. The robustness check alone (``--checks robustness``, default budgets, not ``--quick``):
   wall seconds of the whole command and the check's own ``duration_s`` from the JSON result,
   median and min of ``--repeats`` runs, and the speedup 1p/Kp (goal >= 1.7x on 2 cores).
   ``--unit N`` repeats it with ``[checks.robustness] batch_size = N`` (an ``audit.toml``):
   a distributed stage splits its samples in units of the attack batch size, so with the
   default 256 and 360 samples one rank gets 256 and the other 104.
2. The default audit (every check; the drift check gets ``--reference``),
   ``--default-repeats`` times, with each check's ``duration_s``.
3. Model evaluations per sample (the robustness section's ``model_evaluations`` metric and
   "Cost of this check" table over its ``samples`` metric) for 1p and Kp: the work is the
   same, only split, so they must be equal. The per-stage table shows which stage's time
   does not shrink with K processes.
4. The JSON results of 1p and Kp are compared apart from timings, ``created_at``,
   ``command``, ``resumed`` and ``world_size`` (``_comparable`` of
   ``tests/test_distributed_audit.py``).

The load average (``os.getloadavg()``) is recorded before every run: on a shared machine the
ratio is only clean when the load is near 0. Results go to ``bench/results/bench_scaling.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "bench" / "results" / "bench_scaling.md"


def _comparable(doc: dict[str, Any]) -> dict[str, Any]:
    """A result without what differs between two runs of the same audit: timings, the
    creation time, the command line and the world size (tests/test_distributed_audit.py)."""
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


def _differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two comparable results differ (the first few paths)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}.{k}: only on one side" for k in sorted(set(a) ^ set(b), key=str)]
        for k in a.keys() & b.keys():
            out += _differences(a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} vs {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True))
                for d in _differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {str(a)[:60]!r} vs {str(b)[:60]!r}"]


def measure(procs: int, args: list[str], out: Path, timeout: float) -> dict[str, Any]:
    """One ``audit run`` (``procs`` > 1: under torchrun) in a session of its own: wall s,
    exit code, load average before, the JSON result."""
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                 f"--nproc_per_node={procs}"] if procs > 1 else [sys.executable])
    cmd = [*launcher, "-m", "audit", "run", *args, "--no-progress", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    load = os.getloadavg()[0]
    start = time.perf_counter()
    # a session of its own: on timeout the whole group goes (torchrun and every rank)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env=env, start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=timeout)
        rc: int | str = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, stderr = proc.communicate()
        rc = "timeout"
    wall = time.perf_counter() - start
    result = out.with_suffix(".json")
    doc = json.loads(result.read_text()) if result.is_file() and rc != "timeout" else None
    if rc not in (0, 1):  # 1: findings at or above --fail-on, still a full result
        print(f"  {procs}p exit {rc}: {stderr.strip()[-1500:]}", file=sys.stderr)
    return {"procs": procs, "wall": wall, "rc": rc, "load": load, "doc": doc}


def section(doc: dict[str, Any] | None, check: str) -> dict[str, Any] | None:
    if doc is None:
        return None
    return next((s for s in doc["sections"] if s["check"] == check), None)


def table(sec: dict[str, Any], title: str) -> list[dict[str, Any]]:
    t = next((t for t in sec["tables"] if t["title"] == title), None)
    return [] if t is None else [dict(zip(t["columns"], r, strict=True)) for r in t["rows"]]


def evaluations(doc: dict[str, Any] | None) -> dict[str, Any]:
    """Model evaluations of the robustness section: total, per sample, per stage."""
    sec = section(doc, "robustness")
    if sec is None:
        return {}
    samples = sec["metrics"].get("samples") or 0
    cost = table(sec, "Cost of this check")
    attacks = table(sec, "Attacks")
    total = sec["metrics"].get("model_evaluations")
    return {"samples": samples, "total": total,
            "cost_sum": sum(r["model evaluations"] or 0 for r in cost),
            "attacks_sum": sum(r["model evaluations"] or 0 for r in attacks),
            "per_sample": (total / samples) if total and samples else None,
            "stages": {r["stage"]: (r["model evaluations"], r["time (s)"]) for r in cost}}


def med_min(xs: list[float]) -> str:
    return f"{statistics.median(xs):.1f} / {min(xs):.1f}" if xs else "n/a"


def scenario(name: str, args: list[str], procs: int, repeats: int, work: Path,
             timeout: float) -> dict[str, Any]:
    """``repeats`` rounds of one 1-process and one ``procs``-process run, interleaved."""
    runs: dict[int, list[dict[str, Any]]] = {1: [], procs: []}
    for i in range(repeats):
        for p in (1, procs):
            r = measure(p, args, work / f"{name}-{p}p-{i}.html", timeout)
            runs[p].append(r)
            rob = section(r["doc"], "robustness")
            dur = rob["duration_s"] if rob else None
            print(f"  {name} {p}p #{i + 1}: wall {r['wall']:.1f} s, exit {r['rc']}, "
                  f"robustness {dur} s, load before {r['load']:.2f}", flush=True)
    return {"name": name, "args": args, "procs": procs, "runs": runs}


def report(results: list[dict[str, Any]], procs: int) -> list[str]:
    lines = [f"| run | procs | wall s median / min | robustness duration_s median / min "
             f"| speedup 1p/{procs}p (median wall) | speedup (robustness duration_s) "
             f"| wall − audit duration_s (startup) | load before runs | evals / sample "
             f"| JSON equal to 1p |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    details: list[str] = []
    for res in results:
        one, many = res["runs"][1], res["runs"][procs]
        ref = next((r["doc"] for r in one if r["doc"] is not None), None)
        wall1 = statistics.median([r["wall"] for r in one])
        dur = {p: [s["duration_s"] for r in rs if (s := section(r["doc"], "robustness"))]
               for p, rs in res["runs"].items()}
        for p, rs in ((1, one), (procs, many)):
            walls = [r["wall"] for r in rs]
            ev = evaluations(rs[0]["doc"])
            eq = "—"
            if p != 1:
                docs = [r["doc"] for r in rs]
                if ref is None or any(d is None for d in docs):
                    eq = "no result"
                else:
                    diffs = [_differences(_comparable(ref), _comparable(d)) for d in docs]
                    eq = "yes" if not any(diffs) else f"NO ({sum(map(bool, diffs))} of {len(docs)})"
                    for d in diffs:
                        if d:
                            details.append(f"- {res['name']}: 1p and {p}p differ at "
                                           + "; ".join(d[:5]) + (" ..." if len(d) > 5 else ""))
                            break
            speed = f"{wall1 / statistics.median(walls):.2f}x" if p != 1 else "—"
            dspeed = "—"
            if p != 1 and dur[1] and dur[p]:
                dspeed = f"{statistics.median(dur[1]) / statistics.median(dur[p]):.2f}x"
            loads = ", ".join(f"{r['load']:.2f}" for r in rs)
            fixed = [r["wall"] - r["doc"]["summary"]["duration_s"] for r in rs if r["doc"]]
            per = f"{ev['per_sample']:.1f}" if ev.get("per_sample") else "n/a"
            rcs = {r["rc"] for r in rs}
            name = res["name"] + ("" if rcs <= {0, 1} else f" (exit {sorted(map(str, rcs))})")
            lines.append(f"| {name} | {p} | {med_min(walls)} | {med_min(dur[p])} | {speed} "
                         f"| {dspeed} | {med_min(fixed)} | {loads} | {per} | {eq} |")
        checks = [s["check"] for s in ref["sections"]] if ref else []
        if len(checks) > 1:  # every check's own duration_s, 1p vs Kp
            details.append(f"- {res['name']}: each check's duration_s (median)")
            details.append("")
            details.append(f"  | check | 1p s | {procs}p s | 1p/{procs}p |")
            details.append("  |---|---|---|---|")
            for c in checks:
                t = {p: statistics.median([s["duration_s"] or 0.0 for r in rs
                                           if (s := section(r["doc"], c))] or [0.0])
                     for p, rs in ((1, one), (procs, many))}
                ratio = f"{t[1] / t[procs]:.2f}x" if t[procs] >= 0.05 else "n/a"
                details.append(f"  | {c} | {t[1]:.2f} | {t[procs]:.2f} | {ratio} |")
            details.append("")
        # model evaluations and per-stage time of the robustness check, 1p vs Kp
        e1, ek = evaluations(one[0]["doc"]), evaluations(many[0]["doc"])
        if not e1 or not ek:
            continue
        same = all(e1[k] == ek[k] for k in ("total", "cost_sum", "attacks_sum", "samples"))
        details.append(f"- {res['name']}: robustness model evaluations 1p {e1['total']:.0f} "
                       f"({e1['per_sample']:.1f} per sample over {e1['samples']:.0f}; cost "
                       f"table {e1['cost_sum']}, attacks table {e1['attacks_sum']}), {procs}p "
                       f"{ek['total']:.0f} ({ek['per_sample']:.1f} per sample; cost table "
                       f"{ek['cost_sum']}, attacks table {ek['attacks_sum']}): "
                       + ("equal" if same else "**DIFFERENT (finding)**"))
        details.append("")
        details.append(f"  | {res['name']} stage | evals 1p | evals {procs}p | time 1p s (median)"
                       f" | time {procs}p s (median) | 1p/{procs}p |")
        details.append("  |---|---|---|---|---|---|")
        for stage in e1["stages"]:
            t = {p: statistics.median([e["stages"][stage][1] for r in rs
                                       if (e := evaluations(r["doc"])) and stage in e["stages"]])
                 for p, rs in ((1, one), (procs, many))}
            ratio = f"{t[1] / t[procs]:.2f}x" if t[procs] >= 0.05 else "n/a"
            details.append(f"  | {stage} | {e1['stages'][stage][0]} "
                           f"| {ek['stages'].get(stage, ('n/a',))[0]} | {t[1]:.2f} "
                           f"| {t[procs]:.2f} | {ratio} |")
        details.append("")
    return [*lines, "", *details]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="digits-cnn")
    ap.add_argument("--reference", default="digits:train",
                    help="--reference of the default audit (drift check); '' for none")
    ap.add_argument("--data", default=None,
                    help="data to audit (default: the card's test split); e.g. digits:train "
                         "for 1437 rows, so the robustness check's 1000 samples make 4 units")
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--unit", type=int, default=45,
                    help="also run the robustness check with this attack batch_size (0: no)")
    ap.add_argument("--default-repeats", type=int, default=1,
                    help="repeats of the default audit (longer than the robustness check)")
    ap.add_argument("--modes", default="robustness,default")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--out", type=Path, default=RESULT)
    args = ap.parse_args()
    import torch  # only for the header

    modes = args.modes.split(",")
    data = ["--data", args.data] if args.data else []
    header = (f"`python bench/bench_scaling.py --model {args.model} --procs {args.procs} "
              f"{'--data ' + args.data + ' ' if args.data else ''}"
              f"--repeats {args.repeats} --default-repeats {args.default_repeats} "
              f"--unit {args.unit} --modes {args.modes}`, "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
              f"torch {torch.__version__}, OMP_NUM_THREADS=1 per process, load before start "
              f"{', '.join(f'{x:.2f}' for x in os.getloadavg())} (1/5/15 min)")
    print(header, flush=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "robustness" in modes:
            results.append(scenario("robustness", [args.model, *data, "--checks", "robustness"],
                                    args.procs, args.repeats, work, args.timeout))
            if args.unit:
                cfg = work / "audit.toml"
                cfg.write_text(f"[checks.robustness]\nbatch_size = {args.unit}\n")
                results.append(scenario(
                    f"robustness batch_size={args.unit}",
                    [args.model, *data, "--checks", "robustness", "--config", str(cfg)],
                    args.procs, args.repeats, work, args.timeout))
        if "default" in modes:
            extra = ["--reference", args.reference] if args.reference else []
            results.append(scenario("default audit", [args.model, *data, *extra], args.procs,
                                    args.default_repeats, work, args.timeout))
    lines = report(results, args.procs)
    print("\n".join(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(f"# bench_scaling: {args.model}, 1 process vs {args.procs} "
                        f"(torchrun, gloo), CPU\n\n{header}\n\n" + "\n".join(lines) + "\n")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
