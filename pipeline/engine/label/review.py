"""The review queue and people's decisions, for the annotation app (framework-free).

- :meth:`Review.queue`: raw_traces with their failed assertions, the judge's critique and the
  decisions so far, filtered and ordered. Filters are bound parameters; orderings come from a
  fixed list. No SQL is ever built from a caller's string.
- Second opinions: a share of traces (``second_opinion_share``, chosen by
  :func:`pipeline.engine.label.agreement.needs_second_opinion`) is routed to two annotators. Such
  a trace that exactly one other person decided, and I have not, is a second opinion wanted
  from me: first in my default queue (status 'not_mine'), and a status of its own.
- Disagreements: the status 'disagreements' is the ``disagreements`` view (annotators'
  current decisions differ, no adjudication yet). A lead settles one with a decision of role
  'adjudication'; :meth:`Review.agreement` reads the ``annotator_agreement`` view.
- :func:`make_decision`: a validated decision; an edited output (the correction) must pass the
  task's assertions (:func:`pipeline.engine.label.heal.failed_checks` gives the reasons live).
- :meth:`Review.save` / :meth:`Review.undo`: short-lived connections, retried while another
  process (a materialization) holds DuckDB's lock. A save that still cannot get in is written to
  the :class:`Outbox`, a folder of JSONL files in the format the ``annotations`` asset imports;
  :meth:`Review.flush` retries it. Every path writes with ``insert_new`` by ``annotation_id`` (an
  id given when the trace is shown), so a decision is never recorded twice.
- Edits: a person's decision on a trace they decided before supersedes their earlier one (a new
  row naming it in ``supersedes``, always later); the earlier row stays as history and the
  latest is their current decision (:meth:`Review.current_decision`).
- The analysts' snapshot: after Review wrote (save, undo, flush) :meth:`Review.publish_snapshot`
  publishes the read-only copy (:mod:`pipeline.engine.core.snapshot`); the app calls it every
  few seconds, so a burst of saves makes one copy.
- What a person edits and reads beside the trace: :func:`editable_output` (the one canonical,
  indented form of an output), :func:`output_diff` (a correction against the output) and
  :func:`task_guide` (the task's failure modes with their definitions, and its guidelines).
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import polars as pl

from pipeline.engine.core import snapshot as snapshots
from pipeline.engine.core import store
from pipeline.engine.core.connections import DatabaseLocked, retry_while_locked
from pipeline.engine.label.agreement import ROLES, SECOND_OPINION_SHARE, second_opinion_sql
from pipeline.engine.label.annotations import ANNOTATION_SCHEMA, LABELS, correction_error
from pipeline.engine.tasks import Task, hooks, task_file
from pipeline.engine.ingest.records import parse_timestamp

T = TypeVar("T")
log = logging.getLogger(__name__)

#: annotations.role: an annotator's own decision, or a lead's settling one.
ANNOTATION, ADJUDICATION = ROLES
#: Label status filters: what each shows.
STATUSES = {
    "not_mine": "not decided by me (second opinions first)",
    "second_opinion": "second opinion wanted from me",
    "disagreements": "disagreements to adjudicate",
    "undecided": "not decided by anyone",
    "decided": "decided by someone",
    "mine": "decided by me",
    "all": "all",
}
#: Orderings: name -> (description, ORDER BY fragment). The only SQL that varies per request.
ORDERINGS = {
    "failing": ("failing first (assertions, then the judge)",
                "coalesce(ev.n_failed, 0) DESC, (jd.judge_outcome = 'bad') DESC NULLS LAST, t.ts DESC NULLS LAST"),
    "feedback": ("negative user feedback first",
                 ("list_contains($negative, lower(t.metadata->>'user_feedback')) DESC NULLS LAST, "
                  "coalesce(ev.n_failed, 0) DESC")),
    "length": ("outliers by output length",
               "abs(length(coalesce(t.output, '')) - s.mu_len) / nullif(s.sd_len, 0) DESC NULLS LAST"),
    "latency": ("outliers by latency", "abs(t.latency_ms - s.mu_lat) / nullif(s.sd_lat, 0) DESC NULLS LAST"),
    "random": ("random sample (unbiased error rates)", "md5(t.trace_id || $seed)"),
    "newest": ("newest first", "t.ts DESC NULLS LAST"),
}
#: user_feedback values (lower case) counted as negative.
NEGATIVE_FEEDBACK = ["thumbs_down", "negative", "bad", "down", "-1"]
SAVED, DUPLICATE, QUEUED = "saved", "already saved", "queued: database busy"
#: Files a task ships in its ``prompts/`` folder for the people reviewing its traces.
GUIDELINES_FILE, FAILURE_MODES_FILE = "guidelines.md", "failure_modes.json"
APP_SOURCE = "app"
#: How long reads made while moving through the queue wait for a busy database.
QUICK_READ_SECONDS = 0.3
#: One writer at a time in this process: DuckDB's own lock only separates processes.
_LOCK = threading.RLock()


class ReviewError(ValueError):
    """A decision or filter that cannot be used; the message says why."""


class DatabaseBusy(RuntimeError):
    """Another process held the database for longer than we were willing to wait."""


@dataclass(frozen=True)
class QueueFilter:
    """What the queue shows. ``failure_mode`` matches a failed assertion or a person's failure
    mode; ``check`` a failed assertion only; dates bound the trace's day (inclusive)."""

    failure_mode: str | None = None
    check: str | None = None
    source: str | None = None
    since: date | None = None
    until: date | None = None
    status: str = "not_mine"
    annotator: str = ""


@dataclass(frozen=True)
class Decision:
    """One person's decision on one trace, as the annotations table holds it."""

    annotation_id: str
    trace_id: str
    label: str
    annotator: str
    annotated_at: datetime
    failure_mode: str | None = None
    correction: str | None = None
    critique: str | None = None
    #: the annotation_id of the same person's earlier decision on the trace this one replaces
    supersedes: str | None = None
    #: ANNOTATION (one annotator's view) or ADJUDICATION (a lead's decision settling the trace)
    role: str = ANNOTATION

    def record(self) -> dict[str, Any]:
        """The JSON record read by :func:`pipeline.engine.label.annotations.read_annotation_files`."""
        return {**asdict(self), "annotated_at": self.annotated_at.isoformat()}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Decision:
        """A decision from its JSON record (one without a role, written before roles, is an annotator's)."""
        return cls(**{**record, "annotated_at": parse_timestamp(record["annotated_at"]),
                      "role": record.get("role") or ANNOTATION})


def new_annotation_id() -> str:
    """A fresh decision id, given when a trace is shown so a retry or double submit reuses it."""
    return "ann_" + uuid.uuid4().hex[:24]


def _text(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def make_decision(task: Task, input: dict[str, Any], *, annotation_id: str, trace_id: str, label: str,
                  annotator: str, failure_mode: str | None = None, correction: str | None = None,
                  critique: str | None = None, now: datetime | None = None,
                  previous: Decision | None = None, role: str = ANNOTATION) -> Decision:
    """A decision ready to save; raises ReviewError with the reason when it cannot be saved.

    A 'bad' decision without a failure mode gets 'unspecified' (as imported files do); a 'good'
    one keeps none. A correction must pass every assertion of the task. ``previous``, the same
    annotator's current decision of the same ``role`` on the trace, is superseded: the new one
    names it and is dated after it (so it is current even if clocks disagree); someone else's,
    or one of the other role, is ignored. Who may adjudicate is the caller's to check.
    """
    if role not in ROLES:
        raise ReviewError(f"unknown role {role!r}: choose one of {', '.join(ROLES)}")
    if label not in LABELS:
        raise ReviewError(f"choose a label: {' or '.join(LABELS)}")
    if not _text(annotator):
        raise ReviewError("annotator is required: say who is deciding")
    correction = _text(correction)
    if correction is not None:
        problem = correction_error(task, input, correction)
        if problem:
            raise ReviewError(problem)
    mode = (_text(failure_mode) or "unspecified") if label == "bad" else None
    at = now or datetime.now(timezone.utc)
    mine = previous if previous is not None and (previous.annotator, previous.role) == (annotator.strip(), role) \
        else None
    if mine is not None:
        at = max(at, mine.annotated_at + timedelta(microseconds=1))
    return Decision(annotation_id=annotation_id, trace_id=trace_id, label=label, annotator=annotator.strip(),
                    annotated_at=at, failure_mode=mode, correction=correction, critique=_text(critique),
                    supersedes=mine.annotation_id if mine is not None else None, role=role)


def same_decision(task: Task, input: dict[str, Any], a: Decision, b: Decision) -> bool:
    """Whether two decisions on a trace say the same (label, failure mode, critique, correction)."""
    same_correction = (a.correction is None and b.correction is None) or (
        a.correction is not None and b.correction is not None and same_output(task, input, a.correction, b.correction))
    return (a.label, a.failure_mode, a.critique) == (b.label, b.failure_mode, b.critique) and same_correction


def same_output(task: Task, input: dict[str, Any], a: str | None, b: str | None) -> bool:
    """Whether two outputs are the same to the task: equal text (ignoring surrounding space), or
    equal normalised forms."""
    a, b = (a or "").strip(), (b or "").strip()
    if a == b:
        return True
    if not a or not b:
        return False
    normal = hooks.normalise(task, a, input)
    return normal is not None and normal == hooks.normalise(task, b, input)


def editable_output(task: Task, input: dict[str, Any], output: str | None) -> str:
    """An output in the one form a person edits it in: the task's normalised output as indented
    JSON when it is JSON; else the output as indented JSON when it parses as JSON; else its text."""
    text = (output or "").strip()
    if not text:
        return ""
    for candidate in (hooks.normalise(task, text, input), text):
        if candidate is None:
            continue
        try:
            return json.dumps(json.loads(candidate), indent=2, ensure_ascii=False)
        except (ValueError, RecursionError):
            continue
    return text


def output_diff(before: str, after: str, context: int = 2) -> list[tuple[str, str]]:
    """A line diff of ``after`` (a correction) against ``before`` (the output): (kind, line) pairs,
    kind 'hunk' (@@ ... @@), 'removed', 'added' or 'same'; empty when the lines are equal."""
    kinds = {"@": "hunk", "-": "removed", "+": "added", " ": "same"}
    lines = list(difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=context))
    return [(kinds[line[0]], line[1:] if line[0] != "@" else line) for line in lines[2:] if line]


@dataclass(frozen=True)
class FailureMode:
    """A failure mode a person can name: ``detected_by`` 'assertion' (one of the task's checks)
    or 'people' (only a person can tell), and its definition (None when the task gives none)."""

    name: str
    detected_by: str
    definition: str | None = None


@dataclass(frozen=True)
class Guide:
    """What a person reviewing a task's traces reads: its failure modes (the checks first, in the
    task's order) and the team's guidelines (markdown, or None)."""

    failure_modes: tuple[FailureMode, ...]
    guidelines: str | None = None


def _shipped(task_spec: str, name: str) -> str | None:
    try:
        return task_file(task_spec, name).read_text(encoding="utf-8")
    except ValueError:  # the task ships no such file
        return None


def task_guide(task: Task, task_spec: str | None = None) -> Guide:
    """The guide to ``task`` (loaded as ``task_spec``, default its name): its check names, with
    their definitions and the failure modes only people detect from the task's
    ``prompts/failure_modes.json`` (an object: name -> definition), and ``prompts/guidelines.md``
    (both looked up by :func:`pipeline.engine.tasks.task_file`, so FLYWHEEL_TASK_PROMPTS may
    hold a team's own). Without the files: the check names alone, and no guidelines. Raises
    ValueError when the definitions file is not such an object."""
    spec = task_spec or task.name
    text = _shipped(spec, FAILURE_MODES_FILE)
    definitions = json.loads(text) if text else {}
    if not isinstance(definitions, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                    for k, v in definitions.items()):
        raise ValueError(f"{FAILURE_MODES_FILE} of task {spec!r} must map failure mode names to definitions (text)")
    checks = tuple(task.check_names)
    modes = [FailureMode(name, "assertion", definitions.get(name)) for name in checks]
    modes += [FailureMode(name, "people", text.strip()) for name, text in definitions.items() if name not in checks]
    return Guide(tuple(modes), _shipped(spec, GUIDELINES_FILE))


def _frame(decisions: list[Decision]) -> pl.DataFrame:
    rows = [{**asdict(d), "source": APP_SOURCE} for d in decisions]
    return pl.DataFrame(rows, schema=ANNOTATION_SCHEMA)


class Outbox:
    """Decisions waiting for the database: one JSONL file per decision, written atomically
    (temporary file, then rename) in a folder the ``annotations`` asset imports."""

    PREFIX = "app-"

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def path(self, annotation_id: str) -> Path:
        return self.folder / f"{self.PREFIX}{annotation_id}.jsonl"

    def put(self, decision: Decision) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self.path(decision.annotation_id)
        temp = final.with_name(f".{final.name}.tmp")
        with open(temp, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(decision.record(), ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, final)
        return final

    def discard(self, annotation_id: str) -> bool:
        """Remove a waiting decision; True if there was one."""
        try:
            self.path(annotation_id).unlink()
            return True
        except FileNotFoundError:
            return False

    def pending(self) -> list[Decision]:
        """The waiting decisions. A file that is not one (not written by us) is left for the
        ``annotations`` asset, which rejects it with the reason."""
        found = []
        for path in sorted(self.folder.glob(f"{self.PREFIX}*.jsonl")):
            try:
                found += [Decision.from_record(json.loads(line)) for line in path.read_text("utf-8").splitlines()
                          if line.strip()]
            except FileNotFoundError:
                continue  # flushed or undone meanwhile
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("outbox file %s is not a decision, left for the annotations asset: %s", path, exc)
        return found

    def count(self) -> int:
        return len(list(self.folder.glob(f"{self.PREFIX}*.jsonl"))) if self.folder.is_dir() else 0


#: Traces of the task wanted from ``$annotator`` as a second opinion: routed to two annotators,
#: exactly one other person's current decision, none of theirs, not settled by an adjudication.
_WANTED_SQL = f"""wanted AS (
    SELECT d.trace_id FROM annotator_decisions d JOIN raw_traces r USING (trace_id)
    WHERE r.task = $task AND {second_opinion_sql("d.trace_id")}
      AND d.trace_id NOT IN (SELECT trace_id FROM annotations WHERE role = '{ADJUDICATION}')
    GROUP BY d.trace_id HAVING count(*) = 1 AND NOT bool_or(d.annotator = $annotator))"""

_QUEUE_SQL = """
WITH ev AS (
    SELECT trace_id, count(*) FILTER (WHERE passed = false) AS n_failed,
           list(struct_pack(check_name := check_name, detail := detail) ORDER BY check_name)
               FILTER (WHERE passed = false) AS failed
    FROM trace_evaluations GROUP BY trace_id),
jd AS (
    SELECT trace_id, arg_max(critique, judged_at) AS judge_critique, arg_max(outcome, judged_at) AS judge_outcome
    FROM trace_judgements WHERE subject = 'trace' AND outcome IS NOT NULL GROUP BY trace_id),
cur AS (
    SELECT * FROM annotations
    QUALIFY row_number() OVER (PARTITION BY trace_id, annotator, coalesce(role, 'annotation')
                               ORDER BY annotated_at DESC, annotation_id DESC) = 1),
an AS (
    SELECT trace_id, list(annotation_id) AS decision_ids, list(DISTINCT annotator) AS annotators,
           list(failure_mode) AS modes
    FROM cur GROUP BY trace_id),
""" + _WANTED_SQL + """,
s AS (
    SELECT avg(length(coalesce(output, ''))) AS mu_len, stddev_pop(length(coalesce(output, ''))) AS sd_len,
           avg(latency_ms) AS mu_lat, stddev_pop(latency_ms) AS sd_lat FROM raw_traces)
SELECT t.trace_id, t.source, t.ts, t.input::VARCHAR AS input, t.output, t.model, t.latency_ms, t.error,
       t.metadata->>'user_feedback' AS user_feedback, coalesce(ev.n_failed, 0) AS n_failed, ev.failed,
       ev.trace_id IS NOT NULL AS evaluated,
       jd.judge_critique, jd.judge_outcome, coalesce(an.decision_ids, []) AS decision_ids,
       coalesce(an.annotators, []) AS annotators, t.second_opinion, w.trace_id IS NOT NULL AS second_opinion_wanted,
       dis.disagree_on, count(*) OVER () AS matching
FROM (SELECT *, """ + second_opinion_sql("trace_id") + """ AS second_opinion FROM raw_traces WHERE task = $task) t
     LEFT JOIN ev USING (trace_id) LEFT JOIN jd USING (trace_id) LEFT JOIN an USING (trace_id)
     LEFT JOIN wanted w USING (trace_id) LEFT JOIN disagreements dis USING (trace_id) CROSS JOIN s
WHERE true
  AND ($source::VARCHAR IS NULL OR t.source = $source)
  AND ($since::DATE IS NULL OR t.ts >= $since::DATE)
  AND ($until::DATE IS NULL OR t.ts < $until::DATE + INTERVAL 1 DAY)
  AND ($check::VARCHAR IS NULL OR list_contains(list_transform(ev.failed, f -> f.check_name), $check))
  AND ($mode::VARCHAR IS NULL OR list_contains(list_transform(ev.failed, f -> f.check_name), $mode)
       OR list_contains(an.modes, $mode))
  AND ($status = 'all'
       OR ($status = 'undecided' AND an.trace_id IS NULL)
       OR ($status = 'decided' AND an.trace_id IS NOT NULL)
       OR ($status = 'mine' AND list_contains(an.annotators, $annotator))
       OR ($status = 'not_mine' AND NOT coalesce(list_contains(an.annotators, $annotator), false))
       OR ($status = 'second_opinion' AND w.trace_id IS NOT NULL)
       OR ($status = 'disagreements' AND dis.trace_id IS NOT NULL))
ORDER BY ($status = 'not_mine' AND w.trace_id IS NOT NULL) DESC, {order}, t.trace_id
LIMIT $limit
"""


class Review:
    """Queue reads and decision writes against one database, with an outbox for busy times.

    ``second_opinion_share``: the share of traces routed to two annotators. ``snapshot``: where
    the analysts' read-only copy is published (:func:`pipeline.engine.core.snapshot.snapshot_path`:
    None for the default beside the database, "" for none)."""

    def __init__(self, database: str, outbox: str | Path, task: Task, busy_seconds: float = 3.0,
                 guide: Guide | None = None, second_opinion_share: float = SECOND_OPINION_SHARE,
                 snapshot: str | None = None):
        if not 0 <= second_opinion_share <= 1:
            raise ReviewError(f"second-opinion share must be between 0 and 1, got {second_opinion_share}")
        self.database = database
        self.outbox = Outbox(outbox)
        self.task = task
        self.busy_seconds = busy_seconds
        self.guide = guide or task_guide(task)
        self.second_opinion_share = second_opinion_share
        self.snapshot = snapshots.snapshot_path(database, snapshot)
        self._undos: set[str] = set()
        #: whether this process wrote since the snapshot was last published
        self._wrote = False

    def _with_connection(self, work: Callable[[duckdb.DuckDBPyConnection], T], wait: float | None = None) -> T:
        """``work`` on a fresh connection, closed afterwards; retried while another process holds
        the lock (up to ``wait`` seconds, default busy_seconds), then DatabaseBusy."""
        def attempt() -> T:
            with _LOCK:
                conn = store.connect(self.database)
                try:
                    return work(conn)
                finally:
                    conn.close()

        try:
            return retry_while_locked(attempt, self.busy_seconds if wait is None else wait)
        except DatabaseLocked as exc:
            raise DatabaseBusy(f"database {self.database} is busy (a run holds it)") from exc

    def queue(self, filters: QueueFilter, order: str = "failing", limit: int = 500, seed: str = "0") -> pl.DataFrame:
        """Traces to review, one row each, best first; ``matching`` counts all that match."""
        if order not in ORDERINGS:
            raise ReviewError(f"unknown ordering {order!r}: choose one of {', '.join(ORDERINGS)}")
        if filters.status not in STATUSES:
            raise ReviewError(f"unknown label status {filters.status!r}: choose one of {', '.join(STATUSES)}")
        params: dict[str, Any] = {
            "task": self.task.name, "source": filters.source or None, "since": filters.since,
            "until": filters.until, "check": filters.check or None, "mode": filters.failure_mode or None,
            "status": filters.status, "annotator": filters.annotator, "limit": int(limit),
            "second_opinion_share": self.second_opinion_share}
        if "$negative" in ORDERINGS[order][1]:
            params["negative"] = NEGATIVE_FEEDBACK
        if "$seed" in ORDERINGS[order][1]:
            params["seed"] = str(seed)
        sql = _QUEUE_SQL.format(order=ORDERINGS[order][1])
        return self._with_connection(lambda conn: conn.execute(sql, params).pl())

    def options(self) -> dict[str, list[str]]:
        """Choices for the filters and the failure-mode list: sources, checks, failure modes
        (the task's assertions first, then those its guide defines, then modes people have used)."""
        def read(conn):
            sources = [r[0] for r in conn.execute("SELECT DISTINCT source FROM raw_traces ORDER BY 1").fetchall()]
            used = [r[0] for r in conn.execute("SELECT DISTINCT failure_mode FROM annotations "
                                               "WHERE failure_mode IS NOT NULL ORDER BY 1").fetchall()]
            return sources, used
        sources, used = self._with_connection(read)
        checks = list(self.task.check_names)
        defined = [m.name for m in self.guide.failure_modes]
        return {"sources": sources, "checks": checks,
                "failure_modes": list(dict.fromkeys(checks + defined + used))}

    def decisions_for(self, trace_id: str) -> pl.DataFrame:
        """Every decision on a trace now (in the table), its history included, oldest first;
        ``current`` marks each annotator's current one. Waits only briefly."""
        return self._with_connection(lambda conn: store.read(conn, """
            SELECT annotation_id, trace_id, annotator, label, failure_mode, correction, critique, annotated_at,
                   supersedes, coalesce(role, 'annotation') AS role,
                   row_number() OVER (PARTITION BY annotator, coalesce(role, 'annotation')
                                      ORDER BY annotated_at DESC, annotation_id DESC) = 1 AS current
            FROM annotations WHERE trace_id = ? ORDER BY annotated_at, annotation_id""", [trace_id]),
            wait=QUICK_READ_SECONDS)

    def current_decision(self, trace_id: str, annotator: str, found: pl.DataFrame | None,
                         role: str = ANNOTATION) -> Decision | None:
        """``annotator``'s current decision of ``role`` on a trace: the latest of theirs among
        ``found`` (the trace's rows from :meth:`decisions_for`; None when the table could not be
        read) and the outbox (decisions waiting for a busy database); None when there is none."""
        mine = [Decision(**{k: v for k, v in row.items() if k != "current"})
                for row in (found.to_dicts() if found is not None else [])
                if row["annotator"] == annotator and row["current"] and row["role"] == role]
        mine += [d for d in self.outbox.pending()
                 if d.trace_id == trace_id and d.annotator == annotator and d.role == role]
        return max(mine, key=lambda d: (d.annotated_at, d.annotation_id)) if mine else None

    def progress(self, annotator: str) -> dict[str, int]:
        """Traces of the task, traces anyone decided, traces ``annotator`` decided, second opinions
        wanted from ``annotator`` and disagreements waiting for a lead; waits only briefly."""
        row = self._with_connection(lambda conn: conn.execute("WITH " + _WANTED_SQL + """
            SELECT count(*), count(*) FILTER (WHERE trace_id IN (SELECT trace_id FROM annotations)),
                   count(*) FILTER (WHERE trace_id IN (SELECT trace_id FROM annotations WHERE annotator = $annotator)),
                   count(*) FILTER (WHERE trace_id IN (SELECT trace_id FROM wanted)),
                   count(*) FILTER (WHERE trace_id IN (SELECT trace_id FROM disagreements))
            FROM raw_traces WHERE task = $task""", {"annotator": annotator, "task": self.task.name,
                                                    "second_opinion_share": self.second_opinion_share}).fetchone(),
            wait=QUICK_READ_SECONDS)
        return dict(zip(("traces", "decided", "mine", "second_opinions", "disagreements"), row))

    def agreement(self) -> pl.DataFrame:
        """The ``annotator_agreement`` view: per aspect (the label, each failure mode) pairs,
        traces, raw agreement and Cohen's kappa; empty when no trace has two annotators. Waits
        only briefly."""
        return self._with_connection(lambda conn: store.read(conn, "SELECT * FROM annotator_agreement"),
                                     wait=QUICK_READ_SECONDS)

    def save(self, decision: Decision) -> str:
        """SAVED, DUPLICATE (this annotation_id is already there) or QUEUED (in the outbox)."""
        try:
            new = self._with_connection(
                lambda conn: store.insert_new(conn, "annotations", _frame([decision]), ["annotation_id"]))
        except DatabaseBusy:
            self.outbox.put(decision)
            return QUEUED
        self.outbox.discard(decision.annotation_id)
        self._wrote = self._wrote or bool(new)
        return SAVED if new else DUPLICATE

    def undo(self, annotation_id: str) -> str:
        """Remove a decision wherever it is (outbox and table); 'undone', or 'undo queued: database
        busy' when the table could not be reached (:meth:`flush` finishes it)."""
        with _LOCK:
            self.outbox.discard(annotation_id)
            self._undos.add(annotation_id)
        try:
            self.flush()
        except DatabaseBusy:
            return "undo queued: database busy"
        return "undone"

    def flush(self) -> int:
        """Write the outbox's decisions and apply pending undos; returns decisions newly written.
        Raises DatabaseBusy when the database is still held."""
        def write(conn) -> int:
            # all under the lock: an undo either removes a file before it is read or deletes after
            waiting, undos = self.outbox.pending(), set(self._undos)
            new = store.insert_new(conn, "annotations", _frame(waiting), ["annotation_id"]) if waiting else 0
            if undos:
                conn.execute("DELETE FROM annotations WHERE list_contains(?, annotation_id)", [sorted(undos)])
            for decision in waiting:
                self.outbox.discard(decision.annotation_id)
            self._undos -= undos
            self._wrote = self._wrote or bool(new or undos)
            return new

        if not self._undos and not self.outbox.pending():
            return 0
        return self._with_connection(write)

    def publish_snapshot(self) -> bool:
        """Publish the analysts' read-only copy if this process wrote since the last one and the
        copy lags the database; returns whether a copy was published. Raises DatabaseBusy when
        another process holds the database (the copy is published on a later call, or by that
        process when it is done)."""
        with _LOCK:
            if self.snapshot is None or not self._wrote:
                return False
            self._wrote = False
        database = Path(self.database)

        def publish(conn) -> bool:
            # this connection changed nothing: the file's time now is when it was last written
            return snapshots.publish(conn, database, self.snapshot, database.stat().st_mtime_ns)

        try:
            return self._with_connection(publish)
        except BaseException:
            self._wrote = True  # try again next time
            raise
