"""LLM-as-judge: a critique and a good/bad outcome per output, as structured output.

The judge prompt is a versioned file the task ships (``prompts/judge.<version>.md`` next to it);
few-shot examples are people's critiques from annotations. A judgement is cached by
(judge version, item): the judge version hashes the prompt text, the model and the few-shot
examples, so a re-run pays nothing and any change to what the judge sees re-judges.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from string import Template
from typing import Any

import polars as pl

from pipeline.engine.label.agreement import decided_labels
from pipeline.engine.providers import ChatProvider, ProviderAuthError, ProviderError
from pipeline.engine.providers.openai_chat import json_schema_format
from pipeline.engine.tasks import load_task, task_file

OUTCOMES = ("good", "bad")
VERDICT_SCHEMA = {
    "type": "object",
    "properties": {"critique": {"type": "string"}, "outcome": {"type": "string", "enum": list(OUTCOMES)}},
    "required": ["critique", "outcome"],
    "additionalProperties": False,
}
JUDGEMENT_SCHEMA = {
    "judge_version": pl.String, "trace_id": pl.String, "subject": pl.String, "outcome": pl.String,
    "critique": pl.String, "error": pl.String, "judge_model": pl.String, "prompt_tokens": pl.Int64,
    "completion_tokens": pl.Int64, "latency_ms": pl.Float64, "judged_at": pl.Datetime("us", "UTC"),
}


class JudgeOutputError(ValueError):
    """The judge's reply is not a verdict in the expected shape."""


@dataclass(frozen=True)
class JudgePrompt:
    """A judge prompt template (``$examples`` is replaced by the few-shot block)."""

    name: str
    template: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.template.encode()).hexdigest()[:8]


def load_prompt(task_name: str, version: str = "v1", path: str | None = None) -> JudgePrompt:
    """The judge prompt of a task: ``path`` when given, else the task's ``prompts/judge.<version>.md``.

    The prompt is named ``<task>.<version>`` after the task's own name.
    """
    if path is not None:
        return JudgePrompt(Path(path).stem, Path(path).read_text(encoding="utf-8"))
    try:
        name = f"{load_task(task_name).name}.{version}"
        resource = task_file(task_name, f"judge.{version}.md")
    except ValueError as exc:
        raise ValueError(f"no judge prompt {task_name}.{version}: {exc}; write one or set a prompt path") from None
    return JudgePrompt(name, resource.read_text(encoding="utf-8"))


def item_id(input_json: str, output: str | None) -> str:
    """Content id of an (input, output) pair: model outputs judged in evaluations are cached by it."""
    return "out:" + hashlib.sha256(f"{input_json}\x1f{output}".encode()).hexdigest()[:20]


def few_shot_examples(annotations: pl.DataFrame, traces: pl.DataFrame, k: int) -> pl.DataFrame:
    """Up to ``k`` people's decided labels (:func:`pipeline.engine.label.agreement.decided_labels`:
    no unadjudicated disagreement) with a critique, half good and half bad where possible.

    Chosen in a stable order (hash of the trace id), so the set changes only when one of the
    chosen annotations does. Columns: trace_id, input, output, label, critique.
    """
    schema = {"trace_id": pl.String, "input": pl.String, "output": pl.String, "label": pl.String, "critique": pl.String}
    if k <= 0 or annotations.is_empty():
        return pl.DataFrame(schema=schema)
    decided = (decided_labels(annotations)
               .filter(pl.col("critique").is_not_null() & (pl.col("critique").str.strip_chars() != "")
                       & pl.col("label").is_in(OUTCOMES))
               .join(traces.select("trace_id", "input", "output").filter(pl.col("output").is_not_null()),
                     on="trace_id")
               .with_columns(order=pl.col("trace_id").hash(seed=7))
               .sort("order"))
    good = decided.filter(pl.col("label") == "good")
    bad = decided.filter(pl.col("label") == "bad")
    n_good = min(good.height, max(k // 2, k - bad.height))
    picked = pl.concat([good.head(n_good), bad.head(k - n_good)])
    return picked.sort("order").select(list(schema)).cast(schema)


def judge_version(prompt: JudgePrompt, model: str, few_shot: pl.DataFrame) -> str:
    """``<prompt name>:<prompt hash>:<model>:<few-shot hash>``."""
    shots = hashlib.sha256(json.dumps(few_shot.select("trace_id", "label", "critique").rows()).encode()).hexdigest()[:8]
    return f"{prompt.name}:{prompt.digest}:{model}:{shots}"


def _shown(input_json: str, output: str | None) -> str:
    return f"Input:\n{input_json}\n\nOutput:\n{output}"


def messages(prompt: JudgePrompt, few_shot: pl.DataFrame, input_json: str, output: str | None) -> list[dict[str, str]]:
    """System (prompt with the few-shot block) and user (the item) messages."""
    block = ""
    if few_shot.height:
        shots = [f"### Example {n}\n\n{_shown(row['input'], row['output'])}\n\nVerdict: "
                 + json.dumps({"critique": row["critique"], "outcome": row["label"]})
                 for n, row in enumerate(few_shot.iter_rows(named=True), 1)]
        block = "Examples judged by people on this team:\n\n" + "\n\n".join(shots)
    system = Template(prompt.template).safe_substitute(examples=block).strip()
    return [{"role": "system", "content": system}, {"role": "user", "content": _shown(input_json, output)}]


def parse_verdict(text: str) -> tuple[str, str]:
    """(outcome, critique) from the judge's reply; raises JudgeOutputError with the reason."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise JudgeOutputError(f"judge reply is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise JudgeOutputError("judge reply is not a JSON object")
    outcome, critique = value.get("outcome"), value.get("critique")
    if outcome not in OUTCOMES:
        raise JudgeOutputError(f"judge outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
    if not isinstance(critique, str):
        raise JudgeOutputError("judge critique is missing or not text")
    return outcome, critique


def judge_items(provider: ChatProvider, prompt: JudgePrompt, few_shot: pl.DataFrame, items: pl.DataFrame,
                version: str, subject: str = "trace", concurrency: int = 4,
                now: datetime | None = None) -> pl.DataFrame:
    """One judgement row per item (columns trace_id, input as JSON text, output).

    Calls run ``concurrency`` at a time. A provider error or a malformed verdict gives a row
    with outcome null and the reason in ``error`` (not cached: the next run tries again); a
    rejected API key stops the whole batch, since every call would fail the same way.
    """
    now = now or datetime.now(timezone.utc)
    response_format = json_schema_format("judge_verdict", VERDICT_SCHEMA)

    def one(row: tuple[str, str, str | None]) -> dict[str, Any]:
        trace_id, input_json, output = row
        base = {"judge_version": version, "trace_id": trace_id, "subject": subject, "judge_model": provider.model,
                "judged_at": now, "outcome": None, "critique": None, "error": None}
        try:
            reply = provider.complete(messages(prompt, few_shot, input_json, output), response_format=response_format)
        except ProviderAuthError:
            raise
        except ProviderError as exc:
            return {**base, "error": str(exc)}
        usage = {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
                 "latency_ms": reply.latency_ms}
        try:
            outcome, critique = parse_verdict(reply.text)
        except JudgeOutputError as exc:
            return {**base, **usage, "error": str(exc)}
        return {**base, **usage, "outcome": outcome, "critique": critique}

    rows = items.select("trace_id", "input", "output").rows()
    with ThreadPoolExecutor(max(1, concurrency)) as pool:
        judged = list(pool.map(one, rows))
    return pl.DataFrame(judged, schema=JUDGEMENT_SCHEMA) if judged else pl.DataFrame(schema=JUDGEMENT_SCHEMA)


def select_pending(items: pl.DataFrame, judged: pl.Series, first: pl.Series | None = None,
                   exclude: pl.Series | None = None, limit: int | None = None) -> pl.DataFrame:
    """Items (by trace_id) not judged yet and not few-shot examples (``exclude``), those in
    ``first`` (people's labelled traces, needed to measure the judge) ahead of the rest, at most
    ``limit``."""
    empty = pl.Series([], dtype=pl.String)
    first, exclude = (empty if first is None else first), (empty if exclude is None else exclude)
    pending = (items.filter(~pl.col("trace_id").is_in(judged.implode()) & ~pl.col("trace_id").is_in(exclude.implode()))
               .with_columns(_first=~pl.col("trace_id").is_in(first.implode()), _order=pl.col("trace_id").hash(seed=11))
               .sort("_first", "_order").drop("_first", "_order"))
    return pending if limit is None else pending.head(limit)


def output_items(results: pl.DataFrame, test: pl.DataFrame) -> pl.DataFrame:
    """A model's eval outputs as judge items: example_id, trace_id (the content id of input and
    output, shared by every model that wrote the same output), input, output."""
    return (results.select("example_id", "output").join(test.select("example_id", "input"), on="example_id")
            .with_columns(trace_id=pl.struct("input", "output").map_elements(
                lambda row: item_id(row["input"], row["output"]), return_dtype=pl.String)))


def with_judge_pass(results: pl.DataFrame, items: pl.DataFrame, outcomes: pl.DataFrame) -> pl.DataFrame:
    """``results`` with a boolean judge_pass column from ``outcomes`` (trace_id, outcome); null
    where the item was not judged."""
    passes = outcomes.select("trace_id", judge_pass=pl.col("outcome") == "good").unique("trace_id", keep="last")
    return (results.join(items.select("example_id", "trace_id"), on="example_id", how="left")
            .join(passes, on="trace_id", how="left").drop("trace_id"))


def judge_failures(judgements: pl.DataFrame) -> pl.DataFrame:
    """labelled_failures rows for traces the judge called bad: failure_mode 'judge', the critique as detail."""
    return (judgements.filter((pl.col("subject") == "trace") & (pl.col("outcome") == "bad"))
            .sort("judged_at").group_by("trace_id", maintain_order=True).last()
            .select("trace_id", pl.lit("judge").alias("failure_mode"), pl.lit("judge").alias("label_source"),
                    pl.col("critique").alias("detail"), pl.lit(None, pl.String).alias("correction")))
