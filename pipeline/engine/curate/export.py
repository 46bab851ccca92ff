"""Training files: examples as OpenAI chat-format JSONL, checked against the format's rules;
examples over the backend's token limit are dropped (counted by reason), never refused."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import polars as pl

from pipeline.engine.core.scrub import DEFAULT_PATTERNS, Pattern, scrub_json_text, scrub_text
from pipeline.engine.tasks import Task

ROLES = ("system", "user", "assistant")
MIN_EXAMPLES = 10
#: OpenAI's per-example token limit for current fine-tunable models (gpt-4o-mini, gpt-4.1 family).
MAX_TOKENS_PER_EXAMPLE = 65_536
#: Tokens a chat message costs beyond its content (role and separators), as in OpenAI's cookbook.
TOKENS_PER_MESSAGE = 3


@dataclass(frozen=True)
class TokenCounter:
    """Counts the tokens of a text; ``method`` says how (a tokenizer, or an estimate)."""

    count: Callable[[str], int]
    method: str

    def example_tokens(self, record: dict[str, Any]) -> int:
        """Tokens of one chat record: contents plus per-message overhead."""
        return sum(self.count(m["content"]) + TOKENS_PER_MESSAGE for m in record["messages"])


def token_counter(encoding: str = "o200k_base") -> TokenCounter:
    """tiktoken's ``encoding`` when it is installed and its encoding file is available (it
    downloads it on first use, so offline it usually is not), else characters / 4, labelled estimate."""
    try:
        import tiktoken

        enc = tiktoken.get_encoding(encoding)
        return TokenCounter(lambda text: len(enc.encode(text, disallowed_special=())), f"tiktoken {encoding}")
    except Exception:  # not installed, or the encoding cannot be downloaded here
        return TokenCounter(lambda text: -(-len(text) // 4), "estimate: characters / 4 (tiktoken encoding unavailable)")


def training_cost(tokens: int, epochs: int, price_per_1m_tokens: float) -> float:
    """Estimated cost of training on ``tokens`` tokens for ``epochs`` epochs, in the price's currency."""
    return round(tokens * epochs * price_per_1m_tokens / 1_000_000, 4)


def chat_records(examples: pl.DataFrame, task: Task) -> list[dict[str, Any]]:
    """One {"messages": [...]} record per example: the task's prompt, then the output, with the
    example's ``weight`` (0/1) on the assistant message when the frame has a weight column."""
    weights = examples["weight"].to_list() if "weight" in examples.columns else [None] * examples.height
    return [{"messages": task.prompt(json.loads(i)) + [
                {"role": "assistant", "content": o, **({"weight": w} if w is not None else {})}]}
            for (i, o), w in zip(examples.select("input", "output").iter_rows(), weights)]


def scrub_records(records: list[dict[str, Any]], patterns: Iterable[Pattern] = DEFAULT_PATTERNS
                  ) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Copies of chat records with PII scrubbed from user and assistant messages (JSON outputs
    stay valid JSON), and the count of replacements per pattern name. The system prompt is ours."""
    counts: dict[str, int] = {}
    out = []
    for record in records:
        messages = []
        for message in record["messages"]:
            if message["role"] != "system":
                scrubbed = _scrub_content(message["content"], patterns)
                for name, n in scrubbed.counts.items():
                    counts[name] = counts.get(name, 0) + n
                message = {**message, "content": scrubbed.text}
            messages.append(message)
        out.append({**record, "messages": messages})
    return out, counts


def _scrub_content(content: str, patterns: Iterable[Pattern]):
    try:
        return scrub_json_text(content, patterns)
    except json.JSONDecodeError:
        return scrub_text(content, patterns)


def within_token_limit(records: list[dict[str, Any]], counter: TokenCounter,
                       max_tokens_per_example: int = MAX_TOKENS_PER_EXAMPLE
                       ) -> tuple[list[dict[str, Any]], list[int], dict[str, int]]:
    """The records a backend can train on (at most ``max_tokens_per_example`` tokens each, as
    ``counter`` counts them), their token counts, and how many were dropped, by reason."""
    kept, tokens, dropped = [], [], {}
    for record in records:
        n = counter.example_tokens(record)
        if n > max_tokens_per_example:
            reason = f"over {max_tokens_per_example} tokens"
            dropped[reason] = dropped.get(reason, 0) + 1
        else:
            kept.append(record)
            tokens.append(n)
    return kept, tokens, dropped


def format_problems(records: list[dict[str, Any]], min_examples: int = MIN_EXAMPLES) -> list[str]:
    """Why ``records`` would be refused as a fine-tuning file (empty when they are fine).

    Rules: each record has messages with a known role and non-empty string content, at least one
    assistant message, ``weight`` only on assistant messages and only 0 or 1; at least
    ``min_examples`` records. (Examples over the token limit are dropped before, by
    :func:`within_token_limit`.)
    """
    problems = []
    if len(records) < min_examples:
        problems.append(f"{len(records)} examples; at least {min_examples} are required")
    for n, record in enumerate(records, start=1):
        messages = record.get("messages") if isinstance(record, dict) else None
        if not isinstance(messages, list) or not messages:
            problems.append(f"example {n}: no messages")
            continue
        for m, message in enumerate(messages, start=1):
            role = message.get("role") if isinstance(message, dict) else None
            if role not in ROLES:
                problems.append(f"example {n} message {m}: unknown role {role!r}")
            content = message.get("content") if isinstance(message, dict) else None
            if not isinstance(content, str) or not content.strip():
                problems.append(f"example {n} message {m}: empty content")
            if isinstance(message, dict) and "weight" in message and (
                    role != "assistant" or isinstance(message["weight"], bool) or message["weight"] not in (0, 1)):
                problems.append(f"example {n} message {m}: weight is allowed only as 0/1 on assistant messages")
        if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages):
            problems.append(f"example {n}: no assistant message")
    return problems


def write_jsonl(records: list[dict[str, Any]], path: Path) -> Path:
    """Write records as JSONL atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


#: The fewest records each split's file may hold.
SPLIT_MINIMUMS = {"train": MIN_EXAMPLES, "validation": 1, "test": 1}


@dataclass(frozen=True)
class SplitFiles:
    """The chat records of each split's file (PII scrubbed), their format problems (prefixed with
    the split), tokens per split, PII replacements per pattern name, and the examples dropped
    (over the token limit), by reason."""

    records: dict[str, list[dict[str, Any]]]
    problems: list[str]
    tokens: dict[str, int]
    scrubbed: dict[str, int]
    dropped: dict[str, int]

    @property
    def counts(self) -> dict[str, int]:
        """Records per split."""
        return {split: len(records) for split, records in self.records.items()}


def split_files(examples: pl.DataFrame, task: Task, counter: TokenCounter,
                max_tokens_per_example: int = MAX_TOKENS_PER_EXAMPLE) -> SplitFiles:
    """The train, validation and test files of ``examples`` (with a split column), without the
    examples over ``max_tokens_per_example`` tokens (:func:`within_token_limit`), checked against
    :func:`format_problems` with each split's minimum (:data:`SPLIT_MINIMUMS`). Files leave the
    machine (a hosted fine-tuning API), so PII is scrubbed from every copy before it is counted."""
    records, problems, tokens, scrubbed, dropped = {}, [], {}, {}, {}
    for split, min_examples in SPLIT_MINIMUMS.items():
        scrubbed_records, found = scrub_records(chat_records(examples.filter(pl.col("split") == split), task))
        for name, n in found.items():
            scrubbed[name] = scrubbed.get(name, 0) + n
        records[split], counts, over = within_token_limit(scrubbed_records, counter, max_tokens_per_example)
        for reason, n in over.items():
            dropped[reason] = dropped.get(reason, 0) + n
        problems += [f"{split}: {p}" for p in format_problems(records[split], min_examples)]
        tokens[split] = sum(counts)
    return SplitFiles(records, problems, tokens, scrubbed, dropped)
