"""Ingest group, LangSmith: one day of LLM runs per partition from the LangSmith API into raw_traces.

Not part of the offline ``flywheel`` job: it has its own job (``langsmith_pull``) and a nightly
schedule, stopped until LangSmith is configured (LANGSMITH_API_KEY, LANGSMITH_PROJECT).
"""

import os

import dagster as dg

from assets.ingest import rejection_check, rejection_spec
from assets.metadata import counts_table, preview
from pipeline.engine.ingest.langsmith_source import fetch_runs, ingest_runs
from pipeline.engine.ingest.layouts import with_prompt_layouts
from pipeline.resources import FlywheelDuckDB, LangSmithSource, TaskResource

#: First day of the LangSmith partitions (backfills reach back to it).
LANGSMITH_START_DATE = os.environ.get("FLYWHEEL_LANGSMITH_START_DATE", "2026-01-01")


@dg.asset(
    group_name="ingest",
    kinds={"langsmith", "duckdb"},
    partitions_def=dg.DailyPartitionsDefinition(start_date=LANGSMITH_START_DATE),
    backfill_policy=dg.BackfillPolicy.single_run(),
    description="LLM runs pulled from the LangSmith API for one day (a backfill pulls its whole range "
                "in one run), written into raw_traces with source 'langsmith' and trace id "
                "'ls_<run id>', so a re-pull adds nothing; runs that cannot be mapped go to "
                "rejected_traces with their run id. Needs LANGSMITH_API_KEY and a project.",
    check_specs=[rejection_spec("langsmith_traces")],
)
def langsmith_traces(context: dg.AssetExecutionContext, duckdb: FlywheelDuckDB, task: TaskResource,
                     langsmith: LangSmithSource) -> dg.MaterializeResult:
    if not langsmith.configured():
        raise dg.Failure("LangSmith is not configured: set LANGSMITH_API_KEY (and LANGSMITH_PROJECT, or "
                         "LangSmithSource(project=...)) to pull runs.")
    window = context.partition_time_window
    task_with_layouts = with_prompt_layouts(task.load(), langsmith.prompt_layouts)
    runs = fetch_runs(langsmith.client(), langsmith.query(), window.start, window.end, log=context.log.warning)
    with duckdb.get_connection() as conn:
        report = ingest_runs(conn, runs, task_with_layouts, langsmith.source_name)
    context.log.info(f"{report.runs} runs from {window.start:%Y-%m-%d} to {window.end:%Y-%m-%d}: "
                     f"{report.ingested} new traces, {report.duplicates} already ingested, {report.rejected} rejected")
    return dg.MaterializeResult(
        metadata={"runs": report.runs, "new_traces": report.ingested, "duplicates": report.duplicates,
                  "rejected": report.rejected, "window": f"{window.start.isoformat()} .. {window.end.isoformat()}",
                  "counts": counts_table(report.counts()),
                  "rejections": preview(report.rejections_preview())},
        check_results=[rejection_check("langsmith_traces", report.rejected, report.runs)],
    )
