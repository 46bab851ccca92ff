"""The SQL fast path: validate and normalise trace lines in DuckDB, and write them by key.

:data:`PARSE` accepts a line only when the reference validator
(:func:`pipeline.engine.ingest.records.normalise_record`) would accept it with the same values;
every other line (bad, unusual, or in another format) comes back as a *suspect* for the Python
path, which gives the exact reason. :func:`finalised` assigns content hashes and trace ids and
drops duplicates, the same way for both paths.
"""

from __future__ import annotations

import json
import re
from typing import Any

import duckdb
import polars as pl

from pipeline.engine.core import store
from pipeline.engine.ingest.records import parse_timestamp
from pipeline.engine.tasks import Task

FIELDS = ("trace_id", "task", "ts", "input", "output", "model", "latency_ms", "prompt_tokens",
          "completion_tokens", "error", "metadata")
_TYPES = {"input": "JSON", "metadata": "JSON", "latency_ms": "DOUBLE", "prompt_tokens": "BIGINT",
          "completion_tokens": "BIGINT"}
_STRUCTURE = "{" + ",".join(f'"{f}":"{_TYPES.get(f, "VARCHAR")}"' for f in FIELDS) + "}"
#: The fields read, then another field a record often carries (counted by _LINE_KEYS_ONCE).
_PATHS = "[" + ", ".join(f"'$.{f}'" for f in (*FIELDS, "source")) + "]"
_TS = (r"^[1-9]\d{3}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[T ]([01]\d|2[0-3]):[0-5]\d:[0-5]\d"
       r"(\.\d{1,6})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)?$")


def _type(field: str) -> str:
    """The JSON type of a top-level field ('NULL' when missing or null)."""
    return f"coalesce(k[{FIELDS.index(field) + 1}], 'NULL')"


#: The top-level keys of ``input`` (JSON text) when it is an object, in their order.
_KEYS = "CASE WHEN starts_with(input, '{') THEN json_keys(input) END"

#: Text DuckDB reads as JSON and Python's json module does not, or reads as another value
#: (trailing commas, NaN and Infinity in any case, numbers beyond a double), or may find nested
#: too deeply (more than 64 brackets opened), found loosely.
_UNLIKE_PYTHON = r"(?i),\s*[}\]]|[:,\[]\s*-?([0-9]{100}|[0-9.]+e\+?[0-9]{3}|nan|inf)|([\[{][^\[{]*){65}"
#: True when the JSON object ``{}`` holds no key twice.
_KEYS_ONCE = "list_unique(json_keys({0})) = len(json_keys({0}))"
#: The same for the line, quicker for a line of only known fields: their count (``k`` holds the
#: types of those there) is then its number of keys.
_LINE_KEYS_ONCE = (f"CASE WHEN len(json_keys(line)) = list_aggregate(k, 'count') THEN TRUE "
                   f"ELSE {_KEYS_ONCE.format('line')} END")

# One pass finds each field's JSON type, one reads them typed (a lenient read, hence the types).
# Lines Python's json module reads differently from DuckDB's take the Python path: the text
# above, a key given twice (Python keeps the last value, DuckDB the first; at the top level
# Python refuses it), input or metadata holding objects (which could repeat keys), a non-string
# model, a timestamp past the year 9999 in UTC.
PARSE = f"""
CREATE OR REPLACE TEMP TABLE _parsed AS
WITH j AS (
    SELECT line_no, starts_with(line, '{{') AND NOT regexp_matches(line, '{_UNLIKE_PYTHON}')
                    AND json_valid(line) AS readable,
           CASE WHEN readable THEN json_type(line, {_PATHS}) END AS k,
           CASE WHEN readable THEN json_transform(line, '{_STRUCTURE}') END AS r,
           CASE WHEN readable THEN {_LINE_KEYS_ONCE} END AS keys_once
    FROM chunk
), v AS (
    SELECT line_no,
        CASE WHEN {_type("trace_id")} = 'VARCHAR' THEN r.trace_id END AS trace_id,
        CASE WHEN {_type("ts")} = 'VARCHAR' AND regexp_full_match(r.ts, '{_TS}') THEN
            try_cast(left(r.ts, length(r.ts) - length(ts_offset)) AS TIMESTAMP)
            - to_minutes(CASE WHEN ts_offset IN ('', 'Z') THEN 0 ELSE
                (CASE WHEN ts_offset[1] = '-' THEN -1 ELSE 1 END)
                * (try_cast(ts_offset[2:3] AS INT) * 60 + try_cast(ts_offset[5:6] AS INT)) END) END AS ts_utc,
        CASE WHEN year(ts_utc) <= 9999 THEN timezone('UTC', ts_utc) END AS ts,
        r.input::VARCHAR AS input, {_KEYS} AS input_keys,
        coalesce(CASE WHEN {_type("output")} = 'VARCHAR' THEN r.output END, '') AS output,
        CASE WHEN {_type("model")} = 'VARCHAR' THEN r.model END AS model,
        r.latency_ms AS latency_ms, r.prompt_tokens AS prompt_tokens, r.completion_tokens AS completion_tokens,
        CASE WHEN {_type("error")} = 'VARCHAR' THEN r.error END AS error,
        CASE WHEN {_type("metadata")} = 'OBJECT' THEN r.metadata::VARCHAR ELSE '{{}}' END AS metadata,
        readable AND keys_once
        AND ({_type("trace_id")} = 'NULL' OR ({_type("trace_id")} = 'VARCHAR' AND regexp_matches(r.trace_id, '[[:alnum:]]')))
        AND ({_type("task")} = 'NULL' OR ({_type("task")} = 'VARCHAR' AND r.task IN ('', {{task}})))
        AND {{input_check}} AND (input_keys IS NULL OR len(list_distinct(input_keys)) = len(input_keys))
        AND NOT contains(input[2:], '{{') AND {_type("model")} IN ('NULL', 'VARCHAR')
        AND {_type("output")} IN ('NULL', 'VARCHAR') AND {_type("error")} IN ('NULL', 'VARCHAR')
        AND (({_type("output")} = 'VARCHAR' AND r.output <> '') OR ({_type("error")} = 'VARCHAR' AND r.error <> ''))
        AND ({_type("metadata")} = 'NULL' OR ({_type("metadata")} = 'OBJECT' AND NOT contains(metadata[2:], '{{')
             AND {_KEYS_ONCE.format("r.metadata")}))
        AND ({_type("latency_ms")} = 'NULL' OR ({_type("latency_ms")} IN ('BIGINT', 'UBIGINT', 'DOUBLE')
             AND isfinite(r.latency_ms) AND r.latency_ms >= 0))
        AND ({_type("prompt_tokens")} = 'NULL' OR ({_type("prompt_tokens")} IN ('BIGINT', 'UBIGINT') AND r.prompt_tokens >= 0))
        AND ({_type("completion_tokens")} = 'NULL'
             OR ({_type("completion_tokens")} IN ('BIGINT', 'UBIGINT') AND r.completion_tokens >= 0))
        AND ({_type("ts")} = 'NULL' OR ({_type("ts")} = 'VARCHAR' AND ts IS NOT NULL)) AS ok
    FROM (SELECT *, regexp_extract(r.ts, '(Z|[+-]\\d{{2}}:\\d{{2}})$', 1) AS ts_offset FROM j)
)
SELECT * EXCLUDE (ok, input_keys, ts_utc), coalesce(ok, FALSE) AS ok, CASE WHEN ok THEN input_keys END AS input_keys FROM v
"""


def parse_sql(task: Task) -> str:
    """:data:`PARSE` for ``task`` (its SQL input check, or none: every line to Python)."""
    check = getattr(task, "input_sql_check", None) or "FALSE"
    literal = "'" + task.name.replace("'", "''") + "'"
    return PARSE.replace("{input_check}", check.format(input="input")).replace("{task}", literal)


def _canonical_input(expr: str) -> str:
    """JSON text of ``expr`` (minified) with an object's top-level keys sorted (keys whose value
    is null are left out). This defines the content hash: never change what it returns."""
    return (f"CASE WHEN json_type({expr}) = 'OBJECT' THEN '{{' || array_to_string(list_transform("
            f"list_sort(map_entries(from_json({expr}, '\"MAP(VARCHAR, JSON)\"'))), "
            f"e -> to_json(e.key) || ':' || e.value), ',') || '}}' ELSE {expr}::VARCHAR END")


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_]+")
#: Key lists given their own fast expression per batch; inputs with other key lists take the general one.
MAX_KEY_LISTS = 32


def with_canonical_input(relation: str, key_lists: list[list[str]]) -> str:
    """``relation`` (with ``input`` and its ``input_keys``) plus ``canonical_input``, the value of
    :func:`_canonical_input` computed faster.

    Sorting every object's keys is slow, and inputs share a few key lists: for each plain one
    (distinct keys of letters, digits and '_', also ignoring case) the sorted order is worked out
    here once, and the values are read as a struct in that order. Like the general expression,
    keys with null values are left out, and an object of only those gives NULL."""
    structs, cases = [], []
    for keys in key_lists:
        if not keys or len({k.lower() for k in keys}) != len(keys) or not all(_PLAIN_KEY.fullmatch(k) for k in keys):
            continue
        ordered = sorted(keys, key=lambda k: k.encode())
        name = f"_keys{len(structs)}"
        shape = "{" + ",".join(f'"{k}":"JSON"' for k in ordered) + "}"
        structs.append(f"CASE WHEN input_keys = [{', '.join(repr(k) for k in keys)}]::VARCHAR[] "
                       f"THEN json_transform(input, '{shape}') END AS {name}")
        fields = ", ".join(f"""'"{k}":' || nullif({name}."{k}"::VARCHAR, 'null')""" for k in ordered)
        cases.append(f"WHEN {name} IS NOT NULL THEN '{{' || nullif(concat_ws(',', {fields}), '') || '}}'")
    if not cases:
        return f"(SELECT *, {_canonical_input('input')} AS canonical_input FROM {relation})"
    return (f"(SELECT * EXCLUDE ({', '.join(f'_keys{i}' for i in range(len(structs)))}), "
            f"CASE {' '.join(cases)} ELSE {_canonical_input('input')} END AS canonical_input "
            f"FROM (SELECT *, {', '.join(structs)} FROM {relation}))")


#: Content hash of a trace: sha256 over task, input (keys sorted, minified), output, model and
#: ts (as UTC microseconds), so the same trace logged twice hashes the same.
CONTENT_HASH = ("sha256(concat_ws(chr(31), task, {canon}, output, coalesce(model, chr(0)), "
                "coalesce(epoch_us(ts)::VARCHAR, '')))")


def python_rows(table: str) -> str:
    """A registered RECORD_SCHEMA table (rows validated in Python) as a relation for
    :func:`insert_records`: input and metadata minified, with ``input_keys``."""
    minified = f"SELECT * REPLACE (json(input)::VARCHAR AS input, json(metadata)::VARCHAR AS metadata) FROM {table}"
    return f"(SELECT *, {_KEYS} AS input_keys FROM ({minified}))"


def finalised(relation: str, key_lists: list[list[str]], ordered: bool = False) -> str:
    """SELECT over ``relation`` (RECORD_SCHEMA columns with ``seq`` unique, input and metadata as
    minified JSON text, ``input_keys``) giving raw_traces rows (plus ``seq``) for records whose trace id is neither in
    raw_traces nor earlier in the relation, in ``seq`` order when ``ordered``. Parameters:
    source, ingested_at."""
    hashed = (f"SELECT * EXCLUDE (canonical_input), {CONTENT_HASH.format(canon='canonical_input')} AS content_hash "
              f"FROM {with_canonical_input(relation, key_lists)}")
    # first of each id: grouped on narrow columns (a window over the whole rows sorts them all);
    # raw_traces is probed with the batch's ids (hash table on the batch side)
    return f"""
    WITH h AS MATERIALIZED (SELECT *, coalesce(trace_id, 'h_' || content_hash[1:24]) AS tid FROM ({hashed})),
    first AS (SELECT tid, min(seq) AS seq FROM h GROUP BY tid),
    existing AS (SELECT trace_id FROM raw_traces WHERE trace_id IN (SELECT tid FROM first)),
    keep AS (SELECT seq FROM first WHERE NOT EXISTS (SELECT 1 FROM existing e WHERE e.trace_id = first.tid))
    SELECT seq, tid AS trace_id, $1 AS source, task, ts, input, output, model, latency_ms, prompt_tokens,
           completion_tokens, error, metadata, content_hash, $2 AS ingested_at
    FROM h WHERE seq IN (SELECT seq FROM keep)
    {"ORDER BY seq" if ordered else ""}"""


def insert_records(conn: duckdb.DuckDBPyConnection, relation: str, source: str, now, ordered: bool = False) -> int:
    """Insert the new records of ``relation`` (see :func:`finalised`) into raw_traces (in ``seq``
    order when ``ordered``); returns how many."""
    key_lists = [keys for (keys,) in conn.execute(
        f"SELECT DISTINCT input_keys FROM {relation} WHERE input_keys IS NOT NULL LIMIT {MAX_KEY_LISTS}").fetchall()]
    sql = f"INSERT INTO raw_traces BY NAME SELECT * EXCLUDE (seq) FROM ({finalised(relation, key_lists, ordered)})"
    return conn.execute(sql, [source, now]).fetchone()[0]


def settle_new_traces(conn: duckdb.DuckDBPyConnection, now) -> int:
    """On DuckLake, delete the traces ingested at ``now`` whose id another writer stored first (two
    ingests reading the same trace at once both commit it); returns how many (0 on a DuckDB file)."""
    moment = now.isoformat() if hasattr(now, "isoformat") else str(now)
    return store.settle_duplicates(conn, "raw_traces", "first",
                                   among=f"(SELECT trace_id FROM raw_traces WHERE ingested_at = TIMESTAMPTZ '{moment}')")


def content_hash(record: dict[str, Any]) -> str:
    """Hash of what makes a trace itself (task, input, output, model, timestamp), the same one
    ingestion stores in raw_traces.content_hash; operational fields do not count."""
    model = record.get("model")
    row = {"task": record.get("task"), "input": json.dumps(record.get("input"), ensure_ascii=False),
           "output": record.get("output") or "", "model": model if isinstance(model, str) else None,
           "ts": parse_timestamp(record.get("ts"))}
    frame = pl.DataFrame([row], schema={"task": pl.String, "input": pl.String, "output": pl.String,
                                        "model": pl.String, "ts": pl.Datetime("us", "UTC")})
    with store.connect(":memory:") as conn:
        conn.register("one", frame.to_arrow())
        sql = f"SELECT {CONTENT_HASH.format(canon=_canonical_input('input'))} FROM " \
              "(SELECT * REPLACE (json(input)::VARCHAR AS input) FROM one)"
        return conn.execute(sql).fetchone()[0]
