"""Strings from models, cards and data are shown, never obeyed: on the terminal (Rich markup,
emoji codes, ANSI escapes), in HTML, Markdown and JUnit (control and bidi-control characters
made visible), with long names clipped and default file names bounded."""

from __future__ import annotations

import base64
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from report_samples import Linear3

from audit.card import InputSpec, ModelCard
from audit.cli import main
from audit.cli.common import MAX_NAME, safe, safe_name
from audit.report.text import shown, text
from audit.training.bundle import save_bundle

RLO = "\u202e"
ESC = "\x1b"
MARKUP = "[/] [bold green]PASS[/] [link=http://x]click[/link] :warning:"
LONG = "c" * 5000


def _model(tmp_path: Path, name: str, classes: list[str]) -> tuple[Path, Path]:
    folder = tmp_path / "model"
    card = ModelCard(name=name, arch="report_samples:Linear3", classes=classes,
                     input=InputSpec(shape=(3,), range=(0.0, 1.0), kind="tabular",
                                     feature_names=[f"f{RLO}1", "f2", f"f3{ESC}[31m"]))
    save_bundle(Linear3(), card, folder)
    rng = np.random.default_rng(0)
    x = rng.random((90, 3)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=x.argmax(axis=1))
    return folder, tmp_path / "d.npz"


def test_shown_makes_controls_visible_and_keeps_text() -> None:
    assert shown(f"a{RLO}b{ESC}[32mc\u2066d\x00e\x9bf") == "a\\u202eb\\x1b[32mc\\u2066d\\x00e\\x9bf"
    assert shown("tab\tnew\nline é ü 中文 עברית") == "tab\tnew\nline é ü 中文 עברית"
    assert text(None) == "" and text(3) == "3"
    assert safe("[/] x", 4) == "\\[/]…" and safe(f"{ESC}[2J") == "\\x1b[2J"


def test_default_file_names_are_bounded_and_distinct() -> None:
    long_a, long_b = "m" * 300 + "a", "m" * 300 + "b"
    assert len(safe_name(long_a)) == MAX_NAME and safe_name(long_a) != safe_name(long_b)
    assert safe_name("digits-cnn") == "digits-cnn" and safe_name("../../etc") == "etc"
    assert safe_name(f"中文{RLO}") == "model" and safe_name("") == "model"


def test_hostile_card_strings_on_the_terminal_and_in_every_format(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"evil {MARKUP} {ESC}[32mgreen{ESC}[0m {RLO}desrever " + "n" * 400
    folder, data = _model(tmp_path, name, [f"cat{RLO}", LONG, f"b{ESC}[5m"])
    monkeypatch.chdir(tmp_path)
    code = main(["run", str(folder), "--data", str(data), "--checks", "performance",
                 "--md", "r.md", "--junit", "r.xml", "--no-progress"])
    out = capsys.readouterr()
    assert code in (0, 1), out.err  # a verdict, not an error
    assert "internal error" not in out.err and "MarkupError" not in out.err
    assert "[/] [bold green]PASS[/]" in out.out and ":warning:" in out.out  # as typed
    assert ESC not in out.out + out.err and RLO not in out.out + out.err
    assert "\\x1b[32mgreen" in out.out and "\\u202edesrever" in out.out

    reports = list((tmp_path / "reports").glob("*.html"))
    assert len(reports) == 1 and len(reports[0].stem) <= MAX_NAME
    html = reports[0].read_text()
    md = (tmp_path / "r.md").read_text()
    xml = (tmp_path / "r.xml").read_text()
    for doc in (html, md, xml):
        assert RLO not in doc and ESC not in doc
        assert "\\u202e" in doc
    assert LONG not in html.replace(f'title="{LONG}"', "")  # clipped, full text as tooltip
    assert f'title="{LONG}"' in html
    svgs = [base64.b64decode(b).decode()
            for b in re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', html)]
    assert svgs
    for svg in svgs:  # a raw escape character would make the figure invalid XML
        ET.fromstring(svg)
        assert ESC not in svg and RLO not in svg
    result = json.loads(reports[0].with_suffix(".json").read_text())
    assert result["model"]["name"] == name  # the data itself is kept as it was


def test_an_unwritable_default_report_folder_fails_before_any_check(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, data = _model(tmp_path, "m" * 3000, ["a", "b", "c"])
    (tmp_path / "reports").write_text("a file where the folder would be")
    monkeypatch.chdir(tmp_path)
    ran: list[str] = []
    monkeypatch.setattr("audit.runner.run_checks", lambda *a, **k: ran.append("ran") or [])
    assert main(["run", str(folder), "--data", str(data), "--no-progress"]) == 2
    assert not ran and "cannot write to reports" in capsys.readouterr().err
