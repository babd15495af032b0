"""The surrogate section on the bundled models: digits-cnn (image regions) and adult-mlp (tabular,
one-hot folded back), in the result, in the HTML report and in headless Chromium; the CLI with a
user CSV file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from audit.checks import all_checks
from audit.datasets.adult import read_raw
from audit.report.render import render_html, write_report
from audit.result import AuditResult, Section
from audit.runner import run_audit

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


@pytest.fixture(scope="module")
def adult_result() -> AuditResult:
    return run_audit("adult-mlp", checks=["surrogate"], seed=0)


@pytest.fixture(scope="module")
def digits_result() -> AuditResult:
    return run_audit("digits-cnn", checks=["surrogate"], seed=0)


def section(result: AuditResult) -> Section:
    sec = result.sections[0]
    assert sec.check == "surrogate" and sec.error is None, sec.error
    return sec


def test_adult_section_has_faithful_readable_rules(adult_result: AuditResult) -> None:
    sec = section(adult_result)
    m = sec.metrics
    assert m["rows_available"] == 16281 and m["rows_fit"] + m["rows_holdout"] == 3000
    assert m["tree_agreement"] > 0.9 and m["linear_agreement"] > 0.9
    assert m["tree_agreement"] > m["baseline_agreement"] + 0.05
    assert m["tree_agreement_ci_low"] <= m["tree_agreement"] <= m["tree_agreement_ci_high"]
    assert 1 <= m["tree_depth"] <= 10
    rules = next(t for t in sec.tables if t.id == "rules")
    text = " ".join(str(r[1]) for r in rules.rows)
    assert "marital_status == Married-civ-spouse" in text or \
        "marital_status != Married-civ-spouse" in text
    assert "=" not in re.sub(r"(==|!=|<=|>=)", "", text)  # no raw 'column=value' names
    # numbers are in the data's units: ages and hours, not [0, 1] scaled values
    ages = [float(v) for v in re.findall(r"age (?:<=|>) ([\d.]+)", text)]
    assert ages and all(17 <= a <= 90 for a in ages)
    assert not any(f.id.startswith("surrogate.unfaithful") for f in sec.findings)
    curve = next(t for t in sec.tables if t.id == "fidelity-curve")
    assert sum(1 for r in curve.rows if "recommended" in str(r[-1])) == 2
    assert sec.duration_s < 30


def test_digits_section_reads_image_regions(digits_result: AuditResult) -> None:
    sec = section(digits_result)
    rules = next(t for t in sec.tables if t.id == "rules")
    assert all(re.fullmatch(r"(.*mean intensity of region r[1-4]c[1-4].*)+", str(r[1]))
               for r in rules.rows)
    assert sec.metrics["features"] == 16  # a 4x4 grid of regions, not 64 pixels
    assert {f.id for f in sec.figures} == {"fidelity-curve", "surrogate-tree",
                                           "surrogate-regions"}
    # the CNN is not a shallow tree of region means: the check must say so honestly
    assert sec.metrics["best_tree_agreement"] < 0.9
    assert any(f.id.startswith("surrogate.unfaithful") for f in sec.findings)
    # ... and not print the tree's rules as the model's logic
    assert rules.title.startswith("Rules of the ") and "recommended" not in rules.title
    assert rules.title.endswith("not faithful enough to read as the model's logic")
    assert "No surrogate is faithful enough to read as the model's logic" in sec.summary
    curve = next(t for t in sec.tables if t.id == "fidelity-curve")
    assert not any(str(r[-1]).startswith("recommended") for r in curve.rows)
    assert sec.duration_s < 30


@pytest.mark.parametrize("name", ["adult", "digits"])
def test_section_renders_in_html(name: str, adult_result: AuditResult,
                                 digits_result: AuditResult) -> None:
    result = adult_result if name == "adult" else digits_result
    html = render_html(result)
    rules = ("Rules of the recommended" if name == "adult" else
             "not faithful enough to read as the model&#39;s logic")
    for text in ("Global surrogate models", "Fidelity against complexity", rules,
                 "What was measured"):
        assert text in html
    assert html.count("data:image/") >= 2
    if name == "adult":
        assert "marital_status == Married-civ-spouse" in html or \
            "marital_status != Married-civ-spouse" in html
        assert "Weights of the recommended sparse linear model" in html


@pytest.mark.browser
def test_sections_in_chromium(tmp_path: Path, adult_result: AuditResult,
                              digits_result: AuditResult) -> None:
    from browser import open_report

    for name, result in (("adult-mlp", adult_result), ("digits-cnn", digits_result)):
        html, _ = write_report(result, tmp_path / f"{name}.html")
        rep = open_report(html, ARTIFACTS / f"surrogate-{name}.png")
        assert rep.console_errors == [] and rep.page_errors == []
        assert rep.requests == [] and rep.broken_images == [] and rep.broken_anchors == []
        assert rep.image_count == len(result.sections[0].figures)
        assert "Fidelity against complexity" in rep.text


def test_adult_default_audit_includes_surrogate() -> None:
    from audit.card import ModelCard
    from audit.paths import models_dir

    card = ModelCard.load(models_dir() / "adult-mlp" / "card.json")
    assert card.checks is None  # the default audit runs every registered check
    assert "surrogate" in all_checks()


def test_cli_with_user_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    from audit.cli import main

    frame = read_raw("test").iloc[:600]
    frame.to_csv(tmp_path / "people.csv", index=False)
    monkeypatch.chdir(tmp_path)  # in this process: a subprocess only added ~4 s of imports
    code = main(["run", "adult-mlp", "--data", "people.csv", "--target", "income", "--checks",
                 "surrogate", "--out", "r.html", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    doc = json.loads((tmp_path / "r.json").read_text())
    sec = doc["sections"][0]
    assert sec["check"] == "surrogate" and sec["error"] is None
    assert sec["metrics"]["rows_available"] == 600
    assert doc["data"]["source"].endswith("people.csv")
