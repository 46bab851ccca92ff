"""One hosted fine-tuning run: find or create the job, follow it for a bounded time, record it.

The database is opened only for short reads and writes (``connect`` is a context-manager
factory, e.g. the DuckDB resource's ``get_connection``), never while waiting on the provider.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager

import polars as pl
from openai.types.fine_tuning import FineTuningJob

from pipeline.engine.curate.export import token_counter, training_cost
from pipeline.engine.train import registry
from pipeline.engine.train.hosted.api import FineTuningAPI
from pipeline.engine.train.hosted.events import job_events, loss_history
from pipeline.engine.train.hosted.jobs import TERMINAL, JobSpec, failure, find_or_create, follow

#: Epochs assumed for the cost estimate when the provider picks them ("auto").
DEFAULT_EPOCHS = 3


@dataclass
class HostedRun:
    """What a run did: the job's last state, its events, its registry row, and the error if it
    did not succeed (failed, cancelled, or still going when the wait ran out)."""

    job: FineTuningJob
    events: pl.DataFrame
    row: dict[str, Any]
    created: bool
    error: str | None


def estimate_cost(train: Path, spec: JobSpec, price_per_1m_tokens: float) -> tuple[float, str]:
    """Estimated training cost of the file and how it was estimated."""
    counter = token_counter()
    with open(train, encoding="utf-8") as handle:
        tokens = sum(counter.example_tokens(json.loads(line)) for line in handle if line.strip())
    epochs = dict(spec.hyperparameters).get("n_epochs")
    epochs = epochs if isinstance(epochs, int) else DEFAULT_EPOCHS
    basis = f"{tokens} train tokens x {epochs} epochs x ${price_per_1m_tokens}/1M ({counter.method})"
    return training_cost(tokens, epochs, price_per_1m_tokens), basis


def run_hosted(api: FineTuningAPI, spec: JobSpec, train: Path, validation: Path | None,
               connect: Callable[[], ContextManager], log: Callable[[str], None], *, max_wait_s: float,
               poll_interval_s: float, price_per_1m_tokens: float,
               sleep: Callable[[float], None] = time.sleep) -> HostedRun:
    """Resume or create the job for ``spec``, follow it up to ``max_wait_s`` and record it."""
    with connect() as conn:
        known = registry.find_run(conn, spec)
    job, created = find_or_create(api, spec, train, validation, known[0] if known else None, log)
    estimate, basis = estimate_cost(train, spec, price_per_1m_tokens)
    metrics: dict[str, Any] = {"estimated_cost_usd": estimate, "cost_estimate_basis": basis}
    with connect() as conn:  # recorded before waiting: a crash while following can resume it
        registry.write_run(conn, registry.hosted_row(job, spec, estimate, metrics))
    if job.status not in TERMINAL:
        job = follow(api, job.id, max_wait_s, poll_interval_s, log, sleep=sleep)
    events = job_events(api, job.id)
    history = loss_history(events)
    if history.height:
        last = history.row(-1, named=True)
        metrics.update(steps=last["step"], train_loss=last["train_loss"], valid_loss=last["valid_loss"])
    if job.trained_tokens:
        metrics["cost_usd"] = training_cost(job.trained_tokens, 1, price_per_1m_tokens)
    if job.finished_at:
        metrics["duration_s"] = job.finished_at - job.created_at
    row = registry.hosted_row(job, spec, estimate, metrics)
    with connect() as conn:
        registry.write_events(conn, events)
        registry.write_run(conn, row)
    error = failure(job) or (None if job.status == "succeeded" else
                             f"fine-tuning job {job.id} still {job.status} after waiting {max_wait_s:g} s; "
                             "re-materialize to resume (no new job is created)")
    return HostedRun(job, events, row, created, error)
