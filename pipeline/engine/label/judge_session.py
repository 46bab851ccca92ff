"""A judge session: the judge's setup (provider, prompt, people's few-shot examples, version),
what it has judged, judging traces or model outputs with the database closed, and how far it
agrees with people.

``connect`` is a context-manager factory (e.g. the DuckDB resource's ``get_connection``): the
database is opened only for short reads and writes, never while the judge runs. Judgements are
cached in trace_judgements by judge version and item, under a subject: 'trace' for production
traces, 'eval_output' for model outputs on the test split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager

import polars as pl

from pipeline.engine.core import store
from pipeline.engine.label.alignment import alignment, corrected_pass_rate
from pipeline.engine.label.judge import (
    JudgePrompt, few_shot_examples, judge_items, judge_version, load_prompt, output_items, select_pending,
    with_judge_pass,
)
from pipeline.engine.providers import ChatProvider
from pipeline.engine.providers.openai_chat import OpenAIChatProvider

JUDGE_OFF = "no judge model configured (set FLYWHEEL_JUDGE_MODEL or JudgeResource(model=...))"


@dataclass(frozen=True)
class JudgeSettings:
    """The LLM judge's configuration (``pipeline.resources.JudgeResource`` is built from it): an
    OpenAI or OpenAI-compatible chat model, off while ``model`` is None. The key is read from
    OPENAI_API_KEY unless ``api_key`` is set; OPENAI_BASE_URL or ``base_url`` selects the server."""

    model: str | None = None
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    prompt_version: str = "v1"
    prompt_path: str | None = field(default=None, metadata={
        "doc": "A prompt file to use instead of the one the task ships (its prompts/judge.<version>.md)."})
    few_shot: int = 4
    max_traces_per_run: int = field(default=500, metadata={
        "doc": "Traces judged per run at most (people's labelled traces first): judging costs money."})
    concurrency: int = 4
    min_agreement: float = field(default=0.8, metadata={
        "doc": "Below this agreement with people the judge is flagged and does not gate promotion."})
    max_retries: int = 3
    timeout: float = 60.0

    @property
    def enabled(self) -> bool:
        """Whether a judge model is configured."""
        return bool(self.model)

    def provider(self) -> OpenAIChatProvider:
        """The chat provider that judges."""
        return OpenAIChatProvider(self.model, api_key=self.api_key, base_url=self.base_url,
                                  max_retries=self.max_retries, timeout=self.timeout)


@dataclass(frozen=True)
class JudgeSetup:
    """What the judge sees, the version that names it (its cache key), people's decisions, how
    many calls run at once, and the agreement with people below which it is flagged."""

    provider: ChatProvider
    prompt: JudgePrompt
    few_shot: pl.DataFrame
    version: str
    people: pl.DataFrame
    concurrency: int
    min_agreement: float


def judge_setup(conn, judge: JudgeSettings, task_name: str) -> JudgeSetup:
    """The judge's provider, prompt, few-shot examples from people's critiques, and version."""
    provider = judge.provider()
    prompt = load_prompt(task_name, judge.prompt_version, judge.prompt_path)
    people = store.read(conn, "SELECT * FROM annotations")
    critiqued = store.read(conn, """SELECT trace_id, input::VARCHAR AS input, output FROM raw_traces
        WHERE trace_id IN (SELECT trace_id FROM annotations WHERE critique IS NOT NULL)""")
    shots = few_shot_examples(people, critiqued, judge.few_shot)
    return JudgeSetup(provider, prompt, shots, judge_version(prompt, provider.model, shots), people,
                      judge.concurrency, judge.min_agreement)


def judged(conn, setup: JudgeSetup, subject: str) -> pl.DataFrame:
    """trace_id and outcome of what this judge version has judged (with an outcome) for ``subject``."""
    return store.read(conn, "SELECT trace_id, outcome FROM trace_judgements WHERE judge_version = ? AND subject = ? "
                            "AND outcome IS NOT NULL", [setup.version, subject])


def judge_status(conn, setup: JudgeSetup) -> dict[str, Any]:
    """'on' with the judge's version, model and alignment with people (few-shot traces excluded)."""
    align = alignment(judged(conn, setup, "trace"), setup.people, exclude=set(setup.few_shot["trace_id"]),
                      min_agreement=setup.min_agreement)
    return {"status": "on", "version": setup.version, "model": setup.provider.model, "alignment": align}


def judge_and_store(connect: Callable[[], ContextManager], setup: JudgeSetup, pending: pl.DataFrame,
                    subject: str) -> tuple[pl.DataFrame, dict[str, Any], pl.DataFrame]:
    """Judge ``pending`` (trace_id, input, output) with the database closed, store the verdicts
    under ``subject``, then return them, the judge's status and everything :func:`judged` now."""
    new = judge_items(setup.provider, setup.prompt, setup.few_shot, pending, setup.version, subject=subject,
                      concurrency=setup.concurrency)
    with connect() as conn:
        store.upsert(conn, "trace_judgements", new, ["judge_version", "trace_id"])
        return new, judge_status(conn, setup), judged(conn, setup, subject)


def judge_traces(connect: Callable[[], ContextManager], judge: JudgeSettings, task_name: str,
                 log: Callable[[str], None]) -> tuple[pl.DataFrame, dict[str, Any], pl.DataFrame]:
    """Judge production traces not judged by this judge version yet, people's labelled traces
    first, at most ``judge.max_traces_per_run``: what :func:`judge_and_store` returns."""
    with connect() as conn:
        setup = judge_setup(conn, judge, task_name)
        traces = store.read(conn, "SELECT trace_id, input::VARCHAR AS input, output FROM raw_traces "
                                  "WHERE output IS NOT NULL AND output <> ''")
        done = judged(conn, setup, "trace")["trace_id"]
    pending = select_pending(traces, done, setup.people["trace_id"], setup.few_shot["trace_id"],
                             judge.max_traces_per_run)
    log(f"judge {setup.version}: judging {pending.height} traces")
    return judge_and_store(connect, setup, pending, "trace")


def pass_rate(outcomes: pl.DataFrame, align: dict[str, Any]) -> dict[str, Any]:
    """The share of ``outcomes`` (trace_id, outcome) judged good, corrected for the judge's errors."""
    counts = dict(outcomes.group_by("outcome").len().iter_rows())
    return corrected_pass_rate(counts.get("good", 0), sum(counts.values()), align)


def judge_outputs(connect: Callable[[], ContextManager], judge: JudgeSettings, task_name: str,
                  results: dict[str, pl.DataFrame], test: pl.DataFrame,
                  log: Callable[[str], None]) -> tuple[dict[str, Any], dict[str, pl.DataFrame]]:
    """The judge's status, and each model's ``results`` with a judge_pass column (null where not judged).

    Each distinct (input, output) is judged once per judge version, whichever model wrote it,
    and cached (subject 'eval_output'), so a re-run pays nothing. With the judge off, the status
    says why and ``results`` are returned as they are.
    """
    if not judge.enabled:
        return {"status": "off", "reason": JUDGE_OFF}, results
    items = {m: output_items(r, test) for m, r in results.items()}
    every = pl.concat([i.select("trace_id", "input", "output") for i in items.values()]).unique("trace_id")
    with connect() as conn:
        setup = judge_setup(conn, judge, task_name)
        done = judged(conn, setup, "eval_output")["trace_id"]
    pending = select_pending(every, done)
    log(f"judge {setup.version}: judging {pending.height} model outputs ({every.height - pending.height} cached)")
    _, status, outcomes = judge_and_store(connect, setup, pending, "eval_output")
    return status, {m: with_judge_pass(r, items[m], outcomes) for m, r in results.items()}
