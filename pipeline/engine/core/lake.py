"""DuckLake: the same tables as Parquet files under a data path, with the catalog in a database.

A database setting that starts with ``ducklake:`` names a DuckLake catalog, in DuckLake's own
syntax (see docs/ducklake.md):

- ``ducklake:catalog.ducklake``: a DuckDB file (one process at a time, like the plain file);
- ``ducklake:sqlite:catalog.sqlite``: a SQLite file (several processes on one machine);
- ``ducklake:postgres:dbname=flywheel host=db user=flywheel``: PostgreSQL (many machines); the
  password comes from libpq's own PGPASSWORD (or ~/.pgpass), never from the string.

The data path (a folder, or an ``s3://`` prefix with a DuckDB S3 secret) is stored in the catalog
when the catalog is created; it comes from ``data_path`` or FLYWHEEL_DUCKLAKE_DATA_PATH and is
only needed then. The extensions load from the duckdb-extension-* packages installed beside
duckdb, so nothing is downloaded at connect time.

Several writers may commit at once: DuckLake retries a commit that does not conflict with the
ones that won; a real conflict (two transactions deleting from the same data file) reaches the
caller as a TransactionException, which :func:`is_conflict` recognises and
:func:`pipeline.engine.core.store.retrying` runs again as a whole.
"""

from __future__ import annotations

import importlib.util
import os
import re
import time
from pathlib import Path

import duckdb

#: The prefix of a DuckLake database setting.
PREFIX = "ducklake:"
#: Where the data path comes from when the catalog is created and none is configured.
DATA_PATH_ENV = "FLYWHEEL_DUCKLAKE_DATA_PATH"
#: The name the lake is attached under (and made the default catalog, so queries name tables alone).
ALIAS = "flywheel"
#: DuckLake's retries of a commit that lost a race but does not conflict (its defaults: 10, 100 ms, 1.5).
COMMIT_RETRIES, COMMIT_RETRY_WAIT_MS, COMMIT_RETRY_BACKOFF = 100, 50, 1.5
#: Tables partitioned by day (DuckLake only, store's migration 16; a plain file is not), by this column.
DAY_PARTITIONS = {"raw_traces": "ts", "trace_evaluations": "evaluated_at"}

_CATALOG_EXTENSIONS = {"postgres:": "postgres_scanner", "sqlite:": "sqlite_scanner"}
_PASSWORD = re.compile(r"(password\s*=\s*)('[^']*'|[^\s'\"]+)", re.IGNORECASE)
_URI_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*(@)")  # postgresql://user:password@host/db


class LakeError(RuntimeError):
    """The DuckLake target cannot be opened; the message says why (credentials scrubbed)."""


def is_lake(database: str) -> bool:
    """Whether the database setting names a DuckLake catalog."""
    return database.startswith(PREFIX)


def is_lake_connection(conn: duckdb.DuckDBPyConnection) -> bool:
    """Whether ``conn``'s default catalog is a DuckLake (what DuckLake lacks is handled where this is asked)."""
    row = conn.execute("SELECT type FROM duckdb_databases() WHERE database_name = current_database()").fetchone()
    return bool(row) and row[0] == "ducklake"


def is_conflict(error: BaseException) -> bool:
    """Whether ``error`` is DuckLake refusing a commit (or, on SQLite, a read of the catalog)
    because of another writer's commit: retry it whole."""
    message = str(error).lower()
    return isinstance(error, duckdb.Error) and (
        "database is locked" in message
        or (isinstance(error, duckdb.TransactionException) and "conflict" in message))


def scrub(text: str) -> str:
    """``text`` with the password of a catalog connection string (``password=...`` or a URI's
    ``user:password@``) replaced by ``***``."""
    return _URI_PASSWORD.sub(r"\1***\2", _PASSWORD.sub(r"\1***", text))


def catalog_kind(database: str) -> str:
    """'postgres', 'sqlite' or 'duckdb': the kind of database holding the catalog."""
    metadata = database[len(PREFIX):]
    return next((prefix.rstrip(":") for prefix in _CATALOG_EXTENSIONS if metadata.startswith(prefix)), "duckdb")


def catalog_file(database: str) -> Path | None:
    """The catalog's local file (a DuckDB or SQLite catalog), or None (PostgreSQL)."""
    metadata = database[len(PREFIX):]
    kind = catalog_kind(database)
    if kind == "postgres":
        return None
    return Path(metadata[len("sqlite:"):] if kind == "sqlite" else metadata)


def _extension_file(name: str) -> str | None:
    """The extension's file in its duckdb-extension-* package for this duckdb, or None."""
    spec = importlib.util.find_spec(f"duckdb_extension_{name}")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = Path(next(iter(spec.submodule_search_locations))) / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    return str(found) if found.exists() else None


def _load(conn: duckdb.DuckDBPyConnection, name: str) -> None:
    path = _extension_file(name)
    try:
        conn.execute(f"LOAD '{path}'" if path else f"LOAD {name}")
    except duckdb.Error as exc:
        raise LakeError(f"the DuckDB extension {name} could not be loaded ({exc}): install "
                        f"duckdb-extension-{name.replace('_', '-')}=={duckdb.__version__} (the project's "
                        "dependencies pin it)") from exc


def connect(database: str, data_path: str | None = None, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the DuckLake ``database`` attached as its default catalog.

    ``data_path`` (else FLYWHEEL_DUCKLAKE_DATA_PATH) is passed when given: DuckLake stores it in a
    new catalog and checks it against an existing one. Commits that lose a race are retried by
    DuckLake (COMMIT_RETRIES). Raises LakeError with the reason, credentials scrubbed."""
    if not is_lake(database):
        raise LakeError(f"{database!r} is not a DuckLake target (it must start with {PREFIX})")
    conn = duckdb.connect(":memory:", config={"custom_user_agent": "flywheel"})
    try:
        _load(conn, "ducklake")
        kind = catalog_kind(database)
        if kind != "duckdb":
            _load(conn, _CATALOG_EXTENSIONS[f"{kind}:"])
        data_path = data_path or os.environ.get(DATA_PATH_ENV) or None
        if data_path and data_path.startswith(("s3://", "gs://", "r2://", "https://")):
            _load(conn, "httpfs")
        local = catalog_file(database)
        if local is not None and not read_only:
            local.parent.mkdir(parents=True, exist_ok=True)
        if data_path and "://" not in data_path and not read_only:
            Path(data_path).mkdir(parents=True, exist_ok=True)
        options = [f"DATA_PATH '{_quote(data_path)}'"] if data_path else []
        options += ["READ_ONLY"] if read_only else []
        clause = f" ({', '.join(options)})" if options else ""
        _attach(conn, f"ATTACH '{_quote(database)}' AS {ALIAS}{clause}")
        conn.execute(f"USE {ALIAS}")
        conn.execute("SET TimeZone = 'UTC'")  # day partitions are UTC days on every machine
        conn.execute(f"SET ducklake_max_retry_count = {COMMIT_RETRIES}")
        conn.execute(f"SET ducklake_retry_wait_ms = {COMMIT_RETRY_WAIT_MS}")
        conn.execute(f"SET ducklake_retry_backoff = {COMMIT_RETRY_BACKOFF}")
    except LakeError:
        conn.close()
        raise
    except duckdb.Error as exc:
        conn.close()
        reason = scrub(str(exc))  # the original error may hold the password: it is not kept
    else:
        return conn
    raise LakeError(f"cannot open the DuckLake {scrub(database)}: {reason}")


def _attach(conn: duckdb.DuckDBPyConnection, statement: str, attempts: int = 40) -> None:
    """Run the ATTACH, again while a SQLite catalog is locked by another process's commit or
    another process is creating the same new catalog."""
    for attempt in range(attempts):
        try:
            conn.execute(statement)
            return
        except duckdb.Error as exc:
            if not (is_conflict(exc) or _lost_creation_race(exc)) or attempt == attempts - 1:
                raise
        time.sleep(min(0.05 * 2 ** attempt, 1.0))


def _lost_creation_race(error: duckdb.Error) -> bool:
    """Whether ATTACH failed because another process created the new catalog's tables at the same moment."""
    text = str(error)
    return "Failed to initialize DuckLake" in text and ("already exists" in text or "duplicate key" in text)


def _quote(text: str) -> str:
    return text.replace("'", "''")
