"""Reading while the pipeline writes: a read-only copy of the database, published atomically.

DuckDB lets one process write a database file, and a reader that opens the file blocks the
writer (and the other way round). So the writer publishes a copy after each change
(:func:`publish`): CHECKPOINT, copy to a temporary file beside the copy, ``os.replace``. A
reader that holds the previous copy keeps reading it (its file stays alive until closed); the
next ``duckdb.connect(snapshot, read_only=True)`` sees the new one. Where the copy lives is
:func:`snapshot_path`, for the pipeline and the annotation app alike.
"""

import os
import shutil
from pathlib import Path

import duckdb

from pipeline.engine.core.connections import DatabaseLocked, is_local, retry_while_locked

#: The copy's name beside the database: ``data/flywheel.duckdb`` -> ``data/flywheel.snapshot.duckdb``.
SUFFIX = ".snapshot.duckdb"


def snapshot_path(database: str, setting: str | None = None) -> Path | None:
    """Where the read-only copy of ``database`` is published: ``setting`` when it names a path,
    else ``<database stem>.snapshot.duckdb`` beside the database; None when ``setting`` is ""
    (turned off) or the database is not a local file (MotherDuck serves readers itself, and
    ``:memory:`` has no file)."""
    if not is_local(database) or setting == "":
        return None
    return Path(setting) if setting else Path(database).with_suffix(SUFFIX)


def _wal_is_empty(conn: duckdb.DuckDBPyConnection) -> bool:
    size = conn.execute("SELECT wal_size FROM pragma_database_size() WHERE database_name = current_database()").fetchone()
    return size is None or str(size[0]).startswith("0 ")


def stale(conn: duckdb.DuckDBPyConnection, database: Path, snapshot: Path, opened_mtime_ns: int) -> bool:
    """Whether the copy lags the database: it is missing, this connection wrote (the WAL holds
    changes, or a checkpoint touched the file), or another process wrote before it opened."""
    if not snapshot.exists():
        return True
    taken = snapshot.stat().st_mtime_ns
    return not _wal_is_empty(conn) or database.stat().st_mtime_ns != opened_mtime_ns or opened_mtime_ns > taken


def publish(conn: duckdb.DuckDBPyConnection, database: Path, snapshot: Path, opened_mtime_ns: int) -> bool:
    """Publish ``database`` (open on the writing connection ``conn``) at ``snapshot`` if it is
    stale; returns whether a copy was published. Call it when the writes are done."""
    if not stale(conn, database, snapshot, opened_mtime_ns):
        return False
    conn.execute("CHECKPOINT")  # the file now holds every committed change, and nothing writes it meanwhile
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    temporary = snapshot.with_name(f".{snapshot.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(database, temporary)
        os.replace(temporary, snapshot)
    finally:
        temporary.unlink(missing_ok=True)
    return True


def connect_read_only(database: str, wait_seconds: float = 5.0, fallback: Path | None = None) -> duckdb.DuckDBPyConnection:
    """A read-only connection to ``database``, retried while a writer holds its lock; after
    ``wait_seconds`` the ``fallback`` copy if it exists, else the lock error is raised."""
    if is_local(database) and not Path(database).exists():
        raise FileNotFoundError(f"no database at {database}")
    try:
        return retry_while_locked(lambda: duckdb.connect(database, read_only=True), wait_seconds)
    except DatabaseLocked:
        if fallback is None or not fallback.exists():
            raise
    return duckdb.connect(str(fallback), read_only=True)
