"""How the demo's production logged its traces: two successive prompts, two loggers.

The fictional team's assistant never used the task's training prompt. Its first prompt
(``observa_v1``: the dataset, ``NLQ: "..."`` and the columns as a Python list) is used by the web
app until its release 3.9.0 on 2026-10-27 and by the Slack bot throughout, which log OpenAI
chat-format lines (one JSON object with ``messages``, ``usage``, ``created``) to
``chat_logs.jsonl``. From 3.9.0 the web app sends its second prompt (``observa_v2``: Honeycomb's Query Assistant layout, columns
joined by "," then the query spec with examples, then ``NLQ:``) and traces through LangSmith; its
runs were exported to ``langsmith_runs.jsonl`` in the shape the langsmith client returns.

:data:`LAYOUTS` are those two prompts as ingestion's layout templates (written to
``prompt_layouts.yaml``, which the demo's trace source is configured with), so every logged
input is recovered; the generator's tests check that it is, exactly.
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

V1, V2 = "observa_v1", "observa_v2"
#: The app releases that send the second prompt (and trace through LangSmith).
V2_APPS = ("web-3.9.0", "web-3.9.1")

SYSTEM_V1 = ("You are Observa's query assistant. Turn the user's question about their dataset into "
             "one Observa query, as JSON, and answer with the JSON only.")
SYSTEM_V2 = ("You are Observa's Query Assistant. You write queries in Observa's query language for "
             "the user's natural-language question, using only the dataset's columns.")
QUERY_SPEC = """{
  "calculations": [{"op": "P95", "column": "duration_ms"}],
  "filters": [{"column": "http.status_code", "op": ">=", "value": 500}],
  "filter_combination": "AND",
  "breakdowns": ["service.name"],
  "orders": [{"op": "P95", "column": "duration_ms", "order": "descending"}],
  "havings": [{"calculate_op": "P95", "column": "duration_ms", "op": ">", "value": 1000}],
  "time_range": 7200,
  "start_time": 1700000000,
  "end_time": 1700007200,
  "granularity": 60,
  "limit": 10
}
Every key is optional. COUNT and CONCURRENCY take no column. exists and does-not-exist take no
value; in and not-in take a list. HEATMAP cannot be ordered by or used in a having.

TIPS:
- Use only the COLUMNS listed above, spelled exactly.
- time_range is in seconds: "last day" is 86400.

EXAMPLES:
NLQ:slowest endpoints
{"breakdowns": ["http.route"], "calculations": [{"op": "P99", "column": "duration_ms"}], "orders": [{"op": "P99", "column": "duration_ms", "order": "descending"}]}
NLQ:errors by service in the last hour
{"breakdowns": ["service.name"], "calculations": [{"op": "COUNT"}], "filters": [{"column": "error", "op": "=", "value": true}], "time_range": 3600}"""

#: The two production prompts as ingestion's layout templates (pipeline.engine.ingest.layouts).
LAYOUTS: tuple[dict[str, str], ...] = (
    {"name": V1, "user": 'Dataset: {dataset}\nNLQ: "{question}"\nColumns: {columns:pylist}'},
    {"name": V2, "user": "DATASET:{dataset}\nCOLUMNS:{columns:csv}\n\nQUERY SPEC:\n{...}\nNLQ:{question}\nEXISTING QUERY:"},
)


def prompt_version(app_version: str) -> str:
    """Which prompt a request from ``app_version`` was sent with."""
    return V2 if app_version in V2_APPS else V1


def messages(version: str, dataset: str, question: str, listed: list[str]) -> list[dict[str, str]]:
    """The system and user messages ``version`` sends for a question over the ``listed`` names."""
    if version == V1:
        return [{"role": "system", "content": SYSTEM_V1},
                {"role": "user", "content": f'Dataset: {dataset}\nNLQ: "{question}"\nColumns: {listed!r}'}]
    user = (f"DATASET:{dataset}\nCOLUMNS:{','.join(listed)}\n\nQUERY SPEC:\n{QUERY_SPEC}\n"
            f"NLQ:{question}\nEXISTING QUERY:")
    return [{"role": "system", "content": SYSTEM_V2}, {"role": "user", "content": user}]


def chat_log(record: dict[str, Any], listed: list[str]) -> dict[str, Any]:
    """The OpenAI chat-format line the app logs for one trace ``record`` (the project's format).
    A failed call has no assistant message, only its error."""
    input = record["input"]
    chat = messages(V1, input["dataset"], input["question"], listed)
    if not record["error"]:
        chat.append({"role": "assistant", "content": record["output"]})
    ts = datetime.strptime(record["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    line = {"trace_id": record["trace_id"], "created": int(ts.timestamp()), "model": record["model"],
            "messages": chat,
            "usage": {"prompt_tokens": record["prompt_tokens"], "completion_tokens": record["completion_tokens"],
                      "total_tokens": record["prompt_tokens"] + record["completion_tokens"]},
            "latency_ms": record["latency_ms"], "metadata": record["metadata"]}
    if record["error"]:
        line["error"] = record["error"]
    return line


def run_id(rng: random.Random) -> str:
    """A random (version 4) UUID from ``rng``."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _lc_message(kind: str, content: str) -> dict[str, Any]:
    name = {"system": "SystemMessage", "human": "HumanMessage", "ai": "AIMessage"}[kind]
    return {"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", name],
            "kwargs": {"content": content, "type": kind}}


def _naive(ts: datetime) -> str:
    """A timestamp as LangSmith returns it: UTC without an offset, microseconds."""
    return ts.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds")


def langsmith_run(record: dict[str, Any], listed: list[str], run: str, project_id: str) -> dict[str, Any]:
    """The LangSmith LLM run (as ``Run.model_dump(mode="json")`` exports it) of one trace
    ``record`` sent with the second prompt; ``run`` is its id (the trace id is ``ls_<run>``)."""
    input = record["input"]
    system, user = messages(V2, input["dataset"], input["question"], listed)
    start = datetime.strptime(record["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    end = start + timedelta(milliseconds=record["latency_ms"])
    usage = {"prompt_tokens": record["prompt_tokens"], "completion_tokens": record["completion_tokens"],
             "total_tokens": record["prompt_tokens"] + record["completion_tokens"]}
    outputs = None if record["error"] else {
        "generations": [[{"text": record["output"], "generation_info": {"finish_reason": "stop"},
                          "type": "ChatGeneration", "message": _lc_message("ai", record["output"])}]],
        "llm_output": {"token_usage": usage, "model_name": record["model"]}, "run": None, "type": "LLMResult"}
    model = record["model"]
    return {
        "id": run, "name": "ChatOpenAI", "run_type": "llm", "start_time": _naive(start), "end_time": _naive(end),
        "extra": {"invocation_params": {"model": model, "temperature": 0.0, "_type": "openai-chat", "stream": False},
                  "metadata": {**record["metadata"], "ls_provider": "openai", "ls_model_name": model,
                               "ls_model_type": "chat", "ls_temperature": 0.0}},
        "error": record["error"], "serialized": None,
        "events": [{"name": "start", "time": _naive(start)}, {"name": "end", "time": _naive(end)}],
        "inputs": {"messages": [[_lc_message("system", system["content"]), _lc_message("human", user["content"])]]},
        "outputs": outputs, "reference_example_id": None, "parent_run_id": None, "tags": ["production", "web"],
        "trace_id": run, "dotted_order": f"{start:%Y%m%dT%H%M%S%fZ}{run}", "session_id": project_id,
        "status": "error" if record["error"] else "success", **usage,
        "first_token_time": None, "feedback_stats": {},
    }
