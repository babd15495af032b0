"""Weak-slice discovery (audit.slices.search) against a straightforward pandas search and,
when it runs, deepchecks' WeakSegmentsPerformance, in the same run.

    python bench/bench_slices.py

Data: the Adult test split (16,281 rows, every raw column but the label ``income``) with the
bundled ``adult-mlp``; failures are its errors. On the discovery half of our split (seed 0)
and at our support (2% of the half), max_conditions 2:

* ours: conditions, their boolean matrix and :func:`audit.slices.search.count_conjunctions`
  (every single and pair in four BLAS products), over all conditions (one-sided forms too)
  and over the bin cells only (``x < e_1``, ``e_j <= x < e_j+1``, ``x >= e_m``, categories,
  missing), which are what a groupby sees;
* pandas: the same bins as labels (``pd.cut`` at our edges, missing as its own label), then
  for every pair of columns ``groupby([a, b])`` error sum and size;
* agreement: the counts of every supported bin-cell pair, and whether both rank the same
  top-5 pairs by the one-sided z of slice vs rest (before our redundancy rule).

Then the whole :func:`find_slices` (split, search, confirmation) end to end. deepchecks
0.19.1 (the latest) installs without torch, but does not import with scikit-learn 1.9 (its
scorer table asks for ``max_error``, which 1.9 removed), so it cannot share the project's
constraints; set ``DEEPCHECKS_PYTHON`` to the python of a separate venv holding deepchecks
with scikit-learn < 1.6 and numpy < 2 to run its WeakSegmentsPerformance on the same rows,
predictions and probabilities in a subprocess (times include its own start-up: reported
apart). Giskard 2.19 pins numpy < 2 and scipy < 1.12, against the project's numpy >= 2.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from audit.slices.conditions import Condition, make_conditions
from audit.slices.search import Counts, count_conjunctions, find_slices, split_halves

Cell = tuple[str, Any]  # (column, bin code or category value or "missing")


def best_of(fn: Callable[[], Any], repeat: int = 3) -> float:
    """Best wall time of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def load() -> tuple[pd.DataFrame, np.ndarray, Any]:
    from audit.runner import build_subject

    s = build_subject("adult-mlp")
    frame = s.data.extras["frame"]
    return frame, (s.data_pred != s.data.y).numpy(), s


def edges_of(conditions: list[Condition]) -> dict[str, list[float]]:
    out: dict[str, set[float]] = {}
    for c in conditions:
        if c.op in ("<", ">="):
            out.setdefault(c.column, set()).add(float(c.values[0]))
    return {k: sorted(v) for k, v in out.items()}


def cell_of(c: Condition, edges: dict[str, list[float]]) -> Cell | None:
    """The groupby cell a condition equals, None for a one-sided form that spans bins."""
    if c.op == "==":
        return (c.column, c.values[0])
    if c.op == "missing":
        return (c.column, "missing")
    e = edges[c.column]
    if c.op == "<":
        return (c.column, 0) if c.values[0] == e[0] else None
    if c.op == ">=":
        return (c.column, len(e)) if c.values[0] == e[-1] else None
    return (c.column, e.index(float(c.values[0])) + 1)


def ours(frame: pd.DataFrame, failed: np.ndarray, columns: list[str], support: int,
         cells_only: bool) -> tuple[Counts, list[Condition]]:
    conditions = make_conditions(frame, columns, min_support=support)
    if cells_only:
        edges = edges_of(conditions)
        conditions = [c for c in conditions if cell_of(c, edges) is not None]
    names = sorted({c.column for c in conditions})
    groups = np.array([names.index(c.column) for c in conditions])
    matrix = np.column_stack([c.mask(frame) for c in conditions])
    return count_conjunctions(matrix, failed, groups, support=support), conditions


def labels(frame: pd.DataFrame, columns: list[str], edges: dict[str, list[float]]
           ) -> pd.DataFrame:
    """Each column as bin codes (numeric, at our edges) or values, missing as "missing"."""
    out = {}
    for col in columns:
        s = frame[col]
        if col in edges:
            codes = pd.cut(s.astype(float), [-np.inf, *edges[col], np.inf], right=False,
                           labels=False)
            out[col] = codes.astype(object).where(codes.notna(), "missing")
        else:
            out[col] = s.astype(object).where(s.notna(), "missing")
    return pd.DataFrame(out)


def pandas_search(frame: pd.DataFrame, failed: np.ndarray, columns: list[str],
                  edges: dict[str, list[float]], support: int) -> pd.DataFrame:
    """Every supported pair cell: columns a, b, their labels, size, errors."""
    lab = labels(frame, columns, edges).assign(failed=failed.astype(np.int64))
    parts = []
    for a, b in itertools.combinations(columns, 2):
        g = lab.groupby([a, b], observed=True, dropna=False)["failed"].agg(["size", "sum"])
        g = g[(g["size"] >= support) & (g["size"] < len(lab))]
        parts.append(pd.DataFrame({"a": a, "va": g.index.get_level_values(0), "b": b,
                                   "vb": g.index.get_level_values(1),
                                   "size": g["size"].to_numpy(),
                                   "errors": g["sum"].to_numpy()}))
    return pd.concat(parts, ignore_index=True)


def z_of(size: np.ndarray, errors: np.ndarray, n: int, total: int) -> np.ndarray:
    rest, rest_err = n - size, total - errors
    p0 = total / n
    return (errors / size - rest_err / rest) / np.sqrt(p0 * (1 - p0) * (1 / size + 1 / rest))


def top5_ours(counts: Counts, conditions: list[Condition], edges: dict[str, list[float]]
              ) -> tuple[list[frozenset[Cell]], dict[frozenset[Cell], tuple[int, int]]]:
    pairs: dict[frozenset[Cell], tuple[int, int, float]] = {}
    for m, s, e, z in zip(counts.members, counts.size, counts.errors, counts.z, strict=True):
        cells = [cell_of(conditions[i], edges) for i in m]
        if len(m) == 2:
            pairs[frozenset(c for c in cells if c is not None)] = (int(s), int(e), float(z))
    ranked = sorted(pairs, key=lambda k: -pairs[k][2])
    return ranked[:5], {k: v[:2] for k, v in pairs.items()}


def top5_pandas(table: pd.DataFrame, n: int, total: int
                ) -> tuple[list[frozenset[Cell]], dict[frozenset[Cell], tuple[int, int]]]:
    z = z_of(table["size"].to_numpy(float), table["errors"].to_numpy(float), n, total)
    keys = [frozenset({(a, va), (b, vb)}) for a, va, b, vb in
            zip(table["a"], table["va"], table["b"], table["vb"], strict=True)]
    counts = {k: (int(s), int(e)) for k, s, e in
              zip(keys, table["size"], table["errors"], strict=True)}
    return [keys[i] for i in np.argsort(-z, kind="stable")[:5]], counts


DEEPCHECKS_SCRIPT = r"""
import json, sys, time
import numpy as np, pandas as pd
t0 = time.perf_counter()
from deepchecks.tabular import Dataset
from deepchecks.tabular.checks import WeakSegmentsPerformance
d = pd.read_csv(sys.argv[1])
cat = json.loads(sys.argv[2])
y_pred, proba = d.pop("_pred").to_numpy(), d.pop("_proba").to_numpy()
ds = Dataset(d, label="_label", cat_features=cat)
t1 = time.perf_counter()
check = WeakSegmentsPerformance(n_top_features=len(cat) + 6, segment_minimum_size_ratio=0.02,
                                alternative_scorer={"accuracy": "accuracy"})
res = check.run(ds, y_pred_train=y_pred, y_proba_train=np.stack([1 - proba, proba], 1),
                feature_importance=pd.Series(1.0, index=ds.features))
t2 = time.perf_counter()
w = res.value["weak_segments_list"].head(5).drop(columns=["Samples in Segment"],
                                                 errors="ignore")
print(json.dumps({"import_s": t1 - t0, "run_s": t2 - t1, "avg": res.value["avg_score"],
                  "top": w.astype(str).to_dict(orient="records")}))
"""


def deepchecks(frame: pd.DataFrame, columns: list[str], subject: Any) -> None:
    python = os.environ.get("DEEPCHECKS_PYTHON", "")
    if not python or not Path(python).exists():
        print("deepchecks: not run (set DEEPCHECKS_PYTHON, see the module docstring)")
        return
    d = frame[columns].copy()
    d["_label"] = subject.data.y.numpy()
    d["_pred"] = subject.data_pred.numpy()
    d["_proba"] = subject.data_proba[:, 1].numpy()
    cat = [c for c in columns if not pd.api.types.is_numeric_dtype(frame[c].dtype)]
    with tempfile.TemporaryDirectory() as tmp:
        # CSV, not a pickle: the other venv's older pandas reads it
        path = Path(tmp) / "adult.csv"
        d.to_csv(path, index=False)
        start = time.perf_counter()
        proc = subprocess.run([python, "-c", DEEPCHECKS_SCRIPT, str(path), json.dumps(cat)],
                              capture_output=True, text=True, timeout=900, check=False)
        wall = time.perf_counter() - start
    if proc.returncode:
        print(f"deepchecks: failed ({proc.stderr.strip().splitlines()[-1:]})")
        return
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"deepchecks WeakSegmentsPerformance (all 16,281 rows, accuracy; overall "
          f"{out['avg']:.3f}): run {out['run_s']:.2f} s, import {out['import_s']:.2f} s, "
          f"subprocess {wall:.2f} s; its top 5 segments:")
    for r in out["top"]:
        print("  " + ", ".join(f"{k}={v}" for k, v in r.items()))


def main() -> None:
    frame, failed, subject = load()
    columns = [c for c in frame.columns if c != "income"]
    disc, _ = split_halves(failed, 0)
    half, fd = frame.iloc[disc].reset_index(drop=True), failed[disc]
    n, total = len(half), int(fd.sum())
    support = math.ceil(0.02 * n)
    counts_all, conds_all = ours(half, fd, columns, support, cells_only=False)
    counts_cells, conds_cells = ours(half, fd, columns, support, cells_only=True)
    edges = edges_of(conds_all)
    table = pandas_search(half, fd, columns, edges, support)
    t_all = best_of(lambda: ours(half, fd, columns, support, False))
    t_cells = best_of(lambda: ours(half, fd, columns, support, True))
    t_pd = best_of(lambda: pandas_search(half, fd, columns, edges, support))
    print(f"Adult test, discovery half: {n} rows, {len(columns)} columns, error "
          f"{total / n:.3f}, support {support} rows")
    print(f"{'search (singles + pairs)':<34} {'conds':>6} {'conj.':>7} {'time (ms)':>10} "
          f"{'ratio':>7}")
    print(f"{'pandas groupby per column pair':<34} {'-':>6} {len(table):>7} "
          f"{t_pd * 1e3:>10.1f} {1.0:>7.3f}")
    print(f"{'ours, bin cells only':<34} {len(conds_cells):>6} "
          f"{len(counts_cells.members):>7} {t_cells * 1e3:>10.1f} {t_cells / t_pd:>7.3f}")
    print(f"{'ours, all conditions':<34} {len(conds_all):>6} {len(counts_all.members):>7} "
          f"{t_all * 1e3:>10.1f} {t_all / t_pd:>7.3f}")
    top_o, cnt_o = top5_ours(counts_cells, conds_cells, edges)
    top_p, cnt_p = top5_pandas(table, n, total)
    same_counts = cnt_o == cnt_p
    print(f"bin-cell pairs: ours {len(cnt_o)}, pandas {len(cnt_p)}, identical sizes and "
          f"errors: {same_counts}; same top-5 by z: {top_o == top_p}")
    for k in top_o:
        print(f"  {' and '.join(f'{c}:{v}' for c, v in sorted(k, key=str))}  "
              f"n={cnt_o[k][0]} errors={cnt_o[k][1]}")
    t_find = best_of(lambda: find_slices(frame, failed, columns=columns))
    res = find_slices(frame, failed, columns=columns)
    print(f"find_slices end to end (16,281 rows): {t_find * 1e3:.1f} ms, {res.candidates} "
          f"candidates, {res.carried} carried, {len(res.confirmed)} confirmed")
    t3 = best_of(lambda: find_slices(frame, failed, columns=columns, max_conditions=3))
    print(f"find_slices with max_conditions 3: {t3 * 1e3:.1f} ms")
    deepchecks(frame, columns, subject)


if __name__ == "__main__":
    main()
