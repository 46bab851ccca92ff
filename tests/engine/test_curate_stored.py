"""What curation reads from the stored tables, and the audit of the stored training examples."""

import json
from datetime import datetime, timezone

import polars as pl
import pytest

from pipeline.engine.core import store
from pipeline.engine.curate.audit import audit_splits
from pipeline.engine.curate.examples import CurationConfig
from pipeline.engine.curate.reads import previous_splits, real_examples_from, stored_synthetic
from pipeline.engine.curate.splits import SplitConfig
from pipeline.engine.tasks import load_task
from pipeline.engine.tasks.nl2query import canonical, dump

TASK = load_task("nl2query")
NOW = datetime(2026, 10, 20, 12, 0, tzinfo=timezone.utc)
COLUMNS = ["duration_ms", "service.name", "region"]
P95 = dump(canonical({"calculations": [{"op": "P95", "column": "duration_ms"}], "breakdowns": ["service.name"]}))
COUNT = dump(canonical({"calculations": [{"op": "COUNT"}], "breakdowns": ["region"]}))


def inp(question):
    return json.dumps({"question": question, "columns": COLUMNS, "dataset": "checkout-api"})


@pytest.fixture
def conn():
    with store.connect(":memory:") as connection:
        yield connection


def add_trace(conn, trace_id, question, output, passed):
    conn.execute("INSERT INTO raw_traces (trace_id, source, task, input, output, content_hash, ingested_at) "
                 "VALUES (?, 'test', 'nl2query', ?, ?, ?, ?)", [trace_id, inp(question), output, trace_id, NOW])
    conn.execute("INSERT INTO trace_evaluations (trace_id, check_name, passed, evaluated_at) VALUES (?, ?, ?, ?)",
                 [trace_id, TASK.check_names[0], passed, NOW])


def add_example(conn, example_id, source, group, split, question):
    conn.execute("INSERT INTO training_examples (example_id, source, group_id, split, input, output, created_at) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?)", [example_id, source, group, split, inp(question), COUNT, NOW])


def test_real_examples_from_the_store_are_passing_traces_and_corrections(conn):
    add_trace(conn, "t1", "p95 duration_ms by service.name", P95, True)
    add_trace(conn, "t2", "count by region", '{"calculations": "bad"}', False)
    add_trace(conn, "t3", "count of everything", '{"calculations": "bad"}', False)
    conn.execute("INSERT INTO annotations (annotation_id, trace_id, label, correction, annotator, annotated_at) "
                 "VALUES ('a1', 't2', 'bad', ?, 'ana', ?)", [COUNT, NOW])
    real = real_examples_from(conn, TASK)
    assert real.select("example_id", "source", "parent_id", "output", "failure_mode").rows() == [
        ("trace:t1", "trace", "t1", P95, None),
        ("correction:t2", "correction", "t2", COUNT, TASK.check_names[0]),
    ]
    assert json.loads(real["input"][0]) == json.loads(inp("p95 duration_ms by service.name"))


def test_previous_splits_are_the_stored_split_of_each_group(conn):
    assert previous_splits(conn) == {}
    add_example(conn, "trace:a", "trace", "g_a", "test", "a")
    add_example(conn, "synthetic:a", "synthetic", "g_a", "test", "a2")
    add_example(conn, "trace:b", "trace", "g_b", "train", "b")
    assert previous_splits(conn) == {"g_a": "test", "g_b": "train"}


def test_stored_synthetic_has_every_column_with_input_as_json_text(conn):
    conn.execute("INSERT INTO synthetic_examples (example_id, parent_id, generator, input, output, seed, created_at, "
                 "model) VALUES ('synthetic:2', 'trace:a', 'llm_rewrite', ?, ?, 7, ?, 'gpt-test'), "
                 "('synthetic:1', 'trace:a', 'vary_limit', ?, ?, 7, ?, NULL)",
                 [inp("b"), COUNT, NOW, inp("a"), P95, NOW])
    stored = stored_synthetic(conn)
    assert stored["example_id"].to_list() == ["synthetic:1", "synthetic:2"]
    assert {"parent_id", "generator", "seed", "prompt_version", "model", "created_at"} <= set(stored.columns)
    assert stored["input"].dtype == pl.String and json.loads(stored["input"][0])["question"] == "a"


def test_audit_counts_groups_in_two_splits_synthetic_in_test_leaks_and_real_shares(conn):
    for i in range(6):
        add_example(conn, f"trace:tr{i}", "trace", f"g_tr{i}", "train", f"count by region for shop number {i}")
    add_example(conn, "trace:va", "trace", "g_va", "validation", "max duration_ms for the api gateway")
    add_example(conn, "trace:te", "trace", "g_te", "test", "p95 duration_ms by service.name last week")
    add_example(conn, "trace:te2", "trace", "g_tr0", "test", "a different question in a train group")
    add_example(conn, "synthetic:te", "synthetic", "g_te", "test", "p95 duration_ms by service.name this week")
    add_example(conn, "synthetic:leak", "synthetic", "g_tr1", "train", "p95 duration_ms by service.name last week!")
    config = CurationConfig(splits=SplitConfig(validation=0.1, test=0.2, tolerance=0.05))
    audit = audit_splits(conn, config, TASK)
    assert audit.rows == 11
    assert audit.groups_in_two_splits == 1
    assert audit.synthetic_in_test == 1
    assert audit.leaks == [("synthetic:leak", "trace:te")]  # (train or validation, test)
    assert audit.sizes["train"] == {"share": 0.6667, "target": pytest.approx(0.7), "within_tolerance": True}
    assert audit.sizes["validation"]["share"] == 0.1111 and audit.sizes["test"]["share"] == 0.2222
    assert audit.composition.rows() == [("test", "synthetic", "unknown", 1), ("test", "trace", "unknown", 2),
                                        ("train", "synthetic", "unknown", 1), ("train", "trace", "unknown", 6),
                                        ("validation", "trace", "unknown", 1)]
    # as the UI's composition table heads it
    assert audit.composition.columns == ["split", "source", "output_origin", "examples"]
    report = {"splits": {s: {"examples": n} for s, n in (("train", 7), ("validation", 1), ("test", 3))}}
    assert audit.split_table(report).rows() == [("train", 7, 0.6667, pytest.approx(0.7)),
                                                ("validation", 1, 0.1111, 0.1), ("test", 3, 0.2222, 0.2)]


def test_audit_of_a_clean_table_finds_nothing(conn):
    add_example(conn, "trace:a", "trace", "g_a", "train", "count by region")
    audit = audit_splits(conn, CurationConfig(), TASK)
    assert (audit.rows, audit.groups_in_two_splits, audit.synthetic_in_test, audit.leaks) == (1, 0, 0, [])
