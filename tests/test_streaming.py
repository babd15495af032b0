"""Streaming data: large inputs are memory-mapped or read in chunks, and give the same audit."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from audit.datasets.adult import read_raw
from audit.datasets.files import load_data_file
from audit.errors import DataError
from audit.loading import load_model
from audit.store import RowWriter, is_mapped, map_npz_member, spill_bytes
from audit.subject import AuditData
from tests.test_determinism import _without_timings


def test_writer_keeps_small_data_in_memory_and_spills_large(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(3)
    parts = [rng.random((n, 4, 2)) for n in (5, 0, 11, 7)]
    monkeypatch.setenv("AUDIT_SPILL_MIB", str(16 * 8 * 4 / 2 ** 20))  # 16 rows fit; 23 do not
    writer = RowWriter((4, 2), "t")
    for p in parts:
        writer.append(p)
    spilled = writer.finish()
    monkeypatch.setenv("AUDIT_SPILL_MIB", "256")
    small = RowWriter((4, 2), "t")
    for p in parts:
        small.append(p)
    held = small.finish()
    expect = np.concatenate(parts).astype(np.float32)
    assert is_mapped(spilled) and not is_mapped(held)
    assert spilled.dtype == held.dtype == torch.float32
    assert np.array_equal(spilled.numpy(), expect) and np.array_equal(held.numpy(), expect)
    with pytest.raises(DataError, match="expected"):
        small.append(np.zeros((1, 3)))


def test_spill_size_is_validated(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("AUDIT_SPILL_MIB", "lots")
    with pytest.raises(DataError, match="AUDIT_SPILL_MIB"):
        spill_bytes()


def _digits_card():  # type: ignore[no-untyped-def]
    return load_model("digits-cnn").card


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
@pytest.mark.parametrize("compressed", [False, True])
def test_npz_is_mapped_or_streamed_and_equals_np_load(tmp_path: Path, monkeypatch, dtype: str,  # type: ignore[no-untyped-def]
                                                      compressed: bool) -> None:
    monkeypatch.setenv("AUDIT_SPILL_MIB", "0")
    rng = np.random.default_rng(1)
    x = rng.random((300, 1, 8, 8)).astype(dtype)
    y = rng.integers(0, 10, 300)
    path = tmp_path / "d.npz"
    (np.savez_compressed if compressed else np.savez)(path, x=x, y=y)
    data = load_data_file(path, _digits_card())
    assert np.array_equal(data.x.numpy(), x.astype(np.float32))
    assert np.array_equal(data.y.numpy(), y)
    assert is_mapped(data.x)  # mapped in place, or streamed into the spill file
    in_place = map_npz_member(path, "x")
    assert (in_place is not None) == (not compressed)


def test_truncated_npz_member_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((50, 1, 8, 8), np.float32), y=np.zeros(50, np.int64))
    blob = path.read_bytes()
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("x.npy")
    cut = tmp_path / "cut.npz"
    cut.write_bytes(blob[:info.header_offset + 400])
    with pytest.raises(DataError):
        load_data_file(cut, _digits_card())


def _adult_csv(tmp_path: Path, n: int, seed: int) -> Path:
    test = read_raw("test")
    rows = test.iloc[np.random.default_rng(seed).integers(0, len(test), n)]
    path = tmp_path / f"adult-{n}.csv"
    rows.to_csv(path, index=False)
    return path


def test_csv_in_chunks_equals_one_read(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import audit.datasets.tabular as tabular

    card = load_model("adult-mlp").card
    path = _adult_csv(tmp_path, 1000, seed=7)
    whole = load_data_file(path, card, target="income")
    monkeypatch.setattr(tabular, "CSV_CHUNK_ROWS", 37)
    monkeypatch.setenv("AUDIT_SPILL_MIB", "0")
    chunked = load_data_file(path, card, target="income")
    assert is_mapped(chunked.x) and not is_mapped(whole.x)
    assert torch.equal(whole.x, chunked.x) and torch.equal(whole.y, chunked.y)
    assert whole.extras["frame"].equals(chunked.extras["frame"])
    assert whole.sha256 == chunked.sha256


def test_csv_error_in_a_later_chunk_names_the_file_row(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import audit.datasets.tabular as tabular

    path = _adult_csv(tmp_path, 200, seed=2)
    lines = path.read_text().splitlines()
    cells = lines[150].split(",")  # data row 150 (line 151: the header is line 1)
    cells[0] = "old"
    lines[150] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(tabular, "CSV_CHUNK_ROWS", 40)
    with pytest.raises(DataError, match=r"'age' must be numeric; row 150 holds 'old'"):
        load_data_file(path, load_model("adult-mlp").card, target="income")


def test_hash_reads_blocks_and_equals_the_whole_bytes() -> None:
    from audit.result import sha256_bytes

    x = torch.randn(70_001, 3, 2)
    y = torch.arange(70_001)
    data = AuditData("a", x, y, "tabular", ["a"])
    assert data.sha256 == sha256_bytes(x.numpy().tobytes(), y.numpy().tobytes())


@pytest.mark.parametrize("model,extra", [
    ("adult-mlp", ["--target", "income", "--checks",
                   "performance,saliency,surrogate,robustness,fairness,slices"]),
    ("digits-cnn", ["--checks", "performance,robustness,saliency,slices"]),
])
def test_audit_of_spilled_data_equals_in_memory(tmp_path: Path, monkeypatch, model: str,  # type: ignore[no-untyped-def]
                                                extra: list[str]) -> None:
    from audit.cli import main
    from audit.datasets import load_dataset

    if model == "adult-mlp":
        data = _adult_csv(tmp_path, 3000, seed=11)
    else:
        d = load_dataset("digits", "test")
        data = tmp_path / "digits.npz"
        np.savez(data, x=d.x.numpy(), y=d.y.numpy())
    docs = []
    for spill in ("256", "0"):
        monkeypatch.setenv("AUDIT_SPILL_MIB", spill)
        out = tmp_path / "r.html"  # one path: it is part of the recorded command
        assert main(["run", model, "--data", str(data), "--quick", "--no-progress",
                     "--out", str(out), *extra]) in (0, 1)
        docs.append(_without_timings(json.loads(out.with_suffix(".json").read_text())))
    assert all(s["status"] != "error" for s in docs[0]["sections"])
    assert json.dumps(docs[0]) == json.dumps(docs[1])


def test_slice_counts_over_row_blocks_equal_one_product(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import audit.slices.search as search

    rng = np.random.default_rng(5)
    matrix = rng.random((3000, 12)) < 0.3
    groups = np.repeat(np.arange(6), 2)
    rows = np.sort(rng.choice(3000, 1400, replace=False))
    failed = rng.random(1400) < 0.2
    whole = search.count_conjunctions(matrix[rows], failed, groups, support=20,
                                      max_conditions=3)
    monkeypatch.setattr(search, "BLOCK_ELEMENTS", 12 * 97)  # 97 rows per block
    blocked = search.count_conjunctions(matrix, failed, groups, support=20, max_conditions=3,
                                        rows=rows)
    assert whole.members == blocked.members and len(whole.members) > 50
    for field in ("size", "errors", "z", "kept"):
        assert np.array_equal(getattr(whole, field), getattr(blocked, field))


def test_bootstrap_resamples_do_not_depend_on_the_chunk() -> None:
    from audit.fairness.stats import bootstrap_indices

    small = np.concatenate(list(bootstrap_indices(500, 37, 3, chunk=1)))
    default = np.concatenate(list(bootstrap_indices(500, 37, 3)))
    assert small.shape == (37, 500) and np.array_equal(small, default)
    # the default chunk shrinks with the rows: 2M indices at most
    assert max(len(c) for c in bootstrap_indices(400_000, 12, 0)) == 5


@pytest.mark.parametrize("source", ["spill", "npz"])
def test_mapped_data_pickles_by_reference(tmp_path: Path, monkeypatch, source: str) -> None:  # type: ignore[no-untyped-def]
    import pickle

    monkeypatch.setenv("AUDIT_SPILL_MIB", "0")
    x = np.random.default_rng(0).random((400, 1, 8, 8)).astype(np.float32)
    if source == "npz":
        path = tmp_path / "d.npz"
        np.savez(path, x=x, y=np.zeros(400, np.int64))
        data = load_data_file(path, _digits_card())
    else:
        w = RowWriter((1, 8, 8), "t")
        w.append(x)
        data = AuditData("a", w.finish(), torch.zeros(400, dtype=torch.long), "image", ["a"])
    blob = pickle.dumps(data)
    assert len(blob) < x.nbytes / 10  # the rows are not in the pickle
    back = pickle.loads(blob)
    assert is_mapped(back.x) and np.array_equal(back.x.numpy(), x)
    # a subset is a copy in memory, and pickles its bytes
    part = pickle.loads(pickle.dumps(data.subset([3, 1])))
    assert np.array_equal(part.x.numpy(), x[[3, 1]])


def test_image_folder_decodes_into_the_spill_file(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    card = load_model("shapes-cnn").card
    rng = np.random.default_rng(4)
    for i in range(40):
        folder = tmp_path / "imgs" / card.classes[i % len(card.classes)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
            folder / f"{i}.png")
    held = load_data_file(tmp_path / "imgs", card)
    monkeypatch.setenv("AUDIT_SPILL_MIB", "0")
    from audit.datasets.folders import load_image_folder

    spilled = load_image_folder(tmp_path / "imgs", card, workers=2)
    assert is_mapped(spilled.x) and not is_mapped(held.x)
    assert torch.equal(spilled.x, held.x) and torch.equal(spilled.y, held.y)


def test_no_forward_pass_takes_the_whole_data(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Every stage moves batches to the device, never the whole (mapped) data."""
    from audit.datasets import load_dataset
    from audit.runner import run_audit

    monkeypatch.setenv("AUDIT_SPILL_MIB", "0")
    train = load_dataset("digits", "train")
    idx = np.random.default_rng(0).integers(0, len(train), 4000)
    path = tmp_path / "d.npz"
    np.savez(path, x=train.x.numpy()[idx], y=train.y.numpy()[idx])
    loaded = load_model("digits-cnn")
    seen: list[int] = []
    loaded.model.register_forward_pre_hook(lambda _m, args: seen.append(int(args[0].shape[0])))
    result = run_audit(loaded, data=str(path), quick=True, isolate=False, seed=0,
                       checks=["performance", "robustness", "saliency", "surrogate", "slices"])
    assert all(s.status != "error" for s in result.sections)
    assert seen and sum(seen) > 4000  # every row was predicted, in batches
    assert max(seen) <= 1024, max(seen)  # the largest batch of any stage (256 here)
