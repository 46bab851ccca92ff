"""The SQL fast path: validate and normalise trace lines in DuckDB, and write them by key.

:data:`PARSE` accepts a line only when the reference validator
(:func:`pipeline.engine.ingest.records.normalise_record`) would accept it with the same values;
every other line (bad, unusual, or in another format) comes back as a *suspect* for the Python
path, which gives the exact reason. :func:`finalise` assigns content hashes and trace ids and
drops duplicates, the same way for both paths.
"""

from __future__ import annotations

import duckdb

from pipeline.engine.tasks import Task

#: Per-task SQL over a JSON value ``{input}`` that is true only for inputs the task's
#: ``validate_input`` accepts. A task may define ``input_sql_check``; without one every line
#: takes the Python path (correct, slower).
INPUT_SQL_CHECKS = {
    "nl2query": """(starts_with({input}, '{{')
        AND starts_with(json_extract({input}, ['$.question', '$.columns'])[1], '"')
        AND regexp_matches({input} ->> '$.question', '[[:alnum:]]')
        AND regexp_full_match(json_extract({input}, ['$.question', '$.columns'])[2],
                              '\\["[^"\\\\]+"(,"[^"\\\\]+")*\\]'))""",
}

FIELDS = ("trace_id", "task", "ts", "input", "output", "model", "latency_ms", "prompt_tokens",
          "completion_tokens", "error", "metadata")
_TYPES = {"input": "JSON", "metadata": "JSON", "latency_ms": "DOUBLE", "prompt_tokens": "BIGINT",
          "completion_tokens": "BIGINT"}
_STRUCTURE = "{" + ",".join(f'"{f}":"{_TYPES.get(f, "VARCHAR")}"' for f in FIELDS) + "}"
_PATHS = "[" + ", ".join(f"'$.{f}'" for f in FIELDS) + "]"
_TS = (r"^[1-9]\d{3}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[T ]([01]\d|2[0-3]):[0-5]\d:[0-5]\d"
       r"(\.\d{1,6})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)?$")


def _type(field: str) -> str:
    """The JSON type of a top-level field ('NULL' when missing or null)."""
    return f"coalesce(k[{FIELDS.index(field) + 1}], 'NULL')"


# One pass finds each field's JSON type, one reads them typed (a lenient read, hence the types).
# Lines Python's json module reads differently from DuckDB's (trailing commas, NaN, Infinity)
# take the Python path.
PARSE = f"""
CREATE OR REPLACE TEMP TABLE _parsed AS
WITH j AS (
    SELECT line_no, starts_with(line, '{{') AND NOT (contains(line, ',}}') OR contains(line, ',]')
                     OR contains(line, 'NaN') OR contains(line, 'Infinity')) AND json_valid(line) AS readable,
           CASE WHEN readable THEN json_type(line, {_PATHS}) END AS k,
           CASE WHEN readable THEN json_transform(line, '{_STRUCTURE}') END AS r
    FROM chunk
), v AS (
    SELECT line_no,
        CASE WHEN {_type("trace_id")} = 'VARCHAR' THEN r.trace_id END AS trace_id,
        CASE WHEN {_type("ts")} = 'VARCHAR' AND regexp_full_match(r.ts, '{_TS}') THEN timezone('UTC',
            try_cast(left(r.ts, length(r.ts) - length(ts_offset)) AS TIMESTAMP)
            - to_minutes(CASE WHEN ts_offset IN ('', 'Z') THEN 0 ELSE
                (CASE WHEN ts_offset[1] = '-' THEN -1 ELSE 1 END)
                * (try_cast(ts_offset[2:3] AS INT) * 60 + try_cast(ts_offset[5:6] AS INT)) END)) END AS ts,
        r.input::VARCHAR AS input,
        coalesce(CASE WHEN {_type("output")} = 'VARCHAR' THEN r.output END, '') AS output,
        CASE WHEN {_type("model")} = 'VARCHAR' THEN r.model END AS model,
        r.latency_ms AS latency_ms, r.prompt_tokens AS prompt_tokens, r.completion_tokens AS completion_tokens,
        CASE WHEN {_type("error")} = 'VARCHAR' THEN r.error END AS error,
        CASE WHEN {_type("metadata")} = 'OBJECT' THEN r.metadata::VARCHAR ELSE '{{}}' END AS metadata,
        readable
        AND ({_type("trace_id")} = 'NULL' OR ({_type("trace_id")} = 'VARCHAR' AND regexp_matches(r.trace_id, '[[:alnum:]]')))
        AND ({_type("task")} = 'NULL' OR ({_type("task")} = 'VARCHAR' AND r.task IN ('', {{task}})))
        AND {{input_check}}
        AND {_type("output")} IN ('NULL', 'VARCHAR') AND {_type("error")} IN ('NULL', 'VARCHAR')
        AND (({_type("output")} = 'VARCHAR' AND r.output <> '') OR ({_type("error")} = 'VARCHAR' AND r.error <> ''))
        AND {_type("metadata")} IN ('NULL', 'OBJECT')
        AND ({_type("latency_ms")} = 'NULL' OR ({_type("latency_ms")} IN ('BIGINT', 'UBIGINT', 'DOUBLE')
             AND isfinite(r.latency_ms) AND r.latency_ms >= 0))
        AND ({_type("prompt_tokens")} = 'NULL' OR ({_type("prompt_tokens")} IN ('BIGINT', 'UBIGINT') AND r.prompt_tokens >= 0))
        AND ({_type("completion_tokens")} = 'NULL'
             OR ({_type("completion_tokens")} IN ('BIGINT', 'UBIGINT') AND r.completion_tokens >= 0))
        AND ({_type("ts")} = 'NULL' OR ({_type("ts")} = 'VARCHAR' AND ts IS NOT NULL)) AS ok
    FROM (SELECT *, regexp_extract(r.ts, '(Z|[+-]\\d{{2}}:\\d{{2}})$', 1) AS ts_offset FROM j)
)
SELECT * REPLACE (coalesce(ok, FALSE) AS ok) FROM v
"""


def parse_sql(task: Task) -> str:
    """:data:`PARSE` for ``task`` (its SQL input check, or none: every line to Python)."""
    check = getattr(task, "input_sql_check", None) or INPUT_SQL_CHECKS.get(task.name) or "FALSE"
    literal = "'" + task.name.replace("'", "''") + "'"
    return PARSE.replace("{input_check}", check.format(input="r.input")).replace("{task}", literal)


def _canonical_input(expr: str) -> str:
    """JSON text of ``expr`` (minified) with an object's top-level keys sorted."""
    return (f"CASE WHEN json_type({expr}) = 'OBJECT' THEN '{{' || array_to_string(list_transform("
            f"list_sort(map_entries(from_json({expr}, '\"MAP(VARCHAR, JSON)\"'))), "
            f"e -> to_json(e.key) || ':' || e.value), ',') || '}}' ELSE {expr}::VARCHAR END")


#: Content hash of a trace: sha256 over task, input (keys sorted, minified), output, model and
#: ts (as UTC microseconds), so the same trace logged twice hashes the same.
CONTENT_HASH = ("sha256(concat_ws(chr(31), task, {canon}, output, coalesce(model, chr(0)), "
                "coalesce(epoch_us(ts)::VARCHAR, '')))")


def finalised(relation: str, ordered: bool = False) -> str:
    """SELECT over ``relation`` (RECORD_SCHEMA columns, input and metadata as minified JSON text)
    giving raw_traces rows (plus ``seq``) for records whose trace id is neither in raw_traces nor
    earlier in the relation, in ``seq`` order when ``ordered``. Parameters: source, ingested_at."""
    return f"""
    WITH h AS (SELECT *, {CONTENT_HASH.format(canon=_canonical_input("input"))} AS content_hash FROM {relation}),
    k AS (SELECT *, coalesce(trace_id, 'h_' || content_hash[1:24]) AS tid FROM h
          QUALIFY row_number() OVER (PARTITION BY tid ORDER BY seq) = 1),
    -- probe raw_traces with the batch's ids (hash table on the batch side, not the whole table)
    existing AS (SELECT trace_id FROM raw_traces WHERE trace_id IN (SELECT tid FROM k))
    SELECT seq, tid AS trace_id, $1 AS source, task, ts, input, output, model, latency_ms, prompt_tokens,
           completion_tokens, error, metadata, content_hash, $2 AS ingested_at
    FROM k WHERE NOT EXISTS (SELECT 1 FROM existing e WHERE e.trace_id = k.tid)
    {"ORDER BY seq" if ordered else ""}"""


def insert_records(conn: duckdb.DuckDBPyConnection, relation: str, source: str, now, ordered: bool = False) -> int:
    """Insert the new records of ``relation`` into raw_traces (in ``seq`` order when ``ordered``);
    returns how many."""
    sql = f"INSERT INTO raw_traces BY NAME SELECT * EXCLUDE (seq) FROM ({finalised(relation, ordered)})"
    return conn.execute(sql, [source, now]).fetchone()[0]
