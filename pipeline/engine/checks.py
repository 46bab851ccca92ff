"""Run a task's assertions over traces: one trace_evaluations row per trace and check."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import polars as pl

from pipeline.engine.tasks import Task

EVALUATION_SCHEMA = {
    "trace_id": pl.String, "check_name": pl.String, "passed": pl.Boolean, "detail": pl.String,
    "task_version": pl.String, "evaluated_at": pl.Datetime("us", "UTC"),
}


def evaluate_traces(traces: pl.DataFrame, task: Task, now: datetime | None = None) -> pl.DataFrame:
    """Assertion results for ``traces`` (columns trace_id, input as JSON text, output, error).

    A trace whose call failed (error set, no output) gets passed=None on every check with the
    error as detail: there is no output to judge.
    """
    now = now or datetime.now(timezone.utc)
    rows = []
    for trace_id, input_json, output, error in traces.select("trace_id", "input", "output", "error").iter_rows():
        if error and not output:
            rows += [(trace_id, name, None, f"skipped: call failed: {error}") for name in task.check_names]
            continue
        for result in task.check(json.loads(input_json), output):
            rows.append((trace_id, result.check_name, result.passed, result.detail))
    frame = pl.DataFrame(rows, schema=list(EVALUATION_SCHEMA)[:4], orient="row")
    return frame.with_columns(task_version=pl.lit(task.version), evaluated_at=pl.lit(now)).cast(EVALUATION_SCHEMA)


def failing_traces(evaluations: pl.DataFrame) -> pl.DataFrame:
    """One row per failed (trace, check): trace_id, failure_mode, detail."""
    return (evaluations.filter(pl.col("passed") == False)  # noqa: E712 (null means not run)
            .select("trace_id", pl.col("check_name").alias("failure_mode"), "detail"))
