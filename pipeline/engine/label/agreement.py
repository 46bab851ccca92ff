"""Whether people agree, and the label training uses per trace.

A share of traces is routed to two annotators (:func:`needs_second_opinion`). An annotator's
current decision on a trace is their latest row (by annotated_at, then annotation_id). On traces
with two or more current decisions, :func:`annotator_agreement` measures raw agreement and Cohen's
kappa on the label (good/bad) and on each failure mode (does the annotator name it: yes/no).
Where current decisions disagree (label, failure mode, or two different corrections), the trace
waits in :func:`disagreements` until a lead records an adjudication: a decision with role
'adjudication', which settles the trace (:func:`decided_labels`).

The logic is the SQL of the analysts' views (``store.AGREEMENT_VIEWS``, migration 12); these
functions run it over a frame of annotations, so the engine and the views cannot differ.
"""

from __future__ import annotations

import hashlib

import duckdb
import polars as pl

from pipeline.engine.core import store

ADJUDICATION = "adjudication"
#: annotations.role: one annotator's view of a trace, or a lead's settled label.
ROLES = ("annotation", ADJUDICATION)
#: Default share of traces routed to a second annotator.
SECOND_OPINION_SHARE = 0.1
_SALT = "second-opinion:"

_INPUT_SCHEMA = {
    "annotation_id": pl.String, "trace_id": pl.String, "label": pl.String, "failure_mode": pl.String,
    "correction": pl.String, "critique": pl.String, "annotator": pl.String,
    "annotated_at": pl.Datetime("us", "UTC"), "source": pl.String, "role": pl.String,
}
#: decided_labels: the deciding row's annotation columns, and how the label was decided
#: ('single': one annotator; 'agreement': annotators agree; 'adjudication').
DECIDED_SCHEMA = {**{c: t for c, t in _INPUT_SCHEMA.items() if c != "role"}, "decided_by": pl.String}


def _check_share(share: float) -> None:
    if not 0 <= share <= 1:
        raise ValueError(f"second-opinion share must be in [0, 1], got {share}")


def needs_second_opinion(trace_id: str, share: float = SECOND_OPINION_SHARE) -> bool:
    """Whether ``trace_id`` is among the ``share`` of traces routed to two annotators.

    Deterministic: the first 8 hex digits of md5('second-opinion:' + trace_id), as a fraction of
    16**8, fall below ``share``. :func:`second_opinion_sql` is the same rule in DuckDB.
    """
    _check_share(share)
    digest = hashlib.md5((_SALT + trace_id).encode()).hexdigest()
    return int(digest[:8], 16) / 16**8 < share


def second_opinion_sql(column: str = "trace_id") -> str:
    """:func:`needs_second_opinion` as a DuckDB boolean expression over ``column`` (a trace id),
    the share bound as the named parameter ``$second_opinion_share``."""
    return (f"(('0x' || substr(md5('{_SALT}' || {column}), 1, 8))::UBIGINT / 4294967296.0 "
            f"< $second_opinion_share)")


def _view(annotations: pl.DataFrame, view: str) -> pl.DataFrame:
    """The agreement view ``view`` computed over ``annotations`` (without a role column: all
    rows are annotators' decisions)."""
    frame = annotations if "role" in annotations.columns else annotations.with_columns(role=pl.lit(None, pl.String))
    frame = frame.select([pl.col(c).cast(t) for c, t in _INPUT_SCHEMA.items()])
    with duckdb.connect() as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.register("batch", frame.to_arrow())
        conn.execute("CREATE TABLE annotations AS SELECT * FROM batch")
        conn.execute(store.AGREEMENT_VIEWS)
        return conn.execute(f"SELECT * FROM {view}").pl()


def decided_labels(annotations: pl.DataFrame) -> pl.DataFrame:
    """The decision that stands for each trace: what training uses and the judge is measured on.

    The latest adjudication when there is one; otherwise, when the annotators' current decisions
    agree (same label, same failure mode, no two different corrections), the latest of them,
    with the correction one of them gave. A trace whose annotators disagree and that has no
    adjudication yet is left out: its human label goes neither into training nor into the
    judge's alignment until it is adjudicated. Columns: :data:`DECIDED_SCHEMA`.
    """
    return _view(annotations, "decided_labels").cast(DECIDED_SCHEMA)


def disagreements(annotations: pl.DataFrame) -> pl.DataFrame:
    """The queue to adjudicate: traces whose annotators' current decisions disagree, with no
    adjudication yet, oldest first. Columns: trace_id, decisions, disagree_on (label,
    failure_mode, correction), annotators, labels and failure_modes (in decision order),
    last_annotated_at."""
    return _view(annotations, "disagreements")


def annotator_agreement(annotations: pl.DataFrame) -> pl.DataFrame:
    """Agreement between annotators on traces with two or more current decisions.

    One row for the label (aspect 'label') and one per failure mode any of them named (aspect
    'failure_mode': does each annotator name it, yes/no). Each pair of decisions on a trace is
    compared, the earlier annotator as rater A: pairs (n), traces, agreement (raw share of pairs
    that agree) and kappa (Cohen's: (p_o - p_e) / (1 - p_e), p_e from each rater's marginals;
    None when p_e = 1). Empty when no trace has two annotators.
    """
    return _view(annotations, "annotator_agreement")
