"""The drift check end to end: known answers on real data with and without a planted shift,
through the Python API and ``audit drift`` / ``audit run --reference``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audit import run_audit
from audit.datasets import load_dataset
from audit.datasets.adult import read_raw
from tests.conftest import Cli

DRIFT_KINDS = ("drift.features", "drift.dataset", "drift.representation", "drift.predictions",
               "drift.performance")


def _ids(result: object) -> set[str]:
    sec = next(s for s in result.sections if s.check == "drift")  # type: ignore[attr-defined]
    assert sec.status != "error", sec.error
    return {f.id for f in sec.findings}


def _section(result: object) -> object:
    return next(s for s in result.sections if s.check == "drift")  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def digits_halves(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two halves of the digits test split (seeded) with the same mild pixel noise (the clean
    split has almost no errors for the reference to calibrate on), and the second half with
    stronger noise."""
    d = load_dataset("digits", "test")
    x, y = d.x.numpy(), d.y.numpy()
    order = np.random.default_rng(7).permutation(len(x))
    a, b = order[: len(x) // 2], order[len(x) // 2:]
    folder = tmp_path_factory.mktemp("digits")
    out = {"ref": folder / "ref.npz", "cur": folder / "cur.npz", "noisy": folder / "noisy.npz",
           "unlabelled": folder / "unlabelled.npz", "clean": folder / "clean.npz"}

    def noised(v: np.ndarray, sd: float, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return np.clip(v + rng.normal(0, sd, v.shape), 0, 1).astype(np.float32)

    np.savez(out["ref"], x=noised(x[a], 0.2, 1), y=y[a])
    np.savez(out["cur"], x=noised(x[b], 0.2, 2), y=y[b])
    np.savez(out["clean"], x=x[a], y=y[a])
    noisy = noised(x[b], 0.35, 8)
    np.savez(out["noisy"], x=noisy.astype(np.float32), y=y[b])
    np.savez(out["unlabelled"], x=noisy.astype(np.float32))
    return out


@pytest.fixture(scope="module")
def adult_splits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Adult's test rows: random halves (no shift), and age >= 50 against the rest (a covariate
    shift of known columns), each side sub-sampled to keep the test fast."""
    raw = read_raw("test")
    rng = np.random.default_rng(3)
    folder = tmp_path_factory.mktemp("adult")
    order = rng.permutation(len(raw))
    half_a, half_b = raw.iloc[order[:3000]], raw.iloc[order[3000:6000]]
    old = raw[raw["age"] >= 50]
    young = raw[raw["age"] < 50].sample(3000, random_state=1)
    out = {"ref": folder / "ref.csv", "cur": folder / "cur.csv", "young": folder / "young.csv",
           "old": folder / "old.csv", "old_unlabelled": folder / "old_nolabel.csv"}
    half_a.to_csv(out["ref"], index=False)
    half_b.to_csv(out["cur"], index=False)
    young.to_csv(out["young"], index=False)
    old.to_csv(out["old"], index=False)
    target = [c for c in raw.columns if c.lower() in ("income", "label", "target", "class")]
    old.drop(columns=target).to_csv(out["old_unlabelled"], index=False)
    return out


def test_no_shift_digits_raises_no_drift(digits_halves: dict[str, Path]) -> None:
    r = run_audit("digits-cnn", data=digits_halves["cur"], reference=digits_halves["ref"],
                  checks=["drift"])
    assert not _ids(r) & set(DRIFT_KINDS)
    m = _section(r).metrics  # type: ignore[attr-defined]
    assert m["mmd_p_value"] >= 0.05 and m["c2st_p_value"] >= 0.05
    assert m["estimated_accuracy_ci_low"] <= m["current_accuracy"] <= \
        m["estimated_accuracy_ci_high"]


def test_reference_without_errors_says_why_there_is_no_estimate(
        digits_halves: dict[str, Path]) -> None:
    r = run_audit("digits-cnn", data=digits_halves["cur"], reference=digits_halves["clean"],
                  checks=["drift"])
    sec = _section(r)
    assert "drift.no-estimate" in _ids(r)
    assert "estimated_accuracy" not in sec.metrics  # type: ignore[attr-defined]


def test_noisy_digits_drift_in_embeddings_and_accuracy(digits_halves: dict[str, Path]) -> None:
    r = run_audit("digits-cnn", data=digits_halves["noisy"], reference=digits_halves["ref"],
                  checks=["drift"])
    ids = _ids(r)
    assert {"drift.representation", "drift.performance"} <= ids
    m = _section(r).metrics  # type: ignore[attr-defined]
    assert m["mmd_p_value"] < 0.01
    assert m["estimated_accuracy"] < m["reference_accuracy"] - 0.05
    assert m["current_accuracy"] < m["reference_accuracy"] - 0.05


def test_unlabelled_current_images_estimate_without_labels(
        digits_halves: dict[str, Path]) -> None:
    r = run_audit("digits-cnn", data=digits_halves["unlabelled"],
                  reference=digits_halves["ref"], checks=["drift"], labels=False)
    m = _section(r).metrics  # type: ignore[attr-defined]
    assert "current_accuracy" not in m and "estimated_accuracy" in m
    assert "drift.performance" in _ids(r)


def test_adult_random_halves_no_drift(adult_splits: dict[str, Path]) -> None:
    r = run_audit("adult-mlp", data=adult_splits["cur"], reference=adult_splits["ref"],
                  checks=["drift"])
    assert not _ids(r) & set(DRIFT_KINDS)
    m = _section(r).metrics  # type: ignore[attr-defined]
    assert m["drifted_columns"] == 0 and m["columns_tested"] >= 12


def test_adult_age_split_names_age(adult_splits: dict[str, Path]) -> None:
    r = run_audit("adult-mlp", data=adult_splits["old"], reference=adult_splits["young"],
                  checks=["drift"])
    sec = _section(r)
    by_id = {f.id: f for f in sec.findings}  # type: ignore[attr-defined]
    assert "drift.features" in by_id and "drift.dataset" in by_id
    assert by_id["drift.features"].evidence["drifted"][0] == "age"
    assert by_id["drift.features"].severity == "medium"
    separating = next(t for t in sec.tables if t.id == "drift-separating")  # type: ignore
    assert separating.rows[0][0] == "age"


def test_drift_cli_writes_json_html_markdown(cli: Cli, adult_splits: dict[str, Path],
                                             tmp_path: Path) -> None:
    out = tmp_path / "drift.html"
    code, stdout, _ = cli("drift", "adult-mlp", "--reference", str(adult_splits["young"]),
                          "--current", str(adult_splits["old_unlabelled"]), "--out", str(out),
                          "--quick")
    assert code in (0, 1), stdout
    assert out.exists() and out.with_suffix(".json").exists() and out.with_suffix(".md").exists()
    doc = json.loads(out.with_suffix(".json").read_text())
    assert [s["check"] for s in doc["sections"]] == ["drift"]
    assert "estimated_accuracy" in doc["sections"][0]["metrics"]
    assert "current_accuracy" not in doc["sections"][0]["metrics"]


def test_run_with_reference_adds_drift_and_without_it_explains(
        cli: Cli, digits_halves: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    code, stdout, stderr = cli("run", "digits-cnn", "--checks", "performance,drift", "--data",
                               str(digits_halves["cur"]), "--reference",
                               str(digits_halves["ref"]), "--out", str(out))
    assert code in (0, 1), stdout + stderr
    doc = json.loads(out.with_suffix(".json").read_text())
    assert [s["check"] for s in doc["sections"]] == ["performance", "drift"]
    code, stdout, stderr = cli("run", "digits-cnn", "--checks", "drift", "--out", str(out))
    assert code == 2
    assert "--reference" in stderr and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_unlabelled_data_refuses_checks_that_need_labels(
        digits_halves: dict[str, Path]) -> None:
    from audit.errors import DataError

    with pytest.raises(DataError, match="needs labelled data"):
        run_audit("digits-cnn", data=digits_halves["unlabelled"],
                  reference=digits_halves["ref"], checks=["performance"], labels=False)
    with pytest.raises(DataError, match="lacks array"):  # the reference needs its labels
        run_audit("digits-cnn", data=digits_halves["ref"],
                  reference=digits_halves["unlabelled"], checks=["drift"], labels=False)


def test_hostile_category_values_are_escaped(adult_splits: dict[str, Path],
                                             tmp_path: Path) -> None:
    from audit.report.markdown import render_markdown
    from audit.report.render import render_html

    hostile = "<script>alert(1)</script>|**x**"
    paths = []
    for name, share in (("young", 0.1), ("old", 0.6)):  # a sensitive column that drifts
        frame = pd.read_csv(adult_splits[name])
        frame["<img src=x onerror=alert(2)>"] = np.where(
            np.random.default_rng(0).random(len(frame)) < share, hostile, "plain")
        paths.append(tmp_path / f"{name}.csv")
        frame.to_csv(paths[-1], index=False)
    r = run_audit("adult-mlp", data=paths[1], reference=paths[0], checks=["drift"],
                  sensitive=["<img src=x onerror=alert(2)>"])
    assert "<img src=x onerror=alert(2)>" in _section(r).findings[0].detail \
        or any("<img src=x" in str(t.rows) for t in _section(r).tables)
    doc = r.to_dict()
    html = render_html(doc)
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    md = render_markdown(doc)
    assert "<script>alert(1)" not in md and "<img src=x" not in md


def test_user_tabular_model_production_data_past_its_training_range(
        cli: Cli, tmp_path: Path) -> None:
    """A user's own MLP (card with an encoder): production rows work longer hours, some past
    the training range, and come more often from one region; no labels."""
    from tests.user_models import tabular_frame, write_tabular_project

    project = write_tabular_project(tmp_path / "p", classes=3, n_test=600)
    prod = tabular_frame(600, seed=11, classes=3).drop(columns=["income"])
    rng = np.random.default_rng(0)
    prod["hours"] = prod["hours"] + rng.integers(5, 15, len(prod))  # up to 74 > 60
    prod.loc[rng.random(len(prod)) < 0.5, "region"] = "north"
    prod.to_csv(tmp_path / "prod.csv", index=False)
    out = tmp_path / "d.html"
    code, stdout, stderr = cli("drift", str(project.weights), "--arch",
                               str(project.root / "mynets.py") + ":TabNet", "--card",
                               str(project.card), "--reference", str(project.test),
                               "--current", str(tmp_path / "prod.csv"), "--out", str(out))
    assert code in (0, 1), stdout + stderr
    doc = json.loads(out.with_suffix(".json").read_text())
    sec = doc["sections"][0]
    found = {f["id"]: f for f in sec["findings"]}
    assert set(found["drift.features"]["evidence"]["drifted"][:2]) == {"hours", "region"}
    assert list(found["drift.out-of-range"]["evidence"]["columns"]) == ["hours"]
    assert 0 < sec["metrics"]["out_of_range_share"] < 1
    assert "age" not in found["drift.features"]["evidence"]["drifted"]


def test_images_past_the_card_range_are_reported_not_refused(
        digits_halves: dict[str, Path], tmp_path: Path) -> None:
    with np.load(digits_halves["cur"]) as npz:
        x, y = npz["x"], npz["y"]
    np.savez(tmp_path / "bright.npz", x=(x * 1.6).astype(np.float32), y=y)  # pixels to 1.6
    r = run_audit("digits-cnn", data=tmp_path / "bright.npz", reference=digits_halves["ref"],
                  checks=["drift"], labels=False)
    found = {f.id: f for f in _section(r).findings}  # type: ignore[attr-defined]
    assert "drift.out-of-range" in found and "[0, 1]" in found["drift.out-of-range"].detail
    from audit.errors import DataError
    with pytest.raises(DataError, match="input.range"):  # the other checks still refuse it
        run_audit("digits-cnn", data=tmp_path / "bright.npz", checks=["performance"])
