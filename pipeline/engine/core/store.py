"""DuckDB schema (the table contract), migrations, and key-based writes.

Every write replaces or merges by key, so re-running an asset never duplicates rows:

- :func:`upsert` deletes the rows whose key matches an incoming row, then inserts the batch.
- :func:`insert_new` inserts only rows whose key is not present yet (first write wins).
- :func:`sync` makes a table hold exactly the batch's keys, leaving rows that did not change
  untouched (so their timestamps and assignments stay stable).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import duckdb
import polars as pl

from pipeline.engine.core import lake
from pipeline.engine.core.connections import check_database_path, is_local

T = TypeVar("T")

#: People's agreement, as views over ``annotations`` (migration 12). An annotator's current
#: decision on a trace is their latest row (by annotated_at, then annotation_id); a row with
#: role 'adjudication' is a lead's settled label, never an annotator's vote. Corrections are
#: compared as minified JSON when they parse, else as trimmed text. pipeline.engine.label.agreement
#: runs these same statements over a frame, so the engine and the views cannot differ.
AGREEMENT_VIEWS = """
CREATE OR REPLACE VIEW annotator_decisions AS
SELECT annotation_id, trace_id, label, failure_mode, correction, critique, annotator, annotated_at, source
FROM annotations
WHERE coalesce(role, 'annotation') <> 'adjudication'
QUALIFY row_number() OVER (PARTITION BY trace_id, annotator ORDER BY annotated_at DESC, annotation_id DESC) = 1;

CREATE OR REPLACE VIEW disagreements AS
WITH per_trace AS (
    SELECT trace_id, count(*) AS decisions,
           count(DISTINCT label) > 1 AS on_label,
           count(DISTINCT failure_mode) FILTER (WHERE label = 'bad') > 1 AS on_failure_mode,
           count(DISTINCT CASE WHEN json_valid(correction) THEN json(correction)::VARCHAR
                               ELSE trim(correction) END) > 1 AS on_correction,
           list(annotator ORDER BY annotated_at, annotation_id) AS annotators,
           list(label ORDER BY annotated_at, annotation_id) AS labels,
           list(failure_mode ORDER BY annotated_at, annotation_id) AS failure_modes,
           max(annotated_at) AS last_annotated_at
    FROM annotator_decisions GROUP BY trace_id HAVING count(*) > 1)
SELECT trace_id, decisions,
       [d.aspect FOR d IN [{'aspect': 'label', 'differs': on_label},
                           {'aspect': 'failure_mode', 'differs': on_failure_mode},
                           {'aspect': 'correction', 'differs': on_correction}] IF d.differs] AS disagree_on,
       annotators, labels, failure_modes, last_annotated_at
FROM per_trace
WHERE (on_label OR on_failure_mode OR on_correction)
  AND trace_id NOT IN (SELECT trace_id FROM annotations WHERE role = 'adjudication')
ORDER BY last_annotated_at, trace_id;

CREATE OR REPLACE VIEW decided_labels AS
WITH adjudications AS (
    SELECT annotation_id, trace_id, label, failure_mode, correction, critique, annotator, annotated_at, source
    FROM annotations WHERE role = 'adjudication'
    QUALIFY row_number() OVER (PARTITION BY trace_id ORDER BY annotated_at DESC, annotation_id DESC) = 1),
agreed AS (
    SELECT trace_id, count(*) AS decisions,
           first(correction ORDER BY annotated_at DESC, annotation_id DESC)
               FILTER (WHERE correction IS NOT NULL) AS agreed_correction
    FROM annotator_decisions
    WHERE trace_id NOT IN (SELECT trace_id FROM adjudications)
      AND trace_id NOT IN (SELECT trace_id FROM disagreements)
    GROUP BY trace_id),
latest AS (
    SELECT d.annotation_id, d.trace_id, d.label, d.failure_mode, a.agreed_correction AS correction, d.critique,
           d.annotator, d.annotated_at, d.source,
           CASE WHEN a.decisions = 1 THEN 'single' ELSE 'agreement' END AS decided_by
    FROM annotator_decisions d JOIN agreed a USING (trace_id)
    QUALIFY row_number() OVER (PARTITION BY d.trace_id ORDER BY d.annotated_at DESC, d.annotation_id DESC) = 1)
SELECT *, 'adjudication' AS decided_by FROM adjudications
UNION ALL
SELECT * FROM latest
ORDER BY trace_id;

CREATE OR REPLACE VIEW annotator_agreement AS
WITH ranked AS (
    SELECT trace_id, label, failure_mode,
           row_number() OVER (PARTITION BY trace_id ORDER BY annotated_at, annotation_id) AS position
    FROM annotator_decisions),
pairs AS (
    SELECT a.trace_id, a.label AS label_a, b.label AS label_b, a.failure_mode AS mode_a, b.failure_mode AS mode_b
    FROM ranked a JOIN ranked b ON a.trace_id = b.trace_id AND a.position < b.position),
modes AS (
    SELECT mode_a AS mode FROM pairs WHERE mode_a IS NOT NULL
    UNION SELECT mode_b FROM pairs WHERE mode_b IS NOT NULL),
ratings AS (
    SELECT 'label' AS aspect, NULL::VARCHAR AS failure_mode, trace_id, label_a AS a, label_b AS b FROM pairs
    UNION ALL
    SELECT 'failure_mode', m.mode, p.trace_id,
           CASE WHEN p.mode_a IS NOT DISTINCT FROM m.mode THEN 'yes' ELSE 'no' END,
           CASE WHEN p.mode_b IS NOT DISTINCT FROM m.mode THEN 'yes' ELSE 'no' END
    FROM pairs p CROSS JOIN modes m),
totals AS (
    SELECT aspect, failure_mode, count(*) AS pairs, count(DISTINCT trace_id) AS traces,
           avg((a = b)::INTEGER) AS agreement
    FROM ratings GROUP BY aspect, failure_mode),
marginals AS (
    SELECT aspect, failure_mode, category, count(*) FILTER (WHERE side = 'a') AS n_a,
           count(*) FILTER (WHERE side = 'b') AS n_b
    FROM (SELECT aspect, failure_mode, a AS category, 'a' AS side FROM ratings
          UNION ALL SELECT aspect, failure_mode, b, 'b' FROM ratings)
    GROUP BY aspect, failure_mode, category),
chance AS (
    SELECT aspect, failure_mode, sum(n_a * n_b) AS products FROM marginals GROUP BY aspect, failure_mode)
SELECT t.aspect, t.failure_mode, t.pairs, t.traces, t.agreement,
       CASE WHEN c.products < t.pairs * t.pairs
            THEN (t.agreement - c.products / (t.pairs * t.pairs)) / (1 - c.products / (t.pairs * t.pairs)) END AS kappa
FROM totals t JOIN chance c ON t.aspect = c.aspect AND t.failure_mode IS NOT DISTINCT FROM c.failure_mode
ORDER BY t.failure_mode NULLS FIRST;
"""

# Each migration runs once, in order, recorded in schema_migrations. Append; never edit.
MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "contract tables", """
    CREATE TABLE IF NOT EXISTS raw_traces (
        trace_id VARCHAR NOT NULL, source VARCHAR NOT NULL, task VARCHAR NOT NULL,
        ts TIMESTAMPTZ, input JSON NOT NULL, output VARCHAR, model VARCHAR,
        latency_ms DOUBLE, prompt_tokens BIGINT, completion_tokens BIGINT, error VARCHAR,
        metadata JSON, content_hash VARCHAR NOT NULL, ingested_at TIMESTAMPTZ NOT NULL);
    CREATE TABLE IF NOT EXISTS rejected_traces (
        source VARCHAR NOT NULL, location VARCHAR NOT NULL, reason VARCHAR NOT NULL,
        raw VARCHAR, rejected_at TIMESTAMPTZ NOT NULL);
    CREATE TABLE IF NOT EXISTS trace_evaluations (
        trace_id VARCHAR NOT NULL, check_name VARCHAR NOT NULL, passed BOOLEAN,
        detail VARCHAR, task_version VARCHAR, evaluated_at TIMESTAMPTZ NOT NULL);
    CREATE TABLE IF NOT EXISTS annotations (
        annotation_id VARCHAR NOT NULL, trace_id VARCHAR NOT NULL, label VARCHAR NOT NULL,
        failure_mode VARCHAR, correction VARCHAR, critique VARCHAR, annotator VARCHAR NOT NULL,
        annotated_at TIMESTAMPTZ NOT NULL, source VARCHAR);
    CREATE TABLE IF NOT EXISTS labelled_failures (
        trace_id VARCHAR NOT NULL, failure_mode VARCHAR NOT NULL, label_source VARCHAR NOT NULL,
        detail VARCHAR, correction VARCHAR);
    CREATE TABLE IF NOT EXISTS synthetic_examples (
        example_id VARCHAR NOT NULL, parent_id VARCHAR NOT NULL, generator VARCHAR NOT NULL,
        input JSON NOT NULL, output VARCHAR NOT NULL, seed BIGINT, created_at TIMESTAMPTZ NOT NULL);
    CREATE TABLE IF NOT EXISTS training_examples (
        example_id VARCHAR NOT NULL, source VARCHAR NOT NULL, group_id VARCHAR NOT NULL,
        split VARCHAR NOT NULL, input JSON NOT NULL, output VARCHAR NOT NULL,
        parent_id VARCHAR, created_at TIMESTAMPTZ NOT NULL);
    CREATE TABLE IF NOT EXISTS fine_tuned_models (
        model_id VARCHAR NOT NULL, backend VARCHAR NOT NULL, base_model VARCHAR,
        job_id VARCHAR, status VARCHAR NOT NULL, training_data_version VARCHAR,
        hyperparameters JSON, metrics JSON, artifact_path VARCHAR,
        created_at TIMESTAMPTZ NOT NULL, finished_at TIMESTAMPTZ, error VARCHAR);
    CREATE TABLE IF NOT EXISTS eval_results (
        model_id VARCHAR NOT NULL, example_id VARCHAR NOT NULL, test_set_version VARCHAR NOT NULL,
        output VARCHAR, passed_checks BOOLEAN NOT NULL, failed_checks VARCHAR[],
        exact_match BOOLEAN NOT NULL, metrics JSON, evaluated_at TIMESTAMPTZ NOT NULL);
    CREATE TABLE IF NOT EXISTS eval_reports (
        model_id VARCHAR NOT NULL, baseline_model_id VARCHAR, test_set_version VARCHAR NOT NULL,
        n_examples BIGINT NOT NULL, metrics JSON NOT NULL, verdict VARCHAR NOT NULL,
        report_markdown VARCHAR, created_at TIMESTAMPTZ NOT NULL);
    CREATE TABLE IF NOT EXISTS model_promotions (
        model_id VARCHAR NOT NULL, previous_model_id VARCHAR, reason VARCHAR NOT NULL,
        promoted_at TIMESTAMPTZ NOT NULL);
    """),
    (2, "synthetic provenance, curation strata", """
    ALTER TABLE synthetic_examples ADD COLUMN IF NOT EXISTS prompt_version VARCHAR;
    ALTER TABLE synthetic_examples ADD COLUMN IF NOT EXISTS model VARCHAR;
    ALTER TABLE training_examples ADD COLUMN IF NOT EXISTS failure_mode VARCHAR;
    ALTER TABLE training_examples ADD COLUMN IF NOT EXISTS complexity BIGINT;
    """),
    (3, "ingested files ledger", """
    CREATE TABLE IF NOT EXISTS ingested_files (
        source VARCHAR NOT NULL, path VARCHAR NOT NULL, format VARCHAR NOT NULL,
        size BIGINT NOT NULL, mtime_ns BIGINT NOT NULL, offset_bytes BIGINT NOT NULL,
        lines BIGINT NOT NULL, head_hash VARCHAR, tail_hash VARCHAR,
        ingested BIGINT NOT NULL, rejected BIGINT NOT NULL, ingested_at TIMESTAMPTZ NOT NULL);
    """),
    (4, "judge verdicts", """
    CREATE TABLE IF NOT EXISTS trace_judgements (
        judge_version VARCHAR NOT NULL, trace_id VARCHAR NOT NULL, subject VARCHAR NOT NULL,
        outcome VARCHAR, critique VARCHAR, error VARCHAR, judge_model VARCHAR NOT NULL,
        prompt_tokens BIGINT, completion_tokens BIGINT, latency_ms DOUBLE,
        judged_at TIMESTAMPTZ NOT NULL);
    """),
    (5, "hosted fine-tuning: registry columns, job events", """
    ALTER TABLE fine_tuned_models ADD COLUMN IF NOT EXISTS config_hash VARCHAR;
    ALTER TABLE fine_tuned_models ADD COLUMN IF NOT EXISTS cost_estimate_usd DOUBLE;
    ALTER TABLE fine_tuned_models ADD COLUMN IF NOT EXISTS trained_tokens BIGINT;
    CREATE TABLE IF NOT EXISTS fine_tune_events (
        job_id VARCHAR NOT NULL, event_id VARCHAR NOT NULL, created_at TIMESTAMPTZ NOT NULL,
        level VARCHAR, type VARCHAR, message VARCHAR, step BIGINT, train_loss DOUBLE, valid_loss DOUBLE,
        data JSON);
    """),
    (6, "analyst views", """
    CREATE OR REPLACE VIEW failure_rate_daily AS
    WITH traces AS (SELECT trace_id, CAST(timezone('UTC', ts) AS DATE) AS day FROM raw_traces),
         per_day AS (SELECT day, count(*) AS traces FROM traces GROUP BY day)
    SELECT t.day, f.failure_mode, count(DISTINCT f.trace_id) AS failing_traces, d.traces,
           count(DISTINCT f.trace_id) / d.traces AS failure_rate,
           list(DISTINCT f.label_source ORDER BY f.label_source) AS label_sources
    FROM labelled_failures f JOIN traces t USING (trace_id) JOIN per_day d USING (day)
    GROUP BY t.day, f.failure_mode, d.traces
    ORDER BY t.day, failure_rate DESC, f.failure_mode;

    CREATE OR REPLACE VIEW top_failing_inputs AS
    SELECT r.input::VARCHAR AS input, count(DISTINCT r.trace_id) AS traces,
           count(DISTINCT f.trace_id) AS failing_traces,
           count(DISTINCT f.trace_id) / count(DISTINCT r.trace_id) AS failure_rate,
           list(DISTINCT f.failure_mode ORDER BY f.failure_mode) FILTER (WHERE f.failure_mode IS NOT NULL) AS failure_modes,
           max(r.ts) AS last_seen
    FROM raw_traces r LEFT JOIN labelled_failures f USING (trace_id)
    GROUP BY r.input::VARCHAR
    HAVING count(f.trace_id) > 0
    ORDER BY failing_traces DESC, failure_rate DESC, input;

    CREATE OR REPLACE VIEW model_leaderboard AS
    WITH scores AS (
        SELECT model_id, test_set_version, count(*) AS n_examples, avg(passed_checks::INT) AS passed_checks,
               avg(exact_match::INT) AS exact_match, max(evaluated_at) AS evaluated_at
        FROM eval_results GROUP BY model_id, test_set_version),
    vs_base AS (
        SELECT r.model_id, r.test_set_version, r.verdict AS verdict_vs_base
        FROM eval_reports r JOIN fine_tuned_models m ON m.model_id = r.model_id AND m.base_model = r.baseline_model_id),
    in_use AS (SELECT model_id FROM model_promotions ORDER BY promoted_at DESC LIMIT 1)
    SELECT rank() OVER (PARTITION BY s.test_set_version ORDER BY s.passed_checks DESC, s.exact_match DESC) AS rank,
           s.model_id,
           CASE WHEN m.model_id IS NULL THEN 'external' WHEN m.base_model IS NULL THEN 'base' ELSE 'fine-tuned' END AS kind,
           m.backend, m.base_model, m.training_data_version, s.test_set_version, s.n_examples,
           s.passed_checks, s.exact_match, v.verdict_vs_base,
           s.model_id IN (SELECT model_id FROM in_use) AS promoted, s.evaluated_at
    FROM scores s LEFT JOIN fine_tuned_models m USING (model_id) LEFT JOIN vs_base v USING (model_id, test_set_version)
    WHERE s.test_set_version IN (SELECT test_set_version FROM eval_reports)
    ORDER BY s.test_set_version, rank, s.model_id;

    CREATE OR REPLACE VIEW training_data_composition AS
    SELECT split, source, coalesce(failure_mode, 'none') AS failure_mode, count(*) AS examples,
           count(*) / sum(count(*)) OVER (PARTITION BY split) AS share_of_split
    FROM training_examples GROUP BY split, source, coalesce(failure_mode, 'none')
    ORDER BY split, examples DESC, source, failure_mode;
    """),
    (7, "training planned vs actual, run owner", """
    ALTER TABLE fine_tuned_models ADD COLUMN IF NOT EXISTS planned_steps BIGINT;
    ALTER TABLE fine_tuned_models ADD COLUMN IF NOT EXISTS trained_steps BIGINT;
    ALTER TABLE fine_tuned_models ADD COLUMN IF NOT EXISTS planned_epochs DOUBLE;
    ALTER TABLE fine_tuned_models ADD COLUMN IF NOT EXISTS trained_epochs DOUBLE;
    ALTER TABLE fine_tuned_models ADD COLUMN IF NOT EXISTS stopped_early BOOLEAN;
    ALTER TABLE fine_tuned_models ADD COLUMN IF NOT EXISTS complete BOOLEAN;
    ALTER TABLE fine_tuned_models ADD COLUMN IF NOT EXISTS incomplete_reason VARCHAR;
    ALTER TABLE fine_tuned_models ADD COLUMN IF NOT EXISTS run_owner VARCHAR;
    """),
    (8, "eval results keyed by model, test set and example", """
    CREATE UNIQUE INDEX IF NOT EXISTS eval_results_key ON eval_results (model_id, test_set_version, example_id);
    """),
    (9, "training examples: whether a person verified the reference", """
    ALTER TABLE training_examples ADD COLUMN IF NOT EXISTS reference_verified BOOLEAN DEFAULT false;
    UPDATE training_examples SET reference_verified = coalesce(source = 'correction' OR (source = 'trace' AND parent_id IN (
        SELECT trace_id FROM annotations
        QUALIFY row_number() OVER (PARTITION BY trace_id ORDER BY annotated_at DESC, annotation_id DESC) = 1
              AND label = 'good')), false);
    """),
    (10, "annotation edits: the decision a row supersedes", """
    ALTER TABLE annotations ADD COLUMN IF NOT EXISTS supersedes VARCHAR;
    """),
    (11, "raw traces: the task's display text; top_failing_inputs by normalised input text", """
    ALTER TABLE raw_traces ADD COLUMN IF NOT EXISTS display_text VARCHAR;
    CREATE OR REPLACE VIEW top_failing_inputs AS
    WITH traces AS (
        SELECT trace_id, task, ts, input::VARCHAR AS input, coalesce(display_text, input::VARCHAR) AS input_text,
               lower(trim(regexp_replace(coalesce(display_text, input::VARCHAR), '[[:space:]]+', ' ', 'g'))) AS text_key
        FROM raw_traces)
    SELECT t.task, min(t.input_text) AS input_text, count(DISTINCT t.trace_id) AS traces,
           count(DISTINCT f.trace_id) AS failing_traces,
           count(DISTINCT f.trace_id) / count(DISTINCT t.trace_id) AS failure_rate,
           list(DISTINCT f.failure_mode ORDER BY f.failure_mode) FILTER (WHERE f.failure_mode IS NOT NULL) AS failure_modes,
           count(DISTINCT t.input) AS distinct_inputs, max(t.ts) AS last_seen
    FROM traces t LEFT JOIN labelled_failures f USING (trace_id)
    GROUP BY t.task, t.text_key
    HAVING count(f.trace_id) > 0
    ORDER BY failing_traces DESC, failure_rate DESC, input_text;
    """),
    (12, "annotator agreement: adjudication role, agreement and disagreement views", """
    ALTER TABLE annotations ADD COLUMN IF NOT EXISTS role VARCHAR DEFAULT 'annotation';
    """ + AGREEMENT_VIEWS),
    (13, "training examples: who wrote each output (output_origin), for distillation's provenance", """
    ALTER TABLE training_examples ADD COLUMN IF NOT EXISTS output_origin VARCHAR;
    UPDATE training_examples SET output_origin = 'model:' || coalesce(t.model, 'unknown')
    FROM raw_traces t WHERE training_examples.source = 'trace' AND t.trace_id = training_examples.parent_id
      AND training_examples.output_origin IS NULL;
    UPDATE training_examples SET output_origin = 'synthetic:' || s.generator
    FROM synthetic_examples s WHERE training_examples.source = 'synthetic'
      AND s.example_id = training_examples.example_id AND training_examples.output_origin IS NULL;
    UPDATE training_examples SET output_origin = 'person' WHERE source = 'correction' AND output_origin IS NULL;
    """),
    (14, "incumbent outputs: the production model's answers on the test split and recent traces", """
    CREATE TABLE IF NOT EXISTS incumbent_outputs (
        model VARCHAR NOT NULL, scope VARCHAR NOT NULL, item_id VARCHAR NOT NULL, input_hash VARCHAR NOT NULL,
        output VARCHAR, error VARCHAR, latency_ms DOUBLE, prompt_tokens BIGINT, completion_tokens BIGINT,
        cost_usd DOUBLE, captured_at TIMESTAMPTZ NOT NULL, attempts BIGINT NOT NULL);
    """),
    (15, "eval_results: drop the unique index that made rewriting a model's results fail in a reopened file", """
    DROP INDEX IF EXISTS eval_results_key;
    """),
    (16, "day partitions (DuckLake only: a plain file is not partitioned)", ""),
]

#: A migration's statements on DuckLake where they differ (see docs/ducklake.md, "What DuckLake lacks"):
#: it has no indexes (so no unique index: :data:`UNIQUE_KEYS` and :func:`settle_duplicates` keep
#: the keys unique), takes no BOOLEAN default in ALTER TABLE (every writer sets the column), and
#: partitions raw_traces and trace_evaluations by day.
LAKE_MIGRATIONS: dict[int, str] = {
    8: "",
    9: next(sql for version, _, sql in MIGRATIONS if version == 9).replace("reference_verified BOOLEAN DEFAULT false", "reference_verified BOOLEAN"),
    16: ";\n".join(f"ALTER TABLE {table} SET PARTITIONED BY (year({column}), month({column}), day({column}))"
                   for table, column in lake.DAY_PARTITIONS.items()),
}

CONTRACT_TABLES = (
    "raw_traces", "rejected_traces", "trace_evaluations", "annotations", "labelled_failures",
    "synthetic_examples", "training_examples", "fine_tuned_models", "eval_results", "eval_reports",
)


@contextmanager
def transaction(conn: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """BEGIN ... COMMIT around the block; ROLLBACK and re-raise on any error or interrupt."""
    conn.execute("BEGIN TRANSACTION")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        try:
            conn.execute("ROLLBACK")
        except duckdb.TransactionException:
            pass  # a refused COMMIT (a DuckLake conflict) already ended the transaction
        raise


#: How many times a transaction that conflicts with another writer's commit is tried (DuckLake).
CONFLICT_ATTEMPTS = 30
#: The first pause before trying again (doubling, with jitter, up to CONFLICT_MAX_PAUSE_SECONDS).
CONFLICT_FIRST_PAUSE_SECONDS, CONFLICT_MAX_PAUSE_SECONDS = 0.05, 2.0


def retrying(work: Callable[[], T], attempts: int = CONFLICT_ATTEMPTS) -> T:
    """``work()``, one whole transaction, run again while DuckLake refuses its commit because it
    conflicts with another writer's, or a SQLite catalog is locked by one
    (:func:`pipeline.engine.core.lake.is_conflict`); ``work`` must begin and end its own
    transaction. A plain DuckDB file has one writer, so it never retries."""
    pause = CONFLICT_FIRST_PAUSE_SECONDS
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except duckdb.Error as exc:
            if not lake.is_conflict(exc) or attempt == attempts:
                raise
        time.sleep(pause * random.uniform(0.5, 1.5))
        pause = min(2 * pause, CONFLICT_MAX_PAUSE_SECONDS)
    raise AssertionError("unreachable")


def connect(database: str, read_only: bool = False, data_path: str | None = None) -> duckdb.DuckDBPyConnection:
    """Open the database with the schema migrated (unless ``read_only``): a DuckDB file (its
    folder created; a path that can never be a DuckDB database fails at once,
    :func:`check_database_path`), ``md:`` MotherDuck, ``:memory:``, or a ``ducklake:`` catalog
    (:func:`pipeline.engine.core.lake.connect`, ``data_path`` used when it creates the lake)."""
    if lake.is_lake(database):
        conn = lake.connect(database, data_path, read_only=read_only)
    else:
        check_database_path(database)
        if is_local(database):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        conn = duckdb.connect(database, read_only=read_only)
    if not read_only:
        try:
            migrate(conn)
        except BaseException:
            conn.close()
            raise
    return conn


def migrate(conn: duckdb.DuckDBPyConnection) -> list[int]:
    """Apply pending migrations (on DuckLake, their :data:`LAKE_MIGRATIONS` form); returns the
    versions applied now. Several processes may migrate one lake at once: each migration is one
    transaction, retried on a conflict, and skipped when another process applied it first."""
    on_lake = lake.is_lake_connection(conn)
    retrying(lambda: conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER, name VARCHAR, applied_at TIMESTAMPTZ DEFAULT now())"))
    done = {row[0] for row in retrying(lambda: conn.execute("SELECT version FROM schema_migrations").fetchall())}
    applied = []
    for version, name, sql in MIGRATIONS:
        if version in done:
            continue
        sql = LAKE_MIGRATIONS.get(version, sql) if on_lake else sql

        def apply() -> bool:
            with transaction(conn):
                if conn.execute("SELECT count(*) FROM schema_migrations WHERE version = ?", [version]).fetchone()[0]:
                    return False
                if sql.strip():
                    conn.execute(sql)
                conn.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [version, name])
            return True

        if retrying(apply):
            applied.append(version)
    if applied:
        settle_duplicates(conn, "schema_migrations")  # DuckLake: two processes applied one at once
    return applied


def read(conn: duckdb.DuckDBPyConnection, sql: str, params: Sequence | None = None) -> pl.DataFrame:
    """Run a query and return the result as a polars frame."""
    return conn.execute(sql, params or []).pl()


def _key_match(table: str, key: Sequence[str]) -> str:
    return " AND ".join(f"{table}.{k} IS NOT DISTINCT FROM batch.{k}" for k in key)


def _write(conn: duckdb.DuckDBPyConnection, statements: list[str], batch: pl.DataFrame, table: str,
           keep: str = "last") -> None:
    """Run ``statements`` over the registered ``batch`` in one transaction (retried on a DuckLake
    conflict), then settle ``table``'s duplicate keys among the batch's (:func:`settle_duplicates`)."""
    conn.register("batch", batch.to_arrow())
    try:
        def attempt() -> None:
            with transaction(conn):
                for sql in statements:
                    conn.execute(sql)

        retrying(attempt)
        settle_duplicates(conn, table, keep, among="batch")
    finally:
        conn.unregister("batch")


#: Tables whose rows are unique on these columns. Migration 8 enforced eval_results' with a unique
#: index, but DuckDB checks a reopened file database's unique index before the same transaction's
#: DELETE reaches it, so rewriting existing keys failed (INSERT OR REPLACE too); migration 15 drops
#: the index. :func:`upsert` refuses a batch that repeats one of these keys, and on DuckLake (no
#: indexes, and two writers' inserts of one new key both commit) :func:`settle_duplicates` keeps one.
UNIQUE_KEYS = {
    "schema_migrations": ("version",),
    "eval_results": ("model_id", "test_set_version", "example_id"),
    "raw_traces": ("trace_id",),
    "annotations": ("annotation_id",),
    "trace_evaluations": ("trace_id", "check_name"),
    "ingested_files": ("source", "path"),
    "rejected_traces": ("source", "location"),
}


def settle_duplicates(conn: duckdb.DuckDBPyConnection, table: str, keep: str = "first", among: str | None = None) -> int:
    """On DuckLake, delete the rows of ``table`` that repeat a :data:`UNIQUE_KEYS` key, keeping the
    ``first`` or ``last`` committed (DuckLake's row ids grow with each commit); ``among`` (a
    registered relation or a parenthesised query giving the key columns) limits it to those keys.
    Two writers that inserted one new key at once both committed (appends never conflict);
    whichever settles first deletes the extra row, the other finds none. Returns the rows deleted;
    a DuckDB file (one writer) has none to settle."""
    key = UNIQUE_KEYS.get(table)
    if key is None or keep not in ("first", "last") or not lake.is_lake_connection(conn):
        return 0
    keys = ", ".join(key)
    scope = f"WHERE ({keys}) IN (SELECT ({keys}) FROM {among})" if among else ""
    order = "rowid" if keep == "first" else "rowid DESC"

    def attempt() -> int:
        with transaction(conn):
            extra = [row[0] for row in conn.execute(f"""
                WITH repeated AS (SELECT {keys} FROM {table} {scope} GROUP BY {keys} HAVING count(*) > 1)
                SELECT rowid FROM (
                    SELECT rowid, row_number() OVER (PARTITION BY {keys} ORDER BY {order}) AS n
                    FROM {table} WHERE ({keys}) IN (SELECT ({keys}) FROM repeated))
                WHERE n > 1""").fetchall()]
            if extra:
                conn.execute(f"DELETE FROM {table} WHERE list_contains(?, rowid)", [extra])
            return len(extra)

    return retrying(attempt)


def upsert(conn: duckdb.DuckDBPyConnection, table: str, batch: pl.DataFrame, key: Sequence[str]) -> int:
    """Replace the rows of ``table`` whose ``key`` matches a row of ``batch`` with the batch.

    ``key`` may be a prefix of the row's identity (for example ``model_id``), in which case every
    row of that model is replaced. Returns the number of rows written.
    """
    if batch.is_empty():
        return 0
    unique = UNIQUE_KEYS.get(table)
    if unique and batch.select(unique).is_duplicated().any():
        raise duckdb.ConstraintException(f"two rows of the batch share one {table} key {unique}")
    keys = ", ".join(key)
    _write(conn, [
        f"DELETE FROM {table} WHERE EXISTS (SELECT 1 FROM (SELECT DISTINCT {keys} FROM batch) batch "
        f"WHERE {_key_match(table, key)})",
        f"INSERT INTO {table} BY NAME SELECT * FROM batch",
    ], batch, table, keep="last")
    return batch.height


def insert_new(conn: duckdb.DuckDBPyConnection, table: str, batch: pl.DataFrame, key: Sequence[str]) -> int:
    """Insert the rows of ``batch`` whose key is not in ``table`` yet (first write wins); returns how many."""
    if batch.is_empty():
        return 0
    counted: list[int] = []

    def attempt() -> None:
        counted.clear()
        with transaction(conn):
            before = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM batch WHERE NOT EXISTS "
                         f"(SELECT 1 FROM {table} WHERE {_key_match(table, key)})")
            counted.append(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] - before)

    conn.register("batch", batch.to_arrow())
    try:
        retrying(attempt)
        settled = settle_duplicates(conn, table, "first", among="batch")
    finally:
        conn.unregister("batch")
    return counted[0] - settled


def sync(conn: duckdb.DuckDBPyConnection, table: str, batch: pl.DataFrame, key: Sequence[str],
         compare: Sequence[str] = ()) -> dict[str, int]:
    """Make ``table`` hold exactly the keys of ``batch``.

    Rows whose key is gone are deleted; new keys are inserted; rows whose key exists but differ
    in one of the ``compare`` columns are replaced; all others are left as they are. Returns
    counts of inserted (new keys), replaced, deleted and unchanged rows.
    """
    match = _key_match(table, key)
    changed = " OR ".join(f"{table}.{c} IS DISTINCT FROM batch.{c}" for c in compare) or "FALSE"
    before = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    conn.register("batch", batch.to_arrow())
    try:
        gone = conn.execute(
            f"SELECT count(*) FROM {table} WHERE NOT EXISTS (SELECT 1 FROM batch WHERE {match})"
        ).fetchone()[0]
        replaced = conn.execute(
            f"SELECT count(*) FROM {table} JOIN batch ON {match} WHERE {changed}").fetchone()[0]
    finally:
        conn.unregister("batch")
    _write(conn, [
        f"DELETE FROM {table} WHERE NOT EXISTS (SELECT 1 FROM batch WHERE {match})",
        f"DELETE FROM {table} WHERE EXISTS (SELECT 1 FROM batch WHERE {match} AND ({changed}))",
        f"INSERT INTO {table} BY NAME SELECT * FROM batch WHERE NOT EXISTS "
        f"(SELECT 1 FROM {table} WHERE {match})",
    ], batch, table)
    after = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    unchanged = before - gone - replaced
    return {"inserted": after - unchanged - replaced, "replaced": replaced, "deleted": gone,
            "unchanged": unchanged}
