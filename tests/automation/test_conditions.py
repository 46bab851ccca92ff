"""Declarative automation on the real definitions: what new data requests, and what it does not."""

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import dagster as dg

from assets.sources import observe_sources
from pipeline.automation import automation_sensor
from pipeline.definitions import build_defs, defs
from pipeline.engine.core import store

CHEAP_CHAIN = {"raw_traces", "annotations", "trace_evaluations", "trace_judgements", "labelled_failures",
               "synthetic_examples", "training_examples", "training_files", "incumbent_outputs"}
TRAINING_PATH = {"fine_tuned_model", "eval_report", "promoted_model"}
# A writer that keeps the database (another run, or the annotation app mid-write).
HOLD_WRITE_LOCK = """
import sys, time, duckdb
conn = duckdb.connect(sys.argv[1])
print("holding", flush=True)
time.sleep(60)
"""


def test_seeded_graph_with_unchanged_sources_requests_nothing(graph):
    assert graph.observe() == []
    assert graph.tick() == set()
    assert graph.tick() == set()


def add_trace_file(graph):
    incoming = graph.folder / "incoming"
    incoming.mkdir(exist_ok=True)
    record = {"trace_id": "tr_auto_1", "ts": "2026-11-20T10:00:00Z", "model": "prod", "output": "{}",
              "input": {"question": "count of requests", "columns": ["duration_ms"], "dataset": "x"}}
    (incoming / "new.jsonl").write_text(json.dumps(record) + "\n")


def test_new_trace_file_requests_ingest_then_the_chain_but_not_training(graph):
    add_trace_file(graph)
    assert graph.observe() == ["trace_files_source"]
    assert graph.tick() == {"raw_traces"}  # ingestion alone: what reads it waits for its new data
    graph.materialized("raw_traces")
    assert graph.tick() == CHEAP_CHAIN - {"raw_traces"}
    graph.materialized(*CHEAP_CHAIN - {"raw_traces", "training_files"})
    graph.materialized("training_files", changed=False)  # the curated data came out the same
    assert graph.tick() == set()


def test_ingestion_that_found_nothing_new_requests_nothing_downstream(graph):
    add_trace_file(graph)
    graph.observe()
    assert graph.tick() == {"raw_traces"}
    graph.materialized("raw_traces", changed=False)  # e.g. the file was still being written
    assert graph.tick() == set()
    assert graph.tick() == set()


def test_new_annotation_requests_curation_then_the_training_path(graph):
    with store.connect(str(graph.folder / "flywheel.duckdb")) as conn:  # the annotation app writes here
        conn.execute("""INSERT INTO annotations (annotation_id, trace_id, label, failure_mode, annotator,
                        annotated_at, source) VALUES ('a1', 't1', 'bad', 'unknown_column', 'ana', now(), 'app')""")
    assert graph.observe() == ["annotations_source"]
    assert graph.tick() == {"annotations"}
    graph.materialized("annotations")
    requested = graph.tick()
    assert requested == CHEAP_CHAIN - {"raw_traces", "annotations", "trace_evaluations"}
    # the run curates: the training files' content changed, so training follows
    graph.materialized(*requested)
    assert graph.tick() == TRAINING_PATH
    graph.materialized(*TRAINING_PATH)
    assert graph.tick() == set()


def test_curation_that_leaves_the_training_data_unchanged_requests_no_training(graph):
    graph.materialized("training_examples")
    graph.materialized("training_files", changed=False)
    assert graph.tick() == {"incumbent_outputs"}  # the test split may have changed: capture it; no training


def test_a_reused_model_requests_no_evaluation(graph):
    graph.materialized("fine_tuned_model", changed=False)  # a re-run found the model trained already
    assert graph.tick() == set()
    graph.materialized("fine_tuned_model")
    assert graph.tick() == {"eval_report", "promoted_model"}


def test_failing_blocking_check_stops_promotion(graph):
    graph.materialized("eval_report", checks_pass=False)
    assert "promoted_model" not in graph.tick()
    graph.materialized("eval_report", checks_pass=True)
    assert graph.tick() == {"promoted_model"}


def test_nightly_only_training_leaves_fine_tuning_to_the_schedule(graph, monkeypatch):
    monkeypatch.setattr("pipeline.automation.TRAIN_ON", "nightly")
    graph.defs = build_defs(graph.resources)
    graph.materialized("training_files")
    assert graph.tick() == set()


def test_failing_format_check_stops_training(graph):
    graph.materialized("training_files", checks_pass=False)
    assert graph.tick() == set()


def test_observing_creates_no_runs_and_automation_never_requests_an_observation(graph):
    assert observe_sources.default_status == dg.DefaultSensorStatus.RUNNING
    assert automation_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    add_trace_file(graph)
    assert graph.observe() == ["trace_files_source"]
    assert graph.version("trace_files_source") is not None
    assert graph.observe() == []  # unchanged: nothing recorded again
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    assert graph.tick(at=later, sources=True) == {"raw_traces"}
    assert graph.tick(at=later + timedelta(minutes=5), sources=True) == set()
    assert graph.instance.get_runs_count() == 0


def test_labels_say_what_triggers_each_asset():
    asset_graph = defs.resolve_asset_graph()
    conditions = {key.to_user_string(): asset_graph.get(key).automation_condition
                  for key in asset_graph.get_all_asset_keys()}
    labels = {key: condition.get_label() if condition else None for key, condition in conditions.items()}
    assert labels == {
        "trace_files_source": None, "annotations_source": None, "langsmith_traces": None, "base_model": None,
        "raw_traces": "when the trace files change",
        "annotations": "when people's decisions or the ingested traces change",
        "trace_evaluations": "after new data in raw_traces or langsmith_traces",
        "trace_judgements": "after new data in raw_traces or annotations",
        "labelled_failures": "after new data in trace_evaluations, trace_judgements or annotations",
        "synthetic_examples": "after new data in labelled_failures or annotations",
        "training_examples": "after new data in labelled_failures or synthetic_examples",
        "training_files": "after new data in training_examples",
        "incumbent_outputs": "after new data in raw_traces or training_examples",
        "fine_tuned_model": "after new training data (training_files' content hash) or a new base_model",
        "eval_report": "after a new fine_tuned_model",
        "promoted_model": "after a new eval_report (its blocking no_regression check passed)",
    }
    assert "eager" not in str(labels)


def test_busy_database_keeps_the_last_observed_decisions_version(graph):
    store.connect(str(graph.folder / "flywheel.duckdb")).close()
    graph.observe()
    before = graph.version("annotations_source")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_WRITE_LOCK, str(graph.folder / "flywheel.duckdb")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        assert graph.observe() == []  # the database is busy: the last version stands, nothing is recorded
    finally:
        holder.kill()
        holder.wait()
    assert graph.version("annotations_source") == before
    assert graph.tick() == set()
