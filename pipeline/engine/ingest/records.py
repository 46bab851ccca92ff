"""One trace record in the project's own format -> one raw_traces row, or the reason it cannot be.

This is the reference validator: the SQL fast path (:mod:`pipeline.engine.ingest.sql`) accepts
only records this function would accept with the same values, and sends every other record here,
so rejection reasons are always the ones written below.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
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
#: Columns of a validated record before ids and hashes are assigned (see ingest.sql.finalised).
#: ``seq`` orders records within a batch (first one wins among duplicates).
RECORD_SCHEMA = {
    "seq": pl.Int64, "trace_id": pl.String, "task": pl.String, "ts": pl.Datetime("us", "UTC"),
    "input": pl.String, "output": pl.String, "model": pl.String, "latency_ms": pl.Float64,
    "prompt_tokens": pl.Int64, "completion_tokens": pl.Int64, "error": pl.String, "metadata": pl.String,
}


#: How many rejections an ingestion report keeps to show.
PREVIEW = 20
#: The largest finite float: a larger number cannot be stored as one.
_MAX_FLOAT = sys.float_info.max


class RecordError(ValueError):
    """A record that cannot be ingested; the message is the human-readable reason."""


@contextmanager
def one_record() -> Iterator[None]:
    """Reading one record: any error in the block (nesting too deep for Python, a format adapter
    or a task check that fails on an odd value) becomes a RecordError, rejecting that record alone."""
    try:
        yield
    except RecordError:
        raise
    except RecursionError as exc:
        raise RecordError("record is nested too deeply to be read") from exc
    except Exception as exc:
        raise RecordError(f"record could not be read: {type(exc).__name__}: {exc}") from exc


def parse_timestamp(value: Any) -> datetime | None:
    """A UTC datetime from an ISO-8601 string (naive means UTC); None stays None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise RecordError(f"ts must be an ISO-8601 string, got {_kind(value)}")
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise RecordError(f"ts {value!r} is not an ISO-8601 timestamp") from exc
    try:
        return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)
    except OverflowError as exc:
        raise RecordError(f"ts {value!r} falls outside the years 1-9999 in UTC") from exc


def _kind(value: Any) -> str:
    """The type of a decoded JSON value as a reason names it ('null' for None)."""
    return "null" if value is None else type(value).__name__


def _number(record: dict, name: str, integer: bool) -> float | int | None:
    value = record.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and isinstance(value, float)
                                                                         and not value.is_integer()):
        expected = "an integer" if integer else "a number"
        raise RecordError(f"{name} must be {expected}, got {value!r}")
    if value < 0:
        raise RecordError(f"{name} must not be negative, got {value!r}")
    if integer and value >= 2**63 or value > _MAX_FLOAT:
        raise RecordError(f"{name} is too large, got {value!r}")
    return int(value) if integer else float(value)


def normalise_record(record: Any, task: Task) -> dict[str, Any]:
    """A record (the fields of raw_traces) as a RECORD_SCHEMA row without ``seq``; raises
    RecordError with the reason if it is not a valid trace of ``task``."""
    if not isinstance(record, dict):
        raise RecordError(f"record must be a JSON object, got {_kind(record)}")
    task_name = record.get("task")
    if task_name is not None and not isinstance(task_name, str):
        raise RecordError(f"task must be a string, got {_kind(task_name)}")
    task_name = task_name or task.name
    if task_name != task.name:
        raise RecordError(f"record is for task {task_name!r}, this pipeline runs {task.name!r}")
    if record.get("input") is None:
        raise RecordError("input is null" if "input" in record else "input is missing")
    problem = task.validate_input(record["input"])
    if problem:
        raise RecordError(problem)
    output, error = record.get("output"), record.get("error")
    if output is not None and not isinstance(output, str):
        raise RecordError(f"output must be a string, got {_kind(output)}")
    if error is not None and not isinstance(error, str):
        raise RecordError(f"error must be a string, got {_kind(error)}")
    if not output and not error:
        raise RecordError("output is missing and no error is recorded")
    metadata = record.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise RecordError(f"metadata must be an object, got {_kind(metadata)}")
    model = record.get("model")
    if model is not None and not isinstance(model, str):
        raise RecordError(f"model must be a string, got {_kind(model)}")
    trace_id = record.get("trace_id")
    if trace_id is not None and (not isinstance(trace_id, str) or not trace_id.strip()):
        raise RecordError(f"trace_id must be a non-empty string, got {trace_id!r}")
    return {
        "trace_id": trace_id, "task": task_name, "ts": parse_timestamp(record.get("ts")),
        "input": json.dumps(record["input"], ensure_ascii=False), "output": output or "", "model": model,
        "latency_ms": _number(record, "latency_ms", integer=False),
        "prompt_tokens": _number(record, "prompt_tokens", integer=True),
        "completion_tokens": _number(record, "completion_tokens", integer=True),
        "error": error, "metadata": json.dumps(metadata, ensure_ascii=False),
    }


def rejection(source: str, location: str, reason: str, raw: str, now: datetime) -> dict[str, Any]:
    """A rejected_traces row."""
    return {"source": source, "location": location, "reason": reason, "raw": raw, "rejected_at": now}


def rejections_preview(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Up to the first :data:`PREVIEW` of the rejected_traces ``rows`` (location, reason)."""
    return pl.DataFrame(rows[:PREVIEW], schema=REJECTED_SCHEMA).select("location", "reason")
