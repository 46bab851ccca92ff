"""labelled_failures from the stored labels: assertion failures (trace_evaluations), people's
'bad' decisions (annotations) and the judge's 'bad' outcomes on traces (trace_judgements)."""

from __future__ import annotations

import polars as pl

from pipeline.engine.core import store
from pipeline.engine.label.annotations import labelled_failures
from pipeline.engine.label.judge import judge_failures

#: What identifies a row of labelled_failures.
FAILURE_KEY = ["trace_id", "failure_mode", "label_source"]


def stored_failures(conn) -> pl.DataFrame:
    """Every failing trace the stored labels name, with its failure mode, label source and correction."""
    evaluations = store.read(conn, "SELECT trace_id, check_name, passed, detail FROM trace_evaluations")
    people = store.read(conn, "SELECT * FROM annotations")
    judged = store.read(conn, "SELECT * FROM trace_judgements WHERE subject = 'trace' AND outcome IS NOT NULL")
    return labelled_failures(evaluations, people, judge_failures(judged))
