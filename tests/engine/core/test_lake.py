"""DuckLake under the store (pipeline.engine.core.lake, .store): migrations and day partitions,
key-based writes that agree with a plain DuckDB file, concurrent writers on a PostgreSQL catalog,
conflict retries, and connection errors."""

import json
import subprocess
import sys
import time
import uuid
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import polars as pl
import polars.selectors as cs
import psycopg2
import pytest
from polars.testing import assert_frame_equal

from pipeline.engine.core import lake, store
from tests.postgres import free_port, throwaway_postgres

REPO = Path(__file__).resolve().parents[3]
T0 = datetime(2026, 10, 16, 2, 38, 21, tzinfo=timezone.utc)
METADATA = f"__ducklake_metadata_{lake.ALIAS}"
VERSIONS = [version for version, _, _ in store.MIGRATIONS]

ANNOTATION_SCHEMA = {"annotation_id": pl.String, "trace_id": pl.String, "label": pl.String,
                     "annotator": pl.String, "critique": pl.String, "annotated_at": pl.Datetime("us", "UTC")}
TRACE_SCHEMA = {"trace_id": pl.String, "source": pl.String, "task": pl.String, "ts": pl.Datetime("us", "UTC"),
                "input": pl.String, "output": pl.String, "latency_ms": pl.Float64, "prompt_tokens": pl.Int64,
                "metadata": pl.String, "content_hash": pl.String, "ingested_at": pl.Datetime("us", "UTC")}
EVAL_SCHEMA = {"trace_id": pl.String, "check_name": pl.String, "passed": pl.Boolean, "detail": pl.String,
               "task_version": pl.String, "evaluated_at": pl.Datetime("us", "UTC")}
RESULT_SCHEMA = {"model_id": pl.String, "example_id": pl.String, "test_set_version": pl.String,
                 "output": pl.String, "passed_checks": pl.Boolean, "failed_checks": pl.List(pl.String),
                 "exact_match": pl.Boolean, "metrics": pl.String, "evaluated_at": pl.Datetime("us", "UTC")}

#: One writer process (python -c WORKER JOB): it connects, waits at a barrier of files until every
#: writer is ready, runs its job's writes and prints what they returned as one JSON line.
WORKER = r"""
import json, sys, time
from datetime import datetime
from pathlib import Path
import polars as pl
from pipeline.engine.core import lake, store

job = json.loads(sys.argv[1])
gate = Path(job["gate"])

def barrier(name):
    (gate / f"{name}.{job['writer']}").touch()
    deadline = time.monotonic() + 120
    while len(list(gate.glob(f"{name}.*"))) < job["writers"]:
        if time.monotonic() > deadline:
            sys.exit(f"{job['writer']}: the other writers never reached {name}")
        time.sleep(0.002)

schema = {"annotation_id": pl.String, "trace_id": pl.String, "label": pl.String, "annotator": pl.String,
          "critique": pl.String, "annotated_at": pl.Datetime("us", "UTC")}

def rows(ids, round_):
    return pl.DataFrame([{"annotation_id": i, "trace_id": "t", "label": "good", "annotator": job["writer"],
                          "critique": str(round_), "annotated_at": datetime.fromisoformat(job["at"])} for i in ids],
                        schema=schema)

if job["kind"] == "migrate":
    barrier("start")
    conn = lake.connect(job["database"], job["data_path"])  # not migrated: store.migrate below does it
    print(json.dumps({"applied": store.migrate(conn)}))
    sys.exit(0)

conn = store.connect(job["database"])
returned = []
for round_ in range(job["rounds"]):
    barrier(f"round{round_}")
    me = job["writer"]
    if job["kind"] == "mixed":
        upserted = job["shared_upsert"] + [f"{me}-u{round_}-{i}" for i in range(job["own"])]
        returned.append(store.upsert(conn, "annotations", rows(upserted, round_), ["annotation_id"]))
        fresh = job["shared_new"] + [f"{me}-n{round_}-{i}" for i in range(job["own"])]
        returned.append(store.insert_new(conn, "annotations", rows(fresh, round_), ["annotation_id"]))
    else:  # "same_new": every writer inserts the same new keys
        returned.append(store.insert_new(conn, "annotations", rows([f"r{round_}-{i}" for i in range(job["keys"])], round_),
                                         ["annotation_id"]))
print(json.dumps({"returned": returned}))
"""


@pytest.fixture(scope="module")
def postgres():
    """One throwaway PostgreSQL server for this module's catalogs."""
    with throwaway_postgres() as server:
        yield server


@pytest.fixture
def pg_lake(postgres, tmp_path):
    """A fresh lake on a PostgreSQL catalog (an empty database of its own): (database, data path)."""
    name = f"lake_{uuid.uuid4().hex[:12]}"
    with closing(psycopg2.connect(host="127.0.0.1", port=postgres.port, user=postgres.user, dbname="postgres")) as pg:
        pg.autocommit = True
        pg.cursor().execute(f'CREATE DATABASE "{name}"')
    return f"{lake.PREFIX}postgres:{postgres.dsn(name)}", str(tmp_path / "pg-data")


@pytest.fixture
def file_lake(tmp_path):
    """A fresh lake on a DuckDB-file catalog: (database, data path)."""
    return f"{lake.PREFIX}{tmp_path / 'lake' / 'catalog.ducklake'}", str(tmp_path / "lake" / "data")


@pytest.fixture(params=["duckdb", "postgres"])
def any_lake(request):
    """A fresh lake on each kind of catalog tested: a DuckDB file, then PostgreSQL."""
    return request.getfixturevalue("file_lake" if request.param == "duckdb" else "pg_lake")


def relations(conn):
    """{name: (table type, [(column, type), ...])} for every table and view of the default catalog."""
    found = {name: (kind, []) for name, kind in conn.execute(
        "SELECT table_name, table_type FROM information_schema.tables "
        "WHERE table_catalog = current_database() AND table_schema = 'main'").fetchall()}
    for name, column, dtype in conn.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_catalog = current_database() AND table_schema = 'main' "
            "ORDER BY table_name, ordinal_position").fetchall():
        found[name][1].append((column, dtype))
    return found


def partitioning(conn, table):
    """The current partition keys of a lake table, from DuckLake's catalog: [(column, transform), ...]."""
    return conn.execute(f"""
        SELECT c.column_name, p.transform
        FROM {METADATA}.ducklake_partition_info i
        JOIN {METADATA}.ducklake_partition_column p ON p.partition_id = i.partition_id AND p.table_id = i.table_id
        JOIN {METADATA}.ducklake_table t ON t.table_id = i.table_id AND t.end_snapshot IS NULL
        JOIN {METADATA}.ducklake_column c ON c.table_id = p.table_id AND c.column_id = p.column_id
                                         AND c.end_snapshot IS NULL
        WHERE t.table_name = ? AND i.end_snapshot IS NULL
        ORDER BY p.partition_key_index""", [table]).fetchall()


def annotations(ids, writer="w", critique="0"):
    """Annotation rows with these ids."""
    return pl.DataFrame([{"annotation_id": i, "trace_id": "t", "label": "good", "annotator": writer,
                          "critique": critique, "annotated_at": T0} for i in ids], schema=ANNOTATION_SCHEMA)


def traces(rows):
    """raw_traces rows from (trace_id, ts, output)."""
    return pl.DataFrame([{"trace_id": t, "source": "s", "task": "chat", "ts": ts, "input": json.dumps({"q": t}),
                          "output": out, "latency_ms": 1.5, "prompt_tokens": 3, "metadata": '{"k": [1, 2]}',
                          "content_hash": f"h-{t}", "ingested_at": T0} for t, ts, out in rows], schema=TRACE_SCHEMA)


def evals(rows, at=T0):
    """trace_evaluations rows from (trace_id, check_name, passed, detail)."""
    return pl.DataFrame([{"trace_id": t, "check_name": c, "passed": p, "detail": d, "task_version": "1",
                          "evaluated_at": at} for t, c, p, d in rows], schema=EVAL_SCHEMA)


def results(rows):
    """eval_results rows from (model_id, example_id, output, passed)."""
    return pl.DataFrame([{"model_id": m, "example_id": e, "test_set_version": "v1", "output": out,
                          "passed_checks": ok, "failed_checks": [] if ok else ["format"], "exact_match": ok,
                          "metrics": json.dumps({"f1": 1.0 if ok else 0.5}), "evaluated_at": T0}
                         for m, e, out, ok in rows], schema=RESULT_SCHEMA)


def keys(conn, table="annotations", key="annotation_id"):
    """{key: row count} of a table."""
    return dict(conn.execute(f"SELECT {key}, count(*) FROM {table} GROUP BY {key}").fetchall())


def run_writers(jobs, tmp_path, timeout=240):
    """Run one WORKER process per job at once; the JSON line each printed, in job order. A writer
    that fails stops the others (by their pid) and fails the test with its stderr."""
    gate = tmp_path / "gate"
    gate.mkdir()
    procs = []
    for n, job in enumerate(jobs):
        out, err = (open(tmp_path / f"w{n}.{stream}", "w") for stream in ("out", "err"))
        with out, err:
            procs.append(subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(
                {**job, "gate": str(gate), "writers": len(jobs), "writer": f"w{n}", "at": T0.isoformat()})],
                cwd=REPO, stdout=out, stderr=err))
    deadline = time.monotonic() + timeout
    try:
        while any(proc.poll() is None for proc in procs):
            failed = [n for n, proc in enumerate(procs) if proc.returncode not in (None, 0)]
            assert not failed and time.monotonic() < deadline, (
                f"writers {failed or 'all'} failed or ran past {timeout} s: "
                + "".join((tmp_path / f"w{n}.err").read_text()[-3000:] for n in failed or range(len(procs))))
            time.sleep(0.05)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for n, proc in enumerate(procs):
        assert proc.returncode == 0, (tmp_path / f"w{n}.err").read_text()[-3000:]
    return [json.loads((tmp_path / f"w{n}.out").read_text().strip().splitlines()[-1]) for n in range(len(procs))]


# --- migrations -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def file_schema(tmp_path_factory):
    """relations() of a plain DuckDB file migrated by store.connect."""
    with closing(store.connect(str(tmp_path_factory.mktemp("plain") / "flywheel.duckdb"))) as plain:
        return relations(plain)


def test_connect_migrates_a_fresh_lake_to_the_schema_of_a_file(any_lake, file_schema):
    database, data_path = any_lake
    with closing(store.connect(database, data_path=data_path)) as conn:
        assert lake.is_lake_connection(conn)
        assert relations(conn) == file_schema
        assert {"raw_traces", "annotations", "eval_results", "schema_migrations"} <= set(file_schema)
        assert {"decided_labels", "model_leaderboard"} <= {n for n, (kind, _) in file_schema.items() if kind == "VIEW"}
        for table in store.CONTRACT_TABLES:
            column = lake.DAY_PARTITIONS.get(table)
            assert partitioning(conn, table) == ([(column, "year"), (column, "month"), (column, "day")]
                                                 if column else []), table
        assert store.migrate(conn) == []
    with closing(store.connect(database)) as conn:  # reopened: the data path is the catalog's
        assert store.migrate(conn) == []
        assert conn.execute("SELECT list(version ORDER BY version) FROM schema_migrations").fetchone()[0] == VERSIONS


def test_day_partitions_split_the_lake_files_by_utc_day(file_lake):
    database, data_path = file_lake
    late, early = datetime(2026, 3, 1, 23, 30, tzinfo=timezone.utc), datetime(2026, 3, 2, 0, 30, tzinfo=timezone.utc)
    with closing(store.connect(database, data_path=data_path)) as conn:
        store.upsert(conn, "raw_traces", traces([(f"a{i}", late, "x") for i in range(3)]
                                                + [(f"b{i}", early, "y") for i in range(3)]), ["trace_id"])
        store.upsert(conn, "trace_evaluations", pl.concat([evals([("a", "c", True, "")], at=late),
                                                           evals([("b", "c", True, "")], at=early)]),
                     ["trace_id", "check_name"])
        conn.execute(f"CALL ducklake_flush_inlined_data('{lake.ALIAS}')")  # small writes sit in the catalog
        for table, column in lake.DAY_PARTITIONS.items():
            days = {}
            for (path,) in conn.execute(f"SELECT data_file FROM ducklake_list_files('{lake.ALIAS}', '{table}')").fetchall():
                assert Path(path).resolve().is_relative_to(Path(data_path).resolve())
                (held,) = conn.execute(f"SELECT list(DISTINCT CAST({column} AS DATE)) FROM read_parquet(?)",
                                       [path]).fetchone()
                assert len(held) == 1, (path, held)
                day = held[0]
                assert f"year={day.year}/month={day.month}/day={day.day}/" in path
                days.setdefault(day, []).append(path)
            assert sorted(days) == [late.date(), early.date()], table
        assert conn.execute("SELECT count(*) FROM raw_traces").fetchone()[0] == 6


# --- the same writes as on a file -----------------------------------------------------------------

def writes(conn):
    """A sequence of upserts, insert_news and syncs; what each returned."""
    later = T0 + timedelta(days=1)
    done = [
        store.upsert(conn, "raw_traces", traces([("t1", T0, "a"), ("t2", T0, "b"), ("t3", later, "c")]), ["trace_id"]),
        store.upsert(conn, "raw_traces", traces([("t2", later, "B"), ("t4", T0, None)]), ["trace_id"]),
        store.insert_new(conn, "raw_traces", traces([("t1", later, "ignored"), ("t5", later, "e")]), ["trace_id"]),
        store.insert_new(conn, "raw_traces", traces([("t5", T0, "ignored")]), ["trace_id"]),
        store.upsert(conn, "eval_results", results([("m1", "e1", "o", True), ("m1", "e2", "o", False),
                                                    ("m2", "e1", "o", True)]),
                     ["model_id", "test_set_version", "example_id"]),
        store.upsert(conn, "eval_results", results([("m1", "e3", "new", True)]), ["model_id"]),
        store.sync(conn, "trace_evaluations", evals([("t1", "json", True, ""), ("t1", "len", False, "long"),
                                                     ("t2", "json", None, None)]),
                   ["trace_id", "check_name"], compare=["passed", "detail"]),
        store.sync(conn, "trace_evaluations", evals([("t1", "json", True, ""), ("t1", "len", True, ""),
                                                     ("t3", "json", True, "")], at=later),
                   ["trace_id", "check_name"], compare=["passed", "detail"]),
    ]
    # a file reads timestamps in the machine's time zone, the lake in UTC: compare them in UTC
    return done, {table: conn.execute(f"SELECT * FROM {table} ORDER BY ALL").pl().with_columns(
                      cs.datetime().dt.convert_time_zone("UTC"))
                  for table in ("raw_traces", "eval_results", "trace_evaluations")}


def test_upsert_insert_new_and_sync_write_the_same_rows_as_on_a_file(any_lake, tmp_path):
    database, data_path = any_lake
    with closing(store.connect(str(tmp_path / "plain.duckdb"))) as plain:
        expected_returns, expected_tables = writes(plain)
    with closing(store.connect(database, data_path=data_path)) as conn:
        returns, tables = writes(conn)
    assert returns == expected_returns
    assert expected_returns[2] == 1 and expected_returns[3] == 0
    assert expected_returns[7] == {"inserted": 1, "replaced": 1, "deleted": 1, "unchanged": 1}
    for table, frame in expected_tables.items():
        assert_frame_equal(tables[table], frame, check_dtypes=True)


# --- settle_duplicates ----------------------------------------------------------------------------

def test_settle_duplicates_does_nothing_on_a_file(tmp_path):
    with closing(store.connect(str(tmp_path / "plain.duckdb"))) as conn:
        for critique in ("first", "second"):
            conn.register("frame", annotations(["a", "b"], critique=critique).to_arrow())
            conn.execute("INSERT INTO annotations BY NAME SELECT * FROM frame")
            conn.unregister("frame")
        before = conn.execute("SELECT * FROM annotations ORDER BY ALL").fetchall()
        assert store.settle_duplicates(conn, "annotations", "first") == 0
        assert store.settle_duplicates(conn, "annotations", "last") == 0
        assert conn.execute("SELECT * FROM annotations ORDER BY ALL").fetchall() == before
        assert len(before) == 4


def test_settle_duplicates_keeps_the_first_or_last_commit_on_a_lake(file_lake):
    database, data_path = file_lake
    with closing(store.connect(database, data_path=data_path)) as conn:
        for critique in ("first", "second", "third"):
            conn.register("frame", annotations(["a", "b", "c"], critique=critique).to_arrow())
            conn.execute("INSERT INTO annotations BY NAME SELECT * FROM frame")
            conn.unregister("frame")
        conn.register("scope", annotations(["a", "b"]).to_arrow())
        assert store.settle_duplicates(conn, "annotations", "first", among="scope") == 4
        conn.unregister("scope")
        assert store.settle_duplicates(conn, "annotations", "last") == 2
        assert conn.execute("SELECT annotation_id, critique FROM annotations ORDER BY ALL").fetchall() == [
            ("a", "first"), ("b", "first"), ("c", "third")]
        assert store.settle_duplicates(conn, "annotations", "last") == 0
        assert store.settle_duplicates(conn, "model_promotions", "last") == 0  # no unique key


# --- concurrent writers on a PostgreSQL catalog ---------------------------------------------------

def test_two_processes_upserting_and_inserting_overlapping_keys_lose_and_duplicate_nothing(pg_lake, tmp_path):
    database, data_path = pg_lake
    store.connect(database, data_path=data_path).close()
    rounds, own = 6, 3
    shared_upsert = [f"su{i}" for i in range(15)]  # more rows than DuckLake inlines: parquet files too
    shared_new = [f"sn{i}" for i in range(4)]
    job = {"kind": "mixed", "database": database, "rounds": rounds, "own": own,
           "shared_upsert": shared_upsert, "shared_new": shared_new}
    run_writers([job, job], tmp_path)
    with closing(store.connect(database)) as conn:
        counts = keys(conn)
        assert {k for k, n in counts.items() if n > 1} == set()
        expected = set(shared_upsert) | set(shared_new) | {
            f"{w}-{kind}{r}-{i}" for w in ("w0", "w1") for kind in "un" for r in range(rounds) for i in range(own)}
        assert set(counts) == expected
        rows = conn.execute("SELECT annotation_id, annotator, critique FROM annotations").fetchall()
    for key, writer, critique in rows:
        if key.startswith("w"):  # a writer's own key: f"{writer}-{u or n}{round}-{i}"
            owner, written, _ = key.split("-")
            assert (writer, critique) == (owner, written[1:]), key
    # every shared upserted key holds the last round's batch of one writer (a batch commits whole)
    assert len({(w, c) for k, w, c in rows if k in shared_upsert}) == 1
    assert {c for k, _, c in rows if k in shared_upsert} == {str(rounds - 1)}
    # the shared new keys hold the first committed batch of one writer (first write wins)
    assert len({(w, c) for k, w, c in rows if k in shared_new}) == 1
    assert {c for k, _, c in rows if k in shared_new} == {"0"}


def test_two_processes_inserting_the_same_new_keys_keep_one_row_per_key(pg_lake, tmp_path):
    database, data_path = pg_lake
    store.connect(database, data_path=data_path).close()
    rounds, per_round = 8, 6
    job = {"kind": "same_new", "database": database, "rounds": rounds, "keys": per_round}
    outputs = run_writers([job, job], tmp_path)
    with closing(store.connect(database)) as conn:
        counts = keys(conn)
        writers = conn.execute("SELECT DISTINCT annotator FROM annotations").fetchall()
    assert counts == {f"r{r}-{i}": 1 for r in range(rounds) for i in range(per_round)}
    assert {w for (w,) in writers} <= {"w0", "w1"}
    # what the writers report as inserted adds up to the rows kept
    reported = [sum(column) for column in zip(*(out["returned"] for out in outputs))]
    assert reported == [per_round] * rounds


def test_two_processes_migrating_one_fresh_lake_both_succeed(pg_lake, tmp_path):
    database, data_path = pg_lake
    job = {"kind": "migrate", "database": database, "data_path": data_path}
    outputs = run_writers([job, job], tmp_path)
    assert sorted(set(outputs[0]["applied"]) | set(outputs[1]["applied"])) == VERSIONS
    with closing(store.connect(database)) as conn:
        assert store.migrate(conn) == []
        versions = [v for (v,) in conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()]
        assert versions == VERSIONS  # each once
        assert partitioning(conn, "raw_traces") == [("ts", "year"), ("ts", "month"), ("ts", "day")]


# --- conflicts and retries ------------------------------------------------------------------------

def conflicting_delete(loser, winner):
    """In ``loser``'s transaction, delete item 'k0' while ``winner`` deletes it and commits first,
    so that ``loser``'s COMMIT is refused."""
    with store.transaction(loser):
        loser.execute("DELETE FROM items WHERE k = 'k0'")
        with store.transaction(winner):
            winner.execute("DELETE FROM items WHERE k = 'k0'")


@pytest.fixture
def two_writers(pg_lake):
    """Two connections (two DuckDB instances, as two processes have) to one PostgreSQL-catalog lake
    whose table ``items`` holds k0 and k1."""
    database, data_path = pg_lake
    first = lake.connect(database, data_path)
    first.execute("CREATE TABLE items (k VARCHAR)")
    first.execute("INSERT INTO items VALUES ('k0'), ('k1')")
    second = lake.connect(database)
    yield first, second
    first.close()
    second.close()


def test_a_refused_commit_is_a_conflict(two_writers):
    first, second = two_writers
    with pytest.raises(duckdb.TransactionException) as refused:
        conflicting_delete(first, second)
    assert lake.is_conflict(refused.value)
    assert keys(first, "items", "k") == {"k1": 1}
    assert keys(second, "items", "k") == {"k1": 1}
    first.execute("INSERT INTO items VALUES ('k2')")  # the refused connection writes again
    assert keys(second, "items", "k") == {"k1": 1, "k2": 1}
    assert not lake.is_conflict(duckdb.TransactionException("cannot rollback - no transaction is active"))
    assert not lake.is_conflict(duckdb.CatalogException("conflict"))


def test_retrying_reruns_a_transaction_refused_by_a_conflict(two_writers):
    first, second = two_writers
    calls = []

    def work():
        calls.append(len(calls))
        with store.transaction(first):
            first.execute("INSERT INTO items VALUES ('k2')")
            first.execute("DELETE FROM items WHERE k = 'k0'")
            if len(calls) == 1:
                with store.transaction(second):
                    second.execute("DELETE FROM items WHERE k = 'k0'")
        return "done"

    assert store.retrying(work) == "done"
    assert calls == [0, 1]
    assert keys(second, "items", "k") == {"k1": 1, "k2": 1}  # the refused attempt left nothing


@pytest.mark.parametrize("error", [duckdb.TransactionException("cannot rollback - no transaction is active"),
                                   duckdb.CatalogException("Table with name x does not exist"),
                                   duckdb.ConstraintException("duplicate key"), ValueError("not a database error")])
def test_retrying_reraises_other_errors_at_once(error):
    calls = []

    def work():
        calls.append(1)
        raise error

    with pytest.raises(type(error)):
        store.retrying(work)
    assert len(calls) == 1


def test_retrying_gives_up_after_its_attempts(two_writers, monkeypatch):
    with pytest.raises(duckdb.TransactionException) as refused:
        conflicting_delete(*two_writers)
    monkeypatch.setattr(store, "CONFLICT_FIRST_PAUSE_SECONDS", 0.0)
    calls = []

    def work():
        calls.append(1)
        raise refused.value

    with pytest.raises(duckdb.TransactionException):
        store.retrying(work, attempts=3)
    assert len(calls) == 3


# --- connection errors ----------------------------------------------------------------------------

def test_a_bad_postgres_catalog_raises_a_lake_error_without_the_password(tmp_path):
    port = free_port()
    database = f"{lake.PREFIX}postgres:dbname=lake host=127.0.0.1 port={port} user=flywheel password=hunter2"
    with pytest.raises(lake.LakeError) as failed:
        lake.connect(database, str(tmp_path / "data"))
    message = str(failed.value)
    assert "cannot open the DuckLake" in message and f"port={port}" in message
    assert "hunter2" not in message and "hunter2" not in repr(failed.value)
    assert failed.value.__cause__ is None and failed.value.__context__ is None  # the original error is not kept
    with pytest.raises(lake.LakeError) as again:
        store.connect(database)
    assert "hunter2" not in str(again.value)


def test_connect_refuses_a_setting_that_is_not_a_lake(tmp_path):
    with pytest.raises(lake.LakeError, match="not a DuckLake target"):
        lake.connect(str(tmp_path / "flywheel.duckdb"))


@pytest.mark.parametrize("text, scrubbed", [
    ("dbname=f host=db user=u password=hunter2", "dbname=f host=db user=u password=***"),
    ("password=hunter2 host=db", "password=*** host=db"),
    ("host=db PASSWORD = 'two words' port=5432", "host=db PASSWORD = *** port=5432"),
    ("a password=x and password=y", "a password=*** and password=***"),
    ("dbname=f host=db user=u", "dbname=f host=db user=u"),
])
def test_scrub_hides_passwords(text, scrubbed):
    assert lake.scrub(text) == scrubbed


def test_scrub_hides_a_uri_password():
    assert "hunter2" not in lake.scrub("postgresql://flywheel:hunter2@db:5432/flywheel")


def test_scrub_keeps_the_text_after_a_quoted_connection_string():
    assert lake.scrub('at "host=db password=hunter2": refused') == 'at "host=db password=***": refused'
