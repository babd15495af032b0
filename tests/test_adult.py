"""The UCI Adult data, its encoder, CSV loading with a card's encoder, and the adult-mlp model."""

from __future__ import annotations

import dataclasses
import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from reproduction import (
    ACCURACY_TOLERANCE,
    INFERENCE_TOLERANCE,
    assert_same_weights,
    bundled_card,
    skip_unless_same_build,
    without_build,
)

from audit.card import InputSpec, ModelCard
from audit.datasets import load_dataset
from audit.datasets.adult import CATEGORICAL, COLUMNS, FILES, NUMERIC, read_raw
from audit.datasets.files import load_data_file
from audit.datasets.tabular import MISSING, TabularEncoder, card_encoder
from audit.errors import DataError
from audit.loading import load_model
from audit.paths import models_dir


@pytest.fixture(scope="module")
def adult_test():  # type: ignore[no-untyped-def]
    return load_dataset("adult", "test")


@pytest.fixture(scope="module")
def adult_card() -> ModelCard:
    return ModelCard.load(models_dir() / "adult-mlp" / "card.json")


def test_official_split_sizes_and_labels(adult_test) -> None:  # type: ignore[no-untyped-def]
    train = load_dataset("adult", "train")
    assert (len(train), len(adult_test)) == (32561, 16281)
    assert train.classes == adult_test.classes == ["<=50K", ">50K"]
    frame = adult_test.extras["frame"]
    assert list(frame.columns) == COLUMNS
    assert set(frame["income"]) == {"<=50K", ">50K"}  # the test file's trailing '.' is gone
    # labels agree with the raw column, row by row
    assert np.array_equal(adult_test.y.numpy(), (frame["income"] == ">50K").to_numpy())
    # positive rate of the official files (24.1% train, 23.6% test)
    assert abs(float(train.y.float().mean()) - 0.2408) < 1e-3
    assert abs(float(adult_test.y.float().mean()) - 0.2362) < 1e-3


def test_files_match_the_raw_uci_files(adult_test) -> None:  # type: ignore[no-untyped-def]
    with gzip.open(FILES / "adult.test.gz", "rt") as fh:
        lines = fh.read().splitlines()
    rows = [ln for ln in lines[1:] if ln.strip()]
    assert len(rows) == len(adult_test)
    first = [v.strip() for v in rows[0].split(",")]
    frame = adult_test.extras["frame"]
    assert str(frame.iloc[0]["occupation"]) == first[6]
    assert int(frame.iloc[0]["age"]) == int(first[0])


def test_encoding_is_in_unit_range_and_one_hot(adult_test) -> None:  # type: ignore[no-untyped-def]
    x = adult_test.x.numpy()
    enc: TabularEncoder = adult_test.extras["encoder"]
    assert x.dtype == np.float32 and x.min() >= 0.0 and x.max() <= 1.0
    assert adult_test.feature_names == enc.feature_names
    assert "fnlwgt" not in enc.feature_names and "workclass=Private" in enc.feature_names
    for col in CATEGORICAL:
        cols = [i for i, f in enumerate(enc.features) if f.column == col]
        assert np.all(x[:, cols].sum(axis=1) == 1.0), col
    assert [f.name for f in enc.features if f.kind == "numeric"] == NUMERIC


def test_missing_values_become_an_explicit_category(adult_test) -> None:  # type: ignore[no-untyped-def]
    frame = adult_test.extras["frame"]
    enc: TabularEncoder = adult_test.extras["encoder"]
    rows = np.flatnonzero(frame["occupation"].isna().to_numpy())
    assert len(rows) > 900  # UCI marks ~6% of occupations with '?'
    j = enc.feature_names.index(f"occupation={MISSING}")
    assert np.all(adult_test.x.numpy()[rows, j] == 1.0)
    assert adult_test.x.numpy()[:, j].sum() == len(rows)


def test_decode_gives_back_the_raw_values(adult_test) -> None:  # type: ignore[no-untyped-def]
    enc: TabularEncoder = adult_test.extras["encoder"]
    frame = adult_test.extras["frame"].iloc[:300]
    back = enc.decode(adult_test.x[:300].numpy())
    for col in NUMERIC:
        lo, hi = enc.numeric[col]
        clipped = frame[col].clip(lo, hi).to_numpy(dtype=float)
        assert np.allclose(back[col].to_numpy(), clipped, atol=1e-3 * (hi - lo)), col
    for col in CATEGORICAL:
        assert back[col].tolist() == frame[col].fillna(MISSING).tolist(), col


def test_encoder_json_round_trip(adult_test) -> None:  # type: ignore[no-untyped-def]
    enc: TabularEncoder = adult_test.extras["encoder"]
    again = TabularEncoder.from_dict(json.loads(json.dumps(enc.to_dict())))
    frame = adult_test.extras["frame"].iloc[:200]
    assert np.array_equal(again.transform(frame), enc.transform(frame))
    assert again.feature_names == enc.feature_names


def test_conditions_fold_one_hot_back_and_use_raw_units(adult_test) -> None:  # type: ignore[no-untyped-def]
    enc: TabularEncoder = adult_test.extras["encoder"]
    male = enc.feature(enc.feature_names.index("sex=Male"))
    assert male.condition(0.5, above=True) == "sex == Male"
    assert male.condition(0.5, above=False) == "sex != Male"
    age = enc.feature(enc.feature_names.index("age"))
    lo, hi = enc.numeric["age"]
    assert (lo, hi) == (17.0, 90.0)
    assert age.condition((42.5 - lo) / (hi - lo), above=True) == "age > 42.5"
    assert age.condition((30.0 - lo) / (hi - lo), above=False) == "age <= 30"


def test_numeric_values_outside_training_range_are_clipped() -> None:
    enc = TabularEncoder.fit(pd.DataFrame({"a": [0.0, 10.0], "c": ["x", "y"]}), ["a"], ["c"])
    x = enc.transform(pd.DataFrame({"a": [-5.0, 5.0, 20.0], "c": ["y", "x", "x"]}))
    assert x.tolist() == [[0.0, 0.0, 1.0], [0.5, 1.0, 0.0], [1.0, 1.0, 0.0]]
    with pytest.raises(DataError, match=r"unknown category 'missing'"):
        enc.transform(pd.DataFrame({"a": [1.0], "c": ["?"]}))


# --- CSV files read with the card's encoder -------------------------------------------------

def _write(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


def test_raw_adult_csv_encodes_like_the_bundled_data(tmp_path: Path, adult_card: ModelCard,
                                                     adult_test) -> None:  # type: ignore[no-untyped-def]
    frame = read_raw("test").iloc[:400].copy()
    frame["income"] = frame["income"] + "."  # as in adult.test: the dot is ignored
    frame.loc[frame.index[:10], "workclass"] = "?"  # UCI's missing marker is understood
    data = load_data_file(_write(frame, tmp_path / "a.csv"), adult_card)
    expected = adult_test.x[:400].clone()
    enc: TabularEncoder = adult_test.extras["encoder"]
    wc = [i for i, f in enumerate(enc.features) if f.column == "workclass"]
    expected[:10, wc] = 0.0
    expected[:10, enc.feature_names.index("workclass=missing")] = 1.0
    assert torch.equal(data.x, expected)
    assert torch.equal(data.y, adult_test.y[:400])
    assert data.extras["sensitive"] == ["sex", "race"]
    assert data.feature_names == enc.feature_names


@pytest.mark.parametrize(("edit", "message"), [
    (lambda f: f.drop(columns=["sex"]), r"missing column\(s\) sex"),
    (lambda f: f.assign(workclass=["Astronaut", *list(f["workclass"][1:])]),
     r"column 'workclass' holds unknown category 'Astronaut'"),
    (lambda f: f.assign(age=["old", *list(f["age"][1:])]),
     r"column 'age' must be numeric; row 1 holds 'old'"),
    (lambda f: f.assign(hours_per_week=[None, *list(f["hours_per_week"][1:])]),
     r"column 'hours_per_week' must be numeric"),
    (lambda f: f.assign(income=["rich", *list(f["income"][1:])]), r"unknown label\(s\) rich"),
    (lambda f: f.drop(columns=["income"]), r"target column 'income' not found"),
])
def test_bad_csv_gets_one_line_error(tmp_path: Path, adult_card: ModelCard, edit,  # type: ignore[no-untyped-def]
                                     message: str) -> None:
    frame = edit(read_raw("test").iloc[:20].astype(object))
    with pytest.raises(DataError, match=message) as err:
        load_data_file(_write(frame, tmp_path / "bad.csv"), adult_card)
    assert "\n" not in str(err.value)


def test_any_card_with_an_encoder_reads_csv(tmp_path: Path) -> None:
    raw = pd.DataFrame({"size": [1.0, 3.0, 2.0, 4.0], "colour": ["red", "blue", "red", "?"],
                        "label": ["no", "yes", "no", "yes"]})
    enc = TabularEncoder.fit(raw, ["size"], ["colour"], target="label")
    card = ModelCard(name="toy", arch="x:Y", classes=["no", "yes"],
                     input=InputSpec(shape=(len(enc.feature_names),), kind="tabular"),
                     extra={"encoder": enc.to_dict()})
    data = load_data_file(_write(raw, tmp_path / "t.csv"), card, target="label")
    assert data.feature_names == ["size", "colour=blue", "colour=red", "colour=missing"]
    assert data.x.tolist()[3] == [1.0, 0.0, 0.0, 1.0]
    assert data.y.tolist() == [0, 1, 0, 1]
    assert card_encoder(dataclasses.replace(card, extra={})) is None


def test_numeric_csv_without_encoder_still_works(tmp_path: Path) -> None:
    raw = pd.DataFrame({"a": [0.1, 0.9], "b": [0.5, 0.2], "y": [0, 1]})
    card = ModelCard(name="toy", arch="x:Y", classes=["0", "1"],
                     input=InputSpec(shape=(2,), kind="tabular"))
    data = load_data_file(_write(raw, tmp_path / "n.csv"), card, target="y")
    assert data.x.tolist() == [[pytest.approx(0.1), 0.5], [pytest.approx(0.9), pytest.approx(0.2)]]


# --- the bundled model -------------------------------------------------------------------------

def test_adult_mlp_card_and_accuracy(adult_card: ModelCard, adult_test) -> None:  # type: ignore[no-untyped-def]
    loaded = load_model("adult-mlp")
    assert adult_card.dataset == "adult" and adult_card.input.kind == "tabular"
    assert adult_card.input.range == (0.0, 1.0)
    assert list(adult_card.input.shape) == [len(adult_test.feature_names)]
    assert adult_card.input.feature_names == adult_test.feature_names
    assert adult_card.sensitive == ["sex", "race"]
    enc = card_encoder(adult_card)
    assert enc is not None and enc.to_dict() == adult_test.extras["encoder"].to_dict()
    with torch.no_grad():
        acc = float((loaded.model(adult_test.x).argmax(1) == adult_test.y).float().mean())
    # the committed weights: a prediction near a tie may flip on another CPU type
    assert acc == pytest.approx(adult_card.metrics["test_accuracy"], abs=INFERENCE_TOLERANCE)
    assert acc > 0.84 > adult_card.metrics["majority_baseline_accuracy"] + 0.07
    assert (Path(models_dir() / "adult-mlp" / "model.safetensors").stat().st_size < 200_000)


@pytest.fixture(scope="module")
def retrained(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelCard, Path]:
    """``audit train adult-mlp`` run once here: its card and folder."""
    from audit.zoo import get_recipe

    out = tmp_path_factory.mktemp("adult-mlp")
    return get_recipe("adult-mlp").train(out, 0, True), out


def test_adult_recipe_reproduces_the_bundled_metrics(retrained: tuple[ModelCard, Path]) -> None:
    """Any machine: the same recipe, and the test accuracy within ACCURACY_TOLERANCE."""
    card, _ = retrained
    bundled = bundled_card("adult-mlp")
    assert without_build(card.recipe) == without_build(bundled["recipe"])
    assert card.metrics["test_accuracy"] == pytest.approx(bundled["metrics"]["test_accuracy"],
                                                          abs=ACCURACY_TOLERANCE)
    assert card.metrics["test_accuracy"] > 0.84


def test_adult_recipe_reproduces_the_bundled_weights(retrained: tuple[ModelCard, Path]) -> None:
    """Bit for bit, on the CPU type and torch build the card records (skipped elsewhere)."""
    skip_unless_same_build(bundled_card("adult-mlp")["recipe"])
    assert_same_weights(retrained[1] / "model.safetensors",
                        models_dir() / "adult-mlp" / "model.safetensors")


def test_adult_recipe_is_bitwise_deterministic_here(retrained: tuple[ModelCard, Path],
                                                    tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Same machine, same seed: the recipe trained twice gives the same bits (on any CPU type;
    two epochs, the full recipe's determinism is the same code), and the card records this
    machine's build."""
    from audit.training.bundle import BUILD_KEYS, training_build
    from audit.zoo import adult, get_recipe

    card, first = retrained
    assert {k: card.recipe[k] for k in BUILD_KEYS} == training_build()
    assert json.loads((first / "card.json").read_text())["recipe"] == card.recipe
    monkeypatch.setattr(adult, "EPOCHS", 2)
    a, b = (get_recipe("adult-mlp").train(tmp_path / run, 0, True) for run in ("a", "b"))
    assert_same_weights(tmp_path / "a" / "model.safetensors", tmp_path / "b" / "model.safetensors")
    assert a.metrics["test_accuracy"] == b.metrics["test_accuracy"] and a.recipe == b.recipe
