"""Observed sources: the trace files and people's decisions, each with a data version that
changes exactly when new data arrived, so the automation sensor rematerializes what depends on
them and nothing else. Observing is cheap: file names, sizes and times, and one small query."""

import dagster as dg
from duckdb import Error as DuckDBError

from pipeline.engine.ingest.files import files_stamp, watched_files
from pipeline.engine.label.annotations import app_decisions, decisions_version
from pipeline.resources import AnnotationFiles, FlywheelDuckDB, TraceFiles


@dg.multi_observable_source_asset(name="trace_files_source", specs=[dg.AssetSpec(
    "trace_files_source", group_name="ingest", kinds={"file"},
    description="The trace files (drop folder and bundled demo traces) as they are on disk: the data "
                "version hashes every file's path, size and modification time, so a new or grown file "
                "requests raw_traces.")])
def trace_files_source(trace_files: TraceFiles) -> dg.ObserveResult:
    version, n = files_stamp(watched_files(trace_files.paths))
    return dg.ObserveResult(data_version=dg.DataVersion(version), metadata={"files": n})


@dg.multi_observable_source_asset(name="annotations_source", specs=[dg.AssetSpec(
    "annotations_source", group_name="ingest", kinds={"duckdb", "file"},
    description="People's decisions: rows the annotation app wrote into the annotations table, and "
                "decision files in the incoming folders (the app's outbox while the database is busy). "
                "A new decision changes the data version and requests annotations. While a run holds the "
                "database, the last observed version stands.")])
def annotations_source(context: dg.AssetExecutionContext, duckdb: FlywheelDuckDB,
                       annotation_files: AnnotationFiles) -> dg.ObserveResult:
    files, n_files = files_stamp(annotation_files.files())
    try:
        with duckdb.read_connection(wait_seconds=2.0, use_snapshot=False) as conn:
            app = app_decisions(conn)
    except FileNotFoundError:
        app = (0, None, None)
    except DuckDBError as exc:  # locked or not migrated yet: keep the last version rather than fail the tick
        previous = context.instance.get_latest_data_version_record(dg.AssetKey("annotations_source"), is_source=True)
        version = previous and previous.event_log_entry.tags.get("dagster/data_version")
        context.log.warning(f"database not readable ({exc}); keeping the last observed version")
        return dg.ObserveResult(data_version=dg.DataVersion(version or "unobserved"),
                                metadata={"database_busy": True})
    app_rows, latest, _ = app
    return dg.ObserveResult(data_version=dg.DataVersion(decisions_version(files, app)),
                            metadata={"decision_files": n_files, "app_decisions": app_rows,
                                      "latest_app_decision": latest or "none"})


SOURCES = [trace_files_source, annotations_source]
