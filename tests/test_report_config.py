"""``audit config``: the generated defaults reference matches every registered check."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest

from audit.checks import Check, all_checks, make_params
from audit.cli import main
from audit.config import parse_config
from audit.config.docs import (
    _check_doc,
    check_docs,
    defaults_markdown,
    defaults_toml,
    type_name,
)


def test_defaults_toml_is_valid_config_holding_every_default() -> None:
    text = defaults_toml()
    cfg = parse_config(tomllib.loads(text), where="defaults")
    assert cfg.fail_on.value == "high" and cfg.seed == 0 and cfg.quick is False
    assert cfg.checks is None
    for name, cls in all_checks().items():
        assert f"[checks.{name}]" in text
        loaded = make_params(cls, cfg.params.get(name, {}), quick=False)
        assert loaded == cls.Params(), name  # loading the file changes nothing
        for f in dataclasses.fields(cls.Params):
            assert f.name in text


def test_markdown_reference_lists_every_setting() -> None:
    text = defaults_markdown()
    for key in ("checks", "fail_on", "seed", "quick", "batch_size"):
        assert f"| `{key}` |" in text
    for doc in check_docs():
        assert f"### `[checks.{doc.name}]`" in text
        for p in doc.params:
            assert f"| `{p.name}` |" in text
    perf = next(d for d in check_docs() if d.name == "performance")
    ece = next(p for p in perf.params if p.name == "ece_medium")
    assert f"| `ece_medium` | float | `{ece.default}` |" in text


class _Demo(Check):
    name = "demo-doc"
    title = "Demo"

    @dataclass
    class Params:
        """Settings."""

        eps: list[float] = field(default_factory=lambda: [0.1, 0.2])  # attack budgets
        layer: str | None = None
        """Layer to explain."""
        steps: int = field(default=10, metadata={"help": "PGD steps"})
        gap_high: float = 0.3
        mode: str = "fast"

    quick: ClassVar[dict[str, Any]] = {"steps": 2, "layer": None}

    def run(self, subject):  # type: ignore[no-untyped-def]
        raise NotImplementedError


def test_help_comes_from_metadata_docstrings_comments_and_names() -> None:
    doc = _check_doc(_Demo)
    by = {p.name: p for p in doc.params}
    assert by["eps"].help == "attack budgets" and by["eps"].default == [0.1, 0.2]
    assert by["layer"].help == "Layer to explain." and by["layer"].type == "str | None"
    assert by["steps"].help == "PGD steps" and by["steps"].quick == 2 and by["steps"].has_quick
    assert by["gap_high"].help == "Threshold on gap for a high-severity finding."
    assert by["mode"].help == ""
    text = defaults_toml([doc])
    assert "eps = [0.1, 0.2]" in text and "# layer =" in text
    cfg = tomllib.loads(text)
    assert cfg["checks"]["demo-doc"] == {"eps": [0.1, 0.2], "steps": 10, "gap_high": 0.3,
                                         "mode": "fast"}
    md = defaults_markdown([doc])
    assert "| `steps` | int | `10` | `2` | PGD steps |" in md
    assert "| `layer` | str \\| None | none | none | Layer to explain. |" in md


@pytest.mark.parametrize("hint, name", [(float, "float"), (list[float], "list[float]"),
                                        (str | None, "str | None"), (dict[str, int],
                                                                     "dict[str, int]")])
def test_type_names(hint: object, name: str) -> None:
    assert type_name(hint) == name


def test_config_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config"]) == 0
    assert capsys.readouterr().out == defaults_toml()
    assert main(["config", "--markdown"]) == 0
    assert capsys.readouterr().out == defaults_markdown()
    good = tmp_path / "audit.toml"
    good.write_text('[audit]\nseed = 3\n[checks.performance]\nece_medium = 0.2\n')
    assert main(["config", str(good)]) == 0
    out = capsys.readouterr().out
    assert "seed = 3" in out and "ece_medium = 0.2" in out and "ece_bins = 15" in out
    bad = tmp_path / "bad.toml"
    bad.write_text("[checks.performance]\nece_hihg = 0.2\n")
    assert main(["config", str(bad)]) == 4
    assert "ece_hihg" in capsys.readouterr().err
