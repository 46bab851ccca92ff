"""The incumbent: the model a team runs today (an OpenAI or Azure OpenAI fine-tuned model by name,
or any OpenAI-compatible endpoint), captured while its provider still serves it, so that the
comparison with the models trained here keeps working afterwards.

:func:`capture_incumbent` asks it the task's prompt for every test example (training_examples,
split 'test') and for a recent window of real traces (raw_traces, newest first), and stores each
answer in ``incumbent_outputs`` keyed by (model, scope, item_id), with the input's hash, latency,
tokens and cost:

- cached: an item captured for the same input (its hash) is never sent again;
- resumable: answers are written every ``batch_size`` items, the database closed in between, so
  a run killed midway loses at most one batch and the next run continues where it stopped;
- retried: a failed item is asked again on later runs, up to ``max_attempts`` in all, its last
  error (secrets redacted) kept;
- scrubbed: every message goes through the provider's PII scrubbing; a provider that does not
  scrub is refused.

:func:`incumbent_results` gives the captured test outputs as eval_results rows, the shape
:func:`pipeline.engine.evaluate.candidates.generate` gives, so the incumbent competes as a candidate.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, ContextManager

import polars as pl

from pipeline.engine.core import store
from pipeline.engine.core.secrets import redact
from pipeline.engine.core.versions import config_hash
from pipeline.engine.evaluate.pricing import Pricing, cost_per_call, pricing_for
from pipeline.engine.evaluate.scoring import score
from pipeline.engine.providers import ChatProvider, ProviderAuthError, ProviderError
from pipeline.engine.providers.openai_chat import OpenAIChatProvider
from pipeline.engine.tasks import Task

INCUMBENT_OFF = "no incumbent registered (set FLYWHEEL_INCUMBENT_MODEL or IncumbentResource(model=...))"
PROVIDERS = ("openai", "azure", "openai_compatible")
#: The variable holding the key when ``api_key_env`` is not set.
DEFAULT_KEY_VARIABLES = {"openai": "OPENAI_API_KEY", "azure": "AZURE_OPENAI_API_KEY",
                         "openai_compatible": "OPENAI_API_KEY"}
#: What is captured: the test split (item_id: example_id) and recent traces (item_id: trace_id).
TEST, TRACES = "test", "traces"
OUTPUT_KEY = ["model", "scope", "item_id"]
OUTPUT_SCHEMA = {
    "model": pl.String, "scope": pl.String, "item_id": pl.String, "input_hash": pl.String,
    "output": pl.String, "error": pl.String, "latency_ms": pl.Float64, "prompt_tokens": pl.Int64,
    "completion_tokens": pl.Int64, "cost_usd": pl.Float64, "captured_at": pl.Datetime("us", "UTC"),
    "attempts": pl.Int64,
}
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class IncumbentNotCaptured(ValueError):
    """Test examples have no captured output of the incumbent; the message says how many."""


@dataclass(frozen=True)
class IncumbentSettings:
    """The incumbent's registration (``pipeline.resources.IncumbentResource`` is built from it);
    no incumbent while ``model`` is None. The key is read from the environment variable
    ``api_key_env`` names, never from a setting."""

    model: str | None = field(default=None, metadata={
        "doc": "The model in production today, e.g. ft:gpt-4o-mini-2024-07-18:acme::AbC12 (None: no incumbent)."})
    provider: str = field(default="openai", metadata={"doc": "openai, azure or openai_compatible."})
    base_url: str | None = field(default=None, metadata={
        "doc": "The server of an openai_compatible incumbent (.../v1); for openai, OPENAI_BASE_URL when unset."})
    api_key_env: str | None = field(default=None, metadata={
        "doc": "The name of the environment variable holding the key (unset: OPENAI_API_KEY, on Azure "
               "AZURE_OPENAI_API_KEY)."})
    azure_endpoint: str | None = field(default=None, metadata={"doc": "Azure: unset, AZURE_OPENAI_ENDPOINT."})
    api_version: str | None = field(default=None, metadata={"doc": "Azure: unset, OPENAI_API_VERSION."})
    azure_deployment: str | None = field(default=None, metadata={
        "doc": "Azure: the deployment that serves the model (unset: the model's name)."})
    price_input_per_1m: float | None = field(default=None, metadata={
        "doc": "USD per 1M input tokens (with price_output_per_1m; unset: the list price of a known model)."})
    price_output_per_1m: float | None = field(default=None, metadata={"doc": "USD per 1M output tokens."})
    price_per_hour: float | None = field(default=None, metadata={
        "doc": "USD per hour of a self-hosted server, times the measured seconds per call."})
    recent_days: int = field(default=14, metadata={
        "doc": "The traces window: days before the newest ingested trace (0: no traces)."})
    max_traces: int = field(default=500, metadata={"doc": "Traces of the window captured at most, newest first."})
    batch_size: int = field(default=20, metadata={"doc": "Answers written to the database every this many calls."})
    max_attempts: int = field(default=3, metadata={"doc": "Calls per item at most, over all runs."})
    concurrency: int = 4
    max_retries: int = 3
    timeout: float = 60.0
    seed: int | None = 0

    def __post_init__(self):
        if self.provider not in PROVIDERS:
            raise ValueError(f"incumbent provider {self.provider!r}: expected one of {', '.join(PROVIDERS)}")
        if self.api_key_env is not None and not _VARIABLE_NAME.fullmatch(self.api_key_env):
            raise ValueError("api_key_env must name the environment variable holding the key (e.g. OPENAI_API_KEY), "
                             "not hold the key itself")
        if self.enabled and self.provider == "openai_compatible" and not self.base_url:
            raise ValueError(f"the openai_compatible incumbent {self.model!r} needs base_url (its server's .../v1)")
        for name in ("recent_days", "max_traces"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} cannot be negative")
        for name in ("batch_size", "max_attempts", "concurrency"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.enabled:
            self.pricing()  # prices checked at registration, not after the first answers

    @property
    def enabled(self) -> bool:
        """Whether an incumbent is registered."""
        return bool(self.model)

    @property
    def key_variable(self) -> str:
        """The environment variable the key is read from."""
        return self.api_key_env or DEFAULT_KEY_VARIABLES[self.provider]

    def pricing(self) -> Pricing | None:
        """The configured prices, else the model's list price (None: the cost is unknown)."""
        return pricing_for(self.model, self.price_input_per_1m, self.price_output_per_1m, self.price_per_hour)

    def chat(self) -> OpenAIChatProvider:
        """The chat provider that asks the incumbent (scrubbing PII from every message)."""
        key = os.environ.get(self.key_variable)
        if not key:
            raise ProviderAuthError(f"no API key for the incumbent {self.model!r}: set {self.key_variable} "
                                    "(a local server without authentication accepts any non-empty value)")
        azure = None
        if self.provider == "azure":
            azure = {k: v for k, v in (("azure_endpoint", self.azure_endpoint), ("api_version", self.api_version),
                                       ("azure_deployment", self.azure_deployment)) if v}
        return OpenAIChatProvider(self.model, api_key=key, base_url=self.base_url, azure=azure,
                                  max_retries=self.max_retries, timeout=self.timeout)


@dataclass(frozen=True)
class CaptureSummary:
    """What a capture run did, per scope: items in scope, answered this run (``captured_now``),
    answered before (``cached``), failing now (``failed``: retried on a later run while attempts
    are left, ``gave_up`` once they are not); the cost of this run and of everything stored."""

    model: str
    scopes: dict[str, dict[str, int]]
    cost_usd_now: float
    cost_usd_total: float
    pricing: str

    def total(self, count: str) -> int:
        """``count`` summed over the scopes."""
        return sum(s[count] for s in self.scopes.values())

    def metadata(self) -> dict[str, Any]:
        """Figures for the UI (costs rounded to 1/100 of a cent)."""
        return {"incumbent": self.model, "captured_now": self.total("captured_now"), "cached": self.total("cached"),
                "failed": self.total("failed"), "gave_up": self.total("gave_up"),
                "cost_usd_now": round(self.cost_usd_now, 4), "cost_usd_so_far": round(self.cost_usd_total, 4),
                "pricing": self.pricing, "scopes": self.scopes}


def input_hash(input_json: str) -> str:
    """The hash of an input's content (key order and spacing do not count): a capture is reused
    only for the same input, whatever prompt Flywheel builds from it."""
    return config_hash(json.loads(input_json))


def test_items(conn) -> pl.DataFrame:
    """The test split as items (item_id: example_id, input)."""
    return store.read(conn, "SELECT example_id AS item_id, input::VARCHAR AS input FROM training_examples "
                            "WHERE split = 'test' ORDER BY example_id")


def trace_items(conn, task_name: str, recent_days: int, max_traces: int) -> pl.DataFrame:
    """The task's traces of the ``recent_days`` before its newest trace, newest first, at most
    ``max_traces`` (item_id: trace_id, input)."""
    return store.read(conn, """
        SELECT trace_id AS item_id, input::VARCHAR AS input FROM raw_traces
        WHERE task = $task AND ts >= (SELECT max(ts) FROM raw_traces WHERE task = $task) - to_days($days::INTEGER)
        ORDER BY ts DESC, trace_id LIMIT $limit""",
                      {"task": task_name, "days": recent_days, "limit": max_traces})


def stored_outputs(conn, model: str, scope: str) -> pl.DataFrame:
    """The incumbent's stored rows of ``scope``."""
    return store.read(conn, "SELECT * FROM incumbent_outputs WHERE model = ? AND scope = ?", [model, scope])


def pending_items(items: pl.DataFrame, stored: pl.DataFrame, max_attempts: int) -> pl.DataFrame:
    """``items`` (item_id, input) to ask now, with ``attempts_before``: never captured, captured
    for another input (attempts start again), or failed with attempts left."""
    hashed = items.with_columns(pl.col("input").map_elements(input_hash, return_dtype=pl.String).alias("input_hash"))
    joined = hashed.join(stored.select("item_id", pl.col("input_hash").alias("stored_hash"), "error", "attempts"),
                         on="item_id", how="left")
    same_input = pl.col("stored_hash") == pl.col("input_hash")
    pending = joined.filter(pl.col("stored_hash").is_null() | ~same_input
                            | (pl.col("error").is_not_null() & (pl.col("attempts") < max_attempts)))
    attempts_before = pl.when(same_input).then(pl.col("attempts")).otherwise(0).fill_null(0)
    return pending.select("item_id", "input", "input_hash", attempts_before.alias("attempts_before"))


def ask(chat: ChatProvider, task: Task, model: str, scope: str, item: dict[str, Any], pricing: Pricing | None,
        seed: int | None) -> dict[str, Any]:
    """One incumbent_outputs row: the answer to the task's prompt for ``item``, or the provider's
    error (redacted). A rejected key is raised: every other call would fail the same way."""
    row = {"model": model, "scope": scope, "item_id": item["item_id"], "input_hash": item["input_hash"],
           "output": None, "error": None, "latency_ms": None, "prompt_tokens": None, "completion_tokens": None,
           "cost_usd": None, "attempts": item["attempts_before"] + 1}
    try:
        completion = chat.complete(task.prompt(json.loads(item["input"])), temperature=0.0, seed=seed)
    except ProviderAuthError:
        raise
    except ProviderError as exc:
        row["error"] = redact(str(exc))
    else:
        seconds = completion.latency_ms / 1000 if completion.latency_ms is not None else None
        row.update(output=completion.text, latency_ms=completion.latency_ms, prompt_tokens=completion.prompt_tokens,
                   completion_tokens=completion.completion_tokens,
                   cost_usd=cost_per_call(pricing, completion.prompt_tokens, completion.completion_tokens, seconds))
    row["captured_at"] = datetime.now(timezone.utc)
    return row


def capture_scope(connect: Callable[[], ContextManager], chat: ChatProvider, task: Task, settings: IncumbentSettings,
                  scope: str, items: pl.DataFrame, log: Callable[[str], None]) -> dict[str, Any]:
    """Ask the incumbent the pending ``items`` of ``scope``, ``batch_size`` at a time, each batch
    stored before the next is sent (the database closed while the incumbent answers); the
    scope's counts and the cost of this run."""
    with connect() as conn:
        pending = pending_items(items, stored_outputs(conn, settings.model, scope), settings.max_attempts)
    pricing = settings.pricing()
    answered = failed = 0
    cost = 0.0
    pool = ThreadPoolExecutor(settings.concurrency)
    try:
        for batch in pending.iter_slices(settings.batch_size):
            rows = list(pool.map(lambda item: ask(chat, task, settings.model, scope, item, pricing, settings.seed),
                                 batch.iter_rows(named=True)))
            with connect() as conn:
                store.upsert(conn, "incumbent_outputs", pl.DataFrame(rows, schema=OUTPUT_SCHEMA), OUTPUT_KEY)
            answered += sum(r["error"] is None for r in rows)
            failed += sum(r["error"] is not None for r in rows)
            cost += sum(r["cost_usd"] or 0.0 for r in rows)
            log(f"incumbent {settings.model}, {scope}: {answered + failed} of {pending.height} asked "
                f"({failed} failed), ${cost:.4f} this run")
    finally:  # interrupted: the calls of the batch not started yet are not sent
        pool.shutdown(cancel_futures=True)
    with connect() as conn:
        counts = scope_counts(conn, settings.model, scope, items, settings.max_attempts)
    return {"counts": {**counts, "captured_now": answered, "cached": counts["captured"] - answered}, "cost": cost}


def scope_counts(conn, model: str, scope: str, items: pl.DataFrame, max_attempts: int) -> dict[str, int]:
    """Of ``items``: how many have a captured output for their input, how many fail now (and of
    those, how many have no attempts left)."""
    current = stored_outputs(conn, model, scope).join(
        items.select("item_id", pl.col("input").map_elements(input_hash, return_dtype=pl.String).alias("hash")),
        on="item_id").filter(pl.col("input_hash") == pl.col("hash"))
    failing = current.filter(pl.col("error").is_not_null())
    return {"items": items.height, "captured": current.height - failing.height, "failed": failing.height,
            "gave_up": failing.filter(pl.col("attempts") >= max_attempts).height}


def capture_incumbent(connect: Callable[[], ContextManager], settings: IncumbentSettings, task: Task,
                      log: Callable[[str], None], chat: ChatProvider | None = None) -> CaptureSummary:
    """Capture the incumbent on the test split and the recent traces (see the module docstring),
    through ``chat`` (default: ``settings.chat()``); raises ProviderAuthError on a rejected key."""
    if not settings.enabled:
        raise ValueError(INCUMBENT_OFF)
    chat = chat or settings.chat()
    if getattr(chat, "scrub_patterns", None) is None:
        raise ValueError(f"refusing to send the incumbent {settings.model!r} unscrubbed inputs: its provider "
                         "must scrub PII (OpenAIChatProvider's scrub_patterns)")
    with connect() as conn:
        scopes = {TEST: test_items(conn)}
        if settings.recent_days and settings.max_traces:
            scopes[TRACES] = trace_items(conn, task.name, settings.recent_days, settings.max_traces)
    done = {scope: capture_scope(connect, chat, task, settings, scope, items, log) for scope, items in scopes.items()}
    with connect() as conn:
        total = conn.execute("SELECT coalesce(sum(cost_usd), 0) FROM incumbent_outputs WHERE model = ?",
                             [settings.model]).fetchone()[0]
    pricing = settings.pricing()
    return CaptureSummary(settings.model, {s: d["counts"] for s, d in done.items()},
                          sum(d["cost"] for d in done.values()), float(total),
                          pricing.source if pricing else "unknown: no list price and none configured")


def incumbent_results(conn, model: str, test: pl.DataFrame, task: Task) -> pl.DataFrame:
    """eval_results rows of the incumbent ``model`` on ``test`` (example_id, input, output, as
    candidates select it) from its captured outputs, with each call's latency and cost in the
    metrics; an output that failed counts as an empty answer (its error in the metrics). Raises
    :class:`IncumbentNotCaptured` when a test example has no capture for its current input."""
    ordered = test.select(pl.col("example_id").alias("item_id"),
                          pl.col("input").map_elements(input_hash, return_dtype=pl.String).alias("input_hash")).join(
        stored_outputs(conn, model, TEST), on=["item_id", "input_hash"], how="left", maintain_order="left")
    missing = ordered.filter(pl.col("attempts").is_null())["item_id"].to_list()
    if missing:
        raise IncumbentNotCaptured(
            f"{len(missing)} of {test.height} test examples have no captured output of the incumbent {model!r} "
            f"(first: {', '.join(sorted(missing)[:3])}): materialize incumbent_outputs while its provider serves it")
    results = score(test, ordered["output"].fill_null("").to_list(), task, model,
                    latencies_ms=ordered["latency_ms"].to_list())
    extra = [{"cost_usd": cost, **({"incumbent_error": error} if error else {})}
             for cost, error in zip(ordered["cost_usd"], ordered["error"])]
    return results.with_columns(pl.Series("metrics", [json.dumps({**json.loads(m), **x})
                                                      for m, x in zip(results["metrics"], extra)]))
