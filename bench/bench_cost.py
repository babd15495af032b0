"""Does each check's cost grow as it should? Linear in the samples it uses, and in units of one
forward+backward pass of the model over those samples.

    python bench/bench_cost.py [--tabular 2000,8000,32000] [--image 500,2000,8000]
                               [--profile] [--out bench/results/bench_cost.md]

For a tabular model (bundled ``adult-mlp``) and an image model (bundled ``digits-cnn``) it
makes data files of three sizes by resampling rows, with replacement (seed 0), of the bundled
data: the Adult test split (``audit/datasets/files/adult.test.gz``) as ``--data`` CSVs with
``--target income``, and its train split resampled to the same size as the drift
``--reference``; for images the digits test split as ``.npz`` and its train split as the
reference. Each size runs the default ``audit run`` selection (performance, saliency,
surrogate, robustness, certified, fairness, slices, drift, crosscheck) through
:func:`audit.runner.run_audit` on the CPU; ``--json DIR`` keeps each JSON result there
(``<model>-<n>.json``).

Per check it reads the section's own ``duration_s`` and the samples it used: the section's
``samples``/``rows``/``samples_current`` metric where there is one, else the largest count of
its "Samples behind these numbers" table (which gives every cap: ``max_samples``, saliency
``samples``, surrogate ``max_rows``, drift ``c2st_max_rows``/``mmd_max_samples``...). In the
same process, after the audit of that size, it times one forward+backward pass of the model
(loaded with :func:`audit.loading.load_model`, CPU) over that many samples of the same data:
``model.zero_grad(); loss = model(x).logsumexp(1).sum(); loss.backward()`` in batches of 256,
median of 3. ``ratio`` = check time / that pass; ``growth`` = ratio / ratio at the smallest
size. A check that uses capped samples should have a flat ratio; one that uses every row
should too, if it is linear in rows. A growth above 2x from the smallest to the largest size
is flagged as not linear. ``--profile`` then runs each flagged check alone at the largest size
under cProfile and prints the top 15 functions by cumulative time.

The robustness section's "Cost of this check" table gives its model evaluations: their sum is
shown in the ``evals`` column. Numbers are wall seconds of one run; the machine may be shared,
so the load average is printed at the top and short rows (under 0.1 s) are noisy.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from audit.datasets import load_dataset  # noqa: E402
from audit.datasets.adult import read_raw  # noqa: E402
from audit.loading import load_model  # noqa: E402
from audit.result import jsonable  # noqa: E402
from audit.runner import load_data, run_audit  # noqa: E402

BATCH = 256
SKIP = {"crosscheck"}  # compares sections: no samples of its own
FLAG_GROWTH = 2.0


def make_tabular(folder: Path, n: int, seed: int = 0) -> tuple[Path, Path]:
    """Adult test rows (the audited data) and train rows (the drift reference), n each."""
    rng = np.random.default_rng(seed)
    test, train = read_raw("test"), read_raw("train")
    data, ref = folder / f"adult-{n}.csv", folder / f"adult-ref-{n}.csv"
    test.iloc[rng.integers(0, len(test), n)].to_csv(data, index=False)
    train.iloc[rng.integers(0, len(train), n)].to_csv(ref, index=False)
    return data, ref


def make_images(folder: Path, n: int, seed: int = 0) -> tuple[Path, Path]:
    """Digits test images (the audited data) and train images (the reference), n each."""
    rng = np.random.default_rng(seed)
    paths = []
    for split, name in (("test", f"digits-{n}.npz"), ("train", f"digits-ref-{n}.npz")):
        d = load_dataset("digits", split)
        idx = rng.integers(0, len(d.x), n)
        path = folder / name
        np.savez(path, x=d.x.numpy()[idx], y=d.y.numpy()[idx])
        paths.append(path)
    return paths[0], paths[1]


def fwd_bwd(model: torch.nn.Module, x: torch.Tensor, repeat: int = 3) -> float:
    """Median seconds of one forward+backward pass over ``x`` in batches of ``BATCH``."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for i in range(0, len(x), BATCH):
            model.zero_grad()
            loss = model(x[i:i + BATCH]).logsumexp(1).sum()
            loss.backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def samples_used(section: dict[str, Any]) -> tuple[int, str]:
    """The samples a section's work rests on, and where that number comes from."""
    metrics = section.get("metrics") or {}
    for key in ("samples", "rows", "samples_current"):
        if isinstance(metrics.get(key), int | float) and metrics[key]:
            return int(metrics[key]), f"metric {key}"
    for table in section.get("tables") or []:
        if table.get("id") == "samples":
            col = table["columns"].index("samples")
            best = max(table["rows"], key=lambda r: r[col])
            return int(best[col]), str(best[1])
    return 0, "?"


def caps_of(section: dict[str, Any]) -> str:
    for table in section.get("tables") or []:
        if table.get("id") == "samples":
            col = table["columns"].index("samples")
            return "; ".join(f"{r[1]}: {r[col]}" for r in table["rows"])
    return ""


def evaluations(section: dict[str, Any]) -> int | None:
    for table in section.get("tables") or []:
        if "cost of this check" in str(table.get("title", "")).lower():
            col = table["columns"].index("model evaluations")
            return int(sum(r[col] for r in table["rows"] if isinstance(r[col], int | float)))
    return None


def measure(model_name: str, data: Path, ref: Path, target: str | None, save: Path
            ) -> list[dict[str, Any]]:
    """One audit of ``data``; per check its time, samples and the fwd+bwd of those samples."""
    start = time.perf_counter()
    result = run_audit(model_name, data=data, reference=ref, target=target, device="cpu")
    wall = time.perf_counter() - start
    doc = jsonable(result.to_dict())
    save.write_text(json.dumps(doc, indent=1))
    loaded = load_model(model_name)
    model = loaded.model.to("cpu").eval()
    x = load_data(data, loaded.card, target=target).x
    rows = []
    cache: dict[int, float] = {}
    for sec in doc["sections"]:
        name = sec["check"]
        if name in SKIP:
            continue
        if sec["status"] == "skipped":
            rows.append({"check": name, "skipped": sec.get("summary", "")})
            continue
        used, source = samples_used(sec)
        if used not in cache:
            cache[used] = fwd_bwd(model, x[:used]) if used else float("nan")
        rows.append({"check": name, "samples": used, "source": source, "caps": caps_of(sec),
                     "time": float(sec["duration_s"] or 0.0), "fb": cache[used],
                     "evals": evaluations(sec)})
    print(f"  {model_name} n={len(x)}: audit {wall:.1f} s", flush=True)
    return rows


def profile_check(model_name: str, check: str, data: Path, ref: Path, target: str | None
                  ) -> str:
    prof = cProfile.Profile()
    prof.enable()
    run_audit(model_name, data=data, reference=ref, target=target, device="cpu",
              checks=[check], isolate=False)  # in this process, where cProfile sees it
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(15)
    return out.getvalue()


def table(results: dict[tuple[str, int], list[dict[str, Any]]]) -> tuple[str, list[str]]:
    lines = ["| model | check | size | samples used | time (s) | fwd+bwd (s) | ratio | growth "
             "vs smallest | evals | samples behind it |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    flagged = []
    models = list(dict.fromkeys(m for m, _ in results))  # in the order measured
    for model in models:
        sizes = sorted(n for m, n in results if m == model)
        checks = [r["check"] for r in results[(model, sizes[0])]]
        for check in checks:
            base = None
            growth = None
            for n in sizes:
                r = next((r for r in results[(model, n)] if r["check"] == check), None)
                if r is None:
                    continue
                if "skipped" in r:
                    lines.append(f"| {model} | {check} | {n} | - | skipped | | | | | "
                                 f"{r['skipped'][:70]} |")
                    continue
                ratio = r["time"] / r["fb"] if r["fb"] > 0 else float("nan")
                base = ratio if base is None else base
                growth = ratio / base if base else float("nan")
                ev = "" if r["evals"] is None else f"{r['evals']:,}"
                lines.append(f"| {model} | {check} | {n} | {r['samples']} | {r['time']:.2f} | "
                             f"{r['fb']:.4f} | {ratio:,.0f} | {growth:.2f}x | {ev} | "
                             f"{r['caps']} |")
            if growth is not None and growth > FLAG_GROWTH:
                flagged.append(f"{model}/{check}: ratio grows {growth:.1f}x from n={sizes[0]} "
                               f"to n={sizes[-1]} (not linear)")
    return "\n".join(lines), flagged


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tabular", default="2000,8000,32000", help="adult-mlp data sizes")
    ap.add_argument("--image", default="500,2000,8000", help="digits-cnn data sizes")
    ap.add_argument("--profile", action="store_true",
                    help="cProfile each flagged check alone at its largest size")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/bench_cost.md")
    ap.add_argument("--json", type=Path, default=None, help="folder for the JSON results")
    args = ap.parse_args()
    torch.set_num_threads(1)  # the machine is shared; one thread is the steadier measure
    head = (f"load average at start {os.getloadavg()}, {os.cpu_count()} CPUs, "
            f"torch {torch.__version__} ({torch.get_num_threads()} thread), "
            f"{platform.platform(terse=True)}")
    print(head, flush=True)
    plan = [("adult-mlp", "income", make_tabular, [int(s) for s in args.tabular.split(",") if s]),
            ("digits-cnn", None, make_images, [int(s) for s in args.image.split(",") if s])]
    results: dict[tuple[str, int], list[dict[str, Any]]] = {}
    files: dict[tuple[str, int], tuple[Path, Path]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        saved = args.json or Path(tmp)
        saved.mkdir(parents=True, exist_ok=True)
        for model, target, make, sizes in plan:
            for n in sizes:
                data, ref = make(Path(tmp), n)
                files[(model, n)] = (data, ref)
                results[(model, n)] = measure(model, data, ref, target,
                                              saved / f"{model}-{n}.json")
        text, flagged = table(results)
        tail = f"load average at end {os.getloadavg()}"
        report = [f"# bench_cost\n\n`python bench/bench_cost.py --tabular {args.tabular} "
                  f"--image {args.image}{' --profile' if args.profile else ''}`\n",
                  head + "\n", text, "",
                  "Flagged (ratio grows more than 2x from the smallest to the largest size):",
                  *([f"- {f}" for f in flagged] or ["- none"]), "",
                  "A fwd+bwd pass over few samples (saliency's 32) takes milliseconds, so its "
                  "ratio moves with the machine's load; confirm a flag there with its profile "
                  "(--profile) or a rerun.", "", tail]
        if args.profile:
            for f in flagged:
                model, check = f.split(":")[0].split("/")
                n = max(s for m, s in results if m == model)
                data, ref = files[(model, n)]
                target = "income" if model == "adult-mlp" else None
                print(f"profiling {model}/{check} n={n}", flush=True)
                prof = profile_check(model, check, data, ref, target)
                report += ["", f"## cProfile: {model} {check} at n={n} (top 15, cumulative)",
                           "", "```", prof.strip(), "```"]
    out = "\n".join(report) + "\n"
    print(out)
    args.out.write_text(out)


if __name__ == "__main__":
    main()
