"""The slices check end to end: known answers planted in tabular and image data, no
confirmed slice on failures that depend on nothing, and the training-data audit on Adult."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audit import run_audit
from audit.datasets import load_dataset
from audit.slices.attributes import image_attributes
from audit.slices.clusters import group_slices
from tests.conftest import Cli


def _section(result: object) -> object:
    sec = next(s for s in result.sections if s.check == "slices")  # type: ignore[attr-defined]
    assert sec.status != "error", sec.error
    return sec


@pytest.fixture(scope="module")
def adult() -> object:
    return _section(run_audit("adult-mlp", checks=["slices"]))


def test_adult_proxies_of_sex_are_found_and_relied_on(adult: object) -> None:
    ids = {f.id for f in adult.findings}  # type: ignore[attr-defined]
    assert {"slices.proxy.relationship.sex", "slices.proxy.marital-status.sex"} <= ids
    assert "slices.base-rate.sex" in ids
    table = next(t for t in adult.tables if t.id == "slices-proxies")  # type: ignore
    loss = next(r for r in table.rows if r[0] == "sex" and r[1] == "capital_loss")
    assert loss[4] == "no"  # not a proxy


def test_adult_weak_slices_are_distinct_and_target_mitigation(adult: object) -> None:
    weak = [f for f in adult.findings if f.id.startswith("slices.weak.")]  # type: ignore
    assert 1 <= len(weak) <= 5
    rules = [f.evidence["rule"] for f in weak]
    assert len(set(rules)) == len(rules)
    assert all(f.evidence["ci_low"] > 0 for f in weak)
    assert all("--methods reweighing-slice --slice" in f.recommendation for f in weak)


def test_planted_tabular_slice_is_found_with_its_rule(tmp_path: Path) -> None:
    """A user's MLP whose audit labels are flipped for young people in the south."""
    from tests.user_models import tabular_frame, write_tabular_project

    project = write_tabular_project(tmp_path / "p", n_test=400)
    frame = tabular_frame(3000, seed=21)
    planted = (frame["age"] < 30) & (frame["region"] == "south")
    flip = planted & (np.random.default_rng(0).random(len(frame)) < 0.7)
    frame.loc[flip, "income"] = np.where(frame.loc[flip, "income"] == "high", "low", "high")
    frame.to_csv(tmp_path / "audit.csv", index=False)
    r = run_audit(project.weights, data=tmp_path / "audit.csv", card=project.card,
                  arch=str(project.root / "mynets.py") + ":TabNet", checks=["slices"],
                  params={"slices": {"train_data": str(project.train)}})
    sec = _section(r)
    top = next(f for f in sec.findings if f.id.startswith("slices.weak."))  # type: ignore
    rule = top.evidence["rule"]
    assert "age <" in rule and "region == 'south'" in rule, rule


def test_planted_visual_attribute_slice_is_found(tmp_path: Path) -> None:
    """shapes-cnn on its test images whose labels are shuffled for the smallest objects."""
    d = load_dataset("shapes", "test")
    area = image_attributes(d)["object_area"].to_numpy()  # type: ignore[index]
    small = area < np.quantile(area, 0.2)
    y = d.y.numpy().copy()
    rng = np.random.default_rng(1)
    y[small] = (y[small] + rng.integers(1, 4, int(small.sum()))) % 4
    np.savez(tmp_path / "small.npz", x=d.x.numpy(), y=y, masks=d.extras["masks"].numpy())
    r = run_audit("shapes-cnn", data=tmp_path / "small.npz", checks=["slices"])
    sec = _section(r)
    rules = [f.evidence["rule"] for f in sec.findings  # type: ignore[attr-defined]
             if f.id.startswith("slices.weak.")]
    assert rules and rules[0].startswith("object_area <"), rules
    assert any(f.id.startswith("gallery-slice-") for f in sec.figures)  # type: ignore


def test_clusters_confirm_nothing_when_failures_depend_on_nothing() -> None:
    rng = np.random.default_rng(5)
    alarms, repeats, alpha = 0, 200, 0.05
    for _ in range(repeats):
        labels = rng.integers(0, 8, 600)
        failed = rng.random(600) < 0.1
        alarms += any(s.confirmed for s in group_slices(labels, failed, {}, alpha=alpha))
    print(f"clusters: a slice confirmed in {alarms}/{repeats} null repeats")
    assert alarms / repeats <= alpha + 3 * (alpha * (1 - alpha) / repeats) ** 0.5


def test_train_data_option_and_bad_path(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    code, _, stderr = cli("run", "adult-mlp", "--checks", "slices", "--train-data",
                          "nowhere.csv", "--out", str(out))
    assert code == 2 and "nowhere.csv" in stderr and "Traceback" not in stderr
    code, stdout, stderr = cli("run", "adult-mlp", "--checks", "slices", "--train-data",
                               "adult:test", "--out", str(out), "--quick")
    assert code in (0, 1), stdout + stderr
    doc = json.loads(out.with_suffix(".json").read_text())
    bias = next(t for t in doc["sections"][0]["tables"] if t["id"] == "slices-training-bias")
    assert "adult/test" in bias["caption"]


def test_hostile_category_values_stay_text(tmp_path: Path) -> None:
    from audit.report.markdown import render_markdown
    from audit.report.render import render_html
    from tests.user_models import write_tabular_project

    project = write_tabular_project(tmp_path / "p", n_test=400)
    frame = pd.read_csv(project.test)
    frame["note"] = np.where(frame["age"] < 35, "<script>alert(1)</script>", "plain")
    frame.loc[frame["age"] < 35, "income"] = "low"  # they fail more often
    frame.to_csv(tmp_path / "h.csv", index=False)
    r = run_audit(project.weights, data=tmp_path / "h.csv", card=project.card,
                  arch=str(project.root / "mynets.py") + ":TabNet", checks=["slices"],
                  sensitive=["note"])
    doc = r.to_dict()
    assert "<script>alert(1)" not in render_html(doc)
    assert "<script>alert(1)" not in render_markdown(doc)


def test_a_model_with_almost_no_errors_confirms_no_slice() -> None:
    """digits-cnn errs on 1 of 360 test images: nothing to confirm, and nothing breaks."""
    sec = _section(run_audit("digits-cnn", checks=["slices"]))
    assert not [f for f in sec.findings if f.id.startswith("slices.weak.")]  # type: ignore
    assert sec.metrics["confirmed_slices"] == 0  # type: ignore[attr-defined]
