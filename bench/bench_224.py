"""What a new user's first audit of an ImageNet-sized model costs: a ResNet-18 (width 64, 11.2M
parameters, ``audit.zoo.resnet``) at 3x224x224 on 256 images, measured as a user runs it.

Run: ``python bench/bench_224.py [--width 64] [--n 256] [--device cpu] [--timeout 1800]
[--checks performance,saliency,...] [--modes checks,quick,default]``.

It writes the model (random weights) and 256 shapes images generated at 224 px with their
masks into a temporary folder, labelled with the model's own predictions so that every sample
is classified correctly and every attack and explanation stage runs on all of them (a trained
model's cost, not the smaller one of a model attacks skip because it is wrong),
then runs ``audit run`` in a fresh process per measurement under ``/usr/bin/time``: every check
alone (``checks``), the ``--quick`` audit and the default audit. Prints wall seconds and peak
resident memory per run, and each check's own duration from the JSON result. Results of this
machine are in ``bench/results/bench_224.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from audit.card import InputSpec, ModelCard  # noqa: E402
from audit.datasets.shapes import CLASSES, generate  # noqa: E402
from audit.training import save_bundle  # noqa: E402
from audit.zoo.resnet import ResNet  # noqa: E402

CHECKS = ["performance", "saliency", "surrogate", "robustness", "slices"]


def setup(work: Path, width: int, n: int) -> tuple[Path, Path]:
    """The model folder and the data file of the measurement."""
    torch.manual_seed(0)
    model = ResNet(num_classes=len(CLASSES), width=width).eval()
    card = ModelCard(
        name=f"resnet18-w{width}-224", arch="audit.zoo.resnet:ResNet",
        arch_kwargs={"num_classes": len(CLASSES), "width": width},
        input=InputSpec(shape=(3, 224, 224), range=(0.0, 1.0), kind="image"),
        classes=list(CLASSES), description="ResNet-18 at 224 px with random weights (bench).",
        robustness={"linf_eps": [1 / 255, 2 / 255, 4 / 255, 8 / 255],
                    "l2_eps": [0.25, 0.5, 1.0, 2.0]})
    folder = work / card.name
    save_bundle(model, card, folder)
    x, _, masks = generate(n, seed=1, size=224)
    with torch.no_grad():  # labels = the model's predictions: every sample is correct, so
        # every stage attacks and explains all of them (a trained model's cost, not less)
        y = torch.cat([model(torch.from_numpy(x[i:i + 32])).argmax(1)
                       for i in range(0, n, 32)]).numpy()
    data = work / f"shapes224-{n}.npz"
    np.savez_compressed(data, x=x, y=y, masks=masks)
    return folder, data


def measure(folder: Path, data: Path, out: Path, extra: list[str], timeout: float
            ) -> dict[str, object]:
    """One ``audit run`` in a fresh process: wall s, peak RSS GB, exit code, per-check s."""
    cmd = ["/usr/bin/time", "-f", "%e %M", sys.executable, "-m", "audit", "run", str(folder),
           "--data", str(data), "--out", str(out), "--no-progress", *extra]
    start = time.perf_counter()
    # a session of its own: on timeout the whole group goes (``time``, the audit, an isolated
    # check's process), not only ``time``
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"wall": time.perf_counter() - start, "rss_gb": None, "rc": "timeout",
                "checks": {}}
    wall, rss = stderr.strip().splitlines()[-1].split()
    result = out.with_suffix(".json")
    checks = {}
    if result.is_file():
        doc = json.loads(result.read_text())
        checks = {s["check"]: round(s.get("duration_s") or 0.0, 1) for s in doc["sections"]}
    return {"wall": float(wall), "rss_gb": int(rss) / 2 ** 20, "rc": proc.returncode,
            "checks": checks, "tail": stderr.strip().splitlines()[-3:-1]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--checks", default=",".join(CHECKS))
    ap.add_argument("--modes", default="checks,quick,default")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folder, data = setup(work, args.width, args.n)
        print(f"ResNet-18 width {args.width} at 224 px, {args.n} images, device {args.device}, "
              f"{torch.get_num_threads()} threads, torch {torch.__version__}")
        runs: list[tuple[str, list[str]]] = []
        modes = args.modes.split(",")
        if "checks" in modes:
            runs += [(c, ["--checks", c]) for c in args.checks.split(",")]
        if "quick" in modes:
            runs.append(("--quick", ["--quick"]))
        if "default" in modes:
            runs.append(("default", []))
        print("| run | wall s | peak RSS GB | exit | per-check s |")
        print("|---|---|---|---|---|")
        for label, extra in runs:
            res = measure(folder, data, work / f"{label.strip('-')}.html",
                          [*extra, "--device", args.device], args.timeout)
            rss = "n/a" if res["rss_gb"] is None else f"{res['rss_gb']:.2f}"
            per = ", ".join(f"{k} {v}" for k, v in dict(res["checks"]).items())  # type: ignore
            print(f"| {label} | {res['wall']:.0f} | {rss} | {res['rc']} | {per} |", flush=True)


if __name__ == "__main__":
    main()
