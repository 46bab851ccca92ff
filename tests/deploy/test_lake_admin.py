"""deploy/lake_admin.py, run as the containers run it (a separate process, settings from the
environment) against a PostgreSQL server started here: prepare creates the catalog's database and
the lake, and finds both the second time; a password in the setting is refused without being
shown; import-file copies a DuckDB file's tables into a new lake and refuses a lake with rows;
maintain merges small files and deletes the old ones, keeping every row."""

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import psycopg2
import pytest

from assets.ingest import annotations, raw_traces
from pipeline.engine.core import lake, store
from tests.assets.tiny import materialize, tiny_resources
from tests.postgres import throwaway_postgres

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server():
    """A PostgreSQL server with no database of ours: prepare must create each."""
    with throwaway_postgres((), user="dagster") as started:
        yield started


def admin(database: str, *args: str, data_path: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("FLYWHEEL_DUCKDB", lake.DATA_PATH_ENV)}
    env["FLYWHEEL_DUCKDB"] = database
    if data_path is not None:
        env[lake.DATA_PATH_ENV] = f"{data_path}/"
    return subprocess.run([sys.executable, str(REPO / "deploy" / "lake_admin.py"), *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def databases(server) -> set[str]:
    with psycopg2.connect(server.dsn("postgres")) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT datname FROM pg_database")
        return {name for (name,) in cursor.fetchall()}


def parquet_files(data: Path, table: str) -> list[Path]:
    """The Parquet files of ``table`` on disk under the lake's data path."""
    return sorted((data / "main" / table).glob("*.parquet"))


def test_prepare_creates_the_database_and_the_lake_once(server, tmp_path):
    database = f"ducklake:postgres:{server.dsn('flywheel_lake')}"
    assert "flywheel_lake" not in databases(server)
    first = admin(database, "prepare", data_path=tmp_path / "lake")
    assert first.returncode == 0, first.stderr
    assert "catalog database: created" in first.stdout and "flywheel_lake" in databases(server)
    with lake.connect(database, read_only=True) as conn:
        assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] == store.MIGRATIONS[-1][0]
        assert conn.execute(f"SELECT value FROM {lake.ALIAS}.options() WHERE option_name = 'data_path'"
                            ).fetchone()[0] == f"{tmp_path / 'lake'}/"
        tables = conn.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database()").fetchone()
    again = admin(database, "prepare")  # a later start: no data path needed, nothing new
    assert again.returncode == 0, again.stderr
    assert "catalog database: exists" in again.stdout
    with lake.connect(database, read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database()").fetchone() == tables
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(store.MIGRATIONS)


def test_prepare_refuses_a_password_in_the_setting_and_never_prints_it(server, tmp_path):
    result = admin(f"ducklake:postgres:{server.dsn('never_made')} password=hunter2", "prepare", data_path=tmp_path)
    assert result.returncode == 1
    assert "PGPASSWORD" in result.stderr and "hunter2" not in result.stderr + result.stdout
    assert "never_made" not in databases(server)


def test_prepare_says_why_a_server_cannot_be_reached(tmp_path):
    result = admin("ducklake:postgres:dbname=flywheel_lake host=127.0.0.1 port=1 user=dagster", "prepare",
                   data_path=tmp_path)
    assert result.returncode == 1
    assert "cannot reach the catalog's PostgreSQL" in result.stderr and "Traceback" not in result.stderr


def test_import_file_copies_every_table_into_a_new_lake(server, tmp_path, tiny_demo):
    resources = tiny_resources(tmp_path, tiny_demo)
    result, _ = materialize([raw_traces, annotations], resources)
    assert result.success
    source = str(tmp_path / "flywheel.duckdb")
    database = f"ducklake:postgres:{server.dsn('imported')}"
    assert admin(database, "prepare", data_path=tmp_path / "lake").returncode == 0
    copied = admin(database, "import-file", source)
    assert copied.returncode == 0, copied.stderr
    with lake.connect(database, read_only=True) as conn:
        conn.execute(f"ATTACH '{source}' AS source (READ_ONLY)")
        tables = [t for (t,) in conn.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = 'source' AND table_name <> 'schema_migrations'"
        ).fetchall()]
        assert {"raw_traces", "annotations", "ingested_files", *store.CONTRACT_TABLES} <= set(tables)
        for table in tables:
            rows = conn.execute(f"SELECT count(*) FROM source.{table}").fetchone()[0]
            assert f"{table}: {rows} rows" in copied.stdout
            assert conn.execute(f"SELECT count(*) FROM (FROM source.{table} EXCEPT ALL FROM {lake.ALIAS}.{table})"
                                ).fetchone()[0] == 0, table
            assert conn.execute(f"SELECT count(*) FROM {lake.ALIAS}.{table}").fetchone()[0] == rows, table
        assert conn.execute("SELECT count(*) FROM raw_traces").fetchone()[0] > 0
        assert conn.execute("SELECT count(*) FROM annotations").fetchone()[0] > 0
        # the lake's own views (its migrations) give what the file's gave
        decisions = conn.execute("SELECT count(*) FROM source.annotator_decisions").fetchone()[0]
        assert decisions > 0 and conn.execute("SELECT count(*) FROM annotator_decisions").fetchone()[0] == decisions
        assert conn.execute(f"SELECT count(*) FROM (FROM source.annotator_decisions EXCEPT ALL "
                            f"FROM {lake.ALIAS}.annotator_decisions)").fetchone()[0] == 0
    twice = admin(database, "import-file", source)
    assert twice.returncode == 1 and "the lake is not empty" in twice.stderr
    with lake.connect(database, read_only=True) as conn:
        conn.execute(f"ATTACH '{source}' AS source (READ_ONLY)")
        assert conn.execute("SELECT (SELECT count(*) FROM raw_traces) = (SELECT count(*) FROM source.raw_traces)"
                            ).fetchone()[0]


def test_maintain_merges_small_files_and_deletes_the_old_ones(tmp_path):
    database, data = f"ducklake:{tmp_path / 'catalog.ducklake'}", tmp_path / "data"
    with store.connect(database, data_path=f"{data}/") as conn:
        for batch in range(5):  # five commits of 20 rows: five Parquet files (more than DuckLake inlines)
            conn.execute(f"INSERT INTO ingested_files SELECT 'files', 'f{batch}_' || i, 'jsonl', 1, 1, 0, 1, NULL, NULL, "
                         "1, 0, now() FROM range(20) t(i)")
        early = conn.execute(f"SELECT max(snapshot_id) - 3 FROM ducklake_snapshots('{lake.ALIAS}')").fetchone()[0]
        assert len(conn.execute(f"FROM ducklake_list_files('{lake.ALIAS}', 'ingested_files')").fetchall()) == 5
    assert len(parquet_files(data, "ingested_files")) == 5
    result = admin(database, "maintain", "--keep-days", "0", "--grace-days", "0")
    assert result.returncode == 0, result.stderr
    with lake.connect(database, read_only=True) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT path) FROM ingested_files").fetchone() == (100, 100)
        assert len(conn.execute(f"FROM ducklake_list_files('{lake.ALIAS}', 'ingested_files')").fetchall()) == 1
        with pytest.raises(duckdb.InvalidInputException, match="No snapshot found"):
            conn.execute(f"SELECT count(*) FROM ingested_files AT (VERSION => {early})")
    assert len(parquet_files(data, "ingested_files")) == 1
