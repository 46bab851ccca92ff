"""The model registry: one row per training run in ``fine_tuned_models``, for every backend, and
hosted runs' events in ``fine_tune_events``.

:data:`SCHEMA` is the row for every backend; a locally trained model's row leaves the hosted
columns (``job_id``, ``config_hash``, ``cost_estimate_usd``, ``trained_tokens``) empty and is
keyed by ``model_id``. A hosted run's ``model_id`` is the provider's model name once the job
succeeded; until then, and for failed or cancelled runs, it is the job id, so its rows are keyed
by ``job_id``. A run's status goes running -> succeeded | failed (hosted: | cancelled).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, ContextManager

import polars as pl
from openai.types.fine_tuning import FineTuningJob

from pipeline.engine.core import store
from pipeline.engine.train.hosted.jobs import TERMINAL, JobSpec, failure
from pipeline.engine.train.local.runs import is_complete

SCHEMA = {
    "model_id": pl.String, "backend": pl.String, "base_model": pl.String, "job_id": pl.String,
    "status": pl.String, "training_data_version": pl.String, "hyperparameters": pl.String,
    "metrics": pl.String, "artifact_path": pl.String, "created_at": pl.Datetime("us", "UTC"),
    "finished_at": pl.Datetime("us", "UTC"), "error": pl.String, "config_hash": pl.String,
    "cost_estimate_usd": pl.Float64, "trained_tokens": pl.Int64,
}


def _row(**values: Any) -> dict[str, Any]:
    """A registry row: ``values``, every other column empty."""
    return {**dict.fromkeys(SCHEMA), **values}


def _frame(row: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame([row], schema=SCHEMA)


def local_row(model_id: str, model_dir: Path, base: str | None, data_version: str,
              hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """The row of a local training run that starts now."""
    return _row(model_id=model_id, backend="local", base_model=base, status="running",
                training_data_version=data_version, hyperparameters=json.dumps(hyperparameters, default=str),
                artifact_path=str(model_dir), created_at=datetime.now(timezone.utc))


def hosted_row(job: FineTuningJob, spec: JobSpec, cost_estimate: float, metrics: dict[str, Any]) -> dict[str, Any]:
    """The row of hosted job ``job`` in its current state."""
    when = lambda t: datetime.fromtimestamp(t, timezone.utc) if t else None  # noqa: E731
    return _row(
        model_id=job.fine_tuned_model or job.id, backend=spec.backend, base_model=spec.base_model,
        job_id=job.id, status=job.status if job.status in TERMINAL else "running",
        training_data_version=spec.data_version,
        hyperparameters=json.dumps({"method": spec.method, "resolved": job.hyperparameters.model_dump(),
                                    "suffix": spec.suffix, "seed": job.seed, "config_hash": spec.config_hash}),
        metrics=json.dumps({"provider_status": job.status, **metrics}),
        created_at=when(job.created_at), finished_at=when(job.finished_at), error=failure(job),
        config_hash=spec.config_hash, cost_estimate_usd=cost_estimate, trained_tokens=job.trained_tokens,
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


def latest_fine_tuned(conn) -> tuple[str, str, datetime] | None:
    """(model_id, training_data_version, created_at) of the newest fine-tuned model that succeeded."""
    return conn.execute("""SELECT model_id, training_data_version, created_at FROM fine_tuned_models
        WHERE status = 'succeeded' AND base_model IS NOT NULL ORDER BY created_at DESC LIMIT 1""").fetchone()


def run_training(connect: Callable[[], ContextManager], model_id: str, model_dir: Path, base: str | None,
                 data_version: str, hyperparameters: dict[str, Any], train: Callable[[Callable[[str], None]], dict],
                 log: Callable[[str], None]) -> dict:
    """Train a local model once per model id: reuse a finished model, else run ``train(log)`` with
    the registry row going running -> succeeded | failed (the error recorded, then re-raised).
    ``connect`` opens the database for each short read or write; it is closed while ``train`` runs."""
    if is_complete(model_dir):
        with connect() as conn:
            stored = finished_metrics(conn, model_id)
        if stored is not None:
            log(f"{model_id} is already trained at {model_dir}; reusing it")
            return {**stored, "reused": True}
    row = local_row(model_id, model_dir, base, data_version, hyperparameters)
    with connect() as conn:
        write_run(conn, row)
    try:
        metrics = train(log)
    except Exception as exc:
        with connect() as conn:
            write_run(conn, {**row, "status": "failed", "finished_at": datetime.now(timezone.utc),
                             "error": f"{type(exc).__name__}: {exc}"})
        raise
    with connect() as conn:
        write_run(conn, {**row, "status": "succeeded", "metrics": json.dumps(metrics),
                         "finished_at": datetime.now(timezone.utc)})
    return metrics
