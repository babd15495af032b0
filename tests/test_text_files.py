"""Text data from CSV and JSONL: hostile strings arrive unchanged, problems are one line."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from audit.datasets.text_files import load_text_file
from audit.errors import DataError

CLASSES = ["routine", "urgent"]
HOSTILE = ['<script>alert("x")</script> the server is down', "comma, \"quote\" and\nnewline",
           "emoji \U0001f525 and rtl \u202e text", "{{ jinja }} ${shell} `tick`"]


def test_csv_and_jsonl_give_the_same_texts_and_labels(tmp_path: Path) -> None:
    frame = pd.DataFrame({"body": HOSTILE, "label": ["urgent", "routine", "urgent", "routine"],
                          "gender": ["f", "m", "f", "m"]})
    frame.to_csv(tmp_path / "d.csv", index=False)
    with open(tmp_path / "d.jsonl", "w", encoding="utf-8") as fh:
        for row in frame.to_dict("records"):
            fh.write(json.dumps(row) + "\n")
    for name in ("d.csv", "d.jsonl"):
        data = load_text_file(tmp_path / name, CLASSES, text="body", target="label")
        assert data.texts == HOSTILE
        assert data.y.tolist() == [1, 0, 1, 0]
        assert list(data.frame.columns) == ["gender"]
    auto = load_text_file(tmp_path / "d.csv", CLASSES, target=None, labels=False)
    assert auto.texts == HOSTILE  # "body" is one of the usual text column names
    assert (auto.y == -1).all()  # no labels asked for: unlabelled
    (tmp_path / "i.csv").write_text("text,label\na,1\nb,0\n")
    assert load_text_file(tmp_path / "i.csv", CLASSES, target="label").y.tolist() == [1, 0]


@pytest.mark.parametrize("content,args,message", [
    ("text,label\n,urgent\n", {"target": "label"}, "row 1 of column 'text' is empty"),
    ("text,label\nhi,maybe\n", {"target": "label"}, "unknown label"),
    ("words,label\nhi,urgent\n", {"target": "label"}, "no text column"),
    ("text,label\nhi,urgent\n", {"target": "y"}, "label column 'y' not found"),
    ("text,label\nhi,urgent\n", {}, "pass --target"),
    ("text,label\n", {"target": "label"}, "holds no rows"),
])
def test_csv_problems_are_one_line(tmp_path: Path, content: str, args: dict[str, str],
                                   message: str) -> None:
    path = tmp_path / "d.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as err:
        load_text_file(path, CLASSES, **args)
    assert "\n" not in str(err.value)


def test_jsonl_problems_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": "urgent"}\n{not json}\n')
    with pytest.raises(DataError, match="line 2 is not JSON"):
        load_text_file(path, CLASSES, target="label")
    path.write_text('["a", "b"]\n')
    with pytest.raises(DataError, match="line 1 is a JSON list"):
        load_text_file(path, CLASSES, target="label")
    path.write_bytes(b'{"text": "\xff"}\n')
    with pytest.raises(DataError, match="not UTF-8"):
        load_text_file(path, CLASSES, target="label")
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(DataError, match="unsupported"):
        load_text_file(tmp_path / "d.txt", CLASSES)
