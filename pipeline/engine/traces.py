"""Trace ingestion, the stable entry points (the implementation is :mod:`pipeline.engine.ingest`).

A record that cannot be ingested becomes a rejected row (source, location file:line, reason,
raw as received); every good record of the same file is still ingested. Records without a
trace_id get one from their content hash, so re-ingesting a file adds nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.engine import store
from pipeline.engine.ingest.files import (
    PARTIAL_SUFFIXES, TRACE_SUFFIXES, IngestReport, discover, ingest_file, ingest_files, unknown_files,
)
from pipeline.engine.ingest.records import (
    REJECTED_SCHEMA, TRACE_SCHEMA, RecordError, normalise_record, parse_timestamp,
)
from pipeline.engine.ingest.sql import CONTENT_HASH, _canonical_input
from pipeline.engine.tasks import Task

__all__ = [
    "PARTIAL_SUFFIXES", "REJECTED_SCHEMA", "TRACE_SCHEMA", "TRACE_SUFFIXES", "IngestBatch", "IngestReport",
    "RecordError", "content_hash", "discover", "ingest_files", "normalise_record", "parse_timestamp",
    "ingest_file", "read_trace_files", "unknown_files",
]


@dataclass
class IngestBatch:
    """What reading some trace files produced (without touching a database)."""

    traces: pl.DataFrame
    rejected: pl.DataFrame
    files: list[str] = field(default_factory=list)
    lines: int = 0
    duplicates_in_batch: int = 0


def content_hash(record: dict[str, Any]) -> str:
    """Hash of what makes a trace itself (task, input, output, model, timestamp), the same one
    ingestion stores in raw_traces.content_hash; operational fields do not count."""
    model = record.get("model")
    row = {"task": record.get("task"), "input": json.dumps(record.get("input"), ensure_ascii=False),
           "output": record.get("output") or "", "model": model if isinstance(model, str) else None,
           "ts": parse_timestamp(record.get("ts"))}
    frame = pl.DataFrame([row], schema={"task": pl.String, "input": pl.String, "output": pl.String,
                                        "model": pl.String, "ts": pl.Datetime("us", "UTC")})
    with store.connect(":memory:") as conn:
        conn.register("one", frame.to_arrow())
        sql = f"SELECT {CONTENT_HASH.format(canon=_canonical_input('input'))} FROM " \
              "(SELECT * REPLACE (json(input)::VARCHAR AS input) FROM one)"
        return conn.execute(sql).fetchone()[0]


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
