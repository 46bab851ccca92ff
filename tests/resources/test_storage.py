"""FlywheelDuckDB refuses, before any connect (so no retries and no extension download), a
database path that can never be a DuckDB database."""

import sqlite3

import duckdb
import pytest

from pipeline.engine.core.connections import NotADatabase
from pipeline.resources.storage import FlywheelDuckDB


@pytest.fixture
def connects(monkeypatch):
    calls = []
    real = duckdb.connect
    monkeypatch.setattr(duckdb, "connect", lambda *args, **kwargs: calls.append(args) or real(*args, **kwargs))
    return calls


def test_a_sqlite_file_fails_at_once_with_a_plain_message(tmp_path, connects):
    with sqlite3.connect(tmp_path / "flywheel.duckdb") as conn:
        conn.execute("CREATE TABLE traces (id INTEGER)")
    resource = FlywheelDuckDB(database=str(tmp_path / "flywheel.duckdb"))
    for open_it in (resource.get_connection, resource.read_connection):
        with pytest.raises(NotADatabase, match="is a SQLite database: point FLYWHEEL_DUCKDB"):
            with open_it():
                pass
    assert connects == []


def test_an_impossible_path_fails_at_once(tmp_path, connects):
    (tmp_path / "data").write_text("a file where the data folder should be")
    for database, says in ((tmp_path, "is a folder"), (tmp_path / "data" / "flywheel.duckdb", "is a file, not a folder")):
        with pytest.raises(NotADatabase, match=says):
            with FlywheelDuckDB(database=str(database)).get_connection():
                pass
    assert connects == []


def test_a_new_database_is_still_created(tmp_path):
    with FlywheelDuckDB(database=str(tmp_path / "new" / "flywheel.duckdb"), snapshot="").get_connection() as conn:
        assert conn.execute("SELECT count(*) FROM raw_traces").fetchone() == (0,)
