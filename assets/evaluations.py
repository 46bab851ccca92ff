"""Curate group, evaluation of production traces: assertions on every trace and labelled failures."""

import dagster as dg
import polars as pl

from assets.ingest import annotations, raw_traces
from assets.metadata import preview
from pipeline.engine import store
from pipeline.engine.annotations import labelled_failures as derive_failures
from pipeline.engine.checks import evaluate_traces
from pipeline.resources import FlywheelDuckDB, TaskResource


@dg.asset(
    group_name="curate",
    kinds={"duckdb", "polars"},
    deps=[raw_traces],
    description="The task's assertions on every trace: one row per trace and check, named after "
                "the failure mode it detects. Only traces not yet evaluated with the current task "
                "version are evaluated.",
)
def trace_evaluations(context: dg.AssetExecutionContext, duckdb: FlywheelDuckDB, task: TaskResource) -> dg.MaterializeResult:
    the_task = task.load()
    with duckdb.get_connection() as conn:
        pending = store.read(conn, """
            SELECT t.trace_id, t.input::VARCHAR AS input, t.output, t.error FROM raw_traces t
            WHERE NOT EXISTS (SELECT 1 FROM trace_evaluations e WHERE e.trace_id = t.trace_id AND e.task_version = ?)
            ORDER BY t.trace_id""", [the_task.version])
        results = evaluate_traces(pending, the_task)
        store.upsert(conn, "trace_evaluations", results, ["trace_id"])
        rates = store.read(conn, """
            SELECT check_name, count(*) FILTER (WHERE passed = false) AS failed,
                   round(100.0 * count(*) FILTER (WHERE passed = false) / count(*), 2) AS failed_pct
            FROM trace_evaluations GROUP BY check_name ORDER BY failed DESC""")
        all_pass = conn.execute("""SELECT avg(ok::INT) FROM (SELECT trace_id, bool_and(coalesce(passed, true)) AS ok
            FROM trace_evaluations GROUP BY trace_id)""").fetchone()[0]
        total = conn.execute("SELECT count(*) FROM trace_evaluations").fetchone()[0]
    context.log.info(f"evaluated {pending.height} new traces")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": total, "traces_evaluated_now": pending.height,
        "share_passing_all": float(all_pass or 0.0), "failures_by_check": preview(rates, n=50)})


@dg.asset(
    group_name="curate",
    kinds={"duckdb", "polars"},
    deps=[trace_evaluations, annotations],
    description="Failing traces: assertion failures and people's 'bad' decisions, with the failure "
                "mode, where the label came from and any correction.",
)
def labelled_failures(duckdb: FlywheelDuckDB) -> dg.MaterializeResult:
    with duckdb.get_connection() as conn:
        evaluations = store.read(conn, "SELECT trace_id, check_name, passed, detail FROM trace_evaluations")
        people = store.read(conn, "SELECT * FROM annotations")
        failures = derive_failures(evaluations, people)
        store.sync(conn, "labelled_failures", failures, ["trace_id", "failure_mode", "label_source"],
                   compare=["detail", "correction"])
    by_mode = failures.group_by("failure_mode", "label_source").len().sort("len", descending=True)
    return dg.MaterializeResult(metadata={
        "dagster/row_count": failures.height, "failing_traces": failures["trace_id"].n_unique(),
        "with_correction": failures.filter(pl.col("correction").is_not_null())["trace_id"].n_unique(),
        "by_failure_mode": preview(by_mode, n=50)})
