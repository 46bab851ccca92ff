"""Opening a database another process may hold, and telling a local file from the rest.

DuckDB lets one process open a database file for writing, and a reader in another process
blocks the writer (and the other way round). Whoever opens it (the pipeline, the annotation app,
a reader of the snapshot) retries with :func:`retry_while_locked` for as long as it is willing
to wait: one backoff policy and one test of which error means "another process holds the file".
"""

import time
from collections.abc import Callable
from typing import TypeVar

import duckdb

T = TypeVar("T")

#: How long the pipeline's own connections wait for another process to let go (about the 102 s
#: that dagster-duckdb's ten doubling retries from 0.1 s slept).
PIPELINE_WAIT_SECONDS = 100.0
#: The first pause between tries; each pause doubles, up to MAX_PAUSE_SECONDS.
FIRST_PAUSE_SECONDS = 0.05
MAX_PAUSE_SECONDS = 0.5


class DatabaseLocked(duckdb.IOException):
    """Another process still held the database's lock when the wait ran out (DuckDB's message)."""


def is_local(database: str) -> bool:
    """Whether ``database`` names a file on this machine: not a MotherDuck ``md:`` string, not ``:memory:``."""
    return not database.startswith("md:") and database != ":memory:"


def is_locked(error: BaseException) -> bool:
    """Whether ``error`` is DuckDB saying another process holds the database file's lock."""
    return isinstance(error, duckdb.IOException) and "lock" in str(error).lower()


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
