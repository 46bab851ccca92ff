"""Pull runs from the LangSmith API with the langsmith client, one time window at a time.

Uses ``Client.list_runs`` (POST /runs/query, cursor-paginated) deliberately: it is synchronous,
works against every LangSmith deployment including self-hosted ones before v0.16 (where
``client.runs.query`` is not available), and returns runs in the shape LangSmith exports use,
so API runs and exported files share one mapping (:func:`formats.from_langsmith_run`). It is
deprecated, to be removed after 2027-01-31: :func:`fetch_runs` is the one place to move to
``client.runs.query()`` (async, project ids, POST /api/v2/runs/query) before then.

The API key comes from the environment (LANGSMITH_API_KEY) or the caller, never from code, and
is never written to a row, a log line or metadata.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import duckdb
import polars as pl
from langsmith.utils import LangSmithError

from pipeline.engine.ingest.files import checked, write_rejected
from pipeline.engine.ingest.formats import from_langsmith_run
from pipeline.engine.ingest.records import PREVIEW, RECORD_SCHEMA, RecordError, one_record, rejection, rejections_preview
from pipeline.engine.ingest.sql import insert_records, python_rows
from pipeline.engine.core.secrets import redact
from pipeline.engine.core.store import transaction
from pipeline.engine.tasks import Task


@dataclass
class RunQuery:
    """Which runs to pull: a project, optionally a run type and a LangSmith filter expression
    (for example ``has(tags, "production")``), root runs only by default."""

    project: str
    run_type: str | None = "llm"
    filter: str | None = None
    is_root: bool | None = None


@dataclass
class PullReport:
    """What one pull did."""

    runs: int = 0
    ingested: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejections: list[dict[str, Any]] = field(default_factory=list)

    def rejections_preview(self) -> pl.DataFrame:
        """Up to the first 20 rejections of this pull (location, reason)."""
        return rejections_preview(self.rejections)

    def counts(self) -> dict[str, int]:
        return {"runs read": self.runs, "ingested": self.ingested, "duplicates": self.duplicates,
                "rejected": self.rejected}


def window_filter(query: RunQuery, start: datetime, end: datetime) -> str:
    """The filter expression for runs started in [start, end) that also match ``query.filter``."""
    window = f'gte(start_time, "{start.isoformat()}"), lt(start_time, "{end.isoformat()}")'
    return f"and({query.filter}, {window})" if query.filter else f"and({window})"


def fetch_runs(client: Any, query: RunQuery, start: datetime, end: datetime) -> Iterator[dict[str, Any]]:
    """Runs of ``query`` started in [start, end), as dicts (the export shape), every page.

    An error on the way comes out as a LangSmithError naming the error's class, its message with
    the client's key and anything key-like redacted, and without the error it came from."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*list_runs.*", category=DeprecationWarning)
            runs = client.list_runs(project_name=query.project, run_type=query.run_type, is_root=query.is_root,
                                    start_time=start, filter=window_filter(query, start, end))
            for run in runs:
                yield run.model_dump(mode="json")
    except Exception as exc:  # the client's errors carry the server's response, which may echo the key
        raise LangSmithError(redact(f"{type(exc).__name__}: {exc}", [getattr(client, "api_key", None)])) from None


def ingest_runs(conn: duckdb.DuckDBPyConnection, runs: Iterator[dict[str, Any]], task: Task, source: str,
                now: datetime | None = None, batch_size: int = 1000) -> PullReport:
    """Map runs onto traces and write them: good ones to raw_traces (id ``ls_<run id>``, so a
    re-pull adds nothing), bad ones to rejected_traces with the run id as location."""
    now = now or datetime.now(timezone.utc)
    report = PullReport()
    batch: list[dict[str, Any]] = []
    for run in runs:
        batch.append(run)
        if len(batch) >= batch_size:
            _write(conn, batch, task, source, now, report)
            batch = []
    _write(conn, batch, task, source, now, report)
    return report


def _write(conn, runs: list[dict[str, Any]], task: Task, source: str, now: datetime, report: PullReport) -> None:
    rows, rejected = [], []
    for seq, run in enumerate(runs):
        try:
            with one_record():
                rows.append({**checked(from_langsmith_run(run, task), task), "seq": seq})
        except RecordError as exc:
            rejected.append(rejection(source, f"run {run.get('id')}", str(exc),
                                      json.dumps(run, ensure_ascii=False, default=str), now))
    conn.register("py_rows", pl.DataFrame(rows, schema=RECORD_SCHEMA).to_arrow())
    try:
        with transaction(conn):
            ingested = insert_records(conn, python_rows("py_rows"), source, now)
            if rejected:
                write_rejected(conn, rejected)
    finally:
        conn.unregister("py_rows")
    report.runs += len(runs)
    report.ingested += ingested
    report.rejected += len(rejected)
    report.duplicates += len(rows) - ingested
    report.rejections += rejected[:max(0, PREVIEW - len(report.rejections))]
