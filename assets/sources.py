"""Observed sources: the trace files and people's decisions, each with a data version that
changes exactly when new data arrived, so automation rematerializes what depends on them and
nothing else. Observing is cheap: file names, sizes and times, and one small query.

The ``observe_sources`` sensor observes them every ``FLYWHEEL_OBSERVE_SECONDS`` (60) and records
an observation only when a version changed, without a run (the Runs page stays for real work);
the ``flywheel`` job observes them as its first steps."""

import os

import dagster as dg
from duckdb import Error as DuckDBError

from pipeline.engine.ingest.files import files_stamp, watched_files
from pipeline.engine.label.annotations import app_decisions, decisions_version
from pipeline.resources import AnnotationFiles, FlywheelDuckDB, TraceFiles

OBSERVE_SECONDS = int(os.environ.get("FLYWHEEL_OBSERVE_SECONDS", "60"))
DATA_VERSION_TAG = "dagster/data_version"


def last_version(instance: dg.DagsterInstance, key: str) -> str | None:
    """The data version of the source ``key``'s latest observation, None if never observed."""
    record = instance.get_latest_data_version_record(dg.AssetKey(key), is_source=True)
    return record.event_log_entry.tags.get(DATA_VERSION_TAG) if record else None


def observe_trace_files(trace_files: TraceFiles) -> dg.ObserveResult:
    """The trace files' version: a hash of every file's path, size and modification time."""
    version, n = files_stamp(watched_files(trace_files.paths))
    return dg.ObserveResult(data_version=dg.DataVersion(version), metadata={"files": n})


def observe_decisions(instance: dg.DagsterInstance, log, duckdb: FlywheelDuckDB,
                      annotation_files: AnnotationFiles) -> dg.ObserveResult:
    """People's decisions' version: the decision files' stamp and the app's rows; while the
    database is busy (or not migrated yet), the last observed version."""
    files, n_files = files_stamp(annotation_files.files())
    try:
        with duckdb.read_connection(wait_seconds=2.0, use_snapshot=False) as conn:
            app = app_decisions(conn)
    except FileNotFoundError:
        app = (0, None, None)
    except DuckDBError as exc:  # locked or not migrated yet: keep the last version rather than fail
        log.warning(f"database not readable ({exc}); keeping the last observed version")
        return dg.ObserveResult(data_version=dg.DataVersion(last_version(instance, "annotations_source") or "unobserved"),
                                metadata={"database_busy": True})
    app_rows, latest, _ = app
    return dg.ObserveResult(data_version=dg.DataVersion(decisions_version(files, app)),
                            metadata={"decision_files": n_files, "app_decisions": app_rows,
                                      "latest_app_decision": latest or "none"})


@dg.multi_observable_source_asset(name="trace_files_source", specs=[dg.AssetSpec(
    "trace_files_source", group_name="ingest", kinds={"file"},
    description="The trace files (drop folder and bundled demo traces) as they are on disk: the data "
                "version hashes every file's path, size and modification time, so a new or grown file "
                "requests raw_traces. Observed by the observe_sources sensor (no runs).")])
def trace_files_source(trace_files: TraceFiles) -> dg.ObserveResult:
    return observe_trace_files(trace_files)


@dg.multi_observable_source_asset(name="annotations_source", specs=[dg.AssetSpec(
    "annotations_source", group_name="ingest", kinds={"duckdb", "file"},
    description="People's decisions: rows the annotation app wrote into the annotations table, and "
                "decision files in the incoming folders (the app's outbox while the database is busy). "
                "A new decision changes the data version and requests annotations. While a run holds the "
                "database, the last observed version stands. Observed by the observe_sources sensor.")])
def annotations_source(context: dg.AssetExecutionContext, duckdb: FlywheelDuckDB,
                       annotation_files: AnnotationFiles) -> dg.ObserveResult:
    return observe_decisions(context.instance, context.log, duckdb, annotation_files)


@dg.sensor(
    name="observe_sources",
    minimum_interval_seconds=OBSERVE_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Observes the trace files and people's decisions and records an observation (no run) when "
                "their data version changed; the flywheel_automation sensor then runs what the new data affects.",
)
def observe_sources(context: dg.SensorEvaluationContext, duckdb: FlywheelDuckDB, trace_files: TraceFiles,
                    annotation_files: AnnotationFiles):
    observed = {"trace_files_source": observe_trace_files(trace_files),
                "annotations_source": observe_decisions(context.instance, context.log, duckdb, annotation_files)}
    changed = {key: result for key, result in observed.items()
               if result.data_version.value != last_version(context.instance, key)}
    if not changed:
        return dg.SkipReason("unchanged: " + ", ".join(f"{k} {r.data_version.value}" for k, r in observed.items()))
    return dg.SensorResult(asset_events=[
        dg.AssetObservation(key, metadata=result.metadata, tags={DATA_VERSION_TAG: result.data_version.value})
        for key, result in changed.items()])


SOURCES = [trace_files_source, annotations_source]
