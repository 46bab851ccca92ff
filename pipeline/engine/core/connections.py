"""Opening a database another process may hold, and telling a local file from the rest.

DuckDB lets one process open a database file for writing, and a reader in another process
blocks the writer (and the other way round). Whoever opens it (the pipeline, the annotation app,
a reader of the snapshot) retries with :func:`retry_while_locked` for as long as it is willing
to wait: one backoff policy and one test of which error means "another process holds the file".
A path that can never be a DuckDB database fails before any try (:func:`check_database_path`).
"""

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import duckdb

T = TypeVar("T")

#: How long the pipeline's own connections wait for another process to let go (about the 102 s
#: that dagster-duckdb's ten doubling retries from 0.1 s slept).
PIPELINE_WAIT_SECONDS = 100.0
#: The first pause between tries; each pause doubles, up to MAX_PAUSE_SECONDS.
FIRST_PAUSE_SECONDS = 0.05
MAX_PAUSE_SECONDS = 0.5


#: What a DuckDB database file holds at byte 8, after its header's checksum.
DUCKDB_MAGIC = b"DUCK"
#: DuckDB's words for a lock another process holds (not "blocked", as in a proxy's refusal).
_LOCK_WORDS = re.compile(r"\block(ed)?\b", re.IGNORECASE)


class DatabaseLocked(duckdb.IOException):
    """Another process still held the database's lock when the wait ran out (DuckDB's message)."""


class NotADatabase(ValueError):
    """The configured database path can never be opened as a DuckDB database; the message says why."""


def is_local(database: str) -> bool:
    """Whether ``database`` names a DuckDB file on this machine: not a MotherDuck ``md:`` string,
    not a ``ducklake:`` catalog, not ``:memory:``."""
    return not database.startswith(("md:", "ducklake:")) and database != ":memory:"


def is_locked(error: BaseException) -> bool:
    """Whether ``error`` is DuckDB saying another process holds the database file's lock."""
    return isinstance(error, duckdb.IOException) and bool(_LOCK_WORDS.search(str(error)))


def check_database_path(database: str) -> None:
    """Raise :class:`NotADatabase` at once when the local path ``database`` can never be a DuckDB
    database: a folder, a path through a file, or a file that is not one (DuckDB would refuse it,
    or for a SQLite file try to download its sqlite extension). A missing file (created on
    connect), an empty one (DuckDB says so itself), ``md:`` and ``:memory:`` pass."""
    if not is_local(database):
        return
    path = Path(database)
    if path.is_dir():
        raise NotADatabase(f"the database path {database} is a folder: name a DuckDB file (for example "
                           f"{path / 'flywheel.duckdb'})")
    existing = next((p for p in path.parents if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise NotADatabase(f"the database path {database} cannot exist: {existing} is a file, not a folder")
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb") as handle:
        head = handle.read(16)
    if head[8:12] != DUCKDB_MAGIC:
        kind = "a SQLite database" if head.startswith(b"SQLite format 3") else "not a DuckDB database"
        raise NotADatabase(f"the database file {database} is {kind}: point FLYWHEEL_DUCKDB (the database "
                           "setting) at a DuckDB file, or at a path where a new one can be created")


def retry_while_locked(attempt: Callable[[], T], wait_seconds: float) -> T:
    """``attempt()`` (which opens the database), tried again with doubling pauses while another
    process holds the lock. Raises DatabaseLocked when the next pause would end more than
    ``wait_seconds`` after the first try; any other error at once."""
    deadline, pause = time.monotonic() + wait_seconds, FIRST_PAUSE_SECONDS
    while True:
        try:
            return attempt()
        except duckdb.IOException as exc:
            if not is_locked(exc):
                raise
            if time.monotonic() + pause > deadline:
                raise DatabaseLocked(str(exc)) from exc
        time.sleep(pause)
        pause = min(2 * pause, MAX_PAUSE_SECONDS)
