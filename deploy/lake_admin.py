"""The deployment's DuckLake (FLYWHEEL_DUCKDB=ducklake:..., see docs/ducklake.md), from the image:

    python deploy/lake_admin.py prepare            # before the services start (compose, Helm)
    python deploy/lake_admin.py maintain           # on a schedule, e.g. nightly
    python deploy/lake_admin.py import-file PATH   # once: a DuckDB file's rows into a new, empty lake

``prepare`` creates a PostgreSQL catalog's database when it is missing (connecting to the server's
``postgres`` database as the same user, who then needs CREATEDB), then opens the lake once, so
that one process creates the catalog (with FLYWHEEL_DUCKLAKE_DATA_PATH) and runs the migrations
before many start at once. ``maintain`` flushes inlined rows to Parquet, expires old snapshots,
merges small files and deletes the files nothing refers to any more. ``import-file`` copies every
table of a DuckDB file (stopped pipeline, file migrated to the same version) in one transaction.

The catalog's password comes from PGPASSWORD (libpq), never from FLYWHEEL_DUCKDB; errors are
printed with any password scrubbed.
"""

from __future__ import annotations

import argparse
import os
import sys

import duckdb

from pipeline.engine.core import lake, store

#: Snapshots younger than this many days are kept (time travel reaches that far back).
KEEP_DAYS = 7
#: Files unused for this many days are deleted (a reader older than that could still scan them).
GRACE_DAYS = 3


class AdminError(RuntimeError):
    """What went wrong, in words (credentials scrubbed)."""


def database_setting() -> str:
    """FLYWHEEL_DUCKDB, which must name a DuckLake catalog without a password in it."""
    database = os.environ.get("FLYWHEEL_DUCKDB", "")
    if not lake.is_lake(database):
        raise AdminError(f"FLYWHEEL_DUCKDB is {lake.scrub(database)!r}, not a DuckLake (ducklake:...)")
    if lake.scrub(database) != database:
        raise AdminError("FLYWHEEL_DUCKDB must not carry the catalog's password: set PGPASSWORD instead "
                         f"({lake.scrub(database)})")
    return database


def ensure_postgres_database(dsn: str) -> bool:
    """Create the database a libpq ``dsn`` names unless it exists; returns whether it was created."""
    import psycopg2
    from psycopg2 import errors, sql

    name = psycopg2.extensions.parse_dsn(dsn).get("dbname")
    if not name:
        raise AdminError(f"the catalog's connection string names no database (dbname=...): {lake.scrub(dsn)}")
    try:
        psycopg2.connect(dsn).close()
        return False
    except psycopg2.OperationalError as exc:
        if f'database "{name}" does not exist' not in str(exc):
            raise AdminError(f"cannot reach the catalog's PostgreSQL ({lake.scrub(dsn)}): {lake.scrub(str(exc)).strip()}") from None
    try:
        server = psycopg2.connect(dsn, dbname="postgres")
    except psycopg2.OperationalError as exc:
        raise AdminError(f"cannot connect to the server's postgres database to create {name!r}: "
                         f"{lake.scrub(str(exc)).strip()}") from None
    server.autocommit = True
    try:
        with server.cursor() as cursor:
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True
    except errors.DuplicateDatabase:
        return False  # another prepare created it in the meantime
    except psycopg2.Error as exc:
        raise AdminError(f"cannot create the database {name!r} (the user needs CREATEDB, or an administrator "
                         f"runs CREATE DATABASE {name} OWNER <user>): {lake.scrub(str(exc)).strip()}") from None
    finally:
        server.close()


def prepare(database: str) -> None:
    """The catalog's database (PostgreSQL) and the lake itself, created where missing and migrated."""
    if lake.catalog_kind(database) == "postgres":
        dsn = database[len(lake.PREFIX) + len("postgres:"):]
        print(f"catalog database: {'created' if ensure_postgres_database(dsn) else 'exists'} ({lake.scrub(dsn)})")
    with store.connect(database) as conn:
        version = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]
        data_path = conn.execute(f"SELECT value FROM {lake.ALIAS}.options() WHERE option_name = 'data_path'").fetchone()[0]
    print(f"lake {lake.scrub(database)}: schema version {version}, data path {data_path}")


def maintain(database: str, keep_days: int = KEEP_DAYS, grace_days: int = GRACE_DAYS) -> None:
    """DuckLake's maintenance, each step one commit retried on a conflict with a pipeline writer."""
    steps = [
        ("flush inlined rows to Parquet", f"CALL ducklake_flush_inlined_data('{lake.ALIAS}')"),
        (f"expire snapshots older than {keep_days} days",
         f"CALL ducklake_expire_snapshots('{lake.ALIAS}', older_than => now() - INTERVAL '{int(keep_days)} days')"),
        ("merge adjacent small files", f"CALL ducklake_merge_adjacent_files('{lake.ALIAS}')"),
        ("rewrite files that are mostly deleted rows", f"CALL ducklake_rewrite_data_files('{lake.ALIAS}')"),
        (f"delete files unused for {grace_days} days",
         f"CALL ducklake_cleanup_old_files('{lake.ALIAS}', older_than => now() - INTERVAL '{int(grace_days)} days')"),
        (f"delete untracked files older than {grace_days} days",
         f"CALL ducklake_delete_orphaned_files('{lake.ALIAS}', older_than => now() - INTERVAL '{int(grace_days)} days')"),
    ]
    with store.connect(database) as conn:
        for label, statement in steps:
            rows = store.retrying(lambda statement=statement: conn.execute(statement).fetchall())
            print(f"{label}: {len(rows)}")


def import_file(database: str, path: str) -> dict[str, int]:
    """Copy every table of the DuckDB file ``path`` into the lake, which must be empty, in one
    transaction; returns the rows copied by table. The file is migrated first (nothing else may
    have it open), so both have the same columns; schema_migrations stays the lake's own."""
    if not os.path.isfile(path):
        raise AdminError(f"{path} is not a file")
    store.connect(path).close()
    with store.connect(database) as conn:
        conn.execute(f"ATTACH '{path.replace(chr(39), chr(39) * 2)}' AS source (READ_ONLY)")
        versions = conn.execute("SELECT (SELECT max(version) FROM source.schema_migrations), "
                                f"(SELECT max(version) FROM {lake.ALIAS}.schema_migrations)").fetchone()
        if versions[0] != versions[1]:
            raise AdminError(f"the file is at schema version {versions[0]}, the lake at {versions[1]}: "
                             "open both with the same Flywheel")
        tables = [name for (name,) in conn.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = 'source' AND schema_name = 'main' "
            "AND table_name <> 'schema_migrations' ORDER BY table_name").fetchall()]
        in_lake = {name for (name,) in conn.execute(
            f"SELECT table_name FROM duckdb_tables() WHERE database_name = '{lake.ALIAS}'").fetchall()}
        unknown = sorted(set(tables) - in_lake)
        if unknown:
            raise AdminError(f"the file has tables the lake's schema lacks: {', '.join(unknown)}")
        filled = [t for t in tables if conn.execute(f"SELECT count(*) FROM {lake.ALIAS}.{t}").fetchone()[0]]
        if filled:
            raise AdminError(f"the lake is not empty ({', '.join(filled)}): import into a new lake")
        with store.transaction(conn):
            for table in tables:
                conn.execute(f"INSERT INTO {lake.ALIAS}.{table} BY NAME SELECT * FROM source.{table}")
        copied = {}
        for table in tables:
            source, target = conn.execute(f"SELECT (SELECT count(*) FROM source.{table}), "
                                          f"(SELECT count(*) FROM {lake.ALIAS}.{table})").fetchone()
            if source != target:
                raise AdminError(f"{table}: {source} rows in the file, {target} in the lake")
            copied[table] = target
    for table, rows in copied.items():
        print(f"{table}: {rows} rows")
    return copied


def main(argv: list[str] | None = None) -> int:
    """Run one command on the lake FLYWHEEL_DUCKDB names; 1 with the reason on failure."""
    parser = argparse.ArgumentParser(prog="lake_admin", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("prepare", help="create the catalog's database and the lake where missing; migrate")
    maintenance = commands.add_parser("maintain", help="flush, expire, merge, rewrite, clean up")
    maintenance.add_argument("--keep-days", type=int, default=KEEP_DAYS, help=f"snapshots kept (default {KEEP_DAYS})")
    maintenance.add_argument("--grace-days", type=int, default=GRACE_DAYS,
                             help=f"how long unused files stay (default {GRACE_DAYS})")
    importing = commands.add_parser("import-file", help="copy a DuckDB file's tables into a new, empty lake")
    importing.add_argument("path")
    args = parser.parse_args(argv)
    try:
        database = database_setting()
        if args.command == "prepare":
            prepare(database)
        elif args.command == "maintain":
            maintain(database, args.keep_days, args.grace_days)
        else:
            import_file(database, args.path)
    except (AdminError, lake.LakeError) as exc:
        print(f"lake_admin {args.command}: {exc}", file=sys.stderr)
        return 1
    except duckdb.Error as exc:
        print(f"lake_admin {args.command}: {lake.scrub(str(exc))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
