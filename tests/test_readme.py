"""The README's two set-up commands: exactly two, the test one is what CI runs, and the
install honours the torch pin."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setup_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Set up on a fresh machine", 1)[1].split("\n## ", 1)[0]
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_exactly_two_setup_commands() -> None:
    cmds = _setup_commands()
    assert len(cmds) == 2
    install, tests = cmds
    assert all("\n" not in c for c in cmds)
    assert "-c constraints.txt" in install and "audit run digits-cnn" in install
    assert "reports/digits-cnn.html" in install
    assert "'.[dev]'" in tests and "pytest" in tests


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1].strip() == _setup_commands()[1]


def test_torch_pinned_and_no_torchvision() -> None:
    constraints = (ROOT / "constraints.txt").read_text()
    assert re.search(r"^torch==2\.13\.0$", constraints, re.M)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        deps += extra
    assert "torch==2.13.0" in deps
    banned = ("torchvision", "torchattacks", "grad-cam", "pytorch-grad-cam")
    for text in (constraints, (ROOT / "pyproject.toml").read_text()):
        for name in banned:
            assert not re.search(rf"^\s*\"?{re.escape(name)}\b", text, re.M), name
    assert project["requires-python"] == ">=3.11"
    assert project["scripts"]["audit"] == "audit.cli:entry"


def test_exit_codes_documented() -> None:
    text = (ROOT / "README.md").read_text()
    for code in ("| 0 |", "| 1 |", "| 2 |", "| 3 |", "| 4 |"):
        assert code in text


def test_config_reference_is_current() -> None:
    from audit.config.docs import defaults_markdown

    text = (ROOT / "README.md").read_text()
    start = text.index("<!-- config-reference:start")
    body = text[text.index("\n", start) + 1: text.index("<!-- config-reference:end -->")]
    assert body.strip() == defaults_markdown().strip()
