"""Ingest trace files into raw_traces / rejected_traces, incrementally and exactly once.

Per file, the format is detected (JSONL, a JSON document or array, Parquet; gzip by its magic
bytes) and each record validated; bad records go to rejected_traces with ``file:line`` (or
``file[index]`` for an item of a JSON array), the reason and the raw text, while every good
record of the file is ingested. The ``ingested_files`` ledger remembers what was read: an
unchanged file is not read again, and a plain JSONL file that grew is read from where reading
stopped. A file still being written is handled so that nothing is ingested half: names starting
with '.' or ending in '.tmp'/'.part' are skipped; a file modified within ``settle_seconds`` has
only its complete (newline-terminated) lines read, and other formats wait until it settles.

No input stops ingestion: a bad record is rejected alone, gzip data that breaks off keeps the
records before the break, and a file whose reading fails (a corrupt Parquet file, an unreadable
file, any unexpected error) becomes one rejected_traces row at its path with the error; the
other files go on. Such a file is tried again on the next run (it resumes after its last
committed chunk), its row replaced, so it keeps being reported until it is fixed or removed.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

from pipeline.engine.core import lake, store
from pipeline.engine.core.store import transaction
from pipeline.engine.ingest.display import store_display_texts
from pipeline.engine.ingest.formats import to_trace
from pipeline.engine.ingest.lines import (
    CHUNK_BYTES,
    BrokenGzip,
    LineChunk,
    ReadState,
    chunk_from_strings,
    is_gzip,
    read_blocks,
    read_lines,
)
from pipeline.engine.ingest.records import (
    PREVIEW,
    RECORD_SCHEMA,
    REJECTED_SCHEMA,
    TRACE_SCHEMA,
    RecordError,
    normalise_record,
    one_record,
    rejection,
    rejections_preview,
)
from pipeline.engine.ingest.sql import insert_records, parse_sql, python_rows, settle_new_traces
from pipeline.engine.tasks import Task

TRACE_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet")
PARTIAL_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload")
_HASHED_BYTES = 64 * 1024
#: Write-ahead log size that triggers a checkpoint while ingesting (see _one_checkpoint).
WAL_LIMIT = "1GB"


@dataclass
class IngestReport:
    """What one ingestion did. ``records`` counts non-blank lines (or items, rows) read now;
    ``duplicates`` are valid records whose trace id was already ingested (or seen earlier); a
    file rejected whole (unknown format, or its reading failed) counts as one record, rejected.
    ``files_quarantined`` are the files whose reading failed or broke off (see the module docstring)."""

    files_read: list[str] = field(default_factory=list)
    files_unchanged: int = 0
    files_waiting: list[str] = field(default_factory=list)
    files_quarantined: list[str] = field(default_factory=list)
    records: int = 0
    ingested: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejections: list[dict[str, Any]] = field(default_factory=list)

    def rejections_preview(self) -> pl.DataFrame:
        """Up to the first 20 rejections of this ingestion (location, reason)."""
        return rejections_preview(self.rejections)

    def counts(self) -> dict[str, int]:
        """The counts a person wants to see, by name."""
        return {"files read": len(self.files_read), "files unchanged": self.files_unchanged,
                "files waiting to settle": len(self.files_waiting),
                "files quarantined": len(self.files_quarantined), "records read": self.records,
                "ingested": self.ingested, "duplicates": self.duplicates, "rejected": self.rejected}


def _is_partial(name: str) -> bool:
    return name.startswith(".") or name.endswith(PARTIAL_SUFFIXES)


def _candidates(paths: list[str]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            yield path
        elif path.is_dir():
            for file in sorted(path.rglob("*")):
                if file.is_file() and not any(part.startswith(".") for part in file.relative_to(path).parts):
                    yield file


def discover(paths: list[str]) -> list[Path]:
    """Trace files under ``paths`` (files, or folders searched recursively), sorted; hidden and
    partially written files (and files in hidden folders) are skipped."""
    return sorted({f for f in _candidates(paths) if f.name.endswith(TRACE_SUFFIXES) and not _is_partial(f.name)})


def watched_files(paths: list[str]) -> list[Path]:
    """Every file ingestion reads or reports under ``paths``: :func:`discover`'s and
    :func:`unknown_files`' together, in one walk."""
    return sorted({f for f in _candidates(paths) if not _is_partial(f.name)})


def unknown_files(paths: list[str]) -> list[Path]:
    """Files in the folders of ``paths`` that are neither trace files nor partially written:
    they are reported as rejected (unknown format) rather than silently ignored."""
    return sorted({f for f in _candidates(paths) if not f.name.endswith(TRACE_SUFFIXES) and not _is_partial(f.name)})


def files_stamp(files: list[Path]) -> tuple[str, int]:
    """A hash of the files' paths, sizes and modification times, and how many there are: it
    changes when a file is added, removed, grown or rewritten, without reading any."""
    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        digest.update(f"{path}\x1f{stat.st_size}\x1f{stat.st_mtime_ns}\x1e".encode())
    return digest.hexdigest()[:16], len(files)


def parse_text(text: str, task: Task) -> dict[str, Any]:
    """One record's JSON text as a RECORD_SCHEMA row (without ``seq``); raises RecordError."""
    with one_record():
        try:
            record = _DECODER.decode(text)
        except json.JSONDecodeError as exc:
            raise RecordError(f"malformed JSON: {exc.msg.removesuffix(' at')} at column {exc.colno}") from exc
        return from_decoded(record, task)


def from_decoded(record: Any, task: Task) -> dict[str, Any]:
    """A decoded JSON record (any format) as a RECORD_SCHEMA row (without ``seq``); a top-level
    key given twice is refused, since JSON readers disagree on which value it holds."""
    if isinstance(record, _KeyGivenTwice):
        raise RecordError(f"key {record.twice!r} given twice")
    return checked(to_trace(record, task), task)


def checked(record: Any, task: Task) -> dict[str, Any]:
    """``record`` (project format) normalised, refusing text that cannot be stored as UTF-8."""
    row = normalise_record(record, task)
    for key in ("trace_id", "input", "output", "model", "error", "metadata"):
        if isinstance(row[key], str):
            try:
                row[key].encode("utf-8")
            except UnicodeEncodeError as exc:
                raise RecordError(f"{key} holds an unpaired surrogate escape ({row[key][exc.start]!r})") from exc
    return row


def _no_constant(name: str) -> None:
    raise RecordError(f"malformed JSON: {name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise RecordError(f"malformed JSON: number {text} is out of range")
    return value


class _KeyGivenTwice(dict):
    """A decoded JSON object one of whose keys was given twice (``twice``; the last value kept)."""

    twice: str


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) < len(pairs):
        seen: set[str] = set()
        obj = _KeyGivenTwice(obj)
        obj.twice = next(k for k, _ in pairs if k in seen or seen.add(k))
    return obj


#: How every JSON record is decoded (NaN, Infinity and out-of-range numbers refused).
_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite, object_pairs_hook=_object)


class FileIngest:
    """Ingests one file's records; the caller commits after each step (:meth:`flush` first, then
    :meth:`committed`, or :meth:`rolled_back` when the step failed). ``error`` says why the file
    could not be read to its end, when it could not."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, path: Path, task: Task, source: str,
                 max_record_bytes: int, now: datetime, ordered: bool = False):
        self.conn, self.path, self.task, self.source = conn, path, task, source
        self.ordered = ordered
        self.max_record_bytes, self.now = max_record_bytes, now
        self.records = self.ingested = self.rejected = 0
        self.error: str | None = None
        self.preview: list[dict[str, Any]] = []
        self._pending: list[dict[str, Any]] = []
        self._parse = parse_sql(task)
        self._saved = self._counts()

    def _counts(self) -> tuple[int, int, int, int]:
        return self.records, self.ingested, self.rejected, len(self.preview)

    def committed(self) -> None:
        """The step's writes are committed: its counts stand."""
        self._saved = self._counts()

    def rolled_back(self) -> None:
        """The step's writes were rolled back: back to the counts of the last commit."""
        self.records, self.ingested, self.rejected, shown = self._saved
        del self.preview[shown:]
        self._pending = []

    def reject(self, location: str, reason: str, raw: str) -> None:
        row = rejection(self.source, location, reason, raw[:self.max_record_bytes], self.now)
        self._pending.append(row)
        self.rejected += 1
        if len(self.preview) < PREVIEW:
            self.preview.append(row)

    def flush(self) -> None:
        """Write the rejections collected since the last flush (replacing by source, location)."""
        if self._pending:
            write_rejected(self.conn, self._pending)
            self._pending = []

    def lines(self, chunk: LineChunk) -> None:
        """A chunk of JSONL lines: SQL fast path, suspects through the Python path."""
        bad = list(chunk.rejected)
        self.records += len(bad)
        self.error = self.error or chunk.error
        lines = pa.table({"line_no": chunk.line_no, "line": chunk.lines})
        # several record batches, so DuckDB scans them on all threads (none when every line was dropped)
        self.conn.register("chunk", pa.Table.from_batches(lines.to_batches(max_chunksize=16_384), lines.schema))
        try:
            self.conn.execute(self._parse)
        finally:
            self.conn.unregister("chunk")
        parsed, suspects = self.conn.execute("SELECT count(*), count(*) FILTER (NOT ok) FROM _parsed").fetchone()
        self.records += parsed
        rows = []
        if suspects:
            numbers = [n for (n,) in self.conn.execute("SELECT line_no FROM _parsed WHERE NOT ok ORDER BY line_no").fetchall()]
            at = np.searchsorted(chunk.line_no.to_numpy(), numbers)
            for line_no, text in zip(numbers, chunk.lines.take(pa.array(at)).to_pylist()):
                text = text.rstrip("\r\n")
                if not text.strip(" \t\r\n\x0b\x0c"):
                    self.records -= 1  # a blank line is not a record
                    continue
                try:
                    rows.append({**parse_text(text, self.task), "seq": line_no})
                except RecordError as exc:
                    bad.append((line_no, str(exc), text))
        for line_no, reason, raw in sorted(bad, key=lambda b: b[0]):
            self.reject(f"{self.path}:{line_no}", reason, raw)
        fast = (f"SELECT line_no AS seq, trace_id, '{self.task.name.replace(chr(39), chr(39) * 2)}' AS task, ts, input, "
                "output, model, latency_ms, prompt_tokens, completion_tokens, error, metadata, input_keys FROM _parsed WHERE ok")
        self._insert(rows, fast)
        self.conn.execute("DROP TABLE _parsed")

    def items(self, document: JsonDocument) -> None:
        """The decoded records of a JSON document with their locations, through the Python path;
        where the document breaks off, the rest is rejected."""
        rows = []
        for seq, (location, item) in enumerate(document.items):
            self.records += 1
            raw = ""
            try:
                with one_record():
                    raw = json.dumps(item, ensure_ascii=False, default=str)
                    size = len(raw.encode("utf-8", errors="replace"))
                    if size > self.max_record_bytes:
                        raise RecordError(f"record is {size:,} bytes, over the {self.max_record_bytes:,}-byte limit")
                    rows.append({**from_decoded(item, self.task), "seq": seq})
            except RecordError as exc:
                self.reject(location, str(exc), raw)
        if document.error:
            self.records += 1
            self.error = document.error
            self.reject(f"{self.path}[{len(document.items)}]", document.error, document.rest)
        self._insert(rows)

    def _insert(self, rows: list[dict[str, Any]], fast: str | None = None) -> None:
        self.conn.register("py_rows", pl.DataFrame(rows, schema=RECORD_SCHEMA).to_arrow())
        try:
            relation = f"({fast} UNION ALL BY NAME SELECT * FROM {python_rows('py_rows')})" if fast else python_rows("py_rows")
            self.ingested += insert_records(self.conn, relation, self.source, self.now, self.ordered)
        finally:
            self.conn.unregister("py_rows")


def _file_format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith((".json", ".json.gz")):
        return "json"
    return "jsonl-gzip" if is_gzip(path) else "jsonl"


@dataclass
class JsonDocument:
    """The records of a JSON array file (or the one object of a JSON document) with their
    locations; when its gzip data breaks off, ``error`` says why and ``rest`` is the text after
    the last complete record of the array."""

    items: list[tuple[str, Any]]
    error: str | None = None
    rest: str = ""


_SEPARATOR = re.compile(r"[ \t\n\r]*,?[ \t\n\r]*")


def _json_document(path: Path) -> JsonDocument | None:
    """The records of a JSON document file, or None when the file is not one JSON document
    (then it is read as JSONL, which also keeps the lines before a break in gzip data)."""
    parts, error = [], None
    try:
        parts += read_blocks(path)
    except BrokenGzip as exc:
        error = str(exc)
    data = b"".join(parts)
    try:
        text = data.decode(json.detect_encoding(data), "replace" if error else "surrogatepass")
        document = _DECODER.decode(text)
    except (ValueError, RecursionError):  # RecordError and UnicodeDecodeError are ValueErrors
        return _array_prefix(path, text, error) if error and text.lstrip().startswith("[") else None
    items = document if isinstance(document, list) else [document]
    return JsonDocument([(f"{path}[{i}]", item) for i, item in enumerate(items)], error)


def _array_prefix(path: Path, text: str, error: str) -> JsonDocument:
    """The complete records of a JSON array whose text breaks off, and the text after them."""
    items: list[tuple[str, Any]] = []
    at = text.index("[") + 1
    while True:
        at = _SEPARATOR.match(text, at).end()
        try:
            item, at = _DECODER.raw_decode(text, at)
        except (ValueError, RecursionError):
            return JsonDocument(items, error, text[at:])
        items.append((f"{path}[{len(items)}]", item))


def _parquet_chunks(conn: duckdb.DuckDBPyConnection, path: Path, max_record_bytes: int) -> Iterator[LineChunk]:
    """Parquet rows as JSON text records numbered from 1 (``input``/``metadata`` columns holding
    JSON text are embedded as JSON; timestamps become ISO-8601)."""
    cursor = conn.cursor()
    try:
        columns = cursor.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(path)]).fetchall()
        fields = []
        for name, kind, *_ in columns:
            col = '"' + name.replace('"', '""') + '"'
            if kind == "TIMESTAMP WITH TIME ZONE":
                expr = f"strftime(timezone('UTC', {col}), '%Y-%m-%dT%H:%M:%S.%fZ')"
            elif kind.startswith("TIMESTAMP"):
                expr = f"strftime({col}::TIMESTAMP, '%Y-%m-%dT%H:%M:%S.%f')"
            elif kind in ("VARCHAR", "JSON") and name in ("input", "metadata"):
                expr = f"CASE WHEN json_valid({col}) THEN {col}::JSON ELSE to_json({col}) END"
            else:
                expr = col
            fields.append(f"{col} := {expr}")
        reader = cursor.execute(
            f"SELECT file_row_number + 1 AS line_no, to_json(struct_pack({', '.join(fields)}))::VARCHAR AS line "
            "FROM read_parquet(?, file_row_number = true) ORDER BY file_row_number", [str(path)]
        ).to_arrow_reader(100_000)
        for batch in reader:
            yield chunk_from_strings(batch.column("line_no"), batch.column("line"), max_record_bytes)
    finally:
        cursor.close()


def _hash(path: Path, start: int, end: int) -> str:
    with open(path, "rb") as handle:
        handle.seek(start)
        return hashlib.sha256(handle.read(max(0, end - start))).hexdigest()


def _ledger_entry(conn: duckdb.DuckDBPyConnection, source: str, path: Path) -> dict[str, Any] | None:
    row = conn.execute("SELECT * FROM ingested_files WHERE source = ? AND path = ?", [source, str(path)])
    names = [d[0] for d in row.description]
    found = row.fetchone()
    return dict(zip(names, found)) if found else None


def _resume_state(path: Path, entry: dict[str, Any], size: int) -> ReadState | None:
    """Where to continue a plain JSONL file that only grew since it was read, else None."""
    offset = entry["offset_bytes"]
    if entry["format"] != "jsonl" or size < offset:
        return None
    head = _hash(path, 0, min(offset, _HASHED_BYTES))
    tail = _hash(path, max(0, offset - _HASHED_BYTES), offset)
    if head != entry["head_hash"] or tail != entry["tail_hash"]:
        return None
    return ReadState(offset=offset, line=entry["lines"])


@contextmanager
def _one_checkpoint(conn: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Within the block, a commit only appends to the write-ahead log (still durable) until the
    log passes WAL_LIMIT, instead of also checkpointing (compressing and writing the rows into
    the database file) past the default 16 MiB, that is after nearly every chunk; one checkpoint
    follows at the end. The limit bounds the memory held by rows not yet checkpointed. On DuckLake
    (each commit writes Parquet files; CHECKPOINT there is maintenance) nothing changes."""
    if lake.is_lake_connection(conn):
        yield
        return
    try:
        before = conn.execute("SELECT current_setting('checkpoint_threshold')").fetchone()[0]
        conn.execute(f"SET checkpoint_threshold = '{WAL_LIMIT}'")
    except duckdb.Error:
        before = None  # a database without the setting (a remote one): commits as usual
    try:
        yield
    finally:
        if before is not None:
            conn.execute(f"SET checkpoint_threshold = '{before}'")
    if before is not None:
        try:
            conn.execute("CHECKPOINT")
        except duckdb.TransactionException:
            pass  # another connection is writing: DuckDB checkpoints after a later commit


def file_batch(path: Path, batches: int) -> int:
    """Which of ``batches`` file batches ``path`` belongs to: a stable hash of its path, so runs
    ingesting batches 0..batches-1 at once (on DuckLake) share the files without listing them."""
    return int(hashlib.md5(str(path).encode()).hexdigest(), 16) % batches


def ingest_files(conn: duckdb.DuckDBPyConnection, paths: list[str], task: Task, source: str, *,
                 max_record_bytes: int = 1_000_000, settle_seconds: float = 5.0,
                 now: datetime | None = None, chunk_bytes: int = CHUNK_BYTES,
                 batch: tuple[int, int] = (0, 1)) -> IngestReport:
    """Ingest what is new in the trace files under ``paths`` (see the module docstring), and store
    the new traces' display texts. ``batch`` (i, n): only the files of batch i of n
    (:func:`file_batch`), for n runs ingesting at once."""
    index, batches = batch
    if not (isinstance(batches, int) and isinstance(index, int) and batches >= 1 and 0 <= index < batches):
        raise ValueError(f"file batch {index} of {batches}: the batch must be 0 to batches - 1, batches at least 1")
    now = now or datetime.now(timezone.utc)
    mine = (lambda path: file_batch(path, batches) == index) if batches > 1 else (lambda path: True)
    with _one_checkpoint(conn):
        report = _ingest_files(conn, paths, task, source, max_record_bytes, settle_seconds, now, chunk_bytes, mine)
        settled = settle_new_traces(conn, now)
        report.ingested, report.duplicates = report.ingested - settled, report.duplicates + settled
        store.retrying(lambda: store_display_texts(conn, task))
        return report


def _ingest_files(conn, paths, task, source, max_record_bytes, settle_seconds, now, chunk_bytes, mine) -> IngestReport:
    report = IngestReport()
    wall = time.time()

    def contained(path: Path, read) -> None:
        try:
            read()
        except Exception as exc:  # before reading began (the file vanished, cannot be opened): one row for it
            row = _file_failed(conn, source, path, exc, now, forget_records=False)
            report.records, report.rejected = report.records + 1, report.rejected + 1
            report.files_quarantined.append(str(path))
            report.rejections += [row] if len(report.rejections) < PREVIEW else []

    for path in filter(mine, discover(paths)):
        contained(path, lambda: _ingest_path(conn, path, task, source, max_record_bytes, settle_seconds, now,
                                             chunk_bytes, wall, report))
    for path in filter(mine, unknown_files(paths)):
        contained(path, lambda: _reject_unknown(conn, path, source, max_record_bytes, now, report))
    return report


def _ingest_path(conn, path, task, source, max_record_bytes, settle_seconds, now, chunk_bytes, wall, report) -> None:
    """Read what is new in one trace file into ``report`` (nothing when it is unchanged or unsettled)."""
    stat = path.stat()
    settled = wall - stat.st_mtime >= settle_seconds
    fmt = _file_format(path)
    entry = _ledger_entry(conn, source, path)
    if entry and (entry["size"], entry["mtime_ns"]) == (stat.st_size, stat.st_mtime_ns) \
            and (fmt != "jsonl" or entry["offset_bytes"] == stat.st_size or not settled):
        report.files_unchanged += 1
        return
    if fmt != "jsonl" and not settled:
        report.files_waiting.append(str(path))
        return
    state = _resume_state(path, entry, stat.st_size) if entry else None
    if state is not None and state.offset == stat.st_size:
        _record(conn, source, path, fmt, stat, state, entry["ingested"], entry["rejected"], now)
        report.files_unchanged += 1
        return
    result = ingest_file(conn, path, task, source, max_record_bytes=max_record_bytes, now=now,
                         state=state, settled=settled, entry=entry, chunk_bytes=chunk_bytes)
    report.files_read.append(str(path))
    report.records += result.records
    report.ingested += result.ingested
    report.rejected += result.rejected
    report.duplicates += result.records - result.ingested - result.rejected
    report.rejections += result.preview[:max(0, PREVIEW - len(report.rejections))]
    if result.error:
        report.files_quarantined.append(str(path))


def ingest_file(conn: duckdb.DuckDBPyConnection, path: Path, task: Task, source: str, *,
                max_record_bytes: int, now: datetime, state: ReadState | None = None, settled: bool = True,
                entry: dict[str, Any] | None = None, chunk_bytes: int = CHUNK_BYTES,
                ordered: bool = False) -> FileIngest:
    """Ingest one file from ``state`` (a resumed JSONL file) or from the start; returns what was
    read, ingested and rejected. ``entry`` is the file's ledger row, if any. ``ordered`` inserts
    traces in file order (small reads).

    Each chunk is committed with its rejections and, for plain JSONL, the ledger's new offset,
    so memory stays bounded and an interrupted run resumes where it stopped; other formats are
    recorded in the ledger when the whole file is done (re-reading them adds no duplicates).
    When reading fails, the failed step is rolled back and the file gets one rejection at its
    path with the error (see the module docstring).
    """
    stat = path.stat()
    fmt = _file_format(path)
    job = FileIngest(conn, path, task, source, max_record_bytes, now, ordered)
    fresh = state is None  # a new or rewritten file: its earlier rejections no longer apply
    state = state or ReadState()
    before = (entry["ingested"] if entry else 0, entry["rejected"] if entry and not fresh else 0)
    pending_forget = True  # until the first commit: the file's own row from a failed read, and its records' when fresh

    def step(work=None, done: ReadState | None = None, before_commit=None) -> None:
        nonlocal pending_forget
        started = []  # before_commit (the read-ahead) runs once, even when a conflict retries the step

        def attempt() -> None:
            try:
                with transaction(conn):
                    if pending_forget:
                        _forget_rejections(conn, source, path, records=fresh)
                    if work:
                        work()
                    job.flush()
                    if done is not None:
                        _record(conn, source, path, fmt, stat, done, before[0] + job.ingested,
                                before[1] + job.rejected, now)
                    if before_commit and not started:
                        started.append(before_commit())
            except BaseException:
                job.rolled_back()
                raise

        store.retrying(attempt)  # another writer's commit conflicting with this one (DuckLake)
        job.committed()
        pending_forget = False

    try:
        document = _json_document(path) if fmt == "json" else None
        if document is not None:
            step(lambda: job.items(document), ReadState(offset=stat.st_size, line=len(document.items)))
        elif fmt == "parquet":
            for chunk in _parquet_chunks(conn, path, max_record_bytes):
                step(lambda: job.lines(chunk))
            step(done=ReadState(offset=stat.st_size, line=job.records))
        else:
            resumable = fmt == "jsonl"
            chunks = read_lines(path, state, final=settled, max_record_bytes=max_record_bytes, chunk_bytes=chunk_bytes)
            # the next chunk is read (in a thread) while DuckDB commits this one, on one core, the GIL released
            with ThreadPoolExecutor(1, thread_name_prefix="read-ahead") as pool:
                ahead: list = []
                chunk = next(chunks, None)
                while chunk is not None:
                    step(lambda: job.lines(chunk), ReadState(state.offset, state.line) if resumable else None,
                         lambda: ahead.append(pool.submit(next, chunks, None)))
                    chunk = ahead.pop().result()
            step(done=state)
    except Exception as exc:
        row = _file_failed(conn, source, path, exc, now, forget_records=fresh and pending_forget)
        job.records, job.rejected, job.error = job.records + 1, job.rejected + 1, row["reason"]
        job.preview += [row][:max(0, PREVIEW - len(job.preview))]
    return job


def _file_failed(conn, source: str, path: Path, exc: Exception, now: datetime, forget_records: bool) -> dict[str, Any]:
    """Write the one rejection of a file whose reading failed with ``exc`` (replacing an earlier
    one; with ``forget_records``, a file read afresh, its records' rejections go); returns the row."""
    message = " ".join(str(exc).split())[:500] or "no message"
    row = rejection(source, str(path), f"the file could not be read: {type(exc).__name__}: {message}", "", now)
    with transaction(conn):
        if forget_records:
            _forget_rejections(conn, source, path, records=True)
        write_rejected(conn, [row])
    return row


def _forget_rejections(conn, source: str, path: Path, records: bool) -> None:
    """Drop the file's own rejection (from a failed read) and, with ``records``, its records'."""
    where = "location = ?" + (" OR starts_with(location, ? || ':') OR starts_with(location, ? || '[')" if records else "")
    conn.execute(f"DELETE FROM rejected_traces WHERE source = ? AND ({where})",
                 [source, str(path)] + [str(path), str(path)] * records)


def write_rejected(conn: duckdb.DuckDBPyConnection, rows: list[dict[str, Any]]) -> None:
    """Write rejected_traces rows, replacing earlier ones at the same (source, location)."""
    conn.register("rejected_batch", pl.DataFrame(rows, schema=REJECTED_SCHEMA).to_arrow())
    try:
        conn.execute("DELETE FROM rejected_traces WHERE EXISTS (SELECT 1 FROM rejected_batch b "
                     "WHERE b.source = rejected_traces.source AND b.location = rejected_traces.location)")
        conn.execute("INSERT INTO rejected_traces BY NAME SELECT * FROM rejected_batch")
    finally:
        conn.unregister("rejected_batch")


def _record(conn, source, path, fmt, stat, state, ingested, rejected, now) -> None:
    """Upsert the ledger row of ``path``: what was read up to where, the traces it has added in
    all (re-reads and appends included) and its rejections standing now."""
    offset = state.offset
    head = _hash(path, 0, min(offset, _HASHED_BYTES)) if fmt == "jsonl" else None
    tail = _hash(path, max(0, offset - _HASHED_BYTES), offset) if fmt == "jsonl" else None
    conn.execute("DELETE FROM ingested_files WHERE source = ? AND path = ?", [source, str(path)])
    conn.execute("INSERT INTO ingested_files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 [source, str(path), fmt, stat.st_size, stat.st_mtime_ns, offset, state.line, head, tail,
                  ingested, rejected, now])


def _reject_unknown(conn, path: Path, source: str, max_record_bytes: int, now: datetime, report: IngestReport) -> None:
    stat = path.stat()
    entry = _ledger_entry(conn, source, path)
    if entry and (entry["size"], entry["mtime_ns"]) == (stat.st_size, stat.st_mtime_ns):
        return
    with open(path, "rb") as handle:
        head = handle.read(min(max_record_bytes, 4096)).decode("utf-8", errors="replace")
    row = rejection(source, str(path), f"unknown format: {path.name} is not a trace file "
                    f"({', '.join(TRACE_SUFFIXES)})", head, now)
    with transaction(conn):
        write_rejected(conn, [row])
        _record(conn, source, path, "unknown", stat, ReadState(stat.st_size, 0), 0, 1, now)
    report.records, report.rejected = report.records + 1, report.rejected + 1
    report.rejections += [row] if len(report.rejections) < PREVIEW else []


@dataclass
class IngestBatch:
    """What reading some trace files produced (without touching a database)."""

    traces: pl.DataFrame
    rejected: pl.DataFrame
    files: list[str] = field(default_factory=list)
    lines: int = 0
    duplicates_in_batch: int = 0


def read_trace_files(files: list[Path], task: Task, source: str, max_record_bytes: int = 1_000_000,
                     now: datetime | None = None) -> IngestBatch:
    """Parse and validate every record of ``files`` in memory, exactly as :func:`ingest_files`
    does (first of duplicates wins), without a ledger or settle window."""
    now = now or datetime.now(timezone.utc)
    lines = ingested = rejected = 0
    with store.connect(":memory:") as conn:
        conn.execute("SET threads = 1")  # rows come back in file order
        for path in files:
            job = ingest_file(conn, path, task, source, max_record_bytes=max_record_bytes, now=now, ordered=True)
            lines, ingested, rejected = lines + job.records, ingested + job.ingested, rejected + job.rejected
        traces = store.read(conn, "SELECT * FROM raw_traces").cast(TRACE_SCHEMA).select(list(TRACE_SCHEMA))
        rejections = store.read(conn, "SELECT * FROM rejected_traces").cast(REJECTED_SCHEMA).select(list(REJECTED_SCHEMA))
    return IngestBatch(traces=traces, rejected=rejections, files=[str(f) for f in files], lines=lines,
                       duplicates_in_batch=lines - ingested - rejected)
