"""Trace ingestion: read trace files, validate and normalise records, quarantine bad ones.

A record that cannot be ingested becomes a rejected row (source, location file:line, reason,
raw as received); every good record of the same file is still ingested. Records without a
trace_id get one from their content hash, so re-ingesting a file adds nothing.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.engine.tasks import Task

TRACE_SCHEMA = {
    "trace_id": pl.String, "source": pl.String, "task": pl.String,
    "ts": pl.Datetime("us", "UTC"), "input": pl.String, "output": pl.String, "model": pl.String,
    "latency_ms": pl.Float64, "prompt_tokens": pl.Int64, "completion_tokens": pl.Int64,
    "error": pl.String, "metadata": pl.String, "content_hash": pl.String,
    "ingested_at": pl.Datetime("us", "UTC"),
}
REJECTED_SCHEMA = {
    "source": pl.String, "location": pl.String, "reason": pl.String, "raw": pl.String,
    "rejected_at": pl.Datetime("us", "UTC"),
}
TRACE_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz")


class RecordError(ValueError):
    """A record that cannot be ingested; the message is the human-readable reason."""


@dataclass
class IngestBatch:
    """What reading some trace files produced."""

    traces: pl.DataFrame
    rejected: pl.DataFrame
    files: list[str] = field(default_factory=list)
    lines: int = 0
    duplicates_in_batch: int = 0


def content_hash(record: dict[str, Any]) -> str:
    """Stable hash of what makes a trace itself: task, input, output, model, timestamp."""
    payload = {k: record.get(k) for k in ("task", "input", "output", "model", "ts")}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def discover(paths: list[str]) -> list[Path]:
    """Trace files under ``paths`` (files, or folders searched recursively), sorted.

    Files (or folders below ``paths``) whose names start with '.' are hidden or still being
    written, and only names ending in a trace suffix count, so '.tmp'/'.part' files are skipped.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        candidates = [path] if path.is_file() else sorted(path.rglob("*")) if path.is_dir() else []
        for file in candidates:
            hidden = any(part.startswith(".") for part in file.relative_to(path).parts) if path.is_dir() else False
            if file.is_file() and file.name.endswith(TRACE_SUFFIXES) and not hidden and not file.name.startswith("."):
                found.append(file)
    return sorted(set(found))


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, line.rstrip(b"\r\n")


def parse_timestamp(value: Any) -> datetime | None:
    """A UTC datetime from an ISO-8601 string (naive means UTC); None stays None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise RecordError(f"ts must be an ISO-8601 string, got {type(value).__name__}")
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise RecordError(f"ts {value!r} is not an ISO-8601 timestamp") from exc
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)


def _number(record: dict, name: str, integer: bool) -> float | int | None:
    value = record.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not float(value).is_integer()):
        kind = "an integer" if integer else "a number"
        raise RecordError(f"{name} must be {kind}, got {value!r}")
    if value < 0:
        raise RecordError(f"{name} must not be negative, got {value!r}")
    return int(value) if integer else float(value)


def normalise_record(record: Any, task: Task, source: str, ingested_at: datetime) -> dict[str, Any]:
    """One raw trace record as a raw_traces row; raises RecordError with the reason if invalid."""
    if not isinstance(record, dict):
        raise RecordError(f"record must be a JSON object, got {type(record).__name__}")
    task_name = record.get("task") or task.name
    if task_name != task.name:
        raise RecordError(f"record is for task {task_name!r}, this pipeline runs {task.name!r}")
    problem = task.validate_input(record.get("input"))
    if problem:
        raise RecordError(problem)
    output, error = record.get("output"), record.get("error")
    if output is not None and not isinstance(output, str):
        raise RecordError(f"output must be a string, got {type(output).__name__}")
    if error is not None and not isinstance(error, str):
        raise RecordError(f"error must be a string, got {type(error).__name__}")
    if not output and not error:
        raise RecordError("output is missing and no error is recorded")
    metadata = record.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise RecordError(f"metadata must be an object, got {type(metadata).__name__}")
    trace_id = record.get("trace_id")
    if trace_id is not None and (not isinstance(trace_id, str) or not trace_id.strip()):
        raise RecordError(f"trace_id must be a non-empty string, got {trace_id!r}")
    row = {
        "source": source, "task": task_name, "ts": parse_timestamp(record.get("ts")),
        "input": json.dumps(record["input"], ensure_ascii=False), "output": output or "",
        "model": record.get("model") if isinstance(record.get("model"), str) else None,
        "latency_ms": _number(record, "latency_ms", integer=False),
        "prompt_tokens": _number(record, "prompt_tokens", integer=True),
        "completion_tokens": _number(record, "completion_tokens", integer=True),
        "error": error, "metadata": json.dumps(metadata, ensure_ascii=False),
        "ingested_at": ingested_at,
    }
    row["content_hash"] = content_hash({**record, "task": task_name, "input": record["input"]})
    row["trace_id"] = trace_id or f"h_{row['content_hash'][:24]}"
    return row


def read_trace_files(files: list[Path], task: Task, source: str, max_record_bytes: int = 1_000_000,
                     now: datetime | None = None) -> IngestBatch:
    """Parse and validate every record of ``files``; duplicates within the batch are dropped."""
    now = now or datetime.now(timezone.utc)
    rows: dict[str, dict[str, Any]] = {}
    rejected: list[dict[str, Any]] = []
    lines = duplicates = 0
    for path in files:
        for number, raw in _lines(path):
            lines += 1
            location = f"{path}:{number}"
            text = raw.decode("utf-8", errors="replace")
            try:
                if len(raw) > max_record_bytes:
                    raise RecordError(f"record is {len(raw):,} bytes, over the {max_record_bytes:,}-byte limit")
                try:
                    decoded = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise RecordError(f"invalid UTF-8 at byte {exc.start}") from exc
                try:
                    record = json.loads(decoded)
                except json.JSONDecodeError as exc:
                    raise RecordError(f"malformed JSON: {exc.msg} at column {exc.colno}") from exc
                row = normalise_record(record, task, source, now)
            except RecordError as exc:
                rejected.append({"source": source, "location": location, "reason": str(exc),
                                 "raw": text[:max_record_bytes], "rejected_at": now})
                continue
            if row["trace_id"] in rows:
                duplicates += 1
                continue
            rows[row["trace_id"]] = row
    return IngestBatch(
        traces=pl.DataFrame(list(rows.values()), schema=TRACE_SCHEMA)
        if rows else pl.DataFrame(schema=TRACE_SCHEMA),
        rejected=pl.DataFrame(rejected, schema=REJECTED_SCHEMA) if rejected else pl.DataFrame(schema=REJECTED_SCHEMA),
        files=[str(f) for f in files], lines=lines, duplicates_in_batch=duplicates,
    )
