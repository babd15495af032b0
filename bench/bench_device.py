"""Per-check time of ``audit run`` on the CPU and, when CUDA is present, on the GPU.

    python bench/bench_device.py [--model NAME] [--quick] [--amp] [--checks a,b]

Runs ``audit run NAME --device cpu`` and, where ``torch.cuda.is_available()``, ``audit run
NAME --device cuda``, each as its own process (a fresh interpreter, so neither run warms the
other's caches; the CUDA run includes its context start-up in the first check that touches
the GPU), with the same seed, and prints each check's ``duration_s`` from the result JSON
(the time the runner measured around that check: measure, findings, section, figures),
then the GPU/CPU ratio per check and for the whole audit (``summary.duration_s``: loading
and the model's first forward included). Without CUDA it prints the CPU column and says no
GPU was found. Default model ``shapes-cnn``, the default checks of its card; ``--quick``
passes ``--quick`` (smaller budgets), ``--amp`` passes ``--amp`` to both runs (mixed
precision for the forward passes where exactness is not needed).

Numbers are wall seconds of one run each; the machine may be shared (the load average is
printed), so expect noise in checks under a second.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch


def machine() -> str:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.platform(terse=True)}, {os.cpu_count()} CPU cores, {gpu}, "
            f"python {platform.python_version()}, torch {torch.__version__}, "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
            f"load average {os.getloadavg()[0]:.1f}")


def audit_run(model: str, device: str, flags: list[str], folder: Path) -> dict[str, Any]:
    """``audit run`` in a subprocess; the result JSON (the exit code is the verdict, so any
    code with a JSON written counts)."""
    out = folder / f"{device.replace(':', '-')}.html"
    cmd = [sys.executable, "-m", "audit", "run", model, "--device", device, "--no-progress",
           "--out", str(out), *flags]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    doc_path = out.with_suffix(".json")
    if not doc_path.exists():
        raise SystemExit(f"{' '.join(cmd)} wrote no JSON (exit {proc.returncode}):\n"
                         f"{proc.stderr[-2000:]}")
    doc: dict[str, Any] = json.loads(doc_path.read_text())
    return doc


def durations(doc: dict[str, Any]) -> dict[str, tuple[float, str]]:
    return {s["check"]: (float(s["duration_s"]), s["status"]) for s in doc["sections"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--model", default="shapes-cnn", help="a bundled model (default shapes-cnn)")
    ap.add_argument("--quick", action="store_true", help="pass --quick (smaller budgets)")
    ap.add_argument("--amp", action="store_true", help="pass --amp to both runs")
    ap.add_argument("--checks", default=None, help="comma-separated checks (default: all)")
    args = ap.parse_args()
    flags = (["--quick"] if args.quick else []) + (["--amp"] if args.amp else []) + \
        (["--checks", args.checks] if args.checks else [])
    print(machine())
    print(f"audit run {args.model} {' '.join(flags)}".rstrip())
    cuda = torch.cuda.is_available()
    with tempfile.TemporaryDirectory() as tmp:
        cpu = audit_run(args.model, "cpu", flags, Path(tmp))
        gpu = audit_run(args.model, "cuda", flags, Path(tmp)) if cuda else None
    c, g = durations(cpu), durations(gpu) if gpu else {}
    print(f"\n{'check':<22} {'status':<8} {'cpu (s)':>9} {'gpu (s)':>9} {'gpu/cpu':>8}")
    rows: list[tuple[str, str, float, float | None]] = [
        (name, status, t, g[name][0] if name in g else None) for name, (t, status) in c.items()]
    rows.append(("(whole audit)", "", float(cpu["summary"]["duration_s"]),
                 float(gpu["summary"]["duration_s"]) if gpu else None))
    for name, status, t_cpu, t_gpu in rows:
        gpu_s = f"{t_gpu:9.2f}" if t_gpu is not None else f"{'-':>9}"
        ratio = f"{t_gpu / t_cpu:8.2f}" if t_gpu is not None and t_cpu > 0 else f"{'-':>8}"
        print(f"{name:<22} {status:<8} {t_cpu:9.2f} {gpu_s} {ratio}")
    if gpu is None:
        print("\nno GPU found (torch.cuda.is_available() is False): CPU column only")
    else:
        print(f"\nGPU run on {gpu['run']['device']}; CPU run on {cpu['run']['device']}")
    print(f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
