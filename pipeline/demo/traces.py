"""Production-like nl2query traces from the simulated assistant, as production logged them
(:mod:`pipeline.demo.production_logs`), plus deliberately bad log lines.

Traffic comes in user sessions (one dataset each, a few questions minutes apart) spread over
the 30 days before ``END``, heavier in working hours. Each request lists 5 to 89 columns
(:mod:`pipeline.demo.columns`). The injected mode, the gold query and the names as sent of each
trace are kept on ``GeneratedTrace`` for bookkeeping; the mode and the gold are never logged.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from pipeline.demo import assistant, production_logs
from pipeline.demo.columns import request_view
from pipeline.demo.datasets import BASE_DATASETS, TEAM_DATASETS, Dataset, get_dataset
from pipeline.demo.questions import sample_query

END = datetime(2026, 11, 15, tzinfo=timezone.utc)
DAYS = 30
N_TRACES = 2400
TEAM_SHARE = 0.4
PROVIDER_ERROR_RATE = 0.0035
PROVIDER_ERRORS = ("upstream timeout", "rate limited by provider (429 Too Many Requests)",
                   "upstream returned 503 Service Unavailable", "context deadline exceeded")
PROVIDER_ERROR = "provider_error"
_DATASET_WEIGHTS = {"checkout-api": 1.4, "search-service": 1.0, "mobile-app": 0.8, "k8s-cluster": 1.0,
                    "cdn-edge": 0.8, "payments-worker": 1.3, "auth-gateway": 0.9, "ml-inference": 0.8}


@dataclass
class GeneratedTrace:
    """One good trace in the project's format (as ingestion recovers it) plus what only the
    generator knows: the injected mode, the gold query, the column names as sent (empty ones
    included) and the prompt version that sent them."""

    record: dict[str, Any]
    mode: str
    gold: dict[str, Any]
    listed: list[str]
    version: str = production_logs.V1

    @property
    def ts(self) -> datetime:
        return parse_ts(self.record["ts"])


def iso(ts: datetime) -> str:
    """ISO-8601 UTC with milliseconds and a Z suffix."""
    return ts.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def parse_ts(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


def _session_start(rng: random.Random) -> datetime:
    start = END - timedelta(days=DAYS)
    while True:
        ts = start + timedelta(seconds=rng.uniform(0, DAYS * 86400 - 3600))
        weekend = ts.weekday() >= 5
        busy = 8 <= ts.hour < 19
        if rng.random() < (0.3 if weekend else 1.0 if busy else 0.35):
            return ts


def _pick_dataset(rng: random.Random) -> str:
    group = TEAM_DATASETS if rng.random() < TEAM_SHARE else BASE_DATASETS
    return rng.choices(group, [_DATASET_WEIGHTS[d] for d in group])[0]


def _app_version(ts: datetime, rng: random.Random) -> str:
    if rng.random() < 0.15:
        return "slack-bot-1.4.0"
    if ts < datetime(2026, 10, 27, tzinfo=timezone.utc):
        return "web-3.8.2"
    return "web-3.9.0" if ts < datetime(2026, 11, 7, tzinfo=timezone.utc) else "web-3.9.1"


def _feedback(mode: str, rng: random.Random) -> str | None:
    r = rng.random()
    if mode in (assistant.CORRECT, assistant.FENCED):
        return "thumbs_up" if r < 0.09 else "thumbs_down" if r < 0.10 else None
    if mode in assistant.SEMANTIC_MODES:
        return "thumbs_down" if r < 0.22 else "thumbs_up" if r < 0.25 else None
    return "thumbs_down" if r < 0.35 else "thumbs_up" if r < 0.36 else None


def _answer(dataset: Dataset, rng: random.Random) -> tuple[str, dict[str, Any], str, str]:
    """(mode, gold, question, output) for one request on ``dataset`` (as the request sees it)."""
    mode = assistant.sample_mode(dataset.name in TEAM_DATASETS, rng)
    for _ in range(60):
        gold, question = sample_query(dataset, rng)
        if not assistant.applicable(mode, gold):
            continue
        try:
            return mode, gold, question, assistant.respond(gold, dataset, mode, rng)
        except ValueError:
            continue
    gold, question = sample_query(dataset, rng)
    return assistant.CORRECT, gold, question, assistant.respond(gold, dataset, assistant.CORRECT, rng)


def _record(ts: datetime, dataset: Dataset, question: str, output: str, error: str | None,
            model: str, session_id: str, feedback: str | None, app_version: str,
            rng: random.Random) -> dict[str, Any]:
    task_input = {"question": question, "columns": [c for c in dataset.listed_names if c], "dataset": dataset.name}
    sent = production_logs.messages(production_logs.prompt_version(app_version), dataset.name, question,
                                    dataset.listed_names)
    prompt_chars = sum(len(m["content"]) for m in sent)
    prompt_tokens = prompt_chars // 4 + rng.randint(6, 14)
    completion_tokens = max(1, round(len(output) / 3.7)) if output else 0
    if error:
        latency = 30000 + rng.randint(0, 900) if "timeout" in error or "deadline" in error else rng.randint(80, 900)
    else:
        median = 320 + 0.15 * prompt_tokens + 22 * completion_tokens
        latency = int(median * math.exp(rng.gauss(0, 0.35)))
    return {
        "trace_id": "", "ts": iso(ts), "input": task_input,
        "output": output, "model": model, "latency_ms": latency, "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens, "error": error,
        "metadata": {"session_id": session_id, "user_feedback": feedback, "app_version": app_version},
    }


def generate_traces(seed: int, n: int = N_TRACES) -> list[GeneratedTrace]:
    """``n`` good traces in time order, each with its injected mode, gold and prompt version;
    ids are tr_00001... for chat logs (first prompt) and ls_<run id> for LangSmith runs."""
    rng = random.Random(f"{seed}:traces")
    traces: list[GeneratedTrace] = []
    while len(traces) < n:
        start = _session_start(rng)
        dataset_name = _pick_dataset(rng)
        session_id = f"sess_{rng.getrandbits(40):010x}"
        early = start < END - timedelta(days=DAYS - 7)
        model = "prod-assistant-v2" if early and rng.random() < 0.5 else "prod-assistant-v3"
        app_version = _app_version(start, rng)
        ts = start
        for _ in range(rng.choices((1, 2, 3, 4, 5), (35, 25, 20, 12, 8))[0]):
            if len(traces) >= n:
                break
            ts += timedelta(seconds=rng.uniform(20, 600), milliseconds=rng.randint(0, 999))
            dataset = request_view(get_dataset(dataset_name), rng)
            mode, gold, question, output = _answer(dataset, rng)
            error = None
            if rng.random() < PROVIDER_ERROR_RATE:
                mode, error, output = PROVIDER_ERROR, rng.choice(PROVIDER_ERRORS), ""
            record = _record(ts, dataset, question, output, error, model, session_id,
                             _feedback(mode, rng), app_version, rng)
            traces.append(GeneratedTrace(record, mode, gold, dataset.listed_names,
                                         production_logs.prompt_version(app_version)))
    traces.sort(key=lambda t: t.record["ts"])
    ids = random.Random(f"{seed}:run-ids")
    for i, trace in enumerate(traces, start=1):
        trace.record["trace_id"] = (f"tr_{i:05d}" if trace.version == production_logs.V1
                                    else f"ls_{production_logs.run_id(ids)}")
    return traces


def dumps(record: Any) -> str:
    """One JSONL line (no newline) as the production logger writes it."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


# --- DELIBERATELY BAD LINES ------------------------------------------------------------------
# These exist only so ingestion's quarantine (rejected_traces) and deduplication have something
# to do. They are not traces: tests and the annotation sampler skip them.

#: Re-logged lines (exact copies of an earlier line) per log file.
N_DUPLICATES = 15
CHAT_LOGS, LANGSMITH_RUNS = "chat_logs.jsonl", "langsmith_runs.jsonl"


def _copy(record: Any) -> Any:
    return json.loads(json.dumps(record))


def bad_chat_lines(traces: list[GeneratedTrace], rng: random.Random) -> list[tuple[str, str]]:
    """(why it is bad, line) for each malformed chat-log line; ids continue after the traces."""
    chosen = rng.sample([t for t in traces if t.version == production_logs.V1 and not t.record["error"]], 6)
    bad = [_copy(production_logs.chat_log(t.record, t.listed)) for t in chosen]
    for i, record in enumerate(bad, start=len(traces) + 1):
        record["trace_id"] = f"tr_{i:05d}"
    truncated = dumps(bad[0])
    question = chosen[1].record["input"]["question"]
    bad[1]["messages"][1]["content"] = f"Question: {question}\nFields: {' | '.join(chosen[1].listed[:8])}"
    bad[2]["latency_ms"] = "1.2s"
    bad[3]["messages"][1:2] = production_logs.messages(production_logs.V1, chosen[3].record["input"]["dataset"],
                                                       chosen[3].record["input"]["question"], [])[1:]
    bad[4]["messages"] = bad[4]["messages"][1]["content"]
    return [
        ("truncated JSON line", truncated[: len(truncated) * 2 // 3]),
        ("user message in a prompt layout production never configured", dumps(bad[1])),
        ("latency_ms is not a number", dumps(bad[2])),
        ("the prompt lists no columns", dumps(bad[3])),
        ("messages is the prompt text, not a list of messages", dumps(bad[4])),
        ("line is a JSON array, not an object", dumps([bad[5]["trace_id"], "nl2query", question])),
    ]


def bad_run_lines(traces: list[GeneratedTrace], rng: random.Random) -> list[tuple[str, str]]:
    """(why it is bad, line) for each run of the LangSmith export that is not a usable LLM run."""
    chosen = rng.sample([t for t in traces if t.version == production_logs.V2 and not t.record["error"]], 2)
    base = [_copy(_run(t)) for t in chosen]
    chain = {**base[0], "id": production_logs.run_id(rng), "run_type": "chain", "name": "QueryAssistantChain",
             "inputs": {"question": chosen[0].record["input"]["question"]}}
    no_id = {**base[1], "id": None}
    return [("a chain run exported with the LLM runs: its inputs hold no columns", dumps(chain)),
            ("run without an id", dumps(no_id))]


def _run(trace: GeneratedTrace) -> dict[str, Any]:
    return production_logs.langsmith_run(trace.record, trace.listed, trace.record["trace_id"].removeprefix("ls_"),
                                         PROJECT_ID)


#: The LangSmith project the web app traces to.
PROJECT_ID = "5f0c1e2a-7d4b-4c3e-9a1f-6b8d2e4c7a90"


def _scatter(lines: list[str], bad: list[str], rng: random.Random) -> list[str]:
    """``lines`` with ``bad`` lines and re-logged duplicates at deterministic scattered positions."""
    inserts: list[tuple[int, str]] = [(rng.randrange(50, len(lines)), line) for line in bad]
    for source in rng.sample(range(len(lines) - 60), N_DUPLICATES):
        inserts.append((source + rng.randint(1, 60), lines[source]))
    out = list(lines)
    for position, line in sorted(inserts, key=lambda x: -x[0]):
        out.insert(position, line)
    return out


def log_files(traces: list[GeneratedTrace], seed: int) -> dict[str, list[str]]:
    """The lines of each log file: chat_logs.jsonl (chat-format lines of the first prompt) and
    langsmith_runs.jsonl (the LangSmith export of the second), each in time order with its bad
    lines and re-logged duplicates."""
    rng = random.Random(f"{seed}:bad-lines")
    chats = [dumps(production_logs.chat_log(t.record, t.listed)) for t in traces if t.version == production_logs.V1]
    runs = [dumps(_run(t)) for t in traces if t.version == production_logs.V2]
    return {CHAT_LOGS: _scatter(chats, [line for _, line in bad_chat_lines(traces, rng)], rng),
            LANGSMITH_RUNS: _scatter(runs, [line for _, line in bad_run_lines(traces, rng)], rng)}
