"""The same command with the same seed gives the same JSON, timestamps and durations aside."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from audit.cli import main


def _without_timings(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy without what measures time: creation time, durations, 'time (s)' columns."""
    doc = copy.deepcopy(doc)
    doc["run"].pop("created_at")
    doc["summary"].pop("duration_s")
    for sec in doc["sections"]:
        sec.pop("duration_s")
        for table in sec["tables"]:
            timed = [i for i, c in enumerate(table["columns"]) if c.strip().endswith("(s)")]
            table["rows"] = [[v for i, v in enumerate(r) if i not in timed]
                             for r in table["rows"]]
            table["columns"] = [c for i, c in enumerate(table["columns"]) if i not in timed]
    return doc


def _run_twice(tmp_path: Path, *args: str) -> tuple[dict[str, Any], dict[str, Any]]:
    docs = []
    out = tmp_path / "r.html"  # the same command twice (the path is part of the command)
    for _ in range(2):
        assert main(["run", *args, "--out", str(out), "--no-progress"]) in (0, 1)
        docs.append(json.loads(out.with_suffix(".json").read_text()))
    return docs[0], docs[1]


def test_quick_audit_of_every_check_is_reproducible(tmp_path: Path) -> None:
    a, b = _run_twice(tmp_path, "adult-mlp", "--quick", "--seed", "5", "--reference",
                      "adult:train")
    assert [s["check"] for s in a["sections"]] == ["performance", "saliency", "surrogate",
                                                    "robustness", "certified", "fairness",
                                                    "slices", "drift", "crosscheck"]
    assert next(s for s in a["sections"] if s["check"] == "drift")["status"] != "skipped"
    assert all(s["status"] != "error" for s in a["sections"])
    assert json.dumps(_without_timings(a)) == json.dumps(_without_timings(b))


@pytest.mark.slow
def test_default_digits_audit_is_reproducible(tmp_path: Path) -> None:
    a, b = _run_twice(tmp_path, "digits-cnn")
    assert json.dumps(_without_timings(a)) == json.dumps(_without_timings(b))
    # a different seed changes the seeded parts (samples explained, attack starts)
    out = tmp_path / "seed1" / "r.html"
    main(["run", "digits-cnn", "--seed", "1", "--out", str(out), "--no-progress"])
    c = json.loads(out.with_suffix(".json").read_text())
    assert json.dumps(_without_timings(c)["sections"]) != \
        json.dumps(_without_timings(a)["sections"])
