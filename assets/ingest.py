"""Ingest group: traces from the drop folder into raw_traces, and people's decisions into
annotations (LangSmith pulls are in :mod:`assets.langsmith`)."""

import dagster as dg
from pydantic import Field

from assets.metadata import counts_table, preview, share
from pipeline.automation import table_version
from pipeline.engine.core import store
from pipeline.engine.ingest.files import ingest_files
from pipeline.engine.ingest.layouts import with_prompt_layouts
from pipeline.engine.ingest.summary import REJECTION_RATE_WARN, rejection_rate, stored_totals
from pipeline.engine.label.annotations import label_counts, read_annotation_files, trace_inputs
from pipeline.resources import AnnotationFiles, FlywheelDuckDB, TaskResource, TraceFiles


def rejection_check(asset: str, rejected: int, read: int, files_quarantined: int = 0) -> dg.AssetCheckResult:
    """The rejection_rate check's result: warns above REJECTION_RATE_WARN, or when a file was quarantined."""
    rate = rejection_rate(rejected, read)
    quarantined = f"; {files_quarantined} files quarantined" if files_quarantined else ""
    return dg.AssetCheckResult(
        check_name="rejection_rate", asset_key=asset, passed=rate <= REJECTION_RATE_WARN and not files_quarantined,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"rejection_rate": share(rate), "rejected": rejected, "read": read, "files_quarantined": files_quarantined},
        description=f"{rate:.1%} of {read} records rejected{quarantined}")


def rejection_spec(asset: str) -> dg.AssetCheckSpec:
    """The rejection_rate check of an ingesting asset."""
    return dg.AssetCheckSpec("rejection_rate", asset=asset,
                             description=f"Warns when more than {REJECTION_RATE_WARN:.0%} of records read are "
                                         "rejected, or when a file could not be read (quarantined).")


class IngestBatch(dg.Config):
    """Which share of the trace files a run ingests: on DuckLake, ``file_batches`` runs with
    ``file_batch`` 0 .. file_batches - 1 ingest at once, each file in exactly one of them."""

    file_batch: int = Field(0, description="This run's batch, from 0 to file_batches - 1.")
    file_batches: int = Field(1, description="How many batches the trace files are split into (by a "
                                             "stable hash of each path); 1 ingests every file.")


@dg.asset(
    group_name="ingest",
    kinds={"duckdb", "polars"},
    # by key: the observed sources live in assets.sources (importing them would load them here too)
    deps=[dg.AssetKey("trace_files_source")],
    description="Production traces from the trace files (drop folder and bundled demo traces): JSONL, "
                "JSON or Parquet, gzip or not, in the project's format, OpenAI chat logs or LangSmith run "
                "exports. Validated and deduplicated by trace id (else content hash); only new files and "
                "appended lines are read; records that cannot be ingested go to rejected_traces with "
                "their location and reason. On DuckLake, several runs may ingest at once, each a "
                "batch of the files (run config file_batch of file_batches).",
    check_specs=[rejection_spec("raw_traces")],
)
def raw_traces(context: dg.AssetExecutionContext, config: IngestBatch, duckdb: FlywheelDuckDB,
               task: TaskResource, trace_files: TraceFiles) -> dg.MaterializeResult:
    task_with_layouts = with_prompt_layouts(task.load(), trace_files.prompt_layouts)
    with duckdb.get_connection() as conn:
        report = ingest_files(conn, trace_files.paths, task_with_layouts, trace_files.source_name,
                              max_record_bytes=trace_files.max_record_bytes,
                              settle_seconds=trace_files.settle_seconds,
                              batch=(config.file_batch, config.file_batches))
        total, rejected_total = stored_totals(conn)
        version = table_version(conn, "raw_traces")
    context.log.info(f"ingested {report.ingested} new traces from {len(report.files_read)} files "
                     f"({report.files_unchanged} unchanged, {len(report.files_waiting)} still being written, "
                     f"{len(report.files_quarantined)} quarantined); {report.rejected} rejected, "
                     f"{report.duplicates} duplicates")
    return dg.MaterializeResult(
        data_version=version,  # unchanged when nothing new was ingested: nothing downstream runs
        metadata={"dagster/row_count": total, "new_traces": report.ingested, "duplicates": report.duplicates,
                  "rejected_in_run": report.rejected, "rejected_total": rejected_total,
                  "counts": counts_table(report.counts()),
                  "files_waiting": dg.MetadataValue.json(report.files_waiting),
                  "files_quarantined": dg.MetadataValue.json(report.files_quarantined),
                  "rejections": preview(report.rejections_preview())},
        check_results=[rejection_check("raw_traces", report.rejected, report.records, len(report.files_quarantined))],
    )


@dg.asset(
    group_name="ingest",
    kinds={"duckdb", "polars"},
    deps=[raw_traces, dg.AssetKey("annotations_source")],
    description="People's good/bad decisions, failure modes, critiques and corrections on traces. "
                "The annotation app writes here directly; decision files are imported, and a "
                "correction that fails the task's assertions is rejected with the reason.",
)
def annotations(context: dg.AssetExecutionContext, duckdb: FlywheelDuckDB, task: TaskResource,
                annotation_files: AnnotationFiles) -> dg.MaterializeResult:
    with duckdb.get_connection() as conn:
        batch = read_annotation_files(annotation_files.files(), task.load(), trace_inputs(conn))
        new = store.insert_new(conn, "annotations", batch.annotations, ["annotation_id"])
        store.upsert(conn, "rejected_traces", batch.rejected, ["source", "location"])
        labels = label_counts(conn)
        version = table_version(conn, "annotations")
    context.log.info(f"imported {new} new decisions; {batch.rejected.height} rejected")
    return dg.MaterializeResult(data_version=version, metadata={
        "dagster/row_count": sum(labels.values()), "imported_new": new, "rejected": batch.rejected.height,
        "labels": counts_table(labels),
        "rejections": preview(batch.rejected.select("location", "reason"))})
