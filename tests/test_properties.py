"""Property-based tests: no input makes the loaders, the config parser or the renderers fail
with anything but the project's own error types."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.card import ModelCard
from audit.config import load_config, parse_config
from audit.datasets.files import load_data_file
from audit.errors import AuditError
from audit.loading import load_model
from audit.paths import models_dir
from audit.report.render import load_result, render_html, validate_result
from audit.result import AuditResult

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
DIGITS = models_dir() / "digits-cnn"
ARCH = "audit.zoo.digits:DigitsCNN"

json_scalars = st.none() | st.booleans() | st.integers(-10**6, 10**6) | \
    st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
    st.text(max_size=10), kids, max_size=4), max_leaves=12)


def _load_bytes(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / f"m{suffix}"
        p.write_bytes(data)
        with contextlib.suppress(AuditError):
            load_model(p, arch=ARCH, card=DIGITS / "card.json")


PREFIXES = [b"", b"PK\x03\x04", b"\x80\x02", b"\x80\x04", b"\x10\x00\x00\x00\x00\x00\x00\x00{",
            b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."]


@SETTINGS
@given(prefix=st.sampled_from(PREFIXES), body=st.binary(max_size=400),
       suffix=st.sampled_from([".pt", ".safetensors", ".pt2", ".bin"]))
def test_load_model_on_arbitrary_bytes(prefix: bytes, body: bytes, suffix: str) -> None:
    _load_bytes(prefix + body, suffix)


def _checkpoints() -> dict[str, bytes]:
    model = load_model("digits-cnn").model
    out: dict[str, bytes] = {"safetensors": (DIGITS / "model.safetensors").read_bytes()}
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    out["state-dict"] = buf.getvalue()
    buf = io.BytesIO()
    torch.export.save(torch.export.export(model, (torch.zeros(2, 1, 8, 8),)), buf)
    out["export"] = buf.getvalue()
    return out


CHECKPOINTS = _checkpoints()


@SETTINGS
@given(kind=st.sampled_from(sorted(CHECKPOINTS)), data=st.data())
def test_damaged_real_checkpoints(kind: str, data: st.DataObject) -> None:
    raw = bytearray(CHECKPOINTS[kind])
    how = data.draw(st.sampled_from(["truncate", "flip", "splice"]))
    if how == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    elif how == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] ^= 1 << data.draw(st.integers(0, 7))
    else:
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i:i + 16] = data.draw(st.binary(min_size=16, max_size=16))
    suffix = {"safetensors": ".safetensors", "state-dict": ".pt", "export": ".pt2"}[kind]
    _load_bytes(bytes(raw), suffix)


@SETTINGS
@given(doc=json_values)
def test_card_parser(doc: Any) -> None:
    with contextlib.suppress(AuditError):
        ModelCard.from_dict(doc)


CARD_KEYS = ["name", "arch", "input", "classes", "dataset", "metrics", "sensitive", "checks",
             "arch_kwargs", "recipe"]


@SETTINGS
@given(doc=st.dictionaries(st.sampled_from(CARD_KEYS), json_values, max_size=8),
       inp=st.dictionaries(st.sampled_from(["shape", "range", "kind", "mean", "std"]),
                           json_values, max_size=5))
def test_card_parser_near_valid(doc: dict[str, Any], inp: dict[str, Any]) -> None:
    doc = {"name": "x", "arch": "a:B", "classes": ["a", "b"], **doc, "input": inp}
    try:
        card = ModelCard.from_dict(doc)
    except AuditError:
        return
    assert all(s > 0 for s in card.input.shape) and card.input.range[0] < card.input.range[1]


CONFIG_KEYS = ["audit", "checks", "performance", "seed", "fail_on", "quick", "batch_size",
               "ece_medium", "min_support", "weak_recall_high"]
config_values = st.recursive(
    json_scalars | st.sampled_from(["high", "performance", "low"]),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.sampled_from(CONFIG_KEYS),
                                                              kids, max_size=4), max_leaves=10)


@SETTINGS
@given(doc=st.dictionaries(st.sampled_from(CONFIG_KEYS), config_values, max_size=3))
def test_config_parser(doc: dict[str, Any]) -> None:
    with contextlib.suppress(AuditError):
        parse_config(doc)


@SETTINGS
@given(text=st.text(max_size=200))
def test_config_file_text(text: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "audit.toml"
        p.write_text(text, encoding="utf-8")
        with contextlib.suppress(AuditError):
            load_config(p)


@SETTINGS
@given(x=st.sampled_from([(4, 1, 8, 8), (4, 64), (0, 1, 8, 8), (3,), (4, 1, 8)]),
       dtype=st.sampled_from(["float32", "float64", "int64", "bool", "complex64", "U3"]),
       y=st.lists(st.integers(-3, 12) | st.floats(allow_nan=True), max_size=6),
       fill=st.floats(allow_nan=True, allow_infinity=True))
def test_npz_loader(x: tuple[int, ...], dtype: str, y: list[float], fill: float) -> None:
    card = ModelCard.load(DIGITS / "card.json")
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "d.npz"
        arr = np.full(x, fill).astype(dtype) if dtype != "U3" else np.full(x, "a")
        np.savez(p, x=arr, y=np.array(y))
        with contextlib.suppress(AuditError):
            load_data_file(p, card)


@SETTINGS
@given(text=st.text(alphabet=st.sampled_from(list("abc,label\n0123.-xyes\"")), max_size=120))
def test_csv_loader(text: str) -> None:
    card = ModelCard.from_dict({"name": "t", "arch": "a:B", "classes": ["no", "yes"],
                                "input": {"kind": "tabular", "shape": [3], "range": [-1e9, 1e9],
                                          "feature_names": ["a", "b", "c"]}})
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "d.csv"
        p.write_text(text)
        with contextlib.suppress(AuditError):
            load_data_file(p, card, target="label")


@SETTINGS
@given(doc=json_values)
def test_load_result_on_arbitrary_json(doc: Any) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "r.json"
        p.write_text(json.dumps(doc))
        with contextlib.suppress(AuditError):
            load_result(p)


HOSTILE = st.sampled_from(["<script>alert(1)</script>", "</script><script>x()</script>",
                           "\"><img src=x onerror=alert(1)>", "' onmouseover='x", "{{ 7*7 }}",
                           "&amp;&lt;", "\u202e\u0000", ""]) | st.text(max_size=30)


@pytest.fixture(scope="module")
def base_result(digits_performance: AuditResult) -> dict[str, Any]:
    return digits_performance.to_dict()


def _strings(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(doc, dict):
        return [p for k, v in doc.items() for p in _strings(v, (*path, k))]
    if isinstance(doc, list):
        return [p for i, v in enumerate(doc) for p in _strings(v, (*path, i))]
    return [path] if isinstance(doc, str) else []


@SETTINGS
@given(data=st.data())
def test_renderer_on_hostile_valid_results(base_result: dict[str, Any],
                                           data: st.DataObject) -> None:
    doc = copy.deepcopy(base_result)
    paths = [p for p in _strings(doc) if p[-1] not in ("mime", "data", "severity", "status",
                                                      "sha256", "schema_version")]
    for path in data.draw(st.lists(st.sampled_from(paths), max_size=12)):
        node = doc
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = data.draw(HOSTILE)
    try:
        validate_result(doc)
    except AuditError:
        return
    html = render_html(doc)
    tags, handlers = _parse(html)
    assert "script" not in tags
    assert handlers == []
    assert tags.count("img") == sum(len(s["figures"]) for s in doc["sections"])


def _parse(html: str) -> tuple[list[str], list[str]]:
    """Tags in the document, and any on* event-handler attributes."""
    from html.parser import HTMLParser

    tags: list[str] = []
    handlers: list[str] = []

    class P(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            tags.append(tag)
            handlers.extend(k for k, _ in attrs if k.lower().startswith("on"))

    P().feed(html)
    return tags, handlers


def test_zip_bomb_like_member_names_are_safe(tmp_path: Path) -> None:
    p = tmp_path / "m.pt"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("../../etc/data.pkl", b"\x80\x02}q\x00.")
    with contextlib.suppress(AuditError):
        load_model(p, arch=ARCH)
    assert not (tmp_path.parent.parent / "etc" / "data.pkl").exists()


def test_damaged_export_archive_name_regression(tmp_path: Path) -> None:
    """Found by hypothesis: a flipped bit in a member name made zipfile raise
    UnicodeDecodeError, which escaped as an internal error."""
    raw = bytearray(CHECKPOINTS["export"])
    raw[26] ^= 1 << 5
    p = tmp_path / "m.pt2"
    p.write_bytes(bytes(raw))
    with pytest.raises(AuditError):
        load_model(p)
