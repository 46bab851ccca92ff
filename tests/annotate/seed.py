"""A small database of nl2query traces (with assertion results) for annotation tests."""

import json
import subprocess
import sys
from contextlib import contextmanager
from datetime import datetime, timezone

import polars as pl

from pipeline.engine.core import store
from pipeline.engine.label.assertions import evaluate_traces
from pipeline.engine.tasks import load_task

TASK = load_task("nl2query")
COLUMNS = ["duration_ms", "service.name", "http.status_code"]
GOOD = '{"calculations": [{"op": "P95", "column": "duration_ms"}], "breakdowns": ["service.name"]}'
UNKNOWN_COLUMN = '{"calculations": [{"op": "AVG", "column": "latency"}]}'
HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
#: trace_id -> (source, day, question, output, latency_ms, user_feedback)
TRACES = {
    "t_good": ("demo", 1, "p95 duration by service", GOOD, 900, "thumbs_up"),
    "t_column": ("demo", 2, "average latency", UNKNOWN_COLUMN, 1000, None),
    "t_json": ("langsmith", 3, "errors by status", "not json at all", 1100, "thumbs_down"),
    "t_slow": ("demo", 4, "count requests", '{"calculations": [{"op": "COUNT"}]}', 60_000, None),
    "t_html": ("demo", 5, f"show {HOSTILE}", HOSTILE, 950, None),
}


def seed_database(path, traces: dict | None = None, columns: dict[str, list[str]] | None = None) -> str:
    """Create ``path`` with ``traces`` (default TRACES; each trace's columns COLUMNS unless
    ``columns`` names others for it) and their assertion results; returns it as a string."""
    columns = columns or {}
    rows = [{"trace_id": tid, "source": source, "task": "nl2query",
             "ts": datetime(2026, 10, day, 12, tzinfo=timezone.utc),
             "input": json.dumps({"question": question, "columns": columns.get(tid, COLUMNS)}), "output": output,
             "model": "m", "latency_ms": float(latency), "error": None,
             "metadata": json.dumps({"user_feedback": feedback}), "content_hash": tid,
             "ingested_at": datetime(2026, 10, 6, tzinfo=timezone.utc)}
            for tid, (source, day, question, output, latency, feedback) in (traces or TRACES).items()]
    frame = pl.DataFrame(rows)
    conn = store.connect(str(path))
    try:
        conn.register("batch", frame.to_arrow())
        conn.execute("INSERT INTO raw_traces BY NAME SELECT * EXCLUDE (input, metadata), input::JSON AS input, "
                     "metadata::JSON AS metadata FROM batch")
        conn.unregister("batch")
        evaluations = evaluate_traces(frame.select("trace_id", "input", "output", "error"), TASK)
        store.upsert(conn, "trace_evaluations", evaluations, ["trace_id"])
    finally:
        conn.close()
    return str(path)


@contextmanager
def held_database(path, seconds: float):
    """Another process holding a write connection to ``path`` for ``seconds`` (a materialization)."""
    code = ("import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); c.execute('SELECT 1');"
            "print('held', flush=True); time.sleep(float(sys.argv[2])); c.close()")
    holder = subprocess.Popen([sys.executable, "-c", code, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.wait(timeout=seconds + 30)
