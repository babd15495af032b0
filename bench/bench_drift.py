"""The drift statistics (audit.drift) against straightforward peers measured in the same run.

    python bench/bench_drift.py [--quick]                 # the project's venv: scipy peers
    /tmp/evvenv/bin/python bench/bench_drift.py [--quick] # a venv with Evidently: also it

Evidently is not a dependency of the project. To measure it in the same process, make a
separate venv with both (Evidently 0.7 does not import with pandas 3, hence the pin; our
code runs on either):

    python3 -m venv /tmp/evvenv && /tmp/evvenv/bin/pip install -q \
        -c constraints.txt -e . evidently "pandas>=2.2,<3"

Without it the Evidently rows say so and are skipped.

Tabular (default 100,000 reference x 100,000 current rows, 30 columns: 24 numeric of four
shapes, 6 string categorical with 3-8 categories; 4 numeric and 2 categorical columns shifted;
seed 0):

* ``feature_drift`` on all columns (KS or chi-square, PSI, Wasserstein, Benjamini-Hochberg,
  the detectable effect per column) against the user's loop of ``scipy.stats.ks_2samp`` per
  numeric column and ``chi2_contingency`` on ``value_counts`` per categorical one; agreement
  is the largest absolute difference of the raw p-values (the same tests, so ~0 expected).
* Evidently's ``DataDriftPreset`` on the same frames, twice: with its defaults, which at this
  size pick other statistics (the run prints which: normed Wasserstein distance for numeric
  and Jensen-Shannon distance for categorical columns beyond 1,000 rows, thresholded at 0.1,
  no p-value), so that row compares work, not numbers; and with ``num_method="ks",
  cat_method="chisquare"``, whose KS p-values must equal ours (agreement over the numeric
  columns; Evidently's "chisquare" is a goodness-of-fit test of the current counts against
  the reference shares, not the homogeneity test, so its categorical p-values differ and are
  left out of the agreement).
* ``classifier_test`` (boosting, 5,000 rows per side) on the numeric columns and one-hot
  categories: timed alone (no peer).
* ``mmd_test`` on the 30-d rows (24 numeric, 6 category codes; 1,000 per side, 1,000
  permutations) against the same test written as a loop: scipy's ``cdist``, the same
  median-heuristic bandwidth and the same permutations (drawn as ours draws them), the
  statistic recomputed per permutation from the kernel matrix blocks in numpy. The same
  p-value is expected exactly.

Images (default 10,000 reference + 10,000 current 8x8 digits: the 1,797 bundled digits
repeated with seeded pixel noise, sd 0.2 for the reference and 0.3 for the current set):

* the whole drift check through ``run_audit("digits-cnn", checks=["drift"])`` on two .npz
  files, end to end, then its parts timed alone on the same arrays (subject built, embeddings
  of both sets, MMD, classifier test on the embeddings, prediction drift, CBPE), and the MMD
  on the embeddings against the permutation loop as above.

Numbers are wall seconds: one run for the slow rows (peers' loops, Evidently, the end-to-end
audit, the boosting classifier), the best of three for the rest; the machine may be shared,
so expect noise in short rows.
``--quick``: 20,000 rows and 2,000 images per side, and the MMD rows at the check's
``--quick`` size (500 per side, 200 permutations).

Measured on a shared 2-core machine: with other processes busy, torch's two intra-op threads
made the digits-cnn forward passes several times slower than one thread (4.5 s against 0.6 s
for 10,000 images at load average 3); the forward-pass rows move most with the load average
printed at the top.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy
import torch
from scipy import stats
from scipy.spatial.distance import cdist

from audit import build_subject, run_audit
from audit.datasets import load_dataset
from audit.drift.cbpe import estimate_accuracy
from audit.drift.embeddings import Embedder
from audit.drift.features import feature_drift
from audit.drift.params import DriftParams
from audit.drift.twosample import classifier_test, mmd_test

Row = tuple[str, float, float | None, str]
ROWS: list[Row] = []


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[Any, float]:
    """The result of ``fn`` and its best wall time over ``repeat`` calls (the cheap parts are
    repeated: on a shared machine one short call is mostly noise)."""
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return out, best


def add(task: str, ours: float, peer: float | None = None, agreement: str = "") -> None:
    ROWS.append((task, ours, peer, agreement))
    ratio = f"  ratio {peer / ours:.2f}" if peer is not None and ours > 0 else ""
    peer_s = f", peer {peer:.2f} s" if peer is not None else ""
    print(f"  {task}: ours {ours:.2f} s{peer_s}{ratio} {agreement}", flush=True)


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"CPU {cpu}, {os.cpu_count()} cores (torch threads {torch.get_num_threads()}); "
            f"python {platform.python_version()}, torch {torch.__version__}, "
            f"scipy {scipy.__version__}, numpy {np.__version__}, pandas {pd.__version__}; "
            f"load average {os.getloadavg()[0]:.1f} (other processes share these cores)")


# ---------------------------------------------------------------------------------- tabular

NUMERIC = 24
CATEGORICAL = 6


def tabular(rows: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Reference and current frames; shifted in the current one: x0 (normal, mean +0.05 sd),
    x7 (lognormal, sigma 0.5 -> 0.55), x14 (uniform, scale x1.1), x15 (lognormal, scale
    x1.1), c0 (2 points from one category to another), c3 (a new category, 1%)."""
    rng = np.random.default_rng(seed)

    def numeric(j: int, shifted: bool) -> np.ndarray:
        kind = j % 4
        if kind == 0:
            return rng.normal(0.05 if shifted and j == 0 else 0.0, 1.0, rows)
        if kind == 1:
            return rng.exponential(1.0, rows)
        if kind == 2:
            return rng.uniform(0, 1, rows) * (1.1 if shifted and j == 14 else 1.0)
        return rng.lognormal(0.0, 0.55 if shifted and j == 7 else 0.5, rows) \
            * (1.1 if shifted and j == 15 else 1.0)

    def frame(shifted: bool) -> pd.DataFrame:
        cols: dict[str, Any] = {f"x{j}": numeric(j, shifted) for j in range(NUMERIC)}
        for j in range(CATEGORICAL):
            k = 3 + j
            p = np.linspace(1.0, 2.0, k)
            p /= p.sum()
            names = [f"c{j}_{i}" for i in range(k)]
            if shifted and j == 0:
                p = p + np.r_[0.02, -0.02, np.zeros(k - 2)]
            if shifted and j == 3:
                names, p = [*names, "new"], np.r_[p * 0.99, 0.01]
            cols[f"c{j}"] = rng.choice(np.array(names, dtype=object), rows, p=p)
        return pd.DataFrame(cols)

    return frame(False), frame(True), [f"c{j}" for j in range(CATEGORICAL)]


def scipy_loop(ref: pd.DataFrame, cur: pd.DataFrame, categorical: list[str]) -> dict[str, float]:
    """What a user writes: one scipy test per column."""
    out = {}
    for c in ref.columns:
        if c in categorical:
            counts = pd.concat([ref[c].value_counts(), cur[c].value_counts()], axis=1)
            out[c] = float(stats.chi2_contingency(counts.fillna(0).T.to_numpy()).pvalue)
        else:
            out[c] = float(stats.ks_2samp(ref[c], cur[c]).pvalue)
    return out


def evidently_runner() -> tuple[str, Callable[..., list[tuple[str, str, float]]]] | None:
    """``(version, run(ref, cur, num, cat, **preset_kwargs) -> [(column, method, value)])`` for
    the installed Evidently (0.6/0.7 or 0.4/0.5 API), or None when it cannot be imported."""
    os.environ.setdefault("DO_NOT_TRACK", "1")
    try:
        import evidently  # type: ignore[import-not-found,unused-ignore]
    except Exception as e:  # not installed, or broken against this pandas
        print(f"Evidently: skipped ({type(e).__name__}: {e}); see the docstring to install it")
        return None
    version = str(getattr(evidently, "__version__", "?"))
    try:
        from evidently import DataDefinition, Dataset, Report  # type: ignore[import-not-found,unused-ignore]
        from evidently.presets import DataDriftPreset  # type: ignore[import-not-found,unused-ignore]

        def run_new(ref: pd.DataFrame, cur: pd.DataFrame, num: list[str], cat: list[str],
                    **kw: Any) -> list[tuple[str, str, float]]:
            dd = DataDefinition(numerical_columns=num, categorical_columns=cat)
            with warnings.catch_warnings():  # its chisquare divides by a new category's 0
                warnings.simplefilter("ignore")
                snap = Report([DataDriftPreset(**kw)]).run(
                    Dataset.from_pandas(cur, data_definition=dd),
                    Dataset.from_pandas(ref, data_definition=dd))
            return [(m["config"]["column"], m["config"]["method"], float(m["value"]))
                    for m in snap.dict()["metrics"] if "column" in m["config"]]
        return version, run_new
    except ImportError:
        pass
    from evidently import ColumnMapping  # type: ignore[import-not-found,unused-ignore]
    from evidently.metric_preset import DataDriftPreset as OldPreset  # type: ignore[import-not-found,unused-ignore]
    from evidently.report import Report as OldReport  # type: ignore[import-not-found,unused-ignore]

    def run_old(ref: pd.DataFrame, cur: pd.DataFrame, num: list[str], cat: list[str],
                **kw: Any) -> list[tuple[str, str, float]]:
        old_kw = {{"num_method": "num_stattest", "cat_method": "cat_stattest"}[k]: v
                  for k, v in kw.items()}
        report = OldReport(metrics=[OldPreset(**old_kw)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report.run(reference_data=ref, current_data=cur, column_mapping=ColumnMapping(
                numerical_features=num, categorical_features=cat))
        out = []
        for m in report.as_dict()["metrics"]:
            for col, r in (m["result"].get("drift_by_columns") or {}).items():
                out.append((col, r["stattest_name"], float(r["drift_score"])))
        return out
    return version, run_old


def bench_tabular(rows: int, mmd: tuple[int, int]) -> None:
    ref, cur, cat = tabular(rows)
    num = [c for c in ref.columns if c not in cat]
    print(f"\nTabular: {rows:,} reference x {rows:,} current rows, {len(num)} numeric + "
          f"{len(cat)} categorical columns")
    ours, t_ours = timed(lambda: feature_drift(ref, cur, categorical=cat, alpha=0.05), 3)
    peer, t_peer = timed(lambda: scipy_loop(ref, cur, cat), 3)
    diff = max(abs(f.p_value - peer[f.column]) for f in ours)
    drifted = sorted(f.column for f in ours if f.drifted)
    print(f"  ours: drifted after BH {drifted}")
    add("tabular: feature_drift vs scipy loop", t_ours, t_peer, f"max |dp| {diff:.1e}")

    ev = evidently_runner()
    if ev is not None:
        version, run = ev
        res, t_ev = timed(lambda: run(ref, cur, num, cat))
        methods = sorted({f"{m} ({sum(1 for r in res if r[1] == m)} cols)" for _, m, _ in res})
        ev_drift = sorted(c for c, m, v in res if v >= 0.1)  # distances: drift at >= 0.1
        print(f"  Evidently {version} default tests at this size: {', '.join(methods)}; "
              f"drifted (distance >= 0.1): {ev_drift}")
        add(f"tabular: Evidently {version} DataDriftPreset (default)", t_ours, t_ev,
            "other statistics")
        res, t_ks = timed(lambda: run(ref, cur, num, cat, num_method="ks",
                                      cat_method="chisquare"))
        by_col = {c: v for c, m, v in res}
        d_ks = max(abs(f.p_value - by_col[f.column]) for f in ours if f.column in num)
        add(f"tabular: Evidently {version} (ks/chisquare)", t_ours, t_ks,
            f"KS max |dp| {d_ks:.1e}")

    x_ref = np.column_stack([ref[num].to_numpy(), pd.get_dummies(ref[cat]).to_numpy(float)])
    dummies = pd.get_dummies(cur[cat]).reindex(columns=pd.get_dummies(ref[cat]).columns,
                                               fill_value=0)
    x_cur = np.column_stack([cur[num].to_numpy(), dummies.to_numpy(float)])
    c2st, t_c2st = timed(lambda: classifier_test(x_ref, x_cur, model="boosting",
                                                 max_rows=5000))
    add(f"tabular: classifier_test boosting 5000/side ({x_ref.shape[1]} cols)", t_c2st, None,
        f"AUC {c2st.auc:.3f} p {c2st.p_value:.1e}")

    codes = {c: pd.factorize(pd.concat([ref[c], cur[c]]))[0] for c in cat}
    z_ref = np.column_stack([ref[num].to_numpy(), *(codes[c][:rows] for c in cat)])
    z_cur = np.column_stack([cur[num].to_numpy(), *(codes[c][rows:] for c in cat)])
    mmd_row(f"tabular: mmd_test 30-d {mmd[0]}/side {mmd[1]} perms vs loop", z_ref, z_cur,
            max_samples=mmd[0], permutations=mmd[1])


# ------------------------------------------------------------------------------------- MMD

def loop_mmd(a: np.ndarray, b: np.ndarray, permutations: int, max_samples: int,
             seed: int) -> tuple[float, float]:
    """The MMD permutation test of :func:`mmd_test`, written plainly: the same subsample,
    kernel and permutations, the statistic recomputed from kernel blocks per permutation."""
    rng = np.random.default_rng(seed)

    def sub(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64).reshape(len(x), -1)
        return x if len(x) <= max_samples else \
            x[np.sort(rng.choice(len(x), max_samples, replace=False))]

    a, b = sub(a), sub(b)
    n, m = len(a), len(b)
    z = np.concatenate([a, b])
    d2 = cdist(z, z, "sqeuclidean")
    med = float(np.median(d2[~np.eye(n + m, dtype=bool)]))
    bw = math.sqrt(med / 2) if med > 0 else 1.0
    k = np.exp(-d2 / (2 * bw * bw))

    def mmd2(ix: np.ndarray, iy: np.ndarray) -> float:
        return float(k[np.ix_(ix, ix)].mean() + k[np.ix_(iy, iy)].mean()
                     - 2 * k[np.ix_(ix, iy)].mean())

    observed = mmd2(np.arange(n), np.arange(n, n + m))
    gen = torch.Generator().manual_seed(seed)  # the permutations mmd_test draws
    hits = 0
    for start in range(0, permutations, 200):
        p = min(200, permutations - start)
        for perm in torch.argsort(torch.rand(p, n + m, generator=gen), dim=1).numpy():
            # mmd_test gives row i the side of position perm[i]
            hits += mmd2(np.flatnonzero(perm < n), np.flatnonzero(perm >= n)) \
                >= observed - 1e-12
    return observed, (1 + hits) / (1 + permutations)


def mmd_row(task: str, a: np.ndarray, b: np.ndarray, permutations: int = 1000,
            max_samples: int = 1000) -> None:
    ours, t_ours = timed(lambda: mmd_test(a, b, permutations=permutations,
                                          max_samples=max_samples), 3)
    (obs, p_loop), t_loop = timed(lambda: loop_mmd(a, b, permutations, max_samples, 0))
    add(task, t_ours, t_loop, f"p {ours.p_value:.4f} vs {p_loop:.4f}, "
        f"|dMMD2| {abs(ours.mmd2 - obs):.1e}")


# ---------------------------------------------------------------------------------- images

def digit_sets(n: int, folder: Path) -> tuple[Path, Path]:
    parts = [load_dataset("digits", s) for s in ("train", "test")]
    x = torch.cat([d.x for d in parts]).numpy()
    y = torch.cat([d.y for d in parts]).numpy()
    paths = []
    for name, sd, seed in (("reference", 0.2, 1), ("current", 0.3, 2)):
        rng = np.random.default_rng(seed)
        idx = rng.permutation(np.resize(np.arange(len(x)), n))
        xs = np.clip(x[idx] + rng.normal(0, sd, (n, *x.shape[1:])), 0, 1).astype(np.float32)
        path = folder / f"{name}.npz"
        np.savez(path, x=xs, y=y[idx])
        paths.append(path)
    return paths[0], paths[1]


def bench_images(n: int, mmd: tuple[int, int]) -> None:
    print(f"\nImages: {n:,} reference + {n:,} current 8x8 digits (digits-cnn)")
    with tempfile.TemporaryDirectory() as tmp:
        ref_path, cur_path = digit_sets(n, Path(tmp))
        result, t_all = timed(lambda: run_audit("digits-cnn", data=cur_path,
                                                reference=ref_path, checks=["drift"], seed=0))
        sec = next(s for s in result.sections if s.check == "drift")
        m = sec.metrics
        print(f"  status {sec.status}; findings {sorted(f.id for f in sec.findings)}; "
              f"MMD p {m.get('mmd_p_value')}, C2ST p {m.get('c2st_p_value')}, estimated "
              f"accuracy {m.get('estimated_accuracy')} (realised {m.get('current_accuracy')})")
        add("images: run_audit drift end to end", t_all)
        subject, t_sub = timed(lambda: build_subject("digits-cnn", data=cur_path,
                                                     reference=ref_path), 3)
    assert subject.reference is not None
    ref, cur = subject.reference, subject.data
    p = DriftParams()
    add("  part: load model + data, current logits", t_sub)
    embed = Embedder.of(subject)
    (e_ref, e_cur), t_emb = timed(lambda: (embed(ref.x).numpy(), embed(cur.x).numpy()), 3)
    add(f"  part: embeddings, both sets ({embed.source}, d={e_ref.shape[1]})", t_emb)
    mmd_row(f"  part: mmd_test embeddings {mmd[0]}/side {mmd[1]} perms vs loop", e_ref, e_cur,
            max_samples=mmd[0], permutations=mmd[1])
    c2, t_c2 = timed(lambda: classifier_test(e_ref, e_cur, model="logistic",
                                             max_rows=p.c2st_max_rows), 3)
    add("  part: classifier_test logistic on embeddings", t_c2, None, f"AUC {c2.auc:.3f}")
    proba_ref, t_logits = timed(
        lambda: torch.softmax(subject.logits(ref.x), dim=1).numpy().astype(np.float64), 3)
    proba_cur = subject.data_proba.numpy().astype(np.float64)
    add("  part: reference logits", t_logits)

    def predictions() -> object:
        frames = [pd.DataFrame({"pred": q.argmax(axis=1).astype(str),
                                "conf": q.max(axis=1)}) for q in (proba_ref, proba_cur)]
        return feature_drift(frames[0], frames[1], categorical=["pred"])
    _, t_pred = timed(predictions, 3)
    add("  part: prediction drift (feature_drift on 2 columns)", t_pred)
    est, t_cbpe = timed(lambda: estimate_accuracy(proba_ref, ref.y.numpy(), proba_cur,
                                                  cur.y.numpy(), bootstrap=p.bootstrap), 3)
    add(f"  part: CBPE estimate_accuracy ({p.bootstrap} bootstraps)", t_cbpe, None,
        f"est {est.estimated:.3f} vs {est.realized:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true",
                    help="20k rows and 2k images per side, MMD on 500 per side, 200 permutations")
    args = ap.parse_args()
    rows, images = (20_000, 2_000) if args.quick else (100_000, 10_000)
    mmd = (500, 200) if args.quick else (1000, 1000)  # the check's --quick and default
    warnings.filterwarnings("ignore", category=FutureWarning)
    print(machine())
    t0 = time.perf_counter()
    bench_tabular(rows, mmd)
    bench_images(images, mmd)
    print(f"\n{'task':<58} {'ours (s)':>9} {'peer (s)':>9} {'peer/ours':>9}  agreement")
    for task, ours, peer, agreement in ROWS:
        peer_s = f"{peer:9.2f}" if peer is not None else f"{'-':>9}"
        ratio = f"{peer / ours:9.1f}" if peer is not None and ours > 0 else f"{'-':>9}"
        print(f"{task:<58} {ours:9.2f} {peer_s} {ratio}  {agreement}")
    print(f"total {time.perf_counter() - t0:.0f} s; load average now "
          f"{os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
