"""``--samples``: every sample cap set at once (user keys win, ``all`` means the data), and
the table of the samples each section's numbers rest on."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from audit.checks import all_checks, get_check
from audit.config import parse_config
from audit.errors import ConfigError
from audit.robustness.params import RobustnessParams
from audit.runner import run_audit
from audit.sample_budget import parse_samples, samples_table, with_samples


def test_parse_samples_takes_integers_and_all_and_rejects_the_rest() -> None:
    assert parse_samples("250", "x") == 250 and parse_samples("all", "x") == "all"
    assert parse_samples(None, "x") is None
    for bad in (0, -3, "many", 2.5, True):
        with pytest.raises(ConfigError, match="samples must be a positive integer"):
            parse_samples(bad, "--samples")
    assert parse_config({"audit": {"samples": "all"}}).samples == "all"
    with pytest.raises(ConfigError, match=r"\[audit\]"):
        parse_config({"audit": {"samples": 0}})


def test_every_declared_cap_is_an_integer_field_of_its_params() -> None:
    declared = 0
    for name in all_checks():
        params = get_check(name).Params()
        fields = {f.name: f for f in dataclasses.fields(params)} if dataclasses.is_dataclass(
            params) else {}
        for key in getattr(type(params), "sample_caps", {}):
            assert isinstance(getattr(params, key), int), (name, key)
            assert key in fields, (name, key)
            declared += 1
    assert declared >= 9  # robustness 2, certified 1, saliency 3, surrogate 1, slices 1, drift 2


def test_with_samples_sets_caps_but_keeps_what_the_user_set() -> None:
    p = RobustnessParams()
    raised = with_samples(p, 5000, set(), available=800)
    assert (raised.max_samples, raised.suite_samples) == (5000, 5000)
    kept = with_samples(p, 5000, {"suite_samples"}, available=800)
    assert (kept.max_samples, kept.suite_samples) == (5000, p.suite_samples)
    everything = with_samples(p, "all", set(), available=800)
    assert everything.max_samples == everything.suite_samples == 800
    assert with_samples(p, None, set(), available=800) is p
    table = samples_table(raised, available=800)
    assert [r[2] for r in table.rows] == [800, 800]  # a cap above the data uses the data
    assert table.rows[0][4] == "±3.5%"  # 1.96 * sqrt(0.25 / 800) = 0.0346


def _rows(section: Any) -> list[list[Any]]:
    return next(t for t in section.tables if t.id == "samples").rows


def test_samples_reach_each_check_and_its_report_table(digits_loaded: Any) -> None:
    res = run_audit(digits_loaded, checks=["performance", "robustness"], quick=True,
                    samples=40, params={"robustness": {"suite_samples": 4}})
    perf, robust = res.sections
    assert robust.metrics["samples"] == 40
    assert robust.params["max_samples"] == 40 and robust.params["suite_samples"] == 4
    assert [r[2] for r in _rows(robust)] == [40, 4]
    n = res.data["size"]
    assert _rows(perf)[0][2] == n == perf.metrics["samples"]  # no cap: every row
    assert res.config["samples"] == 40


def test_cli_rejects_a_bad_sample_count_in_one_line(tmp_path: Path, cli: Any) -> None:
    code, _out, err = cli("run", "digits-cnn", "--samples", "lots", "--no-progress",
                         "--out", str(tmp_path / "r.html"))
    assert code == 4
    assert err.strip() == ("error: --samples: samples must be a positive integer or 'all', "
                           "got 'lots'")
    assert not (tmp_path / "r.html").exists()
