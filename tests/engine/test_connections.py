"""One retry policy while another process holds the database, and one test of what is local."""

import sqlite3
import subprocess
import sys

import duckdb
import pytest

from pipeline.engine.core.connections import (DatabaseLocked, NotADatabase, check_database_path, is_local, is_locked,
                                              retry_while_locked)

LOCK_MESSAGE = 'IO Error: Could not set lock on file "f.duckdb": Conflicting lock is held in python (PID 1)'

# Holds a write connection to argv[1] until a line arrives on stdin.
HOLDER = ("import duckdb, sys; c = duckdb.connect(sys.argv[1]); c.execute('SELECT 1'); print('held', flush=True);"
          "sys.stdin.readline(); c.close()")


class Flaky:
    """A connect that raises ``errors`` in turn, then returns ``result``; counts its calls."""

    def __init__(self, *errors, result="conn"):
        self.errors, self.result, self.calls = list(errors), result, 0

    def __call__(self):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.result


def test_retries_while_locked_then_returns_the_connection():
    connect = Flaky(duckdb.IOException(LOCK_MESSAGE), duckdb.IOException(LOCK_MESSAGE))
    assert retry_while_locked(connect, wait_seconds=60) == "conn"
    assert connect.calls == 3


def test_gives_up_with_the_lock_error_when_the_wait_is_over():
    connect = Flaky(*[duckdb.IOException(LOCK_MESSAGE)] * 5)
    with pytest.raises(DatabaseLocked, match="Conflicting lock") as raised:
        retry_while_locked(connect, wait_seconds=0)
    assert connect.calls == 1
    assert isinstance(raised.value, duckdb.IOException) and is_locked(raised.value)


def test_other_errors_are_not_retried():
    connect = Flaky(duckdb.IOException("IO Error: Permission denied"))
    with pytest.raises(duckdb.IOException, match="Permission denied"):
        retry_while_locked(connect, wait_seconds=60)
    assert connect.calls == 1
    assert not is_locked(ValueError("lock"))


def test_waits_for_a_lock_held_by_another_process(tmp_path):
    database = str(tmp_path / "f.duckdb")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, database], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        calls = []

        def connect():
            calls.append(1)
            try:
                return duckdb.connect(database)
            except duckdb.IOException:
                if len(calls) == 1:  # the first try met the lock: let the holder go
                    holder.stdin.write("release\n")
                    holder.stdin.flush()
                raise

        with pytest.raises(DatabaseLocked):
            retry_while_locked(lambda: duckdb.connect(database), wait_seconds=0.2)
        conn = retry_while_locked(connect, wait_seconds=120)
        assert conn.execute("SELECT 42").fetchone() == (42,)
        conn.close()
        assert len(calls) >= 2
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)


@pytest.mark.parametrize("database, local", [("data/flywheel.duckdb", True), ("/tmp/x.duckdb", True),
                                             ("md:flywheel", False), (":memory:", False)])
def test_is_local(database, local):
    assert is_local(database) is local


def test_an_error_that_only_says_blocked_is_not_a_lock():
    blocked = duckdb.IOException('IO Error: Failed to download extension "sqlite_scanner": HTTP 403 (blocked by proxy)')
    assert not is_locked(blocked)
    connect = Flaky(blocked)
    with pytest.raises(duckdb.IOException, match="blocked"):
        retry_while_locked(connect, wait_seconds=60)
    assert connect.calls == 1


def test_a_database_path_that_can_be_one_passes(tmp_path):
    check_database_path(str(tmp_path / "new" / "flywheel.duckdb"))  # created on connect
    duckdb.connect(str(tmp_path / "f.duckdb")).close()
    check_database_path(str(tmp_path / "f.duckdb"))
    (tmp_path / "empty.duckdb").touch()
    check_database_path(str(tmp_path / "empty.duckdb"))  # DuckDB says itself what is wrong with it
    for database in ("md:flywheel", ":memory:"):
        check_database_path(database)


def test_a_sqlite_or_text_file_is_not_a_database(tmp_path):
    with sqlite3.connect(tmp_path / "flywheel.duckdb") as conn:
        conn.execute("CREATE TABLE traces (id INTEGER)")
    with pytest.raises(NotADatabase, match=r"flywheel.duckdb is a SQLite database: point FLYWHEEL_DUCKDB"):
        check_database_path(str(tmp_path / "flywheel.duckdb"))
    (tmp_path / "notes.txt").write_text("not a database\n")
    with pytest.raises(NotADatabase, match=r"notes.txt is not a DuckDB database"):
        check_database_path(str(tmp_path / "notes.txt"))


def test_a_folder_or_a_path_through_a_file_cannot_be_a_database(tmp_path):
    with pytest.raises(NotADatabase, match="is a folder: name a DuckDB file"):
        check_database_path(str(tmp_path))
    (tmp_path / "file").write_text("x")
    for database in (tmp_path / "file" / "flywheel.duckdb", tmp_path / "file" / "deeper" / "flywheel.duckdb"):
        with pytest.raises(NotADatabase, match=f"{tmp_path / 'file'} is a file, not a folder"):
            check_database_path(str(database))
