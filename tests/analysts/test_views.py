"""The analysts' views (migrations 6 and 11) on a small database whose answers are known."""

import json
from contextlib import closing
from datetime import date, datetime, timezone

import duckdb
import polars as pl
import pytest

from pipeline.engine.core import store
from pipeline.engine.evaluate.candidates import RESULTS_KEY
from pipeline.engine.ingest.display import store_display_texts
from pipeline.engine.tasks import load_task

TASK = load_task("nl2query")


@pytest.fixture
def conn(tmp_path):
    conn = store.connect(str(tmp_path / "flywheel.duckdb"))
    conn.execute("""INSERT INTO raw_traces (trace_id, source, task, ts, input, content_hash, ingested_at) VALUES
        ('t1', 'f', 'nl2query', '2026-11-01 09:00:00+00', '{"q": "A"}', 'h1', now()),
        ('t2', 'f', 'nl2query', '2026-11-01 23:30:00+00', '{"q": "B"}', 'h2', now()),
        ('t3', 'f', 'nl2query', '2026-11-02 00:30:00+00', '{"q": "A"}', 'h3', now()),
        ('t4', 'f', 'nl2query', '2026-11-02 10:00:00+00', '{"q": "C"}', 'h4', now())""")
    conn.execute("""INSERT INTO labelled_failures (trace_id, failure_mode, label_source) VALUES
        ('t1', 'unknown_column', 'assertion'), ('t1', 'unknown_column', 'human'),
        ('t2', 'bad_operator', 'assertion'), ('t3', 'unknown_column', 'assertion'), ('t3', 'bad_operator', 'judge')""")
    yield conn
    conn.close()


def test_failure_rate_per_failure_mode_per_utc_day(conn):
    rows = conn.execute("SELECT day, failure_mode, failing_traces, traces, failure_rate, label_sources "
                        "FROM failure_rate_daily").fetchall()
    assert rows == [
        (date(2026, 11, 1), "bad_operator", 1, 2, 0.5, ["assertion"]),
        (date(2026, 11, 1), "unknown_column", 1, 2, 0.5, ["assertion", "human"]),
        (date(2026, 11, 2), "bad_operator", 1, 2, 0.5, ["judge"]),
        (date(2026, 11, 2), "unknown_column", 1, 2, 0.5, ["assertion"]),
    ]


def test_top_failing_inputs_without_a_display_text_groups_by_the_input(conn):
    rows = conn.execute("SELECT input_text, traces, failing_traces, failure_rate, failure_modes, distinct_inputs "
                        "FROM top_failing_inputs").fetchall()
    assert rows == [('{"q": "A"}', 2, 2, 1.0, ["bad_operator", "unknown_column"], 1),
                    ('{"q": "B"}', 1, 1, 1.0, ["bad_operator"], 1)]


def test_top_failing_inputs_groups_by_the_tasks_normalised_display_text(tmp_path):
    """The same question over different columns, spelled with other capitals and spaces, is one
    input: the task's display text (the question) lower-cased with white space collapsed."""
    with closing(store.connect(str(tmp_path / "flywheel.duckdb"))) as conn:
        questions = [("t1", "Count errors by service", ["a"]), ("t2", "count  errors by SERVICE ", ["a", "b"]),
                     ("t3", "Count errors by service", ["c"]), ("t4", "p95 latency", ["a"]),
                     ("t5", "p95 latency", ["b"])]
        conn.executemany("""INSERT INTO raw_traces (trace_id, source, task, ts, input, content_hash, ingested_at)
            VALUES (?, 'f', 'nl2query', '2026-11-01 09:00:00+00', ?, ?, now())""",
                         [(t, json.dumps({"question": q, "columns": c, "dataset": "d"}), t) for t, q, c in questions])
        conn.execute("""INSERT INTO labelled_failures (trace_id, failure_mode, label_source) VALUES
            ('t1', 'unknown_column', 'assertion'), ('t2', 'unknown_column', 'human'), ('t4', 'bad_operator', 'judge')""")
        assert store_display_texts(conn, TASK) == 5 and store_display_texts(conn, TASK) == 0  # each trace once
        rows = conn.execute("SELECT task, input_text, traces, failing_traces, failure_rate, failure_modes, "
                            "distinct_inputs FROM top_failing_inputs").fetchall()
    assert rows == [("nl2query", "Count errors by service", 3, 2, pytest.approx(2 / 3), ["unknown_column"], 3),
                    ("nl2query", "p95 latency", 2, 1, 0.5, ["bad_operator"], 2)]


def test_model_leaderboard_ranks_the_models_of_each_reported_test_set(conn):
    conn.execute("""INSERT INTO fine_tuned_models (model_id, backend, base_model, status, training_data_version, created_at)
        VALUES ('base', 'local', NULL, 'succeeded', NULL, now()), ('ft1', 'local', 'base', 'succeeded', 'v1', now()),
               ('ft2', 'local', 'base', 'succeeded', 'v2', now())""")
    results = [(m, f"e{i}", ts, i < passing, i < exact) for m, ts, passing, exact in
               [("base", "ts1", 2, 1), ("ft1", "ts1", 3, 2), ("ft2", "ts2", 4, 4)] for i in range(4)]
    conn.executemany("""INSERT INTO eval_results (model_id, example_id, test_set_version, passed_checks, exact_match,
        evaluated_at) VALUES (?, ?, ?, ?, ?, now())""", results)
    conn.execute("""INSERT INTO eval_reports (model_id, baseline_model_id, test_set_version, n_examples, metrics, verdict,
        created_at) VALUES ('ft1', 'base', 'ts1', 4, '{}', 'better', now())""")
    conn.execute("INSERT INTO model_promotions (model_id, reason, promoted_at) VALUES ('ft1', 'better', now())")
    rows = conn.execute("SELECT rank, model_id, kind, test_set_version, n_examples, passed_checks, exact_match, "
                        "verdict_vs_base, promoted FROM model_leaderboard").fetchall()
    assert rows == [(1, "ft1", "fine-tuned", "ts1", 4, 0.75, 0.5, "better", True),
                    (2, "base", "base", "ts1", 4, 0.5, 0.25, None, False)]  # ft2: no report on its test set


def test_model_leaderboard_keeps_a_test_set_after_models_are_evaluated_on_a_new_one(conn):
    conn.execute("""INSERT INTO fine_tuned_models (model_id, backend, base_model, status, training_data_version, created_at)
        VALUES ('base', 'local', NULL, 'succeeded', NULL, now()), ('ft1', 'local', 'base', 'succeeded', 'v1', now()),
               ('ft2', 'local', 'base', 'succeeded', 'v2', now())""")
    # ft1 against base on ts1; later ft2 against base and ft1 (promoted) on ts2: as the evaluation writes them
    for test_set, passing in (("ts1", {"base": 1, "ft1": 3}), ("ts2", {"base": 1, "ft1": 2, "ft2": 4})):
        for model_id, n in passing.items():
            rows = pl.DataFrame({"model_id": model_id, "example_id": [f"e{i}" for i in range(4)],
                                 "test_set_version": test_set, "passed_checks": [i < n for i in range(4)],
                                 "exact_match": False, "evaluated_at": datetime.now(timezone.utc)})
            store.upsert(conn, "eval_results", rows, RESULTS_KEY)
    conn.execute("""INSERT INTO eval_reports (model_id, baseline_model_id, test_set_version, n_examples, metrics, verdict,
        created_at) VALUES ('ft1', 'base', 'ts1', 4, '{}', 'better', now()), ('ft2', 'base', 'ts2', 4, '{}', 'better', now()),
        ('ft2', 'ft1', 'ts2', 4, '{}', 'better', now())""")
    rows = conn.execute("SELECT test_set_version, rank, model_id, passed_checks, verdict_vs_base FROM model_leaderboard")
    assert rows.fetchall() == [("ts1", 1, "ft1", 0.75, "better"), ("ts1", 2, "base", 0.25, None),
                               ("ts2", 1, "ft2", 1.0, "better"), ("ts2", 2, "ft1", 0.5, None),
                               ("ts2", 3, "base", 0.25, None)]


def test_training_data_composition(conn):
    rows = [("a", "trace", "train", None), ("b", "trace", "train", None), ("c", "trace", "train", "unknown_column"),
            ("d", "synthetic", "train", None), ("e", "trace", "test", None)]
    conn.executemany("""INSERT INTO training_examples (example_id, source, group_id, split, input, output, failure_mode,
        created_at) VALUES (?, ?, ?, ?, '{}', '{}', ?, now())""", [(i, s, i, sp, f) for i, s, sp, f in rows])
    assert conn.execute("SELECT * FROM training_data_composition").fetchall() == [
        ("test", "trace", "none", 1, 1.0),
        ("train", "trace", "none", 2, 0.5),
        ("train", "synthetic", "none", 1, 0.25),
        ("train", "trace", "unknown_column", 1, 0.25),
    ]


def test_views_are_readable_from_a_read_only_connection(conn, tmp_path):
    conn.close()
    with duckdb.connect(str(tmp_path / "flywheel.duckdb"), read_only=True) as reader:
        assert reader.execute("SELECT count(*) FROM failure_rate_daily").fetchone() == (4,)
