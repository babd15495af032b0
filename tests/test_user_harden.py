"""``audit harden`` on a user's own models (issue 23), driven the way a user runs it: from
their project folder, with their ``mynets.py``, state-dict weights, ``card.json`` and data.

- A tabular model trained from a CSV with categorical columns: the hardened card keeps the
  parent's encoder, target, sensitive columns, classes and input spec, so the before/after
  audits (and a later ``audit run`` of the hardened model on raw CSV rows) read the CSV.
- The before/after audits never run on the rows trained on: ``--test-data`` when given, the
  bundled dataset's test split, else a seeded share of ``--data`` held out from training.
- End to end for the image model (``unit`` convention) and for binary and 3-class tabular
  models, then ``audit diff`` of the before/after results.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import Cli
from user_models import Project, write_image_project, write_tabular_project

from audit.card import ModelCard

# quick training: the point is the plumbing around it, not the robustness reached
FAST = ["--epochs", "1", "--steps", "2", "--batch-size", "64", "--threads", "1", "--quick",
        "--no-progress"]



@pytest.fixture(scope="module")
def tab2(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return write_tabular_project(tmp_path_factory.mktemp("tab2"), classes=2)


@pytest.fixture(scope="module")
def tab3(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return write_tabular_project(tmp_path_factory.mktemp("tab3"), classes=3)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return write_image_project(tmp_path_factory.mktemp("img"), "unit")


def _harden(cli: Cli, p: Project, out: str, *args: str) -> tuple[int, str, str]:
    return cli("harden", p.weights.name, "--arch", p.arch, "--card", p.card.name,
               "--data", p.train.name, "--out", out, "--report", f"reports/{out}.html",
               "--eps", "0.05", *FAST, *args)


def _results(out: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return (json.loads(Path(f"reports/{out}-before.json").read_text()),
            json.loads(Path(f"reports/{out}-after.json").read_text()))


def _no_errors(result: dict[str, Any]) -> None:
    errors = {s["check"]: s["error"] for s in result["sections"] if s["status"] == "error"}
    assert not errors, errors


def _status(result: dict[str, Any], check: str) -> str:
    return str(next(s["status"] for s in result["sections"] if s["check"] == check))


# ----------------------------------------------------------------------------- tabular


def test_tabular_card_carries_over_and_the_audits_read_the_raw_csv(
        cli: Cli, tab2: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reported break: harden a CSV-trained model with a categorical sensitive column,
    then the before/after audits (all checks that apply) read the CSV through the hardened
    card's encoder; ``audit diff`` compares them; ``audit run`` of the hardened model alone
    reads the raw test CSV."""
    monkeypatch.chdir(tab2.root)
    code, out, err = _harden(cli, tab2, "hard")
    assert code == 0, err
    assert "comparison:" in out and "held out from training" in out
    parent, card = ModelCard.load(tab2.card), ModelCard.load(Path("hard/card.json"))
    assert card.extra["encoder"] == parent.extra["encoder"]
    assert (card.target, card.sensitive, card.classes) == ("income", ["sex"], ["low", "high"])
    assert card.input.to_dict() == parent.input.to_dict()
    assert (card.arch, card.arch_kwargs) == (parent.arch, parent.arch_kwargs)
    assert card.parent is not None and card.parent["name"] == "user-mlp-2"
    assert card.extra["hardening"]["data"]["test_from"] == "held-out"
    assert "test_accuracy" in card.metrics
    assert "trained on train.csv" in card.recipe["data"]
    assert "held out from training" in card.recipe["data"]
    before, after = _results("hard")
    for result in (before, after):
        _no_errors(result)
        assert "sex=F" in result["data"]["feature_names"]
        assert _status(result, "fairness") not in ("skipped", "error")  # sensitive carried
    assert before["data"]["sha256"] == after["data"]["sha256"]
    code, out, err = cli("diff", "reports/hard-before.json", "reports/hard-after.json",
                         "--out", "reports/diff.html", "--labels", "before,after")
    assert code == 0, err
    assert Path("reports/diff.md").is_file() and "after" in Path("reports/diff.html").read_text()
    code, out, err = cli("run", "hard", "--data", "test.csv", "--checks", "performance",
                         "--quick", "--no-progress", "--out", "reports/hard-run.html")
    assert code == 0, err


def test_test_data_is_what_the_before_after_audits_measure(
        cli: Cli, tab3: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """3-class tabular, ``--test-data test.csv``: both results record test.csv as their data
    source (all its rows), ``--config`` reaches both audits, and the card's recipe says what
    was trained and tested on."""
    monkeypatch.chdir(tab3.root)
    # fairness on 3 classes needs the favourable one named, in the user's audit.toml
    Path("audit.toml").write_text('[checks.fairness]\npositive_class = "high"\n')
    code, out, err = _harden(cli, tab3, "hard3", "--test-data", "test.csv",
                             "--checks", "performance,fairness,robustness",
                             "--config", "audit.toml")
    assert code == 0, err
    assert "tested and audited on test.csv (400 samples)" in out
    for result in _results("hard3"):
        _no_errors(result)
        assert result["data"]["source"] == "test.csv" and result["data"]["size"] == 400
        assert result["card"]["classes"] == ["low", "mid", "high"]
        assert _status(result, "fairness") not in ("skipped", "error")
    card = ModelCard.load(Path("hard3/card.json"))
    assert "trained on train.csv" in card.recipe["data"]
    assert "audits on test.csv" in card.recipe["data"]
    assert card.extra["hardening"]["data"] == {
        "trained_on": "train.csv", "training_rows": 1080, "validation_rows": 120,
        "tested_on": "test.csv", "test_rows": 400, "test_from": "file"}


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--test-data", "train.csv"], 4, "is the --data file"),
    (["--test-data", "test.csv", "--test-fraction", "0.3"], 4, "--test-fraction"),
    (["--test-fraction", "1.5"], 4, "--test-fraction must be in"),
    (["--test-data", "nope.csv"], 2, "nope.csv"),
    (["--checks", "performace"], 4, "unknown check 'performace'"),
    (["--config", "nope.toml"], 4, "nope.toml"),
])
def test_bad_test_data_is_refused_before_training(cli: Cli, tab2: Project,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  args: list[str], code: int,
                                                  message: str) -> None:
    monkeypatch.chdir(tab2.root)
    got, _, err = _harden(cli, tab2, "refused", *args)
    assert got == code, err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not Path("refused/model.safetensors").exists()


# ----------------------------------------------------------------------------- images


def _rows(x: torch.Tensor) -> set[bytes]:
    return {r.tobytes() for r in x.reshape(len(x), -1).numpy()}


def test_held_out_rows_are_never_trained_on(cli: Cli, image: Project,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A user .npz without ``--test-data``: the rows the trainer sees (training and
    validation) and the rows the before/after audits measure are disjoint and together are
    the whole file; the output, the results and the card say so."""
    import audit.apps.harden as app
    import audit.runner as runner

    seen: dict[str, Any] = {"audited": []}
    trainer = app.adversarial_trainer
    build = runner.build_subject

    def spy_trainer(model: Any, config: Any, train: Any, val: Any, **kw: Any) -> Any:
        seen["train"], seen["val"] = train[0], val[0]
        return trainer(model, config, train, val, **kw)

    def spy_build(*args: Any, **kw: Any) -> Any:
        subject = build(*args, **kw)
        seen["audited"].append(subject.data.x)
        return subject

    monkeypatch.setattr(app, "adversarial_trainer", spy_trainer)
    monkeypatch.setattr(runner, "build_subject", spy_build)
    monkeypatch.chdir(image.root)
    code, out, err = _harden(cli, image, "held", "--checks", "performance",
                             "--eps", "0.03", "--test-fraction", "0.25")
    assert code == 0, err
    assert "150 rows of train.npz held out from training (25%, seed 0)" in out
    everything = _rows(torch.from_numpy(np.load("train.npz")["x"]))
    trained, val = _rows(seen["train"]), _rows(seen["val"])
    assert len(seen["audited"]) == 2  # before and after, on the same rows
    audited = _rows(seen["audited"][0])
    assert audited == _rows(seen["audited"][1]) and len(audited) == 150
    assert not audited & (trained | val)
    assert audited | trained | val == everything
    for result in _results("held"):
        assert "held out from training" in result["data"]["source"]
        assert result["data"]["size"] == 150
    card = ModelCard.load(Path("held/card.json"))
    assert "held out from training" in card.recipe["data"]
    assert card.extra["hardening"]["data"]["test_rows"] == 150


@pytest.mark.slow  # every check twice on a CNN: ~45 s on a loaded 2-core machine
def test_image_model_hardens_and_audits_end_to_end(cli: Cli, image: Project,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's CNN (floats in [0, 1]) with ``--test-data test.npz``: every check that
    applies runs in both audits without an error (budgets cut by the user's audit.toml)."""
    monkeypatch.chdir(image.root)
    Path("audit.toml").write_text(
        "[checks.robustness]\nmax_samples = 40\nsuite_samples = 8\nseverities = [3]\n"
        "minimal_steps = 10\nbounded_restarts_ce = 1\nsquare_queries = 50\nhsj_steps = 1\n"
        "cw_steps = 5\nlinf_eps = [0.03]\nl2_eps = [0.5]\n"
        "[checks.saliency]\nsamples = 6\nlime_samples = 100\nfeatvis_steps = 16\n"
        "sanity_samples = 3\n")
    code, _, err = _harden(cli, image, "hard-img", "--test-data", "test.npz",
                           "--eps", "0.03", "--config", "audit.toml")
    assert code == 0, err
    before, after = _results("hard-img")
    for result in (before, after):
        _no_errors(result)
        assert result["data"]["source"] == "test.npz"
        assert _status(result, "robustness") not in ("skipped", "error")
    card = ModelCard.load(Path("hard-img/card.json"))
    assert card.input.range == (0.0, 1.0) and card.robustness["threat_model"] == {"linf": 0.03}


def test_bundled_dataset_name_as_test_data(cli: Cli, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """``--test-data digits`` audits on the bundled dataset's test split, as ``--data``
    takes a bundled name."""
    from audit.datasets import load_dataset

    monkeypatch.chdir(tmp_path)
    d = load_dataset("digits", "train")
    np.savez("small.npz", x=d.x[:160].numpy(), y=d.y[:160].numpy())
    code, out, err = cli("harden", "digits-cnn", "--data", "small.npz", "--test-data",
                         "digits", "--out", "dh", "--report", "reports/dh.html",
                         "--eps", "0.1", "--checks", "performance", *FAST)
    assert code == 0, err
    assert "tested and audited on digits/test" in out
    for result in _results("dh"):
        assert result["data"]["name"] == "digits/test"
