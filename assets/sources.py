"""Observed sources: the trace files and people's decisions, each with a data version that
changes exactly when new data arrived, so the automation sensor rematerializes what depends on
them and nothing else. Observing is cheap: file names, sizes and times, and one small query."""

import hashlib

import dagster as dg
from duckdb import Error as DuckDBError

from pipeline.engine.ingest.files import watched_files
from pipeline.resources import AnnotationFiles, FlywheelDuckDB, TraceFiles

#: Rows that people wrote through the annotation app (imported files are the annotations asset's own).
#: Their count, the latest time, and a hash of their ids (an undone decision changes it too).
APP_DECISIONS = ("SELECT count(*), max(annotated_at)::VARCHAR, bit_xor(hash(annotation_id)) FROM annotations "
                 "WHERE source IS NULL OR source NOT LIKE 'file:%'")


def files_stamp(files) -> tuple[str, int]:
    """A hash of the files' paths, sizes and modification times, and how many there are."""
    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        digest.update(f"{path}\x1f{stat.st_size}\x1f{stat.st_mtime_ns}\x1e".encode())
    return digest.hexdigest()[:16], len(files)


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
            app_rows, latest, ids = conn.execute(APP_DECISIONS).fetchone()
    except FileNotFoundError:
        app_rows, latest, ids = 0, None, None
    except DuckDBError as exc:  # locked or not migrated yet: keep the last version rather than fail the tick
        previous = context.instance.get_latest_data_version_record(dg.AssetKey("annotations_source"), is_source=True)
        version = previous and previous.event_log_entry.tags.get("dagster/data_version")
        context.log.warning(f"database not readable ({exc}); keeping the last observed version")
        return dg.ObserveResult(data_version=dg.DataVersion(version or "unobserved"),
                                metadata={"database_busy": True})
    version = hashlib.sha256(f"{files}\x1f{app_rows}\x1f{latest}\x1f{ids}".encode()).hexdigest()[:16]
    return dg.ObserveResult(data_version=dg.DataVersion(version),
                            metadata={"decision_files": n_files, "app_decisions": app_rows,
                                      "latest_app_decision": latest or "none"})


SOURCES = [trace_files_source, annotations_source]
