"""The model registry: one row per training run in ``fine_tuned_models``, for every backend, and
hosted runs' events in ``fine_tune_events``.

:data:`SCHEMA` is the row for every backend; a locally trained model's row leaves the hosted
columns (``job_id``, ``config_hash``, ``cost_estimate_usd``) empty and is keyed by ``model_id``.
A hosted run's ``model_id`` is the provider's model name once the job succeeded; until then, and
for failed or cancelled runs, it is the job id, so its rows are keyed by ``job_id``. A run's
status goes running -> succeeded | failed (hosted: | cancelled).

A finished run also records how much it trained against its plan (:class:`Training`): planned
and trained steps and epochs, tokens, whether a wall-clock limit stopped it, ``complete`` and,
when it is not, ``incomplete_reason`` in one sentence. An under-trained model stays 'succeeded'
(it exists and can be evaluated) with ``complete`` false. A local run's row names the process
that trains it (``run_owner``, host:pid), so a run killed while training, whose row still says
'running', is marked failed by the next local run on that host (:func:`reconcile_interrupted`).
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import astuple, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, ContextManager

import polars as pl
from openai.types.fine_tuning import FineTuningJob

from pipeline.engine.core import store
from pipeline.engine.train.hosted.jobs import TERMINAL, JobSpec, failure
from pipeline.engine.train.local.config import TrainResult
from pipeline.engine.train.local.runs import is_complete

SCHEMA = {
    "model_id": pl.String, "backend": pl.String, "base_model": pl.String, "job_id": pl.String,
    "status": pl.String, "training_data_version": pl.String, "hyperparameters": pl.String,
    "metrics": pl.String, "artifact_path": pl.String, "created_at": pl.Datetime("us", "UTC"),
    "finished_at": pl.Datetime("us", "UTC"), "error": pl.String, "config_hash": pl.String,
    "cost_estimate_usd": pl.Float64, "trained_tokens": pl.Int64, "planned_steps": pl.Int64,
    "trained_steps": pl.Int64, "planned_epochs": pl.Float64, "trained_epochs": pl.Float64,
    "stopped_early": pl.Boolean, "complete": pl.Boolean, "incomplete_reason": pl.String, "run_owner": pl.String,
}
#: The columns that record a run's :class:`Training`, in its fields' order.
TRAINING_COLUMNS = ("planned_steps", "trained_steps", "planned_epochs", "trained_epochs", "trained_tokens",
                    "stopped_early", "complete", "incomplete_reason", "training_data_version")
#: The error of a local run found 'running' after the process that trained it ended.
INTERRUPTED = "interrupted: the run that trained it ended without recording a result"


def _number(value: float) -> str:
    """A step or epoch count as people read it: 1204; 0.29; 20."""
    return str(value) if isinstance(value, int) else f"{value:.2f}".rstrip("0").rstrip(".")


def _of(actual: float | None, planned: float | None) -> str:
    if actual is None:
        return "n/a"
    return _number(actual) if planned is None else f"{_number(actual)} of {_number(planned)}"


@dataclass(frozen=True)
class Training:
    """How much a run trained against its plan; None where unknown or nothing was planned (a
    registered pretrained or hosted base). ``complete`` is None when there was no plan to meet;
    ``reason`` says in one sentence why an incomplete run is."""

    planned_steps: int | None = None
    steps: int | None = None
    planned_epochs: float | None = None
    epochs: float | None = None
    tokens: int | None = None
    stopped_early: bool | None = None
    complete: bool | None = None
    reason: str | None = None
    data_version: str | None = None

    @classmethod
    def of_result(cls, result: dict[str, Any]) -> Training:
        """The training of a local run from its stored result (a TrainResult as a dict; complete
        as TrainResult.complete says). A result without a plan (a registered pretrained model)
        has nothing to be complete against."""
        if result.get("planned_steps") is None:
            return cls(steps=result.get("steps"), epochs=result.get("epochs"), tokens=result.get("tokens"))
        run = TrainResult.from_dict(result)
        at = (f"at step {_number(run.steps)} of {_number(run.planned_steps)} "
              f"({_number(run.epochs)} of {_number(run.planned_epochs)} epochs)")
        if run.complete:
            reason = None
        elif run.stopped_early:
            reason = f"stopped early by max_seconds {at}"
        elif run.steps < run.planned_steps:
            reason = f"stopped before the planned steps, {at}"
        else:
            reason = f"under one epoch of the data: max_steps ends it {at}"
        return cls(run.planned_steps, run.steps, run.planned_epochs, run.epochs, run.tokens, run.stopped_early,
                   run.complete, reason)

    @classmethod
    def of_row(cls, row: dict[str, Any]) -> Training:
        """The training recorded in a fine_tuned_models row (:data:`TRAINING_COLUMNS` at least)."""
        return cls(*(row[c] for c in TRAINING_COLUMNS))

    def columns(self) -> dict[str, Any]:
        """The fine_tuned_models columns that record it, but the data version (the row's own)."""
        return dict(zip(TRAINING_COLUMNS[:-1], astuple(self)[:-1]))

    @property
    def steps_text(self) -> str:
        """Trained steps of planned ones ("1204 of 4140"); "n/a" when unknown."""
        return _of(self.steps, self.planned_steps)

    @property
    def epochs_text(self) -> str:
        """Trained epochs of planned ones ("5.82 of 20"); "n/a" when unknown."""
        return _of(self.epochs, self.planned_epochs)

    @property
    def tokens_text(self) -> str:
        """Tokens seen ("1,234,567"); "n/a" when unknown."""
        return "n/a" if self.tokens is None else f"{self.tokens:,}"

    @property
    def figures(self) -> str:
        """What is known, in words: "12 of 40 steps, 0.6 of 2 epochs, 5,120 tokens"."""
        known = ((self.steps_text, "steps"), (self.epochs_text, "epochs"), (self.tokens_text, "tokens"))
        return ", ".join(f"{text} {unit}" for text, unit in known if text != "n/a") or "nothing recorded"

    @property
    def state(self) -> str:
        """"complete", "under-trained: <reason>", or "n/a" (nothing planned, or not recorded)."""
        return {True: "complete", False: f"under-trained: {self.reason}", None: "n/a"}[self.complete]


def _row(**values: Any) -> dict[str, Any]:
    """A registry row: ``values``, every other column empty."""
    return {**dict.fromkeys(SCHEMA), **values}


def _frame(row: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame([row], schema=SCHEMA)


def run_owner() -> str:
    """This process as a local run's row names it: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_gone(owner: str | None) -> bool:
    """True when ``owner`` (host:pid) was a process of this host that no longer runs. A process of
    another host, or a row without an owner (written before owners were recorded), is never judged
    gone; a pid reused since keeps its row 'running' until that process ends too."""
    host, _, pid = (owner or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or os.name == "nt":  # os.kill on Windows terminates
        return False
    try:
        os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, another user's
        pass
    return False


def reconcile_interrupted(conn) -> list[str]:
    """Mark the local runs still 'running' whose process is gone as failed (:data:`INTERRUPTED`);
    returns their model ids."""
    running = conn.execute("SELECT model_id, run_owner FROM fine_tuned_models "
                           "WHERE backend = 'local' AND status = 'running'").fetchall()
    gone = [model_id for model_id, owner in running if owner_gone(owner)]
    if gone:
        conn.execute("UPDATE fine_tuned_models SET status = 'failed', error = ?, finished_at = ? "
                     "WHERE backend = 'local' AND status = 'running' AND list_contains(?, model_id)",
                     [INTERRUPTED, datetime.now(timezone.utc), gone])
    return gone


def local_row(model_id: str, model_dir: Path, base: str | None, data_version: str,
              hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """The row of a local training run that starts now in this process."""
    return _row(model_id=model_id, backend="local", base_model=base, status="running",
                training_data_version=data_version, hyperparameters=json.dumps(hyperparameters, default=str),
                artifact_path=str(model_dir), created_at=datetime.now(timezone.utc), run_owner=run_owner())


def hosted_row(job: FineTuningJob, spec: JobSpec, cost_estimate: float, metrics: dict[str, Any]) -> dict[str, Any]:
    """The row of hosted job ``job`` in its current state. The provider trains every planned epoch
    of a job that succeeds: its training is complete; steps are the last one its events reported."""
    when = lambda t: datetime.fromtimestamp(t, timezone.utc) if t else None  # noqa: E731
    epochs = job.hyperparameters.n_epochs if isinstance(job.hyperparameters.n_epochs, int) else None
    succeeded = job.status == "succeeded"
    training = Training(steps=metrics.get("steps"), planned_epochs=epochs, epochs=epochs if succeeded else None,
                        tokens=job.trained_tokens, stopped_early=False if succeeded else None,
                        complete=True if succeeded else None)
    return _row(
        **training.columns(),
        model_id=job.fine_tuned_model or job.id, backend=spec.backend, base_model=spec.base_model,
        job_id=job.id, status=job.status if job.status in TERMINAL else "running",
        training_data_version=spec.data_version,
        hyperparameters=json.dumps({"method": spec.method, "resolved": job.hyperparameters.model_dump(),
                                    "suffix": spec.suffix, "seed": job.seed, "config_hash": spec.config_hash}),
        metrics=json.dumps({"provider_status": job.status, **metrics}),
        created_at=when(job.created_at), finished_at=when(job.finished_at), error=failure(job),
        config_hash=spec.config_hash, cost_estimate_usd=cost_estimate,
    )


def write_run(conn, row: dict[str, Any]) -> None:
    """Store ``row``, replacing the run's earlier row (by ``job_id`` when it has one, else ``model_id``)."""
    store.upsert(conn, "fine_tuned_models", _frame(row), ["job_id"] if row["job_id"] else ["model_id"])


def write_events(conn, events: pl.DataFrame) -> None:
    """Store a hosted job's events, replacing those already stored."""
    store.upsert(conn, "fine_tune_events", events, ["job_id", "event_id"])


def register_base(conn, backend: str, model: str) -> None:
    """Record a hosted base model (nothing to train) once."""
    row = _row(model_id=model, backend=backend, status="succeeded", metrics=json.dumps({"hosted": True}),
               created_at=datetime.now(timezone.utc))
    store.insert_new(conn, "fine_tuned_models", _frame(row), ["model_id"])


def finished_metrics(conn, model_id: str) -> dict | None:
    """The stored metrics of a model that finished successfully, else None."""
    row = conn.execute("SELECT metrics FROM fine_tuned_models WHERE model_id = ? AND status = 'succeeded'",
                       [model_id]).fetchone()
    return json.loads(row[0]) if row and row[0] else None


def find_run(conn, spec: JobSpec) -> tuple[str, str] | None:
    """(job_id, status) of the newest hosted run for this data version and configuration that is
    running or succeeded; failed and cancelled runs are not resumed."""
    return conn.execute(
        "SELECT job_id, status FROM fine_tuned_models WHERE backend = ? AND training_data_version = ? "
        "AND config_hash = ? AND job_id IS NOT NULL AND status IN ('running', 'succeeded') "
        "ORDER BY created_at DESC LIMIT 1", [spec.backend, spec.data_version, spec.config_hash]).fetchone()


def trainings(conn, model_ids: list[str]) -> dict[str, Training]:
    """How each registered model of ``model_ids`` trained (its newest row)."""
    rows = conn.execute(f"SELECT model_id, {', '.join(TRAINING_COLUMNS)} FROM fine_tuned_models "
                        "WHERE list_contains(?, model_id) "
                        "QUALIFY row_number() OVER (PARTITION BY model_id ORDER BY created_at DESC) = 1",
                        [model_ids]).fetchall()
    return {model_id: Training(*values) for model_id, *values in rows}


def under_trained(training: dict[str, Training]) -> dict[str, str]:
    """The models of ``training`` that trained less than planned, with the reason."""
    return {model_id: t.reason for model_id, t in training.items() if t.complete is False}


def latest_fine_tuned(conn) -> tuple[str, str, datetime] | None:
    """(model_id, training_data_version, created_at) of the newest fine-tuned model that succeeded."""
    return conn.execute("""SELECT model_id, training_data_version, created_at FROM fine_tuned_models
        WHERE status = 'succeeded' AND base_model IS NOT NULL ORDER BY created_at DESC LIMIT 1""").fetchone()


def run_training(connect: Callable[[], ContextManager], model_id: str, model_dir: Path, base: str | None,
                 data_version: str, hyperparameters: dict[str, Any], train: Callable[[Callable[[str], None]], dict],
                 log: Callable[[str], None]) -> dict:
    """Train a local model once per model id: reuse a finished model, else run ``train(log)`` with
    the registry row going running -> succeeded | failed (the error, an interrupt included,
    recorded, then re-raised); a run that trained less than planned is logged and recorded so
    (:class:`Training`). First, runs interrupted earlier are marked failed (:func:`reconcile_interrupted`).
    ``connect`` opens the database for each short read or write; it is closed while ``train`` runs."""
    row = local_row(model_id, model_dir, base, data_version, hyperparameters)
    with connect() as conn:
        for interrupted in reconcile_interrupted(conn):
            log(f"{interrupted} was marked failed: {INTERRUPTED}")
        stored = finished_metrics(conn, model_id) if is_complete(model_dir) else None
        if stored is None:
            write_run(conn, row)
    if stored is not None:
        log(f"{model_id} is already trained at {model_dir}; reusing it")
        return {**stored, "reused": True}
    try:
        metrics = train(log)
    except BaseException as exc:  # an interrupt (Ctrl-C, a run terminated) is recorded too
        with connect() as conn:
            write_run(conn, {**row, "status": "failed", "finished_at": datetime.now(timezone.utc),
                             "error": f"{type(exc).__name__}: {exc}"})
        raise
    training = Training.of_result(metrics)
    if training.complete is False:
        log(f"{model_id} is under-trained: {training.reason}")
    with connect() as conn:
        write_run(conn, {**row, **training.columns(), "status": "succeeded", "metrics": json.dumps(metrics),
                         "finished_at": datetime.now(timezone.utc)})
    return metrics
