"""What curation reads from the stored tables: the real examples (traces, their assertions and
people's decisions), the split every stored group already has, the synthetic examples, and the
test references a person verified (what the evaluation reports exact match on apart)."""

from __future__ import annotations

import duckdb
import polars as pl

from pipeline.engine.core import store
from pipeline.engine.curate.examples import real_examples
from pipeline.engine.tasks import Task


def real_examples_from(conn: duckdb.DuckDBPyConnection, task: Task) -> pl.DataFrame:
    """:func:`~pipeline.engine.curate.examples.real_examples` of the stored traces, trace
    evaluations and annotations."""
    traces = store.read(conn, "SELECT trace_id, input::VARCHAR AS input, output, error, model FROM raw_traces ORDER BY trace_id")
    evaluations = store.read(conn, "SELECT trace_id, check_name, passed FROM trace_evaluations ORDER BY trace_id, check_name")
    people = store.read(conn, "SELECT * FROM annotations")
    return real_examples(traces, evaluations, people, task)


def previous_splits(conn: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Group -> split as stored in training_examples: existing groups keep their split."""
    return dict(conn.execute("SELECT group_id, min(split) FROM training_examples GROUP BY group_id").fetchall())


def stored_synthetic(conn: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Every stored synthetic example (input as JSON text), by example_id."""
    return store.read(conn, "SELECT * EXCLUDE (input), input::VARCHAR AS input FROM synthetic_examples "
                            "ORDER BY example_id")


def verified_test_references(conn: duckdb.DuckDBPyConnection) -> frozenset[str]:
    """The test examples whose reference a person verified (a correction, or a trace a person marked good)."""
    return frozenset(e for (e,) in conn.execute(
        "SELECT example_id FROM training_examples WHERE split = 'test' AND reference_verified").fetchall())
