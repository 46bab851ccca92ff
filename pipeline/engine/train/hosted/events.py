"""A job's events and checkpoints as rows: messages, and the training metrics (loss per step)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import polars as pl

from pipeline.engine.train.hosted.api import FineTuningAPI

EVENT_SCHEMA = {
    "job_id": pl.String, "event_id": pl.String, "created_at": pl.Datetime("us", "UTC"), "level": pl.String,
    "type": pl.String, "message": pl.String, "step": pl.Int64, "train_loss": pl.Float64,
    "valid_loss": pl.Float64, "data": pl.String,
}


def job_events(api: FineTuningAPI, job_id: str) -> pl.DataFrame:
    """Every event of the job (oldest first) and its checkpoints (type ``checkpoint``)."""
    events, checkpoints = [], []
    with api.errors(f"reading the events of fine-tuning job {job_id}"):
        for event in api.client.fine_tuning.jobs.list_events(job_id, limit=100):
            data = event.data if isinstance(event.data, dict) else {}
            events.append(_row(job_id, event.id, event.created_at, event.level, event.type or "message",
                               event.message, data))
        for checkpoint in api.client.fine_tuning.jobs.checkpoints.list(job_id, limit=100):
            data = checkpoint.metrics.model_dump(exclude_none=True)
            checkpoints.append(_row(job_id, checkpoint.id, checkpoint.created_at, "info", "checkpoint",
                                    checkpoint.fine_tuned_model_checkpoint, {**data, "step": checkpoint.step_number}))
    # The API lists newest first; timestamps are in seconds, so ties keep the listing's order.
    rows = events[::-1] + checkpoints[::-1]
    return pl.DataFrame(rows, schema=EVENT_SCHEMA).sort("created_at", maintain_order=True)


def _row(job_id, event_id, created_at, level, type, message, data) -> dict:
    def number(key):
        value = data.get(key)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    step = number("step")
    return {"job_id": job_id, "event_id": event_id, "created_at": datetime.fromtimestamp(created_at, timezone.utc),
            "level": level, "type": type, "message": message, "step": int(step) if step is not None else None,
            "train_loss": number("train_loss"), "valid_loss": number("valid_loss"),
            "data": json.dumps(data) if data else None}


def loss_history(events: pl.DataFrame) -> pl.DataFrame:
    """step, train_loss, valid_loss from the metrics events (one row per step)."""
    return (events.filter(pl.col("type") == "metrics").select("step", "train_loss", "valid_loss")
            .unique("step", keep="last").sort("step"))


def loss_markdown(events: pl.DataFrame, last: int = 40) -> str:
    """The loss curve as a markdown table (the last ``last`` steps)."""
    history = loss_history(events)
    if history.is_empty():
        return "_no training metrics reported yet_"
    fmt = lambda v: "" if v is None else f"{v:.4f}"  # noqa: E731
    return "| step | train loss | validation loss |\n|---|---|---|\n" + "".join(
        f"| {s} | {fmt(t)} | {fmt(v)} |\n" for s, t, v in history.tail(last).iter_rows())
