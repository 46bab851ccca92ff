"""What ingestion has stored, and the rejection rate its checks warn on."""

from __future__ import annotations

import duckdb

#: Share of the records read that may be rejected before the rejection_rate check warns.
REJECTION_RATE_WARN = 0.05


def stored_totals(conn: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    """Rows in raw_traces and in rejected_traces."""
    traces = conn.execute("SELECT count(*) FROM raw_traces").fetchone()[0]
    rejected = conn.execute("SELECT count(*) FROM rejected_traces").fetchone()[0]
    return traces, rejected


def rejection_rate(rejected: int, read: int) -> float:
    """Share of the records read that were rejected (0 when none were read)."""
    return rejected / read if read else 0.0
