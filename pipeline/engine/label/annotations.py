"""Human annotations: import decision files, and derive labelled failures.

An annotation is a person's decision on a trace (good/bad, failure mode, correction, critique).
Decisions arrive from the annotation app (written straight into the table) or as JSONL files;
a file record that cannot be used is rejected with its reason, never dropped silently.

Rows are never edited in place: a person who changes their mind adds a row naming the one it
replaces (``supersedes``), so the table is the history. A person's current decision on a trace
is their latest row there (by annotated_at, then annotation_id; an edit is always later than
what it supersedes), and only current decisions count downstream.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from pipeline.engine.label.agreement import ROLES, decided_labels
from pipeline.engine.label.assertions import failing_traces
from pipeline.engine.label.heal import failed_checks
from pipeline.engine.tasks import Task
from pipeline.engine.ingest.records import REJECTED_SCHEMA, RecordError, parse_timestamp

ANNOTATION_SCHEMA = {
    "annotation_id": pl.String, "trace_id": pl.String, "label": pl.String,
    "failure_mode": pl.String, "correction": pl.String, "critique": pl.String,
    "annotator": pl.String, "annotated_at": pl.Datetime("us", "UTC"), "source": pl.String,
    "supersedes": pl.String, "role": pl.String,
}
FAILURE_SCHEMA = {
    "trace_id": pl.String, "failure_mode": pl.String, "label_source": pl.String,
    "detail": pl.String, "correction": pl.String,
}
LABELS = ("good", "bad")


@dataclass
class AnnotationBatch:
    annotations: pl.DataFrame
    rejected: pl.DataFrame


def annotation_id(trace_id: str, annotator: str, annotated_at: datetime) -> str:
    """Stable id of one decision: the same person deciding on the same trace at the same time."""
    key = f"{trace_id}\x1f{annotator}\x1f{annotated_at.isoformat()}"
    return "ann_" + hashlib.sha256(key.encode()).hexdigest()[:24]


def correction_error(task: Task, input: dict[str, Any], correction: str) -> str | None:
    """Why ``correction`` cannot stand as the output (the assertions it fails), or None."""
    failed = failed_checks(task, input, correction)
    return "correction fails assertions: " + "; ".join(f"{r.check_name}: {r.detail}" for r in failed) if failed else None


def validate_annotation(record: Any, task: Task, trace_inputs: dict[str, dict]) -> dict[str, Any]:
    """One decision record as an annotations row; raises RecordError with the reason if unusable."""
    if not isinstance(record, dict):
        raise RecordError(f"annotation must be a JSON object, got {type(record).__name__}")
    trace_id = record.get("trace_id")
    if not isinstance(trace_id, str) or trace_id not in trace_inputs:
        raise RecordError(f"trace {trace_id!r} is not in raw_traces")
    label = record.get("label")
    if label not in LABELS:
        raise RecordError(f"label must be one of {LABELS}, got {label!r}")
    annotator = record.get("annotator")
    if not isinstance(annotator, str) or not annotator.strip():
        raise RecordError("annotator is required")
    annotated_at = parse_timestamp(record.get("annotated_at"))
    if annotated_at is None:
        raise RecordError("annotated_at is required")
    correction = record.get("correction")
    if correction is not None:
        if not isinstance(correction, str):
            correction = json.dumps(correction)
        problem = correction_error(task, trace_inputs[trace_id], correction)
        if problem:
            raise RecordError(problem)
    given_id = record.get("annotation_id")
    if given_id is not None and (not isinstance(given_id, str) or not given_id.strip()):
        raise RecordError("annotation_id, when given, must be a non-empty string")
    supersedes = record.get("supersedes")
    if supersedes is not None and (not isinstance(supersedes, str) or not supersedes.strip()):
        raise RecordError("supersedes, when given, must be the annotation_id of the decision it replaces")
    role = record.get("role") or ROLES[0]
    if role not in ROLES:
        raise RecordError(f"role, when given, must be one of {ROLES}, got {role!r}")
    failure_mode = record.get("failure_mode")
    if label == "bad" and not failure_mode:
        failure_mode = "unspecified"
    return {
        # the app's outbox files carry the id the app gave the decision, so every path agrees on it
        "annotation_id": given_id or annotation_id(trace_id, annotator, annotated_at), "trace_id": trace_id,
        "label": label, "failure_mode": failure_mode, "correction": correction,
        "critique": record.get("critique"), "annotator": annotator, "annotated_at": annotated_at,
        "supersedes": supersedes, "role": role,
    }


def read_annotation_files(files: list[Path], task: Task, trace_inputs: dict[str, dict],
                          now: datetime | None = None) -> AnnotationBatch:
    """Validate every decision in JSONL ``files`` against the traces they refer to."""
    now = now or datetime.now(timezone.utc)
    rows, rejected = [], []
    for path in files:
        with open(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                try:
                    try:
                        record = json.loads(raw)
                    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                        raise RecordError(f"malformed JSON: {exc}") from exc
                    row = validate_annotation(record, task, trace_inputs)
                except RecordError as exc:
                    rejected.append({"source": "annotations", "location": f"{path}:{number}",
                                     "reason": str(exc), "raw": text, "rejected_at": now})
                    continue
                rows.append({**row, "source": f"file:{path.name}"})
    frame = pl.DataFrame(rows, schema=ANNOTATION_SCHEMA) if rows else pl.DataFrame(schema=ANNOTATION_SCHEMA)
    return AnnotationBatch(frame.unique("annotation_id", keep="first", maintain_order=True),
                           pl.DataFrame(rejected, schema=REJECTED_SCHEMA) if rejected else pl.DataFrame(schema=REJECTED_SCHEMA))


def labelled_failures(evaluations: pl.DataFrame, annotations: pl.DataFrame,
                      judge_rows: pl.DataFrame | None = None) -> pl.DataFrame:
    """Failing traces with their failure mode and where the label came from.

    Assertion failures come from trace_evaluations (label_source 'assertion'); the trace's decided
    label (:func:`pipeline.engine.label.agreement.decided_labels`: the adjudication, or the
    annotators' agreed current decision), when 'bad', adds a 'human' row. A trace whose annotators
    disagree without an adjudication adds none. A person's correction is attached to every row
    of its trace.
    ``judge_rows`` (the judge's 'bad' traces, as :func:`pipeline.engine.label.judge.judge_failures`
    gives them) are added with the correction of the trace's assertion or human rows, if any.
    """
    decisions = decided_labels(annotations)
    corrections = decisions.filter(pl.col("correction").is_not_null()).select("trace_id", "correction")
    assertion = failing_traces(evaluations).select("trace_id", "failure_mode", pl.lit("assertion").alias("label_source"),
                                                   "detail")
    human = (decisions.filter(pl.col("label") == "bad")
             .select("trace_id", pl.col("failure_mode").fill_null("unspecified"), pl.lit("human").alias("label_source"),
                     pl.col("critique").alias("detail")))
    failures = pl.concat([assertion, human.cast(assertion.schema)])
    failures = (failures.join(corrections, on="trace_id", how="left")
                .unique(["trace_id", "failure_mode", "label_source"], keep="first", maintain_order=True)
                .sort("trace_id", "label_source", "failure_mode").cast(FAILURE_SCHEMA))
    if judge_rows is None:
        return failures
    by_judge = judge_rows.drop("correction").join(failures.select("trace_id", "correction").unique("trace_id"),
                                                  on="trace_id", how="left")
    return pl.concat([failures, by_judge.cast(FAILURE_SCHEMA)]).sort("trace_id", "label_source", "failure_mode")


def trace_inputs(conn: duckdb.DuckDBPyConnection) -> dict[str, dict]:
    """Every stored trace's input by trace id: what a decision file's corrections are checked against."""
    return {t: json.loads(i) for t, i in conn.execute("SELECT trace_id, input FROM raw_traces").fetchall()}


def label_counts(conn: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Stored decisions per label, by label."""
    return dict(conn.execute("SELECT label, count(*) AS n FROM annotations GROUP BY label ORDER BY label").fetchall())


def app_decisions(conn: duckdb.DuckDBPyConnection) -> tuple[int, str | None, int | None]:
    """The decisions people wrote through the annotation app (imported files are the annotations
    asset's own): their count, the latest time, and a hash of their ids (an undone decision
    changes it too)."""
    return conn.execute("SELECT count(*), max(annotated_at)::VARCHAR, bit_xor(hash(annotation_id)) FROM annotations "
                        "WHERE source IS NULL OR source NOT LIKE 'file:%'").fetchone()


def decisions_version(files_version: str, app: tuple[int, str | None, int | None]) -> str:
    """Data version of people's decisions: the decision files' stamp and :func:`app_decisions`."""
    app_rows, latest, ids = app
    return hashlib.sha256(f"{files_version}\x1f{app_rows}\x1f{latest}\x1f{ids}".encode()).hexdigest()[:16]
