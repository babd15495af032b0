"""The README's two set-up commands: exactly two, CI runs both verbatim (the test one, then the
install-and-audit one as a smoke job in a fresh clone), and the install honours the torch pin."""

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


def _ci_lines() -> list[str]:
    return [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]


def test_ci_runs_the_readme_test_command() -> None:
    ci = _ci_lines()
    assert ci.count(_setup_commands()[1]) == 1


def test_ci_runs_ruff_and_mypy_after_the_tests() -> None:
    """ruff and mypy are their own CI step, not a test (they would slow every pytest run)."""
    ci = _ci_lines()
    tests = ci.index(_setup_commands()[1])
    assert ci.index(".venv/bin/ruff check audit tests bench") > tests
    assert ci.index(".venv/bin/mypy") > tests


def test_ci_smoke_runs_the_readme_install_command_in_a_fresh_clone() -> None:
    """After the tests, the README's first command, verbatim, in a fresh clone in a temporary
    directory; exit code 0 (the verdict digits-cnn's card states) passes, any other fails."""
    ci = _ci_lines()
    tests, smoke = ci.index(_setup_commands()[1]), ci.index(_setup_commands()[0])
    assert ci.count(_setup_commands()[0]) == 1 and smoke > tests
    before = ci[tests:smoke]
    assert 'smoke="$(mktemp -d)"' in before
    assert 'git clone -q "$PWD" "$smoke/audit"' in before and 'cd "$smoke/audit"' in before
    assert ci[smoke - 1] == "set +e" and ci[smoke + 1] == "rc=$?"
    assert any('[ "$rc" -ne 0 ]' in ln and "exit 1" in ci[i + 1: i + 5]
               for i, ln in enumerate(ci) if i > smoke)


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
