"""Disk-backed sample arrays, so that an audit's memory does not grow with its data.

Loaders build ``AuditData.x`` through a :class:`RowWriter`: chunks of decoded rows are kept in
memory while they are small and, once they pass :func:`spill_bytes`, written to an anonymous
temporary file (``TMPDIR``; unlinked at once, so nothing is left behind even after a kill) and
memory-mapped back. An uncompressed ``.npz`` member that is already float32 is mapped where it
lies (:func:`map_npz_member`). The result is an ordinary ``torch.Tensor``: checks index it as
before, and the kernel pages it in and out; its pages are file-backed and clean, so they do not
count against the process's anonymous memory and are dropped under pressure.

A mapped tensor is passed to another process (an isolated check, :mod:`audit.isolation`) by
reference: :class:`~audit.subject.AuditData` pickles it as a :class:`MappedRows` (the file's
path, offset and shape) that the receiver maps again, instead of copying its bytes. On Linux a
spill file is reached through ``/proc/PID/fd``; elsewhere a spilled tensor is copied.

``AUDIT_SPILL_MIB`` (default 64) sets the size above which data goes to disk; ``0`` sends all
of it there (the tests run the same audit both ways).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from audit.errors import DataError

DEFAULT_SPILL_MIB = 64
CHUNK_ROWS = 65_536
"""Rows per chunk when a whole array is scanned (validation, hashing, conversion)."""


def spill_bytes() -> int:
    """Bytes of sample data kept in memory before a loader spills to disk (``AUDIT_SPILL_MIB``)."""
    raw = os.environ.get("AUDIT_SPILL_MIB", str(DEFAULT_SPILL_MIB))
    try:
        mib = float(raw)
    except ValueError:
        raise DataError(f"AUDIT_SPILL_MIB must be a number of MiB, got {raw!r}") from None
    return max(0, int(mib * 2 ** 20))


@dataclass(frozen=True)
class MappedRows:
    """Where a memory-mapped float32 tensor lies: a file, the byte offset and the shape."""

    path: str
    offset: int
    shape: tuple[int, ...]

    def open(self) -> torch.Tensor:
        """Map the rows again (copy-on-write: the file is never written)."""
        return torch.from_numpy(np.memmap(self.path, dtype=np.float32, mode="c",
                                          offset=self.offset, shape=self.shape))


_TRACKED: dict[int, tuple[MappedRows, Any]] = {}


def _track(t: torch.Tensor, ref: MappedRows, keep: Any = None) -> torch.Tensor:
    """Remember where ``t`` is mapped from while ``t`` lives (``keep``: an open file that the
    path names, closed with it)."""
    ptr = t.data_ptr()
    _TRACKED[ptr] = (ref, keep)
    weakref.finalize(t, _TRACKED.pop, ptr, None)
    return t


def mapped_rows(t: torch.Tensor) -> MappedRows | None:
    """The :class:`MappedRows` behind ``t`` when ``t`` is a whole tracked mapping (not a view
    of part of one), else ``None``."""
    hit = _TRACKED.get(t.data_ptr())
    if hit is None or tuple(t.shape) != hit[0].shape or not t.is_contiguous() \
            or t.dtype != torch.float32:
        return None
    return hit[0]


class RowWriter:
    """Collects float32 row chunks of one per-sample ``shape`` into one tensor (module doc)."""

    def __init__(self, shape: tuple[int, ...], where: str) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.where = where
        self.rows = 0
        self._chunks: list[np.ndarray] = []
        self._held = 0
        self._file: IO[bytes] | None = None
        self._limit = spill_bytes()

    def append(self, chunk: np.ndarray | torch.Tensor) -> None:
        """Add rows ``(k, *shape)``; any numeric dtype is converted to float32."""
        arr = chunk.numpy() if isinstance(chunk, torch.Tensor) else chunk
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if tuple(arr.shape[1:]) != self.shape:
            raise DataError(f"{self.where}: a chunk of samples has shape {arr.shape[1:]}, "
                            f"expected {self.shape}")
        self.rows += len(arr)
        if self._file is None and self._held + arr.nbytes <= self._limit:
            self._chunks.append(arr)
            self._held += arr.nbytes
            return
        if self._file is None:
            self._file = _spill_file(self.where)
            for held in self._chunks:
                self._write(held)
            self._chunks, self._held = [], 0
        self._write(arr)

    def _write(self, arr: np.ndarray) -> None:
        assert self._file is not None
        try:
            self._file.write(arr.reshape(-1).view(np.uint8).data)
        except OSError as e:
            raise DataError(f"{self.where}: cannot spill the data to {tempfile.gettempdir()} "
                            f"({e.strerror}); set TMPDIR to a disk with room for "
                            f"{self.rows * 4 * int(np.prod(self.shape)) / 2**30:.2f} GiB") \
                from None

    def finish(self) -> torch.Tensor:
        """The rows as one float32 tensor ``(rows, *shape)``, memory-mapped if spilled."""
        if self._file is None:
            if not self._chunks:
                return torch.empty((0, *self.shape), dtype=torch.float32)
            out = self._chunks[0] if len(self._chunks) == 1 else np.concatenate(self._chunks)
            self._chunks = []
            return torch.from_numpy(out)
        self._file.flush()
        if self.rows == 0:
            return torch.empty((0, *self.shape), dtype=torch.float32)
        # mode "c": copy-on-write, so torch sees a writable array and the file stays as written
        mapped = np.memmap(self._file, dtype=np.float32, mode="c",
                           shape=(self.rows, *self.shape))
        t = torch.from_numpy(mapped)
        proc = Path(f"/proc/{os.getpid()}/fd/{self._file.fileno()}")
        if proc.exists():  # Linux: another process can map the unlinked file through here
            _track(t, MappedRows(str(proc), 0, tuple(t.shape)), keep=self._file)
        return t


def ensure_room(nbytes: int, what: str) -> None:
    """:class:`DataError` before decoding when ``nbytes`` of float32 samples will spill
    (:func:`spill_bytes`) and the temporary directory has less free space than that."""
    if nbytes <= spill_bytes():
        return
    folder = tempfile.gettempdir()
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if free < nbytes:
        raise DataError(f"{what} take {nbytes / 2**30:.1f} GiB as float32 but {folder} has "
                        f"{free / 2**30:.1f} GiB free; set TMPDIR to a larger disk or audit a "
                        "sample (a CSV listing some of the files)")


def _spill_file(where: str) -> IO[bytes]:
    try:
        return tempfile.TemporaryFile(prefix="audit-data-")
    except OSError as e:
        raise DataError(f"{where}: cannot create a spill file in {tempfile.gettempdir()} "
                        f"({e.strerror}); set TMPDIR to a writable disk") from None


def is_mapped(x: torch.Tensor) -> bool:
    """Whether ``x``'s storage lies in a file mapping (Linux ``/proc/self/maps``; False where
    that cannot be read)."""
    ptr = x.untyped_storage().data_ptr()
    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return False
    for line in maps:
        parts = line.split(maxsplit=5)
        lo, hi = (int(v, 16) for v in parts[0].split("-"))
        if lo <= ptr < hi:
            return len(parts) == 6 and parts[5].startswith("/")
    return False


def chunks(x: torch.Tensor, rows: int = CHUNK_ROWS) -> Iterator[torch.Tensor]:
    """``x`` in row blocks, so that a scan touches a bounded part of it at a time."""
    for start in range(0, int(x.shape[0]), rows):
        yield x[start:start + rows]


def _npy_header(fh: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Shape, Fortran order and dtype of the ``.npy`` array whose header starts at ``fh``'s
    position; ``fh`` is left at the first data byte."""
    version = np.lib.format.read_magic(fh)
    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
            else np.lib.format.read_array_header_2_0)
    shape, fortran, dtype = read(fh)
    return tuple(shape), bool(fortran), dtype


def map_npz_member(path: Path, name: str) -> np.ndarray | None:
    """``name`` (``"x"``) of an uncompressed ``.npz`` (``np.savez``) memory-mapped in place, or
    ``None`` when the member is compressed, absent, or not a plain C-order array; ``np.load``'s
    own ``mmap_mode`` does not map ``.npz`` members."""
    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo(f"{name}.npy")
        if info.compress_type != zipfile.ZIP_STORED:
            return None
        with open(path, "rb") as fh:
            fh.seek(info.header_offset)
            local = fh.read(30)
            if local[:4] != b"PK\x03\x04":
                return None
            name_len = int.from_bytes(local[26:28], "little")
            extra_len = int.from_bytes(local[28:30], "little")
            start = info.header_offset + 30 + name_len + extra_len
            fh.seek(start)
            shape, fortran, dtype = _npy_header(fh)
            offset = fh.tell()
    except (KeyError, OSError, ValueError, zipfile.BadZipFile):
        return None
    if fortran or dtype.hasobject or not shape:
        return None
    if offset - start + int(np.prod(shape)) * dtype.itemsize > info.file_size:
        return None  # truncated member: let np.load report it
    return np.memmap(path, dtype=dtype, mode="c", offset=offset, shape=tuple(shape))


def to_float32_rows(arr: np.ndarray, where: str) -> torch.Tensor:
    """``arr`` as a float32 tensor: zero-copy when it already is one, otherwise converted a
    chunk at a time through a :class:`RowWriter` (a mapped uint8 array stays out of memory)."""
    if arr.dtype == np.float32 and arr.flags.c_contiguous:
        t = torch.from_numpy(arr)
        if isinstance(arr, np.memmap) and arr.filename:
            _track(t, MappedRows(str(arr.filename), int(arr.offset), tuple(arr.shape)))
        return t
    writer = RowWriter(tuple(arr.shape[1:]), where)
    for start in range(0, len(arr), CHUNK_ROWS):
        writer.append(arr[start:start + CHUNK_ROWS])
    return writer.finish()


def read_npz_rows(path: Path, name: str, where: str) -> tuple[torch.Tensor, np.dtype] | None:
    """Member ``name`` of ``path`` as float32 rows without holding the stored array in memory:
    mapped in place (:func:`map_npz_member`) or, for a compressed member, decompressed a
    chunk at a time into a :class:`RowWriter`. Returns the tensor and the stored dtype, or
    ``None`` when the member is not a plain numeric C-order array (left to ``np.load``)."""
    mapped = map_npz_member(path, name)
    if mapped is not None:
        if not np.issubdtype(mapped.dtype, np.number):
            return None
        return to_float32_rows(mapped, where), mapped.dtype
    try:
        with zipfile.ZipFile(path) as zf, zf.open(f"{name}.npy") as fh:
            shape, fortran, dtype = _npy_header(fh)
            if fortran or dtype.hasobject or not shape or not np.issubdtype(dtype, np.number):
                return None
            tail = tuple(shape[1:])
            per_row = int(np.prod(tail)) * dtype.itemsize
            writer = RowWriter(tail, where)
            left = int(shape[0])
            while left:
                k = min(left, max(1, (8 * 2 ** 20) // max(per_row, 1)))
                raw = fh.read(k * per_row)
                if len(raw) != k * per_row:
                    raise DataError(f"{where}: array {name!r} is truncated; save it again")
                writer.append(np.frombuffer(raw, dtype=dtype).reshape(k, *tail))
                left -= k
            return writer.finish(), dtype
    except (KeyError, OSError, ValueError, zipfile.BadZipFile, EOFError, zlib.error):
        return None
