"""The display text of ingested traces: what a person reads first of an input, stored beside it.

A view cannot ask the task (Python) what an input's text is, so ``raw_traces.display_text``
(migration 11) holds :func:`pipeline.engine.tasks.hooks.display_text` of each trace's input
(nl2query: the question). The analysts' ``top_failing_inputs`` groups traces by it, lower-cased
with white space collapsed in SQL, so the same question asked over different columns is one row.
"""

from __future__ import annotations

import json

import duckdb
import polars as pl

from pipeline.engine.core import store
from pipeline.engine.tasks import Task, hooks


def store_display_texts(conn: duckdb.DuckDBPyConnection, task: Task) -> int:
    """Store the display text of ``task``'s traces that have none yet (new ones, and those
    ingested before migration 11); returns how many were stored."""
    missing = store.read(conn, "SELECT trace_id, input::VARCHAR AS input FROM raw_traces "
                               "WHERE task = ? AND display_text IS NULL", [task.name])
    if missing.is_empty():
        return 0
    texts = missing.select("trace_id", pl.col("input").map_elements(
        lambda text: hooks.display_text(task, json.loads(text)), return_dtype=pl.String).alias("display_text"))
    conn.register("display_texts", texts.to_arrow())
    try:
        conn.execute("UPDATE raw_traces SET display_text = d.display_text FROM display_texts d "
                     "WHERE raw_traces.trace_id = d.trace_id AND raw_traces.display_text IS NULL")
    finally:
        conn.unregister("display_texts")
    return texts.height
