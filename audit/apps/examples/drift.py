"""The drift examples of ``audit examples``: ``reports/adult-mlp-drift.html`` (older people
against younger ones, with labels) and ``reports/digits-cnn-drift.html`` (noisier images, no
labels), each the output of ``audit drift`` on data files written to ``reports/drift-data/``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from audit.apps.examples.registry import (
    Example,
    ExampleContext,
    register_example,
    relative_model_path,
)
from audit.io import atomic_write_text
from audit.report.markdown import render_markdown
from audit.report.render import write_report


def _run(ctx: ExampleContext, model: str, name: str, reference: Path, current: Path,
         labels: bool) -> list[Path]:
    from audit.runner import run_audit  # torch and the checks: only when run

    html_path = ctx.out_dir / f"{name}.html"
    rel = [p.relative_to(ctx.out_dir.parent).as_posix() if p.is_relative_to(ctx.out_dir.parent)
           else p.as_posix() for p in (reference, current)]
    command = (f"audit drift {model} --reference {rel[0]} --current {rel[1]} --seed "
               f"{ctx.seed}{' --quick' if ctx.quick else ''} --out {html_path.as_posix()}")
    result = run_audit(model, data=current, reference=reference, labels=labels,
                       checks=["drift"], seed=ctx.seed, quick=ctx.quick or None,
                       progress=ctx.progress or False, command=command)
    relative_model_path(result)
    html, json_path = write_report(result, html_path)
    md_path = html.with_suffix(".md")
    atomic_write_text(md_path, render_markdown(result))
    ctx.results[name] = result
    return [html, json_path, md_path]


def adult_files(folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """Adult's test rows: 5000 people under 50 (the reference) and everyone 50 or older (the
    current data, labels kept): a covariate shift of age and what comes with it."""
    from audit.datasets.adult import read_raw

    raw = read_raw("test")
    folder.mkdir(parents=True, exist_ok=True)
    young = raw[raw["age"] < 50].sample(5000, random_state=seed)
    paths = folder / "adult-under-50.csv", folder / "adult-50-and-over.csv"
    atomic_write_text(paths[0], young.to_csv(index=False))
    atomic_write_text(paths[1], raw[raw["age"] >= 50].to_csv(index=False))
    return paths


def digits_files(folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """Halves of the digits test split: the reference with mild pixel noise (sd 0.2, so the
    model makes some errors to calibrate on), the current data with stronger noise (sd 0.35)
    and no labels, as unlabelled production data."""
    from audit.datasets import load_dataset

    d = load_dataset("digits", "test")
    x, y = d.x.numpy(), d.y.numpy()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    a, b = order[: len(x) // 2], order[len(x) // 2:]
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "digits-noise-0.2.npz", folder / "digits-noise-0.35-unlabelled.npz"
    noisy = [np.clip(x[i] + rng.normal(0, sd, x[i].shape), 0, 1).astype(np.float32)
             for i, sd in ((a, 0.2), (b, 0.35))]
    np.savez_compressed(paths[0], x=noisy[0], y=y[a])
    np.savez_compressed(paths[1], x=noisy[1])
    return paths


def make_adult(ctx: ExampleContext) -> list[Path]:
    """``audit drift adult-mlp`` on people 50 and over against people under 50."""
    ref, cur = adult_files(ctx.out_dir / "drift-data", ctx.seed)
    return [ref, cur, *_run(ctx, "adult-mlp", "adult-mlp-drift", ref, cur, labels=True)]


def make_digits(ctx: ExampleContext) -> list[Path]:
    """``audit drift digits-cnn`` on noisier, unlabelled images."""
    ref, cur = digits_files(ctx.out_dir / "drift-data", ctx.seed)
    return [ref, cur, *_run(ctx, "digits-cnn", "digits-cnn-drift", ref, cur, labels=False)]


register_example(Example(name="adult-mlp-drift",
                         description="adult-mlp: drift of people 50 and over against younger "
                                     "ones, accuracy with and without labels",
                         make=make_adult))
register_example(Example(name="digits-cnn-drift",
                         description="digits-cnn: drift of noisier, unlabelled images, "
                                     "accuracy estimated without labels",
                         make=make_digits))
