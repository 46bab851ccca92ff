"""Declarative automation on the real definitions: what new data requests, and what it does not."""

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import dagster as dg

from pipeline.automation import SOURCES, automation_sensor
from pipeline.definitions import build_defs
from pipeline.engine.core import store

CHEAP_CHAIN = {"raw_traces", "annotations", "trace_evaluations", "trace_judgements", "labelled_failures",
               "synthetic_examples", "training_examples", "training_files"}
TRAINING_PATH = {"fine_tuned_model", "eval_report", "promoted_model"}
# A writer that keeps the database (another run, or the annotation app mid-write).
HOLD_WRITE_LOCK = """
import sys, time, duckdb
conn = duckdb.connect(sys.argv[1])
print("holding", flush=True)
time.sleep(60)
"""


def test_seeded_graph_with_unchanged_sources_requests_nothing(graph):
    graph.observe()
    assert graph.tick() == set()
    assert graph.tick() == set()


def test_new_trace_file_requests_ingest_and_the_chain_but_not_training(graph):
    incoming = graph.folder / "incoming"
    incoming.mkdir(exist_ok=True)
    record = {"trace_id": "tr_auto_1", "ts": "2026-11-20T10:00:00Z", "model": "prod", "output": "{}",
              "input": {"question": "count of requests", "columns": ["duration_ms"], "dataset": "x"}}
    (incoming / "new.jsonl").write_text(json.dumps(record) + "\n")
    graph.observe()
    assert graph.tick() == CHEAP_CHAIN
    # handled: the next tick asks again for nothing
    assert graph.tick() == set()


def test_new_annotation_requests_curation_then_the_training_path(graph):
    with store.connect(str(graph.folder / "flywheel.duckdb")) as conn:  # the annotation app writes here
        conn.execute("""INSERT INTO annotations (annotation_id, trace_id, label, failure_mode, annotator,
                        annotated_at, source) VALUES ('a1', 't1', 'bad', 'unknown_column', 'ana', now(), 'app')""")
    graph.observe()
    requested = graph.tick()
    assert requested == CHEAP_CHAIN - {"raw_traces", "trace_evaluations"}
    # the run curates: the training files' content changed, so training follows
    graph.materialized(*(requested - {"training_files"}))
    graph.materialized("training_files", data_version="v2")
    assert graph.tick() == TRAINING_PATH
    graph.materialized(*TRAINING_PATH)
    assert graph.tick() == set()


def test_curation_that_leaves_the_training_data_unchanged_requests_no_training(graph):
    graph.materialized("training_examples")
    graph.materialized("training_files", data_version="v1")
    assert graph.tick() == set()


def test_failing_blocking_check_stops_promotion(graph):
    graph.materialized("eval_report", checks_pass=False)
    assert "promoted_model" not in graph.tick()
    graph.materialized("eval_report", checks_pass=True)
    assert graph.tick() == {"promoted_model"}


def test_nightly_only_training_leaves_fine_tuning_to_the_schedule(graph, monkeypatch):
    monkeypatch.setattr("pipeline.automation.TRAIN_ON", "nightly")
    graph.defs = build_defs(graph.resources)
    graph.materialized("training_files", data_version="v2")
    assert graph.tick() == set()


def test_failing_format_check_stops_training(graph):
    graph.materialized("training_files", data_version="v3", checks_pass=False)
    assert graph.tick() == set()


def test_sources_are_observed_on_their_cron_and_the_sensor_runs_by_default(graph):
    assert automation_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    start = datetime.now(timezone.utc).replace(second=0, microsecond=0) + timedelta(minutes=10)
    start -= timedelta(minutes=start.minute % 5 - 1)  # a minute after a 5-minute tick
    graph.tick(at=start, sources=True)  # a tick passed since the seeding ticks
    assert graph.tick(at=start + timedelta(minutes=1), sources=True) == set()
    assert graph.tick(at=start + timedelta(minutes=5), sources=True) == set(SOURCES)
    assert graph.tick(at=start + timedelta(minutes=6), sources=True) == set()


def test_busy_database_keeps_the_last_observed_decisions_version(graph):
    store.connect(str(graph.folder / "flywheel.duckdb")).close()
    graph.observe()
    key = dg.AssetKey("annotations_source")
    before = graph.instance.get_latest_data_version_record(key, is_source=True).event_log_entry.tags
    holder = subprocess.Popen([sys.executable, "-c", HOLD_WRITE_LOCK, str(graph.folder / "flywheel.duckdb")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        graph.observe()  # succeeds: the database is busy, the last version stands
    finally:
        holder.kill()
        holder.wait()
    record = graph.instance.get_latest_data_version_record(key, is_source=True).event_log_entry
    assert record.tags["dagster/data_version"] == before["dagster/data_version"]
    assert record.asset_observation.metadata["database_busy"].value is True
    assert graph.tick() == set()
