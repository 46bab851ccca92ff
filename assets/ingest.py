"""Ingest group: traces from the drop folder into raw_traces, and people's decisions into annotations."""

import json

import dagster as dg

from assets.metadata import counts_table, preview
from pipeline.engine import store
from pipeline.engine.annotations import read_annotation_files
from pipeline.engine.traces import read_trace_files
from pipeline.resources import AnnotationFiles, FlywheelDuckDB, TaskResource, TraceFiles

REJECTION_RATE_WARN = 0.05


@dg.asset(
    group_name="ingest",
    kinds={"duckdb", "polars"},
    description="Production traces from the trace files (drop folder and bundled demo traces), "
                "validated and deduplicated by trace id; records that cannot be ingested go to "
                "rejected_traces with their location and reason.",
    check_specs=[dg.AssetCheckSpec("rejection_rate", asset="raw_traces",
                                   description=f"Warns when more than {REJECTION_RATE_WARN:.0%} of records read are rejected.")],
)
def raw_traces(context: dg.AssetExecutionContext, duckdb: FlywheelDuckDB, task: TaskResource,
               trace_files: TraceFiles) -> dg.MaterializeResult:
    files = trace_files.files()
    batch = read_trace_files(files, task.load(), trace_files.source_name, trace_files.max_record_bytes)
    with duckdb.get_connection() as conn:
        new = store.insert_new(conn, "raw_traces", batch.traces, ["trace_id"])
        store.upsert(conn, "rejected_traces", batch.rejected, ["source", "location"])
        total = conn.execute("SELECT count(*) FROM raw_traces").fetchone()[0]
        rejected_total = conn.execute("SELECT count(*) FROM rejected_traces").fetchone()[0]
    counts = {"files": len(files), "records read": batch.lines, "ingested (new)": new,
              "already ingested": batch.traces.height - new, "duplicates in files": batch.duplicates_in_batch,
              "rejected": batch.rejected.height}
    context.log.info(f"ingested {new} new traces from {len(files)} files; {batch.rejected.height} rejected")
    rate = batch.rejected.height / batch.lines if batch.lines else 0.0
    return dg.MaterializeResult(
        metadata={"dagster/row_count": total, "new_traces": new, "rejected_in_run": batch.rejected.height,
                  "rejected_total": rejected_total, "counts": counts_table(counts),
                  "rejections": preview(batch.rejected.select("location", "reason"))},
        check_results=[dg.AssetCheckResult(
            check_name="rejection_rate", passed=rate <= REJECTION_RATE_WARN, severity=dg.AssetCheckSeverity.WARN,
            metadata={"rejection_rate": rate, "rejected": batch.rejected.height, "read": batch.lines},
            description=f"{rate:.1%} of {batch.lines} records rejected")],
    )


@dg.asset(
    group_name="ingest",
    kinds={"duckdb", "polars"},
    deps=[raw_traces],
    description="People's good/bad decisions, failure modes, critiques and corrections on traces. "
                "The annotation app writes here directly; decision files are imported, and a "
                "correction that fails the task's assertions is rejected with the reason.",
)
def annotations(context: dg.AssetExecutionContext, duckdb: FlywheelDuckDB, task: TaskResource,
                annotation_files: AnnotationFiles) -> dg.MaterializeResult:
    with duckdb.get_connection() as conn:
        inputs = {t: json.loads(i) for t, i in conn.execute("SELECT trace_id, input FROM raw_traces").fetchall()}
        batch = read_annotation_files(annotation_files.files(), task.load(), inputs)
        new = store.insert_new(conn, "annotations", batch.annotations, ["annotation_id"])
        store.upsert(conn, "rejected_traces", batch.rejected, ["source", "location"])
        labels = store.read(conn, "SELECT label, count(*) AS n FROM annotations GROUP BY label ORDER BY label")
        total = int(labels["n"].sum()) if labels.height else 0
    context.log.info(f"imported {new} new decisions; {batch.rejected.height} rejected")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": total, "imported_new": new, "rejected": batch.rejected.height,
        "labels": counts_table(dict(labels.iter_rows())),
        "rejections": preview(batch.rejected.select("location", "reason"))})
