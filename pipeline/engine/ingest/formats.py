"""Record formats a trace source may hold, mapped onto the project's own trace format.

- ``trace``: the fields of raw_traces (``task``, ``ts``, ``input``, ``output``, ...).
- ``openai_chat``: an OpenAI chat-format log line, ``{"messages": [...]}``; the last assistant
  message is the output (a failed call logged with its ``error`` may have none), the task's input is recovered from the messages before it, written by
  the task's own prompt or by a production prompt layout (:func:`task_input_from_messages`; a
  record whose input cannot be recovered is rejected, saying why); ``usage`` gives the token counts.
- ``langsmith_run``: a run as the langsmith client returns it (``id``, ``run_type``, ``inputs``,
  ``outputs``, ``start_time``, ``end_time``, ``extra``, ``feedback_stats``, ...).

The format is detected per record, so one file may mix them. Each adapter returns a record in the
project's format (validated afterwards by :func:`pipeline.engine.ingest.records.normalise_record`)
or raises RecordError.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Callable

from pipeline.engine.ingest.layouts import PromptLayout, Recovery, live_layouts, recover
from pipeline.engine.ingest.records import RecordError
from pipeline.engine.tasks import Task

_LANGSMITH_KEYS = {"run_type", "inputs"}


def detect(record: Any) -> str:
    """``trace``, ``openai_chat`` or ``langsmith_run`` for a decoded JSON record."""
    if isinstance(record, dict):
        if "messages" in record and "input" not in record:
            return "openai_chat"
        if _LANGSMITH_KEYS <= record.keys() and "input" not in record:
            return "langsmith_run"
    return "trace"


def to_trace(record: Any, task: Task) -> Any:
    """``record`` in the project's own format, whatever format it came in."""
    kind = detect(record)
    if kind == "openai_chat":
        return from_openai_chat(record, task)
    if kind == "langsmith_run":
        return from_langsmith_run(record, task)
    return record


def task_input_from_messages(task: Task, messages: list[dict[str, Any]]) -> Any:
    """The task's input recovered from the chat messages that preceded the answer.

    Tried in order: the task's ``input_from_messages(messages) -> input | None`` (the inverse of
    its ``prompt``), then the production prompt layouts configured on the trace source, then the
    task's built-in ones (:mod:`pipeline.engine.ingest.layouts`). Raises RecordError when the task
    has neither an inverse nor layouts, or when nothing recovers an input, saying why (the layouts
    tried by name, quoting the user message's first lines).
    """
    inverse: Callable | None = getattr(task, "input_from_messages", None)
    layouts = live_layouts(task)
    if inverse is None and not layouts:
        raise RecordError(f"task {task.name!r} cannot recover its input from chat messages: "
                          "it has no input_from_messages")
    recovered = inverse(messages) if inverse is not None else None
    if recovered is not None:
        return recovered
    user_at = max((i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "user"),
                  default=None)
    before = messages[:user_at] if user_at is not None else []
    system = next((_content(m) for m in reversed(before)
                   if isinstance(m, dict) and m.get("role") in _SYSTEM_ROLES), None)
    recovery = recover(task, layouts, _content(messages[user_at]) if user_at is not None else None, system)
    if recovery.input is not None:
        return recovery.input
    raise RecordError(f"task {task.name!r} cannot recover its input from chat messages: "
                      f"{_unmatched(messages, layouts, recovery, own_prompt=inverse is not None)}")


#: How much of a logged user message a rejection reason quotes: characters per line, and lines.
QUOTED_CHARS = 80
QUOTED_LINES = 2
_SYSTEM_ROLES = ("system", "developer")


def _unmatched(messages: list[dict[str, Any]], layouts: tuple[PromptLayout, ...], recovery: Recovery,
               own_prompt: bool) -> str:
    """What a rejection says of messages nothing recovered an input from."""
    users = [_content(m) for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        return "there is no user message"
    if not (users[-1] or "").strip():
        return "the last user message has no text content"
    lines = [_cut(line) for line in users[-1].strip().splitlines() if line.strip()]
    if not layouts:
        return f"the user message does not match its prompt (first line: {lines[0]!r})"
    if recovery.invalid:
        name, problem = recovery.invalid
        return (f"the user message matches the production prompt layout {name!r}, "
                f"but the input it gives is invalid: {problem}")
    names = ", ".join(layout.name for layout in layouts)
    own = " nor the task's own prompt" if own_prompt else ""
    refused = "".join(f"; {why}" for why in recovery.refused)
    return (f"the user message matches none of the {len(layouts)} production prompt layouts ({names}){own}"
            f"{refused}; first lines: {chr(10).join(lines[:QUOTED_LINES])!r}")


def _cut(line: str) -> str:
    return line if len(line) <= QUOTED_CHARS else line[: QUOTED_CHARS - 3] + "..."


def _content(message: Any) -> str | None:
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list):  # content parts: keep the text ones
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return content if isinstance(content, str) else None


def from_openai_chat(record: dict[str, Any], task: Task) -> dict[str, Any]:
    """An OpenAI chat-format log record as a trace record."""
    messages = record.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise RecordError("messages must be a list of message objects")
    answers = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
    if answers:
        last = answers[-1]
        output = _content(messages[last])
        if output is None:
            raise RecordError("the last assistant message has no text content")
    elif record.get("error"):  # a failed call: the request without an answer
        last, output = len(messages), None
    else:
        raise RecordError("chat record has no assistant message to use as the output (nor an error)")
    usage = record.get("usage") if isinstance(record.get("usage"), dict) else {}
    metadata = record.get("metadata") if isinstance(record.get("metadata"), dict) else {}
    extra = {k: record[k] for k in ("tools", "functions", "weight") if k in record}
    return {
        "trace_id": record.get("trace_id") or record.get("id"),
        "ts": _timestamp(record.get("ts", record.get("created"))),
        "input": task_input_from_messages(task, messages[:last]),
        "output": output, "model": record.get("model"), "latency_ms": record.get("latency_ms"),
        "prompt_tokens": usage.get("prompt_tokens", record.get("prompt_tokens")),
        "completion_tokens": usage.get("completion_tokens", record.get("completion_tokens")),
        "error": record.get("error"), "metadata": {**metadata, **extra, "format": "openai_chat"},
    }


def from_langsmith_run(run: dict[str, Any], task: Task) -> dict[str, Any]:
    """A LangSmith run (as the langsmith client returns it, or its export) as a trace record."""
    run_id = run.get("id")
    if not isinstance(run_id, str) or not run_id:
        raise RecordError("LangSmith run has no id")
    inputs = run.get("inputs") if isinstance(run.get("inputs"), dict) else {}
    messages = _langsmith_messages(inputs)
    task_input = task_input_from_messages(task, messages) if messages is not None else inputs
    start, end = _datetime(run.get("start_time")), _datetime(run.get("end_time"))
    extra = run.get("extra") if isinstance(run.get("extra"), dict) else {}
    run_metadata = extra.get("metadata") if isinstance(extra.get("metadata"), dict) else {}
    params = extra.get("invocation_params") if isinstance(extra.get("invocation_params"), dict) else {}
    error = run.get("error")
    metadata = {
        **run_metadata, "format": "langsmith_run", "run_id": run_id, "run_type": run.get("run_type"),
        "name": run.get("name"), "tags": run.get("tags") or [], "session_id": _str(run.get("session_id")),
        "langsmith_trace_id": _str(run.get("trace_id")),
        "feedback": run.get("feedback_stats") or {},
    }
    return {
        "trace_id": f"ls_{run_id}",
        "ts": start.isoformat() if start else None,
        "input": task_input,
        "output": _langsmith_output(run.get("outputs")),
        "model": run_metadata.get("ls_model_name") or params.get("model") or params.get("model_name"),
        "latency_ms": (end - start).total_seconds() * 1000 if start and end and end >= start else None,
        "prompt_tokens": run.get("prompt_tokens"), "completion_tokens": run.get("completion_tokens"),
        "error": error if error else None,
        "metadata": {k: v for k, v in metadata.items() if v is not None},
    }


def _langsmith_messages(inputs: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Chat messages of an LLM run's inputs (``messages`` as dicts, possibly one batch deep)."""
    messages = inputs.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[0], list):
        messages = messages[0]
    if isinstance(messages, list) and all(isinstance(m, dict) for m in messages):
        return [_message(m) for m in messages]
    return None


_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


def _message(message: dict[str, Any]) -> dict[str, Any]:
    """A chat message as {role, content}: OpenAI style, or LangChain's ({type, data} or the
    serialised {kwargs: {type, content}})."""
    body = message.get("data") or message.get("kwargs") or message
    role = message.get("role") or body.get("role") or (body.get("type") if body is not message else None) \
        or message.get("type")
    return {"role": _ROLES.get(role, role), "content": _content(message) or _content(body)}


def _langsmith_output(outputs: Any) -> str | None:
    """The answer text of a run's outputs: ``output``/``answer``/``text``, a chat completion's
    first choice, or a LangChain generation; other shapes are kept as JSON text."""
    if outputs is None or isinstance(outputs, str):
        return outputs
    if not isinstance(outputs, dict) or not outputs:
        return json.dumps(outputs, ensure_ascii=False) if outputs else None
    for key in ("output", "answer", "text", "content"):
        if isinstance(outputs.get(key), str):
            return outputs[key]
    choices = outputs.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        text = _content(choices[0].get("message") or {})
        if text is not None:
            return text
    generations = outputs.get("generations")
    if isinstance(generations, list) and generations:
        first = generations[0][0] if isinstance(generations[0], list) and generations[0] else generations[0]
        if isinstance(first, dict) and isinstance(first.get("text"), str):
            return first["text"]
    return json.dumps(outputs, ensure_ascii=False)


def _datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise RecordError(f"timestamp {value!r} is not ISO-8601") from exc
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return None


def _timestamp(value: Any) -> Any:
    """Epoch seconds (OpenAI ``created``) as ISO-8601; other values unchanged for validation."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, timezone.utc).isoformat()
        except (OverflowError, OSError, ValueError) as exc:
            raise RecordError(f"timestamp {value!r} (seconds since 1970) falls outside the years 1-9999") from exc
    return value


def _str(value: Any) -> str | None:
    return None if value is None else str(value)
