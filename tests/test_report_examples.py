"""``audit examples``: one command regenerates a report per bundled model, the registered
extra examples (the hook for the hardening before/after), and the index."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from audit.apps.examples import Example, ExampleContext, planned_examples, regenerate_examples
from audit.apps.examples import registry as ex
from audit.errors import UsageError
from audit.plugins import PluginError
from audit.report.render import load_result, render_html

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two small 'bundled' models (digits-cnn's weights; the card limits the checks)."""
    root = tmp_path / "models"
    for name in ("tiny-a", "tiny-b"):
        shutil.copytree(ROOT / "models" / "digits-cnn", root / name)
        card = json.loads((root / name / "card.json").read_text())
        card.update(name=name, checks=["performance"])
        if name == "tiny-b":  # as a model made by `audit harden` from tiny-a
            card["parent"] = {"name": "tiny-a", "recipe": "audit harden tiny-a"}
        (root / name / "card.json").write_text(json.dumps(card))
    monkeypatch.setenv("AUDIT_MODELS_DIR", str(root))
    return root


def test_regenerates_every_bundled_model_and_extra_examples(
        models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def compare(ctx: ExampleContext) -> list[Path]:
        calls.append("compare")
        before = ctx.audit(models / "tiny-b", "tiny-b")  # cached: already audited above
        after = ctx.audit("tiny-a", "tiny-a")  # (the reverse of the parent comparison)
        return ctx.diff(before, after, "tiny-compare", ("before", "after"))

    monkeypatch.setattr(ex, "_EXAMPLE_MODULES", [])  # only the examples registered here
    monkeypatch.setattr(ex, "_EXTRA", {"tiny-compare": Example("tiny-compare",
                                                               "before/after", compare)})
    out = tmp_path / "reports"
    console = Console(file=open(os.devnull, "w"), force_terminal=False)  # noqa: SIM115
    outcomes = regenerate_examples(out, seed=0, console=console)
    assert [o.name for o in outcomes] == ["tiny-a", "tiny-b", "tiny-compare",
                                          "tiny-a-vs-tiny-b"]
    assert calls == ["compare"] and not any(o.error for o in outcomes)
    for name in ("tiny-a", "tiny-b"):
        doc = load_result(out / f"{name}.json")
        assert (out / f"{name}.html").read_text() == render_html(doc)
        assert (out / f"{name}.md").read_text().startswith("## ")
        assert doc["run"]["command"] == \
            f"audit run {name} --seed 0 --out {out.as_posix()}/{name}.html"
        assert [s["check"] for s in doc["sections"]] == ["performance", "crosscheck"]
    assert (out / "tiny-compare.html").is_file() and (out / "tiny-compare.md").is_file()
    before_after = (out / "tiny-a-vs-tiny-b.md").read_text()  # from the card's parent
    assert before_after.splitlines()[0].startswith("## Audit comparison: tiny-a ")
    assert "0 new, 0 fixed" in before_after  # same weights: nothing changes
    index = (out / "README.md").read_text()
    assert "`audit examples`" in index
    for name in ("tiny-a", "tiny-b", "tiny-a-vs-tiny-b", "tiny-compare"):
        assert f"[html]({name}.html)" in index
    # a registered example that already compares the pair replaces the automatic one
    monkeypatch.setattr(ex, "_EXTRA", {"tiny-compare": Example(
        "tiny-compare", "before/after", lambda ctx: ctx.diff(
            ctx.audit("tiny-a", "tiny-a"), ctx.audit("tiny-b", "tiny-b"), "tiny-compare"))})
    again = regenerate_examples(tmp_path / "again", seed=0, console=console)
    assert [o.name for o in again] == ["tiny-a", "tiny-b", "tiny-compare"]
    assert not (tmp_path / "again" / "tiny-a-vs-tiny-b.html").exists()
    assert "PASS (fail on high)" in index
    assert "| comparison | tiny-a PASS → tiny-b PASS. Findings: 0 new, 0 fixed" in index


def test_render_only_reuses_saved_results(models: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    console = Console(file=open(os.devnull, "w"))  # noqa: SIM115
    regenerate_examples(out, only=["tiny-a"], console=console, show_progress=False)
    saved = json.loads((out / "tiny-a.json").read_text())
    saved["sections"][0]["summary"] = "edited by hand"
    (out / "tiny-a.json").write_text(json.dumps(saved))
    (out / "tiny-a.html").write_text("stale")
    (models / "tiny-a" / "model.safetensors").write_bytes(b"garbage")  # no audit possible
    outcomes = regenerate_examples(out, only=["tiny-a"], console=console,
                                   show_progress=False, render_only=True)
    assert not outcomes[0].error
    html = (out / "tiny-a.html").read_text()
    assert "edited by hand" in html and html == render_html(load_result(out / "tiny-a.json"))


def test_only_and_failures(models: Path, tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ex, "_EXAMPLE_MODULES", [])
    monkeypatch.setattr(ex, "_EXTRA", {})
    out = tmp_path / "r"
    console = Console(file=open(os.devnull, "w"))  # noqa: SIM115
    outcomes = regenerate_examples(out, only=["tiny-b"], console=console, show_progress=False)
    assert [o.name for o in outcomes] == ["tiny-b"] and not (out / "tiny-a.html").exists()
    regenerate_examples(out, only=["tiny-a"], console=console, show_progress=False)
    index = (out / "README.md").read_text()  # lists what is on disk, not only this run
    assert "| tiny-a: bundled model tiny-a | PASS" in index
    assert "| tiny-b: bundled model tiny-b | PASS" in index
    with pytest.raises(UsageError, match="unknown example 'nope'"):
        regenerate_examples(out, only=["nope"], console=console)
    (models / "tiny-a" / "model.safetensors").write_bytes(b"garbage")
    outcomes = regenerate_examples(out, console=console, show_progress=False)
    assert outcomes[0].error and not outcomes[1].error  # one broken model, the rest still run
    assert outcomes[2].name == "tiny-a-vs-tiny-b" and outcomes[2].error
    assert "| tiny-a | failed |" in (out / "README.md").read_text()


def test_the_registry_loads_its_modules_and_a_missing_one_is_an_error(
        models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plans = [name for name, _, _ in planned_examples()]  # the real modules, nothing run
    assert plans == ["tiny-a", "tiny-b", "adult-mlp-mitigation", "adult-mlp-drift",
                     "digits-cnn-drift", "tiny-a-vs-tiny-b"]
    monkeypatch.setattr(ex, "_EXAMPLE_MODULES", ["audit.apps.examples.mitigaton"])
    with pytest.raises(PluginError, match="mitigaton"):
        planned_examples()


def test_the_drift_examples_write_their_data_and_reports(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``audit examples --only adult-mlp-drift,digits-cnn-drift``: the data files the reports
    were made from sit beside them, and the recorded command reruns the same audit."""
    monkeypatch.chdir(ROOT)
    out = tmp_path / "r"
    console = Console(file=open(os.devnull, "w"))  # noqa: SIM115
    outcomes = regenerate_examples(out, only=["adult-mlp-drift", "digits-cnn-drift"],
                                   show_progress=False, console=console)
    assert [o.error for o in outcomes] == ["", ""]
    for name in ("adult-mlp-drift", "digits-cnn-drift"):
        doc = json.loads((out / f"{name}.json").read_text())
        assert [s["check"] for s in doc["sections"]] == ["drift"]
        assert doc["run"]["command"].startswith("audit drift ")
        assert (out / f"{name}.md").exists()
    assert sorted(p.name for p in (out / "drift-data").iterdir()) == [
        "adult-50-and-over.csv", "adult-under-50.csv", "digits-noise-0.2.npz",
        "digits-noise-0.35-unlabelled.npz"]


@pytest.mark.slow
def test_the_mitigation_example_writes_its_report_and_table(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``audit examples --only adult-mlp-mitigation`` through the API (trains: about a minute)."""
    monkeypatch.chdir(ROOT)  # committed examples show the bundled model's path from here
    out = tmp_path / "r"
    console = Console(file=open(os.devnull, "w"))  # noqa: SIM115
    (outcome,) = regenerate_examples(out, only=["adult-mlp-mitigation"], seed=0, quick=True,
                                     console=console, show_progress=False)
    assert not outcome.error
    assert [p.name for p in outcome.files] == [f"adult-mlp-mitigation.{ext}"
                                               for ext in ("html", "json", "md", "csv")]
    doc = load_result(out / "adult-mlp-mitigation.json")
    table = next(t for s in doc["sections"] if s["check"] == "mitigation" for t in s["tables"])
    lines = (out / "adult-mlp-mitigation.csv").read_text().splitlines()
    assert lines[0] == ",".join(table["columns"]) and len(lines) == len(table["rows"]) + 1
    assert doc["model"]["path"] == "models/adult-mlp"
    assert "| adult-mlp-mitigation: adult-mlp: bias mitigation" in (out / "README.md").read_text()


def test_examples_command_shows_progress_lines(models: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """``audit examples`` in this process (``models`` sets AUDIT_MODELS_DIR; an interpreter
    start per call cost ~4 s and tested no more: tests/test_cli.py runs the installed script)."""
    from audit.cli import main

    monkeypatch.chdir(tmp_path)
    args = ["examples", "--out", str(tmp_path / "out"), "--only", "tiny-a"]
    capsys.readouterr()
    code = main(args)
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "tiny-a: PASS no findings -> " in err
    assert "wrote 1 example(s)" in out
    (models / "tiny-a" / "model.safetensors").write_bytes(b"garbage")
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2 and "1 example(s) failed: tiny-a" in " ".join(err.split())
    assert "Traceback" not in err
