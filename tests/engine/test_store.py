"""DuckDB schema, migrations and key-based writes."""

from contextlib import closing
from datetime import datetime, timedelta, timezone

import duckdb
import polars as pl
import pytest

from pipeline.engine.core import store

T0 = datetime(2026, 10, 16, 2, 38, 21, tzinfo=timezone.utc)

#: docs/architecture.md's table contract: the columns each table must hold at least.
CONTRACT = {
    "raw_traces": ["trace_id", "source", "task", "ts", "input", "output", "model", "latency_ms", "prompt_tokens",
                   "completion_tokens", "error", "metadata", "ingested_at"],
    "rejected_traces": ["source", "location", "reason", "raw"],
    "trace_evaluations": ["trace_id", "check_name", "passed", "detail", "evaluated_at"],
    "annotations": ["trace_id", "label", "failure_mode", "correction", "critique", "annotator", "annotated_at"],
    "labelled_failures": ["trace_id", "failure_mode", "label_source", "detail", "correction"],
    "synthetic_examples": ["example_id", "parent_id", "generator", "input", "output", "created_at"],
    "training_examples": ["example_id", "source", "group_id", "split", "input", "output"],
    "fine_tuned_models": ["model_id", "backend", "base_model", "job_id", "status", "training_data_version",
                          "hyperparameters", "created_at", "finished_at", "error"],
    "eval_results": ["model_id", "example_id", "output", "passed_checks", "metrics"],
    "eval_reports": ["model_id", "baseline_model_id", "n_examples", "metrics", "verdict", "created_at"],
}
JSON_COLUMNS = [("raw_traces", "input"), ("raw_traces", "metadata"), ("eval_results", "metrics"),
                ("eval_reports", "metrics")]

EVAL_SCHEMA = {"trace_id": pl.String, "check_name": pl.String, "passed": pl.Boolean, "detail": pl.String,
               "task_version": pl.String, "evaluated_at": pl.Datetime("us", "UTC")}


@pytest.fixture
def conn():
    c = duckdb.connect(":memory:")
    store.migrate(c)
    yield c
    c.close()


def columns(conn, table):
    return {name: dtype for name, dtype in conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ?", [table]).fetchall()}


def evals(rows, at=T0):
    return pl.DataFrame([{"trace_id": t, "check_name": c, "passed": p, "detail": d, "task_version": "1",
                          "evaluated_at": at} for t, c, p, d in rows], schema=EVAL_SCHEMA)


def table(conn, name, order):
    return conn.execute(f"SELECT * FROM {name} ORDER BY {order}").pl()


# --- migrations --------------------------------------------------------------------------------------

def test_migrate_creates_every_contract_table_with_contract_columns(conn):
    assert set(store.CONTRACT_TABLES) == set(CONTRACT)
    for name, required in CONTRACT.items():
        have = columns(conn, name)
        missing = [c for c in required if c not in have]
        assert not missing, f"{name} lacks {missing}"
    for name, column in JSON_COLUMNS:
        assert columns(conn, name)[column] == "JSON", (name, column)


def test_migrate_is_idempotent_and_keeps_data(tmp_path):
    path = str(tmp_path / "flywheel.duckdb")
    with duckdb.connect(path) as c:
        assert store.migrate(c) == [v for v, _, _ in store.MIGRATIONS]
        store.upsert(c, "trace_evaluations", evals([("t1", "invalid_json", True, "")]), ["trace_id"])
    with duckdb.connect(path) as c:
        assert store.migrate(c) == []
        assert store.migrate(c) == []
        assert c.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(store.MIGRATIONS)
        assert c.execute("SELECT count(*) FROM trace_evaluations").fetchone()[0] == 1


def test_connect_creates_folder_and_migrates(tmp_path):
    path = tmp_path / "nested" / "dir" / "flywheel.duckdb"
    c = store.connect(str(path))
    try:
        assert path.exists()
        assert {r[0] for r in c.execute("SELECT table_name FROM information_schema.tables").fetchall()} >= set(CONTRACT)
    finally:
        c.close()
    ro = store.connect(str(path), read_only=True)
    try:
        assert ro.execute("SELECT count(*) FROM raw_traces").fetchone()[0] == 0
    finally:
        ro.close()


def results(model_id, test_set, examples, passed=True):
    return pl.DataFrame([{"model_id": model_id, "example_id": e, "test_set_version": test_set, "output": "{}",
                          "passed_checks": passed, "exact_match": passed, "evaluated_at": T0} for e in examples])


def test_eval_results_are_keyed_by_model_test_set_and_example(conn):
    store.upsert(conn, "eval_results", results("ft-1", "ts1", ["e1", "e2"]), ["model_id", "test_set_version"])
    store.upsert(conn, "eval_results", results("ft-1", "ts2", ["e1", "e3"]), ["model_id", "test_set_version"])
    # re-evaluated on ts1: those results are replaced, ts2's stay
    store.upsert(conn, "eval_results", results("ft-1", "ts1", ["e1", "e2"], passed=False), ["model_id", "test_set_version"])
    assert conn.execute("SELECT test_set_version, example_id, passed_checks FROM eval_results ORDER BY ALL").fetchall() == [
        ("ts1", "e1", False), ("ts1", "e2", False), ("ts2", "e1", True), ("ts2", "e3", True)]
    twice = pl.concat([results("ft-2", "ts1", ["e1"]), results("ft-2", "ts1", ["e1"])])
    with pytest.raises(duckdb.ConstraintException):  # two rows for one key never land
        store.upsert(conn, "eval_results", twice, ["model_id", "test_set_version"])
    assert conn.execute("SELECT count(*) FROM eval_results").fetchone()[0] == 4


def test_eval_results_rewritten_after_reopening_a_file_database(tmp_path):
    # DuckDB checked a reopened file's unique index (migration 8, dropped by 15) before a
    # same-transaction delete reached it: rewriting a model's results failed
    path = str(tmp_path / "f.duckdb")
    with closing(store.connect(path)) as c:
        for model in ("ft-0", "ft-1", "ft-2"):
            store.upsert(c, "eval_results", results(model, "ts1", [f"e{i}" for i in range(300)] + ["e9x"]),
                         ["model_id", "test_set_version"])
        store.upsert(c, "eval_results", results("ft-1", "ts1", ["e1", "e2", "e9"]), ["model_id", "test_set_version"])
    with closing(store.connect(path)) as c:
        store.upsert(c, "eval_results", results("ft-1", "ts1", ["e1", "e2", "e3"], passed=False),
                     ["model_id", "test_set_version"])
        mine = "SELECT example_id, passed_checks FROM eval_results WHERE model_id = 'ft-1' ORDER BY ALL"
        assert c.execute(mine).fetchall() == [
            ("e1", False), ("e2", False), ("e3", False)]  # e9 is gone: the prefix's rows are the batch's
        store.upsert(c, "eval_results", results("ft-1", "ts1", ["e3"]), ["model_id", "test_set_version", "example_id"])
        assert c.execute(mine).fetchall() == [("e1", False), ("e2", False), ("e3", True)]
        assert c.execute("SELECT count(*) FROM eval_results").fetchone() == (2 * 301 + 3,)


def test_read_returns_polars(conn):
    frame = store.read(conn, "SELECT ? AS a, 2 AS b", ["x"])
    assert isinstance(frame, pl.DataFrame) and frame.to_dicts() == [{"a": "x", "b": 2}]


# --- upsert --------------------------------------------------------------------------------------------

def test_upsert_twice_duplicates_nothing(conn):
    batch = evals([("t1", "invalid_json", True, ""), ("t2", "invalid_json", False, "not JSON")])
    assert store.upsert(conn, "trace_evaluations", batch, ["trace_id", "check_name"]) == 2
    assert store.upsert(conn, "trace_evaluations", batch, ["trace_id", "check_name"]) == 2
    assert table(conn, "trace_evaluations", "trace_id").select("trace_id", "passed").rows() == [
        ("t1", True), ("t2", False)]


def test_upsert_replaces_changed_rows_and_keeps_others(conn):
    store.upsert(conn, "trace_evaluations", evals([("t1", "invalid_json", True, ""),
                                                   ("t2", "invalid_json", False, "not JSON")]),
                 ["trace_id", "check_name"])
    store.upsert(conn, "trace_evaluations", evals([("t2", "invalid_json", True, "")], at=T0 + timedelta(hours=1)),
                 ["trace_id", "check_name"])
    rows = table(conn, "trace_evaluations", "trace_id")
    assert rows.select("trace_id", "passed", "detail").rows() == [("t1", True, ""), ("t2", True, "")]
    assert rows["evaluated_at"].to_list()[1] == T0 + timedelta(hours=1)
    assert rows["evaluated_at"].to_list()[0] == T0


def test_upsert_with_prefix_key_replaces_every_row_of_that_key(conn):
    store.upsert(conn, "trace_evaluations", evals([
        ("t1", "invalid_json", True, ""), ("t1", "unknown_column", False, "column 'x'"),
        ("t1", "limit_not_integer", True, ""), ("t2", "invalid_json", True, "")]), ["trace_id"])
    # t1 is re-evaluated with fewer checks: its old rows go, t2 stays
    store.upsert(conn, "trace_evaluations", evals([("t1", "invalid_json", False, "not JSON")]), ["trace_id"])
    assert table(conn, "trace_evaluations", "trace_id, check_name").select("trace_id", "check_name", "passed").rows() == [
        ("t1", "invalid_json", False), ("t2", "invalid_json", True)]


def test_upsert_key_with_nulls_matches_nulls(conn):
    schema = {"source": pl.String, "location": pl.String, "reason": pl.String, "raw": pl.String,
              "rejected_at": pl.Datetime("us", "UTC")}
    batch = pl.DataFrame([{"source": "drop", "location": "a.jsonl:3", "reason": "malformed JSON", "raw": None,
                           "rejected_at": T0}], schema=schema)
    store.upsert(conn, "rejected_traces", batch, ["source", "location", "raw"])
    store.upsert(conn, "rejected_traces", batch, ["source", "location", "raw"])
    assert conn.execute("SELECT count(*) FROM rejected_traces").fetchone()[0] == 1


def test_upsert_empty_batch_writes_nothing(conn):
    store.upsert(conn, "trace_evaluations", evals([("t1", "invalid_json", True, "")]), ["trace_id"])
    assert store.upsert(conn, "trace_evaluations", evals([]), ["trace_id"]) == 0
    assert conn.execute("SELECT count(*) FROM trace_evaluations").fetchone()[0] == 1


def test_failing_upsert_rolls_back_the_delete(conn):
    store.upsert(conn, "trace_evaluations", evals([("t1", "invalid_json", True, ""), ("t2", "invalid_json", True, "")]),
                 ["trace_id"])
    # check_name is NOT NULL: the insert fails after the delete of t1's and t2's rows ran
    bad = evals([("t1", "invalid_json", False, "changed"), ("t2", None, False, "x")])
    with pytest.raises(duckdb.ConstraintException):
        store.upsert(conn, "trace_evaluations", bad, ["trace_id"])
    assert table(conn, "trace_evaluations", "trace_id").select("trace_id", "passed", "detail").rows() == [
        ("t1", True, ""), ("t2", True, "")]
    # the connection is usable afterwards (no transaction left open, no stale registration)
    assert store.upsert(conn, "trace_evaluations", evals([("t3", "invalid_json", True, "")]), ["trace_id"]) == 1
    assert conn.execute("SELECT count(*) FROM trace_evaluations").fetchone()[0] == 3


# --- insert_new ------------------------------------------------------------------------------------

def test_insert_new_keeps_the_first_write(conn):
    first = evals([("t1", "invalid_json", True, "first")])
    assert store.insert_new(conn, "trace_evaluations", first, ["trace_id", "check_name"]) == 1
    again = evals([("t1", "invalid_json", False, "second"), ("t2", "invalid_json", True, "")],
                  at=T0 + timedelta(days=1))
    assert store.insert_new(conn, "trace_evaluations", again, ["trace_id", "check_name"]) == 1
    rows = table(conn, "trace_evaluations", "trace_id")
    assert rows.select("trace_id", "passed", "detail").rows() == [("t1", True, "first"), ("t2", True, "")]
    assert rows["evaluated_at"].to_list() == [T0, T0 + timedelta(days=1)]
    assert store.insert_new(conn, "trace_evaluations", again, ["trace_id", "check_name"]) == 0
    assert store.insert_new(conn, "trace_evaluations", evals([]), ["trace_id"]) == 0


def test_failing_insert_new_writes_nothing(conn):
    bad = evals([("t1", "invalid_json", True, ""), ("t2", None, True, "")])
    with pytest.raises(duckdb.ConstraintException):
        store.insert_new(conn, "trace_evaluations", bad, ["trace_id", "check_name"])
    assert conn.execute("SELECT count(*) FROM trace_evaluations").fetchone()[0] == 0


# --- sync ----------------------------------------------------------------------------------------------

EX_SCHEMA = {"example_id": pl.String, "source": pl.String, "group_id": pl.String, "split": pl.String,
             "input": pl.String, "output": pl.String, "parent_id": pl.String, "created_at": pl.Datetime("us", "UTC")}


def examples(rows, at):
    return pl.DataFrame([{"example_id": e, "source": "trace", "group_id": "g_" + e, "split": s,
                          "input": '{"question": "count", "columns": ["a"]}', "output": o, "parent_id": None,
                          "created_at": at} for e, s, o in rows], schema=EX_SCHEMA)


def test_sync_inserts_replaces_deletes_and_keeps_unchanged(conn):
    first = examples([("a", "train", "1"), ("b", "train", "2"), ("c", "test", "3"), ("d", "validation", "4")], T0)
    assert store.sync(conn, "training_examples", first, ["example_id"], compare=["split", "output"]) == {
        "inserted": 4, "replaced": 0, "deleted": 0, "unchanged": 0}
    later = T0 + timedelta(days=2)
    second = examples([("a", "train", "1"),          # unchanged
                       ("b", "train", "2-fixed"),    # output changed -> replaced
                       ("d", "validation", "4"),     # unchanged
                       ("e", "test", "5")],          # new; c is gone
                      later)
    counts = store.sync(conn, "training_examples", second, ["example_id"], compare=["split", "output"])
    assert counts == {"inserted": 1, "replaced": 1, "deleted": 1, "unchanged": 2}
    rows = {r["example_id"]: r for r in table(conn, "training_examples", "example_id").to_dicts()}
    assert sorted(rows) == ["a", "b", "d", "e"]
    # unchanged rows keep their original timestamps; replaced and new rows get the batch's
    assert rows["a"]["created_at"] == T0 and rows["d"]["created_at"] == T0
    assert rows["b"]["created_at"] == later and rows["b"]["output"] == "2-fixed"
    assert rows["e"]["created_at"] == later


def test_sync_same_batch_twice_is_a_no_op(conn):
    batch = examples([("a", "train", "1"), ("b", "test", "2")], T0)
    store.sync(conn, "training_examples", batch, ["example_id"], compare=["output"])
    counts = store.sync(conn, "training_examples", examples([("a", "train", "1"), ("b", "test", "2")],
                                                           T0 + timedelta(hours=5)), ["example_id"], compare=["output"])
    assert counts == {"inserted": 0, "replaced": 0, "deleted": 0, "unchanged": 2}
    assert table(conn, "training_examples", "example_id")["created_at"].to_list() == [T0, T0]


def test_sync_without_compare_never_replaces(conn):
    store.sync(conn, "training_examples", examples([("a", "train", "1")], T0), ["example_id"])
    counts = store.sync(conn, "training_examples", examples([("a", "test", "changed")], T0), ["example_id"])
    assert counts == {"inserted": 0, "replaced": 0, "deleted": 0, "unchanged": 1}
    assert table(conn, "training_examples", "example_id")["output"].to_list() == ["1"]


def test_sync_with_composite_key_and_null_compare_values(conn):
    schema = {"trace_id": pl.String, "failure_mode": pl.String, "label_source": pl.String, "detail": pl.String,
              "correction": pl.String}
    key = ["trace_id", "failure_mode", "label_source"]
    rows = [{"trace_id": "t1", "failure_mode": "unknown_column", "label_source": "assertion", "detail": "x",
             "correction": None},
            {"trace_id": "t1", "failure_mode": "unknown_column", "label_source": "human", "detail": None,
             "correction": None}]
    store.sync(conn, "labelled_failures", pl.DataFrame(rows, schema=schema), key, compare=["detail", "correction"])
    # null == null is not a change; null -> value is
    rows[1] = {**rows[1], "correction": '{"calculations":[{"op":"COUNT"}]}'}
    counts = store.sync(conn, "labelled_failures", pl.DataFrame(rows, schema=schema), key,
                        compare=["detail", "correction"])
    assert counts == {"inserted": 0, "replaced": 1, "deleted": 0, "unchanged": 1}
    assert conn.execute("SELECT count(*) FROM labelled_failures").fetchone()[0] == 2


def test_sync_with_empty_batch_deletes_everything(conn):
    store.sync(conn, "training_examples", examples([("a", "train", "1"), ("b", "train", "2")], T0), ["example_id"])
    counts = store.sync(conn, "training_examples", examples([], T0), ["example_id"])
    assert counts == {"inserted": 0, "replaced": 0, "deleted": 2, "unchanged": 0}
    assert conn.execute("SELECT count(*) FROM training_examples").fetchone()[0] == 0


def test_failing_sync_rolls_back(conn):
    store.sync(conn, "training_examples", examples([("a", "train", "1"), ("b", "train", "2")], T0), ["example_id"],
               compare=["output"])
    bad = examples([("a", "train", "1-new"), ("c", "train", "3")], T0)
    bad = bad.with_columns(pl.when(pl.col("example_id") == "c").then(None).otherwise(pl.col("split")).alias("split"))
    with pytest.raises(duckdb.ConstraintException):
        store.sync(conn, "training_examples", bad, ["example_id"], compare=["output"])
    assert table(conn, "training_examples", "example_id").select("example_id", "output").rows() == [
        ("a", "1"), ("b", "2")]
