"""``audit card --init`` on a user's own projects (issue 23), run the way the README's "Your own
model" section runs it: from the project folder, with ``mynets.py``, state-dict weights and
data files but no card. The card it writes must load and must let ``audit run`` audit the
model; what it inferred (kind, shape, range, classes, a CSV's target and encoder) is checked
against what the project really is, and its warnings against models it does not describe."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import Cli
from user_models import (
    ENCODER,
    IMAGE_CLASSES,
    Project,
    write_image_project,
    write_tabular_project,
)

from audit.apps.card_data import infer_range, suggest_sensitive
from audit.card import ModelCard


@pytest.fixture(autouse=True)
def _own_imports() -> Iterator[None]:
    """``--arch mynets:...`` imports from the project folder: forget it after each test."""
    path = list(sys.path)
    yield
    sys.path[:] = path
    for name in ("mynets", "graynets"):
        sys.modules.pop(name, None)


def _cardless(p: Project) -> Project:
    p.card.unlink()  # the user has weights, code and data, not yet a card
    return p


@pytest.fixture(scope="module")
def unit(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return _cardless(write_image_project(tmp_path_factory.mktemp("unit"), "unit"))


@pytest.fixture(scope="module")
def byte8(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return _cardless(write_image_project(tmp_path_factory.mktemp("byte8"), "byte", uint8=True))


@pytest.fixture(scope="module")
def tab2(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return _cardless(write_tabular_project(tmp_path_factory.mktemp("tab2"), classes=2))


def _card(path: str = "card.json") -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(Path(path).read_text())
    ModelCard.from_dict(doc)
    return doc


def _audit(cli: Cli, model: str, data: str, *extra: str) -> dict[str, Any]:
    """``audit run --quick --checks performance``; its JSON result."""
    code, _, err = cli("run", model, "--data", data, "--quick", "--checks", "performance",
                       "--no-progress", "--out", "reports/r.html", *extra)
    assert code == 0, err
    doc: dict[str, Any] = json.loads(Path("reports/r.json").read_text())
    assert all(s["status"] != "error" for s in doc["sections"])
    return doc


def _accuracy(result: dict[str, Any]) -> float:
    sec = next(s for s in result["sections"] if s["check"] == "performance")
    return float(sec["metrics"]["accuracy"])


# ----------------------------------------------------------------------------- images


def test_unit_image_card_is_inferred_and_audits(cli: Cli, unit: Project,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's walkthrough: init from train.npz, then audit test.npz with the card."""
    monkeypatch.chdir(unit.root)
    code, out, err = cli("card", "--init", "net.pt", "--data", "train.npz", "--arch",
                         "mynets:Net")
    assert code == 0, err
    card = _card()
    assert card["arch"] == "mynets:Net" and card["arch_kwargs"] == {}
    assert card["input"] == {"kind": "image", "shape": [3, 32, 32], "range": [0.0, 1.0],
                             "mean": None, "std": None, "feature_names": None}
    assert card["classes"] == ["0", "1", "2", "3", "4"]
    assert card["name"] == "net" and "target" not in card and "extra" not in card
    for key in ("description", "intended_use", "limitations"):
        assert card[key].startswith("FILL IN")
    assert "inferred" in out and "for you to write" in out and "warning" not in out
    assert "input.mean, input.std" in out and "normalised" in out  # it cannot know
    assert float(re.search(r"accuracy on these 600 rows with this card: ([\d.]+)%", out)[1]) > 90
    card["classes"] = IMAGE_CLASSES  # the user names the outputs
    Path("card.json").write_text(json.dumps(card))
    result = _audit(cli, "net.pt", "test.npz", "--card", "card.json")
    assert result["model"]["classes"] == IMAGE_CLASSES and _accuracy(result) > 0.9


def test_refuses_to_overwrite_without_force(cli: Cli, unit: Project,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(unit.root)
    Path("mine.json").write_text("{}")
    args = ("card", "--init", "net.pt", "--data", "train.npz", "--arch", "mynets:Net",
            "--out", "mine.json")
    code, _, err = cli(*args)
    assert code == 4 and "mine.json exists; pass --force" in err
    assert len(err.strip().splitlines()) == 1 and Path("mine.json").read_text() == "{}"
    code, _, err = cli(*args, "--force", "--name", "gratings")
    assert code == 0, err
    assert _card("mine.json")["name"] == "gratings"


def test_byte_images_in_uint8(cli: Cli, byte8: Project, monkeypatch: pytest.MonkeyPatch
                              ) -> None:
    """uint8 pixels give [0, 255]. Without the constructor argument that scales them, the
    model is near chance, and the warning's fix (input.mean/std) restores its accuracy; with
    --arch-kwargs the card audits as it is."""
    monkeypatch.chdir(byte8.root)
    assert np.load("train.npz")["x"].dtype == np.uint8
    code, out, err = cli("card", "--init", "net.pt", "--data", "train.npz", "--arch",
                         "mynets:Net", "--out", "plain.json")
    assert code == 0, err
    card = _card("plain.json")
    assert card["input"]["range"] == [0.0, 255.0] and "uint8 values" in out
    assert "near chance" in out and "with [0, 1] input (x / 255) it is" in out
    assert "Set input.mean [0] and input.std [255]" in out
    card["input"].update(mean=[0], std=[255])  # as the warning says
    Path("plain.json").write_text(json.dumps(card))
    assert _accuracy(_audit(cli, "net.pt", "test.npz", "--card", "plain.json")) > 0.8
    kwargs = json.dumps({"scale": 1 / 255, "shift": 0.0})
    code, out, err = cli("card", "--init", "net.pt", "--data", "train.npz", "--arch",
                         "mynets:Net", "--arch-kwargs", kwargs)
    assert code == 0, err
    card = _card()
    assert card["arch_kwargs"] == {"scale": 1 / 255, "shift": 0.0} and "warning" not in out
    assert card["input"]["range"] == [0.0, 255.0]
    assert _accuracy(_audit(cli, "net.pt", "test.npz")) > 0.8  # card.json beside the weights


@pytest.mark.parametrize(("x", "expected", "observed"), [
    (np.array([0, 7, 255], dtype=np.uint8), (0.0, 255.0), False),
    (np.array([0.0, 0.5, 1.0]), (0.0, 1.0), False),
    (np.array([-0.2, 1.0]), (-1.0, 1.0), False),
    (np.array([0.0, 3.0, 254.5]), (0.0, 255.0), False),
    (np.array([-3.0, 2.5]), (-3.0, 2.5), True),
])
def test_value_range(x: np.ndarray, expected: tuple[float, float], observed: bool) -> None:
    rng, _, only_observed = infer_range(x)
    assert rng == expected and only_observed == observed


def test_byte_floats_and_signed_ranges(tmp_path: Path, cli: Cli,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Float pixels in 0..255 and in [-1, 1] (the other conventions' data, same model)."""
    p = _cardless(write_image_project(tmp_path, "unit", n_train=64, n_test=8, epochs=1))
    monkeypatch.chdir(p.root)
    x, y = np.load("train.npz")["x"], np.load("train.npz")["y"]
    for name, data, rng in (("f255", x * 255, [0.0, 255.0]), ("signed", 2 * x - 1, [-1.0, 1.0])):
        np.savez(f"{name}.npz", x=data.astype(np.float32), y=y)
        code, _, err = cli("card", "--init", "net.pt", "--data", f"{name}.npz", "--arch",
                           "mynets:Net", "--out", f"{name}.json")
        assert code == 0, err
        assert _card(f"{name}.json")["input"]["range"] == rng


# ----------------------------------------------------------------------------- tabular


def test_tabular_card_is_inferred_and_audits(cli: Cli, tab2: Project,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Target, encoder (ranges of the file, sorted categories), classes in the model's output
    order (not sorted), sensitive columns suggested but written only with --sensitive."""
    monkeypatch.chdir(tab2.root)
    code, out, err = cli("card", "--init", "tab.pt", "--data", "train.csv", "--arch",
                         "mynets:TabNet", "--arch-kwargs", '{"features": 7, "classes": 2}')
    assert code == 0, err
    card = _card()
    assert card["target"] == "income" and card["classes"] == ["low", "high"]
    assert card["input"]["kind"] == "tabular" and card["input"]["shape"] == [7]
    assert card["input"]["range"] == [0.0, 1.0] and card["sensitive"] == []
    enc = card["extra"]["encoder"]
    assert enc["note"].startswith("FILL IN / CHECK") and "training preprocessing" in enc["note"]
    assert enc["columns"] == ENCODER["columns"] and enc["categorical"] == ENCODER["categorical"]
    assert enc["numeric"] == {"age": [18.0, 69.0], "hours": [10.0, 59.0]}  # this file's
    assert "income (the last column" in out and "not their sorted order" in out
    assert "suggested sensitive columns: age, sex (not written" in out
    assert "'age' looks like a protected attribute but holds 52 distinct values" in out
    assert "warning: the model" not in out  # the skeleton matches the user's encoding
    result = _audit(cli, "tab.pt", "test.csv", "--card", "card.json")
    assert _accuracy(result) > 0.8
    code, out, err = cli("card", "--init", "tab.pt", "--data", "train.csv", "--arch",
                         "mynets:TabNet", "--sensitive", "--force")
    assert code == 0, err
    assert _card()["sensitive"] == ["sex"]  # age has too many values to be groups


def test_three_classes_in_output_order(tmp_path: Path, cli: Cli,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    p = _cardless(write_tabular_project(tmp_path, classes=3))
    monkeypatch.chdir(p.root)
    code, _, err = cli("card", "--init", "tab.pt", "--data", "train.csv", "--arch",
                       "mynets:TabNet", "--arch-kwargs", '{"classes": 3}')
    assert code == 0, err
    assert _card()["classes"] == ["low", "mid", "high"]


def test_encoder_that_does_not_match_is_flagged(cli: Cli, tab2: Project,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Labels the features do not predict (as with preprocessing the skeleton does not
    reproduce): near chance, the card is written and the warning names the encoder."""
    monkeypatch.chdir(tab2.root)
    frame = pd.read_csv("train.csv")
    frame["income"] = np.random.default_rng(0).permutation(frame["income"].to_numpy())
    frame.to_csv("shuffled.csv", index=False)
    code, out, err = cli("card", "--init", "tab.pt", "--data", "shuffled.csv", "--arch",
                         "mynets:TabNet", "--out", "shuffled.json")
    assert code == 0, err
    _card("shuffled.json")
    assert "near chance" in out and "encoder skeleton probably does not match" in out


def test_strings_from_the_data_are_escaped(cli: Cli, tab2: Project,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tab2.root)
    frame = pd.read_csv("train.csv").rename(columns={"sex": "sex\x1b[2J"})
    frame["income"] = frame["income"].map({"low": "low\x1b[31m", "high": "high"})
    frame.to_csv("evil.csv", index=False)
    code, out, err = cli("card", "--init", "tab.pt", "--data", "evil.csv", "--arch",
                         "mynets:TabNet", "--out", "evil.json")
    assert code == 0, err
    assert "\x1b" not in out and "\\x1b[2J" in out and "low\\x1b[31m" in out
    assert _card("evil.json")["classes"] == ["low\x1b[31m", "high"]  # the JSON keeps them


def test_protected_attribute_names() -> None:
    cols = ["Age", "maritalStatus", "native-country", "page_views", "wage", "Sex",
            "race_ethnicity", "usage", "target", "Gender"]
    frame = pd.DataFrame({c: [0] for c in cols})
    assert suggest_sensitive(frame, "Gender") == ["Age", "maritalStatus", "native-country",
                                                  "Sex", "race_ethnicity"]


# ----------------------------------------------------------------------------- bad input


GRAY = '''
from torch import nn
class Gray(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 30 * 30, 3))
    def forward(self, x):
        return self.net(x)
'''


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Files a user gets wrong, beside a working project."""
    root = _cardless(write_image_project(tmp_path_factory.mktemp("bad"), "unit", n_train=64,
                                         n_test=8, epochs=1)).root
    x = np.load(root / "train.npz")["x"]
    np.savez(root / "labels9.npz", x=x, y=np.full(len(x), 9))
    np.savez(root / "names.npz", x=x, y=np.array(["a", "b"] * (len(x) // 2)))
    np.savez(root / "nox.npz", inputs=x)
    np.savez(root / "nan.npz", x=np.full_like(x, np.nan), y=np.zeros(len(x), int))
    np.savez(root / "gray.npz", x=x[:, 0], y=np.zeros(len(x), int))
    (root / "garbage.pt").write_bytes(b"not a checkpoint at all")
    (root / "notes.txt").write_text("hello")
    (root / "graynets.py").write_text(GRAY)
    sys.path.insert(0, str(root))
    try:
        import graynets  # type: ignore[import-not-found]

        torch.save(graynets.Gray().state_dict(), root / "gray.pt")
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("graynets", None)
    return root


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--init", "net.pt", "--data", "nope.npz"], 2, "data file not found: nope.npz"),
    (["--init", "net.pt", "--data", "."], 2, "is a directory"),
    (["--init", "net.pt", "--data", "notes.txt"], 2, "unsupported data file notes.txt"),
    (["--init", "net.pt", "--data", "nox.npz"], 2, "needs arrays x and y"),
    (["--init", "net.pt", "--data", "nan.npz"], 2, "NaN or inf"),
    (["--init", "net.pt", "--data", "labels9.npz"], 2, "labels span 9..9 but the model has 5"),
    (["--init", "net.pt", "--data", "names.npz"], 2, ".npz labels are class indices"),
    (["--init", "gray.pt", "--data", "gray.npz", "--arch", "graynets:Gray"], 2,
     "the model takes a channel axis"),
    (["--init", "garbage.pt", "--data", "train.npz"], 2, "not a recognised checkpoint"),
    (["--init", "nope.pt", "--data", "train.npz"], 2, "nope.pt"),
    (["--init", "net.pt", "--data", "train.npz", "--arch", "mynets:TabNet"], 2,
     "does not fit the architecture TabNet"),
    (["--init", "net.pt", "--data", "train.npz"], 4, "pass --arch module:Class"),
    (["--init", "net.pt", "--data", "train.npz", "--arch", "nonet:Net"], 4, "not found"),
    (["--init", "net.pt", "--data", "train.npz", "--arch-kwargs", "{oops"], 4,
     "--arch-kwargs is not valid JSON"),
    (["--init", "net.pt", "--data", "train.npz", "--out", "card.txt"], 4, "must end in .json"),
    (["--init", "net.pt"], 4, "--init needs --data"),
    ([], 4, "nothing to do: pass --init MODEL"),
])
def test_bad_input_is_one_line(cli: Cli, bad: Path, monkeypatch: pytest.MonkeyPatch,
                               args: list[str], code: int, message: str) -> None:
    monkeypatch.chdir(bad)
    if "--arch" not in args and "net.pt" in args and message != "pass --arch module:Class":
        args = [*args, "--arch", "mynets:Net"]
    got, _, err = cli("card", *args)
    assert got == code, err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (bad / "card.json").exists() and not (bad / "card.txt").exists()


# ----------------------------------------------------------------------------- the README

README = Path(__file__).resolve().parents[1] / "README.md"
# smaller budgets appended to the README's commands (the last value of an option wins)
FAST = {"run": ["--quick", "--checks", "performance", "--no-progress"],
        "harden": ["--epochs", "1", "--steps", "2", "--threads", "1", "--quick", "--checks",
                   "performance", "--no-progress"]}


def _walkthrough() -> list[list[str]]:
    """The ``audit`` commands of the README's "Your own model" section, in order."""
    import shlex

    section = README.read_text().split("## Your own model\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    return [shlex.split(ln)[1:] for b in blocks for ln in b.splitlines()
            if ln.startswith("audit ")]


@pytest.mark.slow
def test_readme_walkthrough_runs(tmp_path: Path, cli: Cli,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Every command of the section, as written (plus smaller budgets), on a user's image
    project and then on a tabular one; the card is edited between init and the audit as the
    section says."""
    commands = _walkthrough()
    verbs = [c[0] for c in commands]
    assert verbs == ["card", "run", "harden", "run", "diff", "card", "run"], verbs
    image = _cardless(write_image_project(tmp_path / "img", "unit"))
    tab = _cardless(write_tabular_project(tmp_path / "tab", classes=2))
    for i, args in enumerate(commands):
        monkeypatch.chdir(image.root if i < 5 else tab.root)
        code, _, err = cli(*args, *FAST.get(args[0], []))
        assert code == 0, (args, err)
        if args[0] == "card" and i == 0:
            card = _card()
            card.update(classes=IMAGE_CLASSES, description="Orientation of gratings.",
                        intended_use="Testing the audit.", limitations="Synthetic images.")
            Path("card.json").write_text(json.dumps(card))
    monkeypatch.chdir(image.root)
    after = ModelCard.load(Path("net-robust/card.json"))
    assert after.classes == IMAGE_CLASSES and after.input.shape == (3, 32, 32)
    assert Path("reports/net-robust-hardening.html").is_file()
    assert "after" in Path("reports/diff.md").read_text()
    monkeypatch.chdir(tab.root)
    assert _card()["sensitive"] == ["sex"]
