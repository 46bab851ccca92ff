"""Hosted runs in ``fine_tuned_models`` and their events in ``fine_tune_events``.

:data:`SCHEMA` is the row of ``fine_tuned_models`` for every backend; a locally trained model's
row leaves the hosted columns (``config_hash``, ``cost_estimate_usd``, ``trained_tokens``) empty.

A hosted run's ``model_id`` is the provider's model name once the job succeeded; until then,
and for failed or cancelled runs, it is the job id. Rows are keyed by ``job_id``.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import polars as pl
from openai.types.fine_tuning import FineTuningJob

from pipeline.engine.core import store
from pipeline.engine.train.hosted.jobs import TERMINAL, JobSpec, failure

SCHEMA = {
    "model_id": pl.String, "backend": pl.String, "base_model": pl.String, "job_id": pl.String,
    "status": pl.String, "training_data_version": pl.String, "hyperparameters": pl.String,
    "metrics": pl.String, "artifact_path": pl.String, "created_at": pl.Datetime("us", "UTC"),
    "finished_at": pl.Datetime("us", "UTC"), "error": pl.String, "config_hash": pl.String,
    "cost_estimate_usd": pl.Float64, "trained_tokens": pl.Int64,
}


def find_run(conn, spec: JobSpec) -> tuple[str, str] | None:
    """(job_id, status) of the newest run for this data version and configuration that is
    running or succeeded; failed and cancelled runs are not resumed."""
    return conn.execute(
        "SELECT job_id, status FROM fine_tuned_models WHERE backend = ? AND training_data_version = ? "
        "AND config_hash = ? AND job_id IS NOT NULL AND status IN ('running', 'succeeded') "
        "ORDER BY created_at DESC LIMIT 1", [spec.backend, spec.data_version, spec.config_hash]).fetchone()


def run_row(job: FineTuningJob, spec: JobSpec, cost_estimate: float, metrics: dict[str, Any]) -> dict[str, Any]:
    """The registry row of ``job`` in its current state."""
    when = lambda t: datetime.fromtimestamp(t, timezone.utc) if t else None  # noqa: E731
    return {
        "model_id": job.fine_tuned_model or job.id, "backend": spec.backend, "base_model": spec.base_model,
        "job_id": job.id, "status": job.status if job.status in TERMINAL else "running",
        "training_data_version": spec.data_version,
        "hyperparameters": json.dumps({"method": spec.method, "resolved": job.hyperparameters.model_dump(),
                                       "suffix": spec.suffix, "seed": job.seed, "config_hash": spec.config_hash}),
        "metrics": json.dumps({"provider_status": job.status, **metrics}), "artifact_path": None,
        "created_at": when(job.created_at), "finished_at": when(job.finished_at), "error": failure(job),
        "config_hash": spec.config_hash, "cost_estimate_usd": cost_estimate, "trained_tokens": job.trained_tokens,
    }


def write_run(conn, row: dict[str, Any]) -> None:
    store.upsert(conn, "fine_tuned_models", pl.DataFrame([row], schema=SCHEMA), ["job_id"])


def write_events(conn, events: pl.DataFrame) -> None:
    store.upsert(conn, "fine_tune_events", events, ["job_id", "event_id"])


def register_base(conn, backend: str, model: str) -> None:
    """Record a hosted base model (nothing to train) once."""
    row = {"model_id": model, "backend": backend, "base_model": None, "job_id": None, "status": "succeeded",
           "training_data_version": None, "hyperparameters": None, "metrics": json.dumps({"hosted": True}),
           "artifact_path": None, "created_at": datetime.now(timezone.utc), "finished_at": None, "error": None,
           "config_hash": None, "cost_estimate_usd": None, "trained_tokens": None}
    store.insert_new(conn, "fine_tuned_models", pl.DataFrame([row], schema=SCHEMA), ["model_id"])
