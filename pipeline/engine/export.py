"""Training files: examples as OpenAI chat-format JSONL, checked against the format's rules."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.engine.tasks import Task

ROLES = ("system", "user", "assistant")
MIN_EXAMPLES = 10


def chat_records(examples: pl.DataFrame, task: Task) -> list[dict[str, Any]]:
    """One {"messages": [...]} record per example: the task's prompt, then the output."""
    return [{"messages": task.prompt(json.loads(i)) + [{"role": "assistant", "content": o}]}
            for i, o in examples.select("input", "output").iter_rows()]


def format_problems(records: list[dict[str, Any]], min_examples: int = MIN_EXAMPLES) -> list[str]:
    """Why ``records`` would be refused as a fine-tuning file (empty when they are fine).

    Rules: each record has messages with a known role and non-empty string content, at least one
    assistant message, ``weight`` only on assistant messages and only 0 or 1; at least
    ``min_examples`` records.
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


def approx_tokens(records: list[dict[str, Any]]) -> int:
    """Rough token count (characters / 4): an estimate, not a tokenizer's count."""
    return sum(len(m["content"]) for r in records for m in r["messages"]) // 4


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
