"""Fairness on the command line: ``audit fairness`` (a predictions file), ``audit run
--sensitive`` on a CSV, ``audit mitigate``; one-line errors; the reports in a browser."""

from __future__ import annotations

import csv
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import demographic_parity_difference

from audit.cli import main
from audit.report.render import load_result

Run = Callable[..., subprocess.CompletedProcess[str]]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
        ) -> Run:
    """Run ``audit ARGS`` in this process (cwd = tmp_path): faster than a subprocess."""
    monkeypatch.chdir(tmp_path)

    def run(*args: str, **_: object) -> subprocess.CompletedProcess[str]:
        code = main(list(args))
        out = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, out.out, out.err)

    return run


def predictions_csv(path: Path, n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """Decisions that favour men, with string labels, a score and two sensitive columns."""
    rng = np.random.default_rng(seed)
    sex = rng.choice(["Female", "Male"], n)
    race = rng.choice(["A", "B", "C"], n, p=[0.7, 0.25, 0.05])
    y = rng.random(n) < 0.3
    score = np.clip(0.25 + 0.4 * y + 0.15 * (sex == "Male") + rng.normal(0, 0.15, n), 0, 1)
    frame = pd.DataFrame({"label": np.where(y, "yes", "no"),
                          "decision": np.where(score > 0.5, "yes", "no"),
                          "p": score.round(4), "sex": sex, "race": race})
    frame.to_csv(path, index=False)
    return frame


def test_fairness_on_a_predictions_file(cli: Run, tmp_path: Path) -> None:
    """In this process (a subprocess per call cost ~4 s of imports, 9 s under load, and tested
    nothing new: tests/test_cli.py runs the installed ``audit`` script)."""
    frame = predictions_csv(tmp_path / "preds.csv")
    r = cli("fairness", "preds.csv", "--y-true", "label", "--y-pred", "decision",
                "--score", "p", "--sensitive", "sex,race", "--pos-label", "yes",
                "--out", "out/fair.html", "--md", "out/fair.md")
    assert r.returncode in (0, 1), r.stderr
    doc = load_result(tmp_path / "out" / "fair.json")  # validates against the schema
    assert (tmp_path / "out" / "fair.html").exists() and (tmp_path / "out" / "fair.md").exists()
    assert doc["model"]["format"] == "predictions file (CSV)"
    assert doc["model"]["classes"] == ["no", "yes"]
    (sec,) = doc["sections"]
    assert sec["check"] == "fairness"
    expected = demographic_parity_difference(
        (frame["label"] == "yes").astype(int), (frame["decision"] == "yes").astype(int),
        sensitive_features=frame["sex"])
    assert sec["metrics"]["sex.demographic_parity_difference"] == pytest.approx(expected,
                                                                                abs=1e-9)
    ids = {f["id"] for f in sec["findings"]}
    assert "fairness.demographic-parity.sex" in ids
    assert [t["id"] for t in sec["tables"]][:3] == ["groups-sex", "groups-race",
                                                    "groups-sex-x-race"]
    strict = cli("fairness", "preds.csv", "--y-true", "label", "--y-pred", "decision",
                     "--sensitive", "sex", "--pos-label", "yes", "--out", "s.html",
                     "--fail-on", "low")
    assert strict.returncode == 1, strict.stdout + strict.stderr
    assert "FAIL" in strict.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--sensitive", "sex,region"], "column(s) region not found"),
    (["--sensitive", "sex", "--y-true", "race"], "--pos-label"),  # labels A, B, C
    (["--sensitive", "sex", "--pos-label", "maybe"], "occurs in neither"),
    (["--sensitive", "sex", "--pos-label", "yes", "--score", "sex"], "probability in [0, 1]"),
    (["--sensitive", ""], "at least one column"),
])
def test_bad_predictions_input_is_one_line(cli: Run, tmp_path: Path, args: list[str],
                                           message: str) -> None:
    predictions_csv(tmp_path / "preds.csv", n=200)
    r = cli("fairness", "preds.csv", "--y-true", "label", "--y-pred", "decision", *args,
                "--out", "x.html")
    assert r.returncode in (2, 4), r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "x.html").exists()


def test_missing_file_and_label_rows(cli: Run, tmp_path: Path) -> None:
    r = cli("fairness", "none.csv", "--y-true", "a", "--y-pred", "b", "--sensitive", "c")
    assert r.returncode == 2 and "not found" in r.stderr
    frame = predictions_csv(tmp_path / "p.csv", n=50)
    frame.loc[3, "label"] = None
    frame.to_csv(tmp_path / "p.csv", index=False)
    r = cli("fairness", "p.csv", "--y-true", "label", "--y-pred", "decision",
                "--sensitive", "sex", "--pos-label", "yes")
    assert r.returncode == 2 and "empty in row 5" in r.stderr


def test_run_with_sensitive_on_an_adult_csv(cli: Run, tmp_path: Path) -> None:
    from audit.datasets.adult import read_raw

    read_raw("test").head(2500).to_csv(tmp_path / "adult.csv", index=False)
    r = cli("run", "adult-mlp", "--data", "adult.csv", "--target", "income", "--checks",
                "fairness", "--sensitive", "sex", "--quick", "--out", "a.html")
    assert r.returncode in (0, 1), r.stderr
    sec = json.loads((tmp_path / "a.json").read_text())["sections"][0]
    assert sec["params"]["sensitive"] == ["sex"]
    assert [t["id"] for t in sec["tables"]] == ["groups-sex", "disparities", "metric-guide",
                                                "samples"]
    bad = cli("run", "adult-mlp", "--data", "adult.csv", "--target", "income",
                  "--checks", "fairness", "--sensitive", "gender", "--out", "b.html")
    assert bad.returncode == 2 and "gender" in bad.stderr


def test_mitigate_writes_table_plot_and_result(cli: Run, tmp_path: Path) -> None:
    r = cli("mitigate", "adult-mlp", "--epochs", "1", "--methods",
                "reweighing,thresholds-dp", "--tols", "0", "--n-boot", "20", "--out",
                "m.html", timeout=600)
    assert r.returncode in (0, 1), r.stderr
    doc = load_result(tmp_path / "m.json")
    checks = [s["check"] for s in doc["sections"]]
    assert checks == ["fairness", "mitigation"]
    mit = doc["sections"][1]
    assert [f["id"] for f in mit["figures"]] == ["mitigation-tradeoff"]
    assert {f["id"] for f in mit["findings"]} == {"mitigation.reweighing",
                                                  "mitigation.thresholds-dp"}
    with (tmp_path / "m.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    # compared with the model under audit; the retrained baseline is a row of its own
    assert [(row["method"], row["setting"]) for row in rows] == [
        ("your model", ""), ("retrained baseline", ""), ("reweighing", ""),
        ("thresholds-dp", "tol=0")]
    dp = {row["method"]: float(row["DP diff (sex)"]) for row in rows}
    assert dp["thresholds-dp"] < dp["your model"]
    assert "table: " in r.stdout


def test_mitigate_refuses_a_multiclass_model(cli: Run) -> None:
    r = cli("mitigate", "digits-cnn")
    assert r.returncode == 4 and "binary" in r.stderr
    r = cli("mitigate", "adult-mlp", "--methods", "magic")
    assert r.returncode == 4 and "unknown method" in r.stderr


@pytest.mark.browser
def test_fairness_report_in_a_browser(cli: Run, tmp_path: Path) -> None:
    from browser import open_report

    predictions_csv(tmp_path / "preds.csv")
    r = cli("fairness", "preds.csv", "--y-true", "label", "--y-pred", "decision",
                "--score", "p", "--sensitive", "sex,race", "--pos-label", "yes", "--out",
                "fair.html", "--quick")
    assert r.returncode in (0, 1), r.stderr
    ARTIFACTS.mkdir(exist_ok=True)
    rep = open_report(tmp_path / "fair.html", ARTIFACTS / "fairness-predictions.png")
    assert rep.console_errors == [] and rep.page_errors == []
    assert rep.broken_images == [] and rep.broken_anchors == []
    assert rep.requests == []
    assert rep.image_count == 2
    assert "Demographic parity difference" in rep.text
    assert "How to read each metric" in rep.text
