"""Where the pipeline keeps things: the DuckDB database (and its read-only snapshot) and the
folders for models, training files and reports."""

from __future__ import annotations

from contextlib import closing, contextmanager
from pathlib import Path
from typing import Iterator

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from pipeline.engine.core import lake
from pipeline.engine.core import snapshot as snapshots
from pipeline.engine.core import store
from pipeline.engine.core.connections import PIPELINE_WAIT_SECONDS, check_database_path, is_local, retry_while_locked


class FlywheelDuckDB(DuckDBResource):
    """The database (a local DuckDB file, an ``md:`` MotherDuck string, or a ``ducklake:`` catalog),
    schema migrated on connect.

    A DuckDB file allows one writing process, so readers never open it while the pipeline may
    write: when a connection that changed the database is done, a read-only copy is published
    atomically at ``snapshot`` (default ``<database stem>.snapshot.duckdb`` beside it; "" turns
    it off). A reader holding the old copy keeps it; the next open sees the new one. Opening
    waits up to PIPELINE_WAIT_SECONDS while another process holds the file; a path that can
    never be a DuckDB database (a folder, a SQLite or text file) fails at once.

    A DuckLake (:mod:`pipeline.engine.core.lake`) takes many writers at once and serves readers
    at a snapshot itself: no lock to wait for, no copy to publish. ``data_path`` is where a new
    lake keeps its Parquet files (default FLYWHEEL_DUCKLAKE_DATA_PATH).
    """

    snapshot: str | None = None
    data_path: str | None = None

    @property
    def local(self) -> bool:
        return is_local(self.database)

    @property
    def snapshot_path(self) -> Path | None:
        """Where the read-only copy is published, or None (MotherDuck, in memory, or turned off)."""
        return snapshots.snapshot_path(self.database, self.snapshot)

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A write connection (retried while another process holds the file), migrated; the
        snapshot is published when the block is done."""
        if lake.is_lake(self.database):
            with closing(store.connect(self.database, data_path=self.data_path)) as conn:
                yield conn
            return
        check_database_path(self.database)
        if self.local:
            Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        config = {"custom_user_agent": "dagster", **self.connection_config}
        conn = retry_while_locked(lambda: duckdb.connect(self.database, read_only=False, config=config),
                                  PIPELINE_WAIT_SECONDS)
        try:
            started = _mtime(Path(self.database))
            store.migrate(conn)
            yield conn
            if self.snapshot_path is not None:
                try:
                    snapshots.publish(conn, Path(self.database), self.snapshot_path, started)
                except (duckdb.Error, OSError) as exc:  # readers keep the previous copy; the write stands
                    dg.get_dagster_logger().warning(f"snapshot {self.snapshot_path} not published: {exc}")
        finally:
            conn.close()

    @contextmanager
    def read_connection(self, wait_seconds: float = 5.0, use_snapshot: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection to the database, retried while a writer holds it; after
        ``wait_seconds`` the snapshot if there is one (and ``use_snapshot``), else the lock error
        is raised. On DuckLake, a read-only attachment: each query reads the latest snapshot."""
        if lake.is_lake(self.database):
            with closing(lake.connect(self.database, self.data_path, read_only=True)) as conn:
                yield conn
            return
        check_database_path(self.database)
        fallback = self.snapshot_path if use_snapshot else None
        conn = snapshots.connect_read_only(self.database, wait_seconds, fallback)
        try:
            yield conn
        finally:
            conn.close()


def _mtime(path: Path) -> int:
    return path.stat().st_mtime_ns if path.exists() else 0


class FlywheelPaths(dg.ConfigurableResource):
    """Where files go: models, training files, reports."""

    data_dir: str = "data"

    @property
    def models_dir(self) -> Path:
        return Path(self.data_dir) / "models"

    @property
    def exports_dir(self) -> Path:
        return Path(self.data_dir) / "exports"

    @property
    def reports_dir(self) -> Path:
        return Path(self.data_dir) / "reports"
