"""Fairness the way a new user meets it with their own tabular model (issue 23): a CSV with a
categorical sensitive column, a state dict and a card of their own (tests/user_models.py), driven
through the ``audit`` command line from their project folder.

- an explicit fairness request that cannot run (no sensitive column, or one the data lacks) is a
  one-line error (exit 2) naming the data's columns and ``--sensitive COLUMN``; in the default
  selection the check is skipped with that note;
- a disparity computed on fewer groups than the data holds says so and reports the value over
  all groups (Fairlearn's) beside it;
- ``audit mitigate`` compares with the user's own model, the retrained baseline a labelled row;
- binary and 3-class models work through ``audit run --checks fairness``, ``audit fairness`` and
  ``audit mitigate``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference
from user_models import Project, write_tabular_project

from audit.cli._main import main

Cli = Callable[..., tuple[int, str, str]]
RUN = ["run", "tab.pt", "--arch", "mynets:TabNet", "--card", "card.json", "--data", "test.csv",
       "--no-progress"]


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return write_tabular_project(tmp_path_factory.mktemp("user2"), classes=2)


@pytest.fixture(scope="module")
def three(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return write_tabular_project(tmp_path_factory.mktemp("user3"), classes=3)


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    """``audit ARGS`` in this process from the user's folder: (exit code, stdout, stderr)."""

    def run(root: Path, *args: str) -> tuple[int, str, str]:
        monkeypatch.chdir(root)
        capsys.readouterr()
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def sections(path: Path) -> dict[str, dict[str, Any]]:
    return {s["check"]: s for s in json.loads(path.read_text())["sections"]}


def without_sex(project: Project, sensitive: list[str]) -> None:
    """The user's data and card with no ``sex`` column: it is ``group`` (the model still gets
    its seven features), and the card lists ``sensitive``."""
    frame = pd.read_csv(project.test).rename(columns={"sex": "group"})
    frame.to_csv(project.root / "nosex.csv", index=False)
    card = json.loads(project.card.read_text())
    enc = card["extra"]["encoder"]
    enc["columns"] = ["group" if c == "sex" else c for c in enc["columns"]]
    enc["categorical"] = {("group" if k == "sex" else k): v for k, v in
                          enc["categorical"].items()}
    card.update(sensitive=sensitive, checks=["performance", "fairness"])
    (project.root / "nosex.json").write_text(json.dumps(card))


# --- 1: an explicit fairness request that cannot run --------------------------------------

@pytest.mark.parametrize("sensitive", [[], ["sex"]], ids=["card-names-none", "card-names-sex"])
def test_explicit_fairness_without_its_column_is_a_one_line_error(
        binary: Project, cli: Cli, sensitive: list[str]) -> None:
    without_sex(binary, sensitive)
    (binary.root / "x.html").unlink(missing_ok=True)  # the folder is shared by the params
    args = ["run", "tab.pt", "--card", "nosex.json", "--data", "nosex.csv", "--no-progress",
            "--out", "x.html"]
    for checks in ("fairness", "performance,fairness"):
        code, out, err = cli(binary.root, *args, "--checks", checks)
        line = one_line(err)
        assert code == 2, out + err
        assert "age, hours, group, region, income" in line and "--sensitive COLUMN" in line
        if sensitive:
            assert "sex" in line and "card" in line
        assert not (binary.root / "x.html").exists()  # nothing ran, nothing looks green
    # in the default selection (the card's checks) the check is skipped with that note
    code, out, err = cli(binary.root, *args)
    assert code == 0, err
    secs = sections(binary.root / "x.json")
    assert secs["performance"]["status"] != "skipped"
    fair = secs["fairness"]
    assert fair["status"] == "skipped" and "--sensitive COLUMN" in fair["summary"]
    assert fair["findings"] == []  # not asked for by name: a note, not a finding


def test_named_sensitive_column_missing_from_the_data(binary: Project, cli: Cli) -> None:
    code, _, err = cli(binary.root, *RUN, "--checks", "fairness", "--sensitive", "nosuchcol",
                       "--out", "y.html")
    line = one_line(err)
    assert code == 2 and "nosuchcol" in line and "--sensitive COLUMN" in line
    assert "age, hours, sex, region, income" in line
    # the predictions route says the same
    preds = predictions(binary)
    preds.to_csv(binary.root / "preds.csv", index=False)
    code, _, err = cli(binary.root, "fairness", "preds.csv", "--y-true", "income", "--y-pred",
                       "pred", "--pos-label", "high", "--sensitive", "nosuchcol")
    line = one_line(err)
    assert code == 2 and "nosuchcol" in line and "--sensitive COLUMN" in line


# --- 2: a headline over fewer groups than the data holds -----------------------------------

def tiny_groups_frame(tiny: bool) -> pd.DataFrame:
    """Three groups of 600 with alike error rates and, with ``tiny``, groups ``a`` (10 rows,
    always wrong) and ``b`` (12 rows, always selected), which decide Fairlearn's value."""
    rng = np.random.default_rng(0)
    rows: list[tuple[str, int, int]] = []
    for g in ("c", "d", "e"):
        y = rng.random(600) < 0.4
        pred = np.where(rng.random(600) < 0.85, y, ~y)
        rows += [(g, int(a), int(b)) for a, b in zip(y, pred, strict=True)]
    if tiny:
        rows += [("a", 1, 0)] * 5 + [("a", 0, 1)] * 5 + [("b", 1, 1)] * 6 + [("b", 0, 1)] * 6
    return pd.DataFrame(rows, columns=["group", "label", "decision"])


def test_headline_over_fewer_groups_names_them_beside_fairlearns_value(
        tmp_path: Path, cli: Cli) -> None:
    from audit.fairness.metrics import assess_fairness
    from audit.subject import derive_seed

    frame = tiny_groups_frame(tiny=True)
    frame.to_csv(tmp_path / "preds.csv", index=False)
    code, _, err = cli(tmp_path, "fairness", "preds.csv", "--y-true", "label", "--y-pred",
                       "decision", "--sensitive", "group", "--quick", "--out", "f.html")
    assert code in (0, 1), err
    sec = sections(tmp_path / "f.json")["fairness"]
    m = sec["metrics"]
    y, pred, g = frame["label"], frame["decision"], frame["group"]
    eo = equalized_odds_difference(y, pred, sensitive_features=g)
    dp = demographic_parity_difference(y, pred, sensitive_features=g)
    assert m["group.equalized_odds_difference"] < 0.1 < 0.5 < eo  # the tiny groups decide it
    assert m["group.equalized_odds_difference.all_groups"] == pytest.approx(eo, abs=1e-9)
    assert m["group.demographic_parity_difference.all_groups"] == pytest.approx(dp, abs=1e-9)
    assert m["group.equalized_odds_difference.groups_left_out"] == 2
    # its interval: the bootstrap over every group, as with min_group_size=0 (Fairlearn's)
    every = assess_fairness(y.to_numpy(), pred.to_numpy(), frame[["group"]], n_boot=200,
                            random_state=derive_seed(0, "fairness") % (2**31))
    d = every.groupings[0].disparities["equalized_odds_difference"]
    assert d.value == pytest.approx(eo, abs=1e-9) and not d.partial
    assert (m["group.equalized_odds_difference.all_groups.ci_low"],
            m["group.equalized_odds_difference.all_groups.ci_high"]) == \
        pytest.approx((d.ci_low, d.ci_high), abs=1e-12)
    # the headline says it is over 3 of 5 groups, which are left out, and Fairlearn's value
    summary = sec["summary"]
    assert re.search(r"largest equalized odds difference 0\.\d{3} by group over 3 of 5 "
                     r"groups \(", summary), summary
    assert "a (10 rows), b (12 rows)" in summary and f"as Fairlearn computes it: {eo:.3f}" \
        in summary
    found = {f["id"]: f for f in sec["findings"]}
    small = found["fairness.small-groups.group"]
    assert f"{eo:.3f} over all 5" in small["detail"] and small["evidence"]["all_groups"][
        "equalized_odds_difference"] == pytest.approx(eo, abs=1e-9)
    dpf = found["fairness.demographic-parity.group"]  # a finding on a partial value says so
    assert "over 3 of 5 groups" in dpf["title"] and "a (10 rows), b (12 rows)" in dpf["detail"]
    assert f"{dp:.3f}" in dpf["detail"]
    table = next(t for t in sec["tables"] if t["id"] == "disparities")
    row = dict(zip(table["columns"], next(r for r in table["rows"]
                                          if r[1] == "equalized_odds_difference"), strict=True))
    assert row["groups compared"] == "3 of 5; left out: a, b"
    assert row["over all groups"].startswith(f"{eo:.3f} (")


def test_headline_over_every_group_reads_as_before(tmp_path: Path, cli: Cli) -> None:
    frame = tiny_groups_frame(tiny=False)
    frame.to_csv(tmp_path / "preds.csv", index=False)
    code, _, err = cli(tmp_path, "fairness", "preds.csv", "--y-true", "label", "--y-pred",
                       "decision", "--sensitive", "group", "--quick", "--out", "f.html")
    assert code in (0, 1), err
    sec = sections(tmp_path / "f.json")["fairness"]
    eo = equalized_odds_difference(frame["label"], frame["decision"],
                                   sensitive_features=frame["group"])
    assert sec["metrics"]["group.equalized_odds_difference"] == pytest.approx(eo, abs=1e-9)
    assert not any("all_groups" in k or "left_out" in k for k in sec["metrics"])
    assert re.search(r"largest equalized odds difference 0\.\d{3} by group \(95% CI [^;]+; "
                     r"(TPR|FPR) [\d.]+% for \w vs [\d.]+% for \w\)", sec["summary"])
    for word in ("over 3", "left out", "Fairlearn"):
        assert word not in sec["summary"]
        assert all(word not in f["title"] + f["detail"] for f in sec["findings"])
    table = next(t for t in sec["tables"] if t["id"] == "disparities")
    assert {(r[-3], r[-2]) for r in table["rows"]} == {("all 3", "same")}


# --- 3 and 4: the user's model through fairness and mitigate ------------------------------

def predictions(project: Project) -> pd.DataFrame:
    """The user's test CSV with their model's predicted class names (column ``pred``)."""
    import torch

    from audit.loading import load_model
    from audit.runner import load_data

    loaded = load_model(project.weights)
    assert loaded.card is not None
    data = load_data(project.test, loaded.card)
    with torch.no_grad():
        pred = loaded.model(data.x).argmax(1).numpy()
    frame = pd.read_csv(project.test)
    frame["pred"] = np.array(loaded.card.classes)[pred]
    return frame


def test_binary_fairness_on_the_users_csv(binary: Project, cli: Cli) -> None:
    code, _, err = cli(binary.root, *RUN, "--checks", "fairness", "--quick", "--out", "f.html")
    assert code in (0, 1), err
    sec = sections(binary.root / "f.json")["fairness"]
    assert sec["status"] in ("pass", "warn", "fail") and sec["params"]["sensitive"] == ["sex"]
    groups = next(t for t in sec["tables"] if t["id"] == "groups-sex")
    assert [r[0] for r in groups["rows"]] == ["F", "M"]
    frame = predictions(binary)
    y, pred = (frame["income"] == "high").astype(int), (frame["pred"] == "high").astype(int)
    assert sec["metrics"]["sex.demographic_parity_difference"] == pytest.approx(
        demographic_parity_difference(y, pred, sensitive_features=frame["sex"]), abs=1e-9)
    frame.to_csv(binary.root / "preds.csv", index=False)
    code, _, err = cli(binary.root, "fairness", "preds.csv", "--y-true", "income", "--y-pred",
                       "pred", "--pos-label", "high", "--sensitive", "sex,region", "--quick",
                       "--out", "p.html")
    assert code in (0, 1), err
    same = sections(binary.root / "p.json")["fairness"]["metrics"]
    assert same["sex.demographic_parity_difference"] == pytest.approx(
        sec["metrics"]["sex.demographic_parity_difference"], abs=1e-12)
    assert "sex_x_region.equalized_odds_difference" in same


def test_mitigate_compares_with_your_model(binary: Project, cli: Cli) -> None:
    code, _, err = cli(binary.root, *RUN, "--checks", "performance", "--out", "perf.html")
    assert code in (0, 1), err
    accuracy = sections(binary.root / "perf.json")["performance"]["metrics"]["accuracy"]
    code, out, err = cli(binary.root, "mitigate", "tab.pt", "--train", "train.csv", "--eval",
                         "test.csv", "--methods", "reweighing,thresholds-dp", "--tols", "0",
                         "--epochs", "2", "--n-boot", "20", "--out", "m.html")
    assert code in (0, 1), err
    secs = sections(binary.root / "m.json")
    assert secs["fairness"]["metrics"]["accuracy"] == pytest.approx(accuracy, abs=1e-12)
    mit = secs["mitigation"]
    assert mit["metrics"]["your-model.accuracy"] == pytest.approx(accuracy, abs=1e-12)
    table = mit["tables"][0]
    rows = [dict(zip(table["columns"], r, strict=True)) for r in table["rows"]]
    assert [(r["method"], r["setting"]) for r in rows] == [
        ("your model", ""), ("retrained baseline", ""), ("reweighing", ""),
        ("thresholds-dp", "tol=0")]
    assert rows[0]["accuracy"] == pytest.approx(accuracy, abs=1e-4)
    assert "retraining" in rows[1]["note"] and "worse than your model" in table["columns"]
    # 2 epochs: the retrained baseline is far below the user's model; it is not the reference
    assert mit["metrics"]["baseline.accuracy"] < accuracy - 0.05
    assert f"Your model: accuracy {accuracy:.1%}" in mit["summary"] and "Your model" in out
    for f in mit["findings"]:
        assert f"(your model {accuracy:.1%})" in f["title"]
        assert f["evidence"]["reference_accuracy"] == pytest.approx(accuracy, abs=1e-12)
    rew = next(f for f in mit["findings"] if f["id"] == "mitigation.reweighing")
    assert "retrained baseline" in rew["detail"]
    assert mit["tables"][1]["columns"][2] == "your model"
    # post-processing only: no retraining, so no retrained baseline
    code, _, err = cli(binary.root, "mitigate", "tab.pt", "--train", "train.csv", "--eval",
                       "test.csv", "--methods", "thresholds-eo", "--n-boot", "0", "--out",
                       "t.html")
    assert code in (0, 1), err
    rows = sections(binary.root / "t.json")["mitigation"]["tables"][0]["rows"]
    assert [r[0] for r in rows] == ["your model", "thresholds-eo"]


def test_three_classes_through_fairness_and_mitigate(three: Project, cli: Cli) -> None:
    code, _, err = cli(three.root, *RUN, "--checks", "fairness", "--out", "f.html")
    line = one_line(err)
    assert code == 2 and "low, mid, high" in line and "positive_class" in line
    (three.root / "audit.toml").write_text('[checks.fairness]\npositive_class = "high"\n')
    code, _, err = cli(three.root, *RUN, "--checks", "fairness", "--config", "audit.toml",
                       "--quick", "--out", "f.html")
    assert code in (0, 1), err
    sec = sections(three.root / "f.json")["fairness"]
    assert sec["params"]["positive_class"] == "high"
    frame = predictions(three)
    y, pred = (frame["income"] == "high").astype(int), (frame["pred"] == "high").astype(int)
    assert sec["metrics"]["sex.equalized_odds_difference"] == pytest.approx(
        equalized_odds_difference(y, pred, sensitive_features=frame["sex"]), abs=1e-9)
    frame.to_csv(three.root / "preds.csv", index=False)  # three labels: high against the rest
    code, _, err = cli(three.root, "fairness", "preds.csv", "--y-true", "income", "--y-pred",
                       "pred", "--pos-label", "high", "--sensitive", "sex", "--quick",
                       "--out", "p.html")
    assert code in (0, 1), err
    assert sections(three.root / "p.json")["fairness"]["metrics"][
        "sex.equalized_odds_difference"] == pytest.approx(
        sec["metrics"]["sex.equalized_odds_difference"], abs=1e-12)
    mitigate = ["mitigate", "tab.pt", "--train", "train.csv", "--eval", "test.csv",
                "--methods", "penalty-eo,thresholds-dp", "--lambdas", "1", "--tols", "0",
                "--epochs", "2", "--n-boot", "0", "--out", "m.html"]
    code, _, err = cli(three.root, *mitigate)
    assert code == 4 and "--positive-class" in one_line(err)
    code, _, err = cli(three.root, *mitigate, "--positive-class", "high")
    assert code in (0, 1), err
    secs = sections(three.root / "m.json")
    mit = secs["mitigation"]
    assert [r[0] for r in mit["tables"][0]["rows"]] == [
        "your model", "retrained baseline", "penalty-eo", "thresholds-dp"]
    assert mit["metrics"]["your-model.accuracy"] == pytest.approx(float((y == pred).mean()))
    assert "'high' against the other classes" in mit["tables"][0]["caption"]
    assert secs["fairness"]["params"]["positive_class"] == "high"
