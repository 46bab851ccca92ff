"""Read a JSONL file (plain or gzip) as numbered lines, in bounded chunks, from a byte offset.

Lines come out as Arrow string arrays built over the file's own bytes (no Python object per
line), so the SQL fast path can scan them. Lines that are not valid UTF-8 or are over the size
limit are taken out here, each with its reason and the raw text as received. Gzip data that is
cut short or corrupt yields the complete lines before the break, then the rest as one rejection.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

CHUNK_BYTES = 32 * 1024 * 1024
GZIP_MAGIC = b"\x1f\x8b"
BOM = b"\xef\xbb\xbf"


@dataclass
class LineChunk:
    """Consecutive lines of one file: ``lines[i]`` is line number ``line_no[i]`` (1-based), with
    its line ending still attached; ``rejected`` holds (line number, reason, raw text); ``error``
    says why the rest of the file cannot be read, when it cannot."""

    line_no: pa.Array
    lines: pa.Array
    rejected: list[tuple[int, str, str]] = field(default_factory=list)
    error: str | None = None


@dataclass
class ReadState:
    """Where reading stopped: the byte offset after the last line read, and its line number."""

    offset: int = 0
    line: int = 0


class BrokenGzip(Exception):
    """Gzip data that ends early or is corrupt; the message says where and why."""


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == GZIP_MAGIC


def read_blocks(path: Path, offset: int = 0, size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The bytes of ``path`` from ``offset`` in blocks of about ``size``, gzip decompressed (then
    always from the start). Gzip data that is cut short or corrupt raises BrokenGzip after the
    last block that could be read: nothing decompressed before the break is lost."""
    if not is_gzip(path):
        with open(path, "rb") as handle:
            handle.seek(offset)
            while block := handle.read(size):
                yield block
        return
    with gzip.open(path, "rb") as handle:
        parts: list[bytes] = []
        done = got = 0
        while True:
            try:
                part = handle.read1(size - got)  # one decompression step: a break loses nothing read
            except (EOFError, OSError, zlib.error) as exc:
                if parts:
                    yield b"".join(parts)
                raise BrokenGzip(f"the gzip data is cut short or corrupt after {done + got:,} bytes of content "
                                 f"({type(exc).__name__}: {exc}); the rest of the file cannot be read") from exc
            if part:
                parts.append(part)
                got += len(part)
            if parts and (got >= size or not part):
                yield b"".join(parts)
                parts, done, got = [], done + got, 0
            if not part:
                return


def read_lines(path: Path, state: ReadState, *, final: bool, max_record_bytes: int,
               chunk_bytes: int = CHUNK_BYTES) -> Iterator[LineChunk]:
    """Chunks of the lines of ``path`` after ``state`` (advanced past each chunk as it is yielded).

    A last line without a newline is read only when ``final`` (the file is settled); otherwise it
    is left for a later read. Gzip files are always read from the start; when their data breaks
    off, the last chunk rejects the unfinished line and carries the ``error``.
    """
    blocks = read_blocks(path, state.offset, chunk_bytes)
    rest = b""
    while True:
        try:
            block, error = next(blocks, b""), None
        except BrokenGzip as exc:
            block, error = b"", str(exc)
        data = rest + block if rest else block
        if not state.line and not state.offset and data.startswith(BOM):
            data, state.offset = data[len(BOM):], len(BOM)  # a byte-order mark is not part of line 1
        cut = len(data) if not block and final and not error else data.rfind(b"\n") + 1
        if cut:
            chunk = _chunk(memoryview(data)[:cut], state.line, max_record_bytes)  # a view: no copy
            state.offset += cut
            state.line += data.count(b"\n", 0, cut) + (0 if data[cut - 1:cut] == b"\n" else 1)
            yield chunk
        rest = data[cut:]
        if error:
            raw = rest.decode("utf-8", errors="replace")[:max_record_bytes]
            yield LineChunk(pa.array([], pa.int64()), pa.array([], pa.large_string()),
                            [(state.line + 1, error, raw)], error)
            return
        if not block:
            return


def _chunk(data: memoryview, first_line: int, max_record_bytes: int) -> LineChunk:
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10) + 1
    if not len(ends) or ends[-1] != len(data):
        ends = np.append(ends, len(data))
    offsets = np.concatenate([[0], ends]).astype(np.int64)
    count = len(ends)
    line_no = np.arange(first_line + 1, first_line + count + 1, dtype=np.int64)
    lines = pa.LargeStringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(data))
    drop = np.diff(offsets) > max_record_bytes  # candidates only: exact length is checked below
    rejected: list[tuple[int, str, str]] = []
    bad = set(np.flatnonzero(drop).tolist())
    try:
        lines.validate(full=True)
    except pa.ArrowInvalid:
        bad |= _invalid_utf8_lines(data, offsets)
    for i in sorted(bad):
        raw = bytes(data[offsets[i]:offsets[i + 1]]).rstrip(b"\r\n")
        text = raw.decode("utf-8", errors="replace")
        drop[i] = True
        if not raw.strip():
            continue  # a blank line, skipped like any other
        if len(raw) > max_record_bytes:
            rejected.append((int(line_no[i]), f"record is {len(raw):,} bytes, over the "
                             f"{max_record_bytes:,}-byte limit", text[:max_record_bytes]))
        else:
            try:
                raw.decode("utf-8")
                drop[i] = False  # long only by its line ending
            except UnicodeDecodeError as exc:
                rejected.append((int(line_no[i]), f"invalid UTF-8 at byte {exc.start}", text[:max_record_bytes]))
    if not bad:
        return LineChunk(pa.array(line_no), lines)
    mask = pa.array(~drop)
    as_binary = pa.Array.from_buffers(pa.large_binary(), count, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    good = as_binary.filter(mask).cast(pa.large_string())
    return LineChunk(pa.array(line_no).filter(mask), good, rejected)


def _invalid_utf8_lines(data: memoryview, offsets: np.ndarray) -> set[int]:
    """Indexes of the lines of ``data`` (line i is ``offsets[i]:offsets[i + 1]``) that are not
    valid UTF-8; only lines with a byte over 0x7f can be such, and only those are decoded."""
    high = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) >= 0x80)
    candidates = np.unique(np.searchsorted(offsets, high, side="right") - 1).tolist()
    return {i for i in candidates if not _is_utf8(bytes(data[offsets[i]:offsets[i + 1]]))}


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def chunk_from_strings(line_no: pa.Array, lines: pa.Array, max_record_bytes: int) -> LineChunk:
    """A chunk of already-decoded records (for example Parquet rows as JSON text)."""
    over = pc.greater(pc.binary_length(lines), max_record_bytes)
    if not pc.any(over).as_py():
        return LineChunk(line_no, lines)
    rejected = [(int(n), f"record is {len(t.encode()):,} bytes, over the {max_record_bytes:,}-byte limit",
                 t[:max_record_bytes]) for n, t in zip(line_no.filter(over).to_pylist(), lines.filter(over).to_pylist())]
    keep = pc.invert(over)
    return LineChunk(line_no.filter(keep), lines.filter(keep), rejected)
