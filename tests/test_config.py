"""audit.toml parsing: known keys work, unknown keys are errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit.config import load_config, parse_config
from audit.errors import ConfigError
from audit.loading import LoadedModel
from audit.result import Severity
from audit.runner import run_audit


def test_full_config(tmp_path: Path) -> None:
    p = tmp_path / "audit.toml"
    p.write_text('[audit]\nchecks = ["performance"]\nfail_on = "medium"\nseed = 7\n'
                 'quick = true\nbatch_size = 64\n\n[checks.performance]\nece_medium = 0.01\n'
                 'min_support = 3\n')
    cfg = load_config(p)
    assert cfg.checks == ["performance"] and cfg.fail_on is Severity.MEDIUM
    assert (cfg.seed, cfg.quick, cfg.batch_size) == (7, True, 64)
    assert cfg.params == {"performance": {"ece_medium": 0.01, "min_support": 3}}


@pytest.mark.parametrize(("doc", "message"), [
    ({"audt": {}}, "unknown table or key 'audt'"),
    ({"audit": {"seeds": 1}}, "unknown key 'seeds' in \\[audit\\]"),
    ({"audit": {"fail_on": "severe"}}, "fail_on must be one of"),
    ({"audit": {"checks": ["performance", "nope"]}}, "unknown check 'nope'"),
    ({"audit": {"seed": -1}}, "seed must be a non-negative integer"),
    ({"audit": {"quick": "yes"}}, "quick must be true or false"),
    ({"checks": {"performance": {"ece_mediun": 0.1}}},
     "unknown key 'ece_mediun' in \\[checks.performance\\]"),
    ({"checks": {"performance": {"min_support": "five"}}}, "min_support must be an integer"),
    ({"checks": {"performance": {"ece_medium": True}}}, "ece_medium must be a number"),
    ({"checks": {"nope": {}}}, "unknown check 'nope'"),
])
def test_invalid_configs(doc: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(doc)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[audit\nseed = 1")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(bad)


def test_config_drives_run(tmp_path: Path, digits_loaded: LoadedModel) -> None:
    p = tmp_path / "audit.toml"
    p.write_text('[audit]\nchecks = ["performance"]\nfail_on = "low"\n'
                 '[checks.performance]\nweak_recall_medium = 0.99999\n')
    res = run_audit(digits_loaded, config=p)
    assert [s.check for s in res.sections] == ["performance"]
    assert res.summary["fail_on"] == "low" and res.summary["status"] == "fail"
    # the command line wins over the file
    res = run_audit(digits_loaded, config=p, fail_on="high")
    assert res.summary["status"] == "pass"


def test_resolve_config_leaves_the_callers_config_alone():
    from audit.config import AuditConfig, resolve_config
    from audit.result import Severity

    mine = AuditConfig(checks=["performance"], seed=3, params={"performance": {"ece_medium": 0.1}})
    out = resolve_config(mine, seed=7, quick=True, fail_on="low")
    out.params["performance"]["ece_medium"] = 0.9
    out.params["robustness"] = {"eps_linf": [0.1]}
    out.checks.append("fairness")
    assert (out.seed, out.quick, out.fail_on) == (7, True, Severity.LOW)
    assert mine == AuditConfig(checks=["performance"], seed=3,
                               params={"performance": {"ece_medium": 0.1}})
