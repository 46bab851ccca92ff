"""Pull runs from the LangSmith API with the langsmith client, one time window at a time.

Uses ``client.runs.query`` (POST /api/v2/runs/query): the project's name is looked up to its id
(``Client.read_project``), the window is always given (``min_start_time``/``max_start_time``:
left out, the server reads only the last day), the cursor is followed to the last page, and the
fields the mapping needs are selected (v2 returns only ``id`` otherwise). The client's ``runs``
resource is async; :func:`fetch_runs` drives it page by page on an event loop of its own, so
callers (the Dagster asset) stay synchronous. Each run is turned back into the shape of
LangSmith's exports and v1 API (:func:`export_shape`), so API runs and exported files share one
mapping (:func:`formats.from_langsmith_run`).

A server without the v2 endpoint (self-hosted LangSmith before v0.16 answers 404 or 405) is read
with the deprecated ``Client.list_runs`` instead, which is said in the log; LangSmith removes
list_runs after 2027-01-31 (cloud) and in self-hosted v0.18.

The API key comes from the environment (LANGSMITH_API_KEY) or the caller, never from code, and
is never written to a row, a log line, metadata or an error message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import duckdb
import polars as pl
from langsmith import APIStatusError
from langsmith.utils import LangSmithError

from pipeline.engine.ingest.display import store_display_texts
from pipeline.engine.ingest.files import checked, write_rejected
from pipeline.engine.ingest.formats import from_langsmith_run
from pipeline.engine.ingest.records import PREVIEW, RECORD_SCHEMA, RecordError, one_record, rejection, rejections_preview
from pipeline.engine.ingest.sql import insert_records, python_rows, settle_new_traces
from pipeline.engine.core.secrets import redact
from pipeline.engine.core import store
from pipeline.engine.core.store import transaction
from pipeline.engine.tasks import Task


@dataclass
class RunQuery:
    """Which runs to pull: a project, optionally a run type and a LangSmith filter expression
    (for example ``has(tags, "production")``), and root runs only when ``is_root`` is True (None: all)."""

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


#: The run fields a v2 query asks for: what :func:`formats.from_langsmith_run` reads, and what
#: identifies a run kept in rejected_traces.
SELECTS = ["ID", "NAME", "RUN_TYPE", "STATUS", "START_TIME", "END_TIME", "ERROR", "INPUTS", "OUTPUTS", "EXTRA",
           "METADATA", "TAGS", "PROJECT_ID", "TRACE_ID", "PROMPT_TOKENS", "COMPLETION_TOKENS", "TOTAL_TOKENS",
           "FEEDBACK_STATS"]

_log = logging.getLogger(__name__)


class _NoRunsQuery(Exception):
    """The server has no POST /api/v2/runs/query (LangSmith before v0.16)."""


def fetch_runs(client: Any, query: RunQuery, start: datetime, end: datetime,
               log: Callable[[str], None] | None = None) -> Iterator[dict[str, Any]]:
    """Runs of ``query`` started in [start, end), as dicts (the export shape), every page.

    Reads ``client.runs.query``; on a server without it, the deprecated ``client.list_runs``,
    saying so through ``log`` (a logger's warning by default). An error on the way comes out as a
    LangSmithError naming the error's class, its message with the client's key and anything
    key-like redacted, and without the error it came from."""
    try:
        project_id = str(client.read_project(project_name=query.project).id)
        try:
            yield from _query_runs(client, project_id, query, start, end)
        except _NoRunsQuery as missing:
            (log or _log.warning)(redact(
                f"LangSmith at {client.api_url} has no runs.query ({missing}): pulling with the deprecated "
                "list_runs instead, which LangSmith removes after 2027-01-31 (self-hosted: in v0.18); "
                "upgrade the server to v0.16 or later", [client.api_key]))
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*list_runs.*", category=DeprecationWarning)
                runs = client.list_runs(project_id=project_id, run_type=query.run_type, is_root=query.is_root,
                                        start_time=start, filter=window_filter(query, start, end))
                for run in runs:
                    yield run.model_dump(mode="json")
    except Exception as exc:  # the client's errors carry the server's response, which may echo the key
        raise LangSmithError(redact(f"{type(exc).__name__}: {exc}", [getattr(client, "api_key", None)])) from None


def _query_runs(client: Any, project_id: str, query: RunQuery, start: datetime,
                end: datetime) -> Iterator[dict[str, Any]]:
    """Every page of ``client.runs.query`` for the window, each run in the export shape; raises
    _NoRunsQuery when the first request finds no such endpoint."""
    runs = client.runs
    params: dict[str, Any] = {
        "project_ids": [project_id], "min_start_time": start, "max_start_time": end, "selects": SELECTS,
        # the bounds keep the server's one-day default away; the filter makes the end exclusive
        "filter": window_filter(query, start, end),
    }
    if query.run_type:
        params["run_type"] = query.run_type.upper()
    if query.is_root is not None:
        params["is_root"] = query.is_root

    async def page(cursor: str | None):
        return await runs.query(**params, **({"cursor": cursor} if cursor else {}))

    cursor = None
    with asyncio.Runner() as loop:
        while True:
            try:
                result = loop.run(page(cursor))
            except APIStatusError as exc:
                if cursor is None and exc.status_code in (404, 405):
                    raise _NoRunsQuery(f"POST /api/v2/runs/query answered {exc.status_code}") from None
                raise
            for run in result.items:
                yield export_shape(run)
            cursor = result.next_cursor
            if not cursor:
                return


def export_shape(run: Any) -> dict[str, Any]:
    """A run from ``client.runs.query`` as a dict in the shape of LangSmith's exports and its v1
    API: lower-case run type and status, ``session_id`` for ``project_id``, metadata under
    ``extra`` (v2 keeps it apart); only the fields the server returned."""
    data = run.to_dict(mode="json")
    extra = data.get("extra") if isinstance(data.get("extra"), dict) else {}
    metadata = data.pop("metadata", None)
    if isinstance(metadata, dict):
        known = extra.get("metadata") if isinstance(extra.get("metadata"), dict) else {}
        data["extra"] = {**extra, "metadata": {**known, **metadata}}
    for key in ("run_type", "status"):
        if isinstance(data.get(key), str):
            data[key] = data[key].lower()
    if "project_id" in data:
        data["session_id"] = data.pop("project_id")
    return data


def ingest_runs(conn: duckdb.DuckDBPyConnection, runs: Iterator[dict[str, Any]], task: Task, source: str,
                now: datetime | None = None, batch_size: int = 1000) -> PullReport:
    """Map runs onto traces and write them: good ones to raw_traces (id ``ls_<run id>``, so a
    re-pull adds nothing), bad ones to rejected_traces with the run id as location; then store the
    new traces' display texts."""
    now = now or datetime.now(timezone.utc)
    report = PullReport()
    batch: list[dict[str, Any]] = []
    for run in runs:
        batch.append(run)
        if len(batch) >= batch_size:
            _write(conn, batch, task, source, now, report)
            batch = []
    _write(conn, batch, task, source, now, report)
    settled = settle_new_traces(conn, now)
    report.ingested, report.duplicates = report.ingested - settled, report.duplicates + settled
    store.retrying(lambda: store_display_texts(conn, task))
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
    def attempt() -> int:
        with transaction(conn):
            ingested = insert_records(conn, python_rows("py_rows"), source, now)
            if rejected:
                write_rejected(conn, rejected)
        return ingested

    try:
        ingested = store.retrying(attempt)
    finally:
        conn.unregister("py_rows")
    report.runs += len(runs)
    report.ingested += ingested
    report.rejected += len(rejected)
    report.duplicates += len(rows) - ingested
    report.rejections += rejected[:max(0, PREVIEW - len(report.rejections))]
