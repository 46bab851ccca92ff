"""The task's assertions in trace_evaluations (one row per trace and check): which traces the
current checks have not evaluated yet, and how often each check fails."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from pipeline.engine.core import store


def unchecked_traces(conn, version: str) -> pl.DataFrame:
    """Traces not evaluated with the checks of ``version`` yet: trace_id, input (JSON text), output, error."""
    return store.read(conn, """
        SELECT t.trace_id, t.input::VARCHAR AS input, t.output, t.error FROM raw_traces t
        WHERE NOT EXISTS (SELECT 1 FROM trace_evaluations e WHERE e.trace_id = t.trace_id AND e.task_version = ?)
        ORDER BY t.trace_id""", [version])


@dataclass(frozen=True)
class CheckSummary:
    """Failures per check (check_name, failed, failed_pct; most failing first), the share of
    traces passing every check, and the number of rows in trace_evaluations."""

    failures_by_check: pl.DataFrame
    share_passing_all: float
    rows: int


def check_summary(conn) -> CheckSummary:
    """How the stored evaluations fail, per check and over all traces."""
    rates = store.read(conn, """
        SELECT check_name, count(*) FILTER (WHERE passed = false) AS failed,
               round(100.0 * count(*) FILTER (WHERE passed = false) / count(*), 2) AS failed_pct
        FROM trace_evaluations GROUP BY check_name ORDER BY failed DESC""")
    all_pass = conn.execute("""SELECT avg(ok::INT) FROM (SELECT trace_id, bool_and(coalesce(passed, true)) AS ok
        FROM trace_evaluations GROUP BY trace_id)""").fetchone()[0]
    total = conn.execute("SELECT count(*) FROM trace_evaluations").fetchone()[0]
    return CheckSummary(rates, float(all_pass or 0.0), total)
