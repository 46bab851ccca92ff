"""Production-like nl2query traces from the simulated assistant, plus deliberately bad log lines.

Traffic comes in user sessions (one dataset each, a few questions minutes apart) spread over
the 30 days before ``END``, heavier in working hours. The injected mode and the gold query of
each trace are kept on ``GeneratedTrace`` for bookkeeping and never written to the trace line.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from pipeline.demo import assistant
from pipeline.demo.datasets import BASE_DATASETS, TEAM_DATASETS, get_dataset
from pipeline.demo.questions import sample_query
from pipeline.engine.tasks import nl2query

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
    """One good trace line plus what only the generator knows: injected mode and gold query."""

    record: dict[str, Any]
    mode: str
    gold: dict[str, Any]

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


def _answer(dataset_name: str, rng: random.Random) -> tuple[str, dict[str, Any], str, str]:
    """(mode, gold, question, output) for one request on ``dataset_name``."""
    dataset = get_dataset(dataset_name)
    mode = assistant.sample_mode(dataset_name in TEAM_DATASETS, rng)
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


def _record(ts: datetime, dataset_name: str, question: str, output: str, error: str | None,
            model: str, session_id: str, feedback: str | None, app_version: str,
            rng: random.Random) -> dict[str, Any]:
    columns = get_dataset(dataset_name).column_names
    task_input = {"question": question, "columns": columns, "dataset": dataset_name}
    prompt_chars = sum(len(m["content"]) for m in nl2query.prompt(task_input))
    prompt_tokens = prompt_chars // 4 + rng.randint(6, 14)
    completion_tokens = max(1, round(len(output) / 3.7)) if output else 0
    if error:
        latency = 30000 + rng.randint(0, 900) if "timeout" in error or "deadline" in error else rng.randint(80, 900)
    else:
        median = 320 + 0.15 * prompt_tokens + 22 * completion_tokens
        latency = int(median * math.exp(rng.gauss(0, 0.35)))
    return {
        "trace_id": "", "source": "demo", "task": nl2query.NAME, "ts": iso(ts), "input": task_input,
        "output": output, "model": model, "latency_ms": latency, "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens, "error": error,
        "metadata": {"session_id": session_id, "user_feedback": feedback, "app_version": app_version},
    }


def generate_traces(seed: int, n: int = N_TRACES) -> list[GeneratedTrace]:
    """``n`` good traces in time order with ids tr_00001..., each with its injected mode and gold."""
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
            mode, gold, question, output = _answer(dataset_name, rng)
            error = None
            if rng.random() < PROVIDER_ERROR_RATE:
                mode, error, output = PROVIDER_ERROR, rng.choice(PROVIDER_ERRORS), ""
            record = _record(ts, dataset_name, question, output, error, model, session_id,
                             _feedback(mode, rng), app_version, rng)
            traces.append(GeneratedTrace(record, mode, gold))
    traces.sort(key=lambda t: t.record["ts"])
    for i, trace in enumerate(traces, start=1):
        trace.record["trace_id"] = f"tr_{i:05d}"
    return traces


def dumps(record: Any) -> str:
    """One JSONL line (no newline) as the production logger writes it."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


# --- DELIBERATELY BAD LINES ------------------------------------------------------------------
# These exist only so ingestion's quarantine (rejected_traces) and deduplication have something
# to do. They are not traces: tests and the annotation sampler skip them.

N_DUPLICATES = 15


def bad_lines(traces: list[GeneratedTrace], rng: random.Random) -> list[tuple[str, str]]:
    """(why it is bad, line) for each deliberately malformed line; ids continue after the traces."""
    base = [dict(t.record) for t in rng.sample(traces, 6)]
    next_id = len(traces) + 1

    def fresh(record: dict[str, Any]) -> dict[str, Any]:
        nonlocal next_id
        record = json.loads(json.dumps(record))
        record["trace_id"] = f"tr_{next_id:05d}"
        next_id += 1
        return record

    truncated = dumps(fresh(base[0]))
    no_question = fresh(base[1])
    del no_question["input"]["question"]
    latency_text = fresh(base[2])
    latency_text["latency_ms"] = "1.2s"
    no_columns = fresh(base[3])
    no_columns["input"]["columns"] = []
    input_text = fresh(base[4])
    input_text["input"] = input_text["input"]["question"]
    return [
        ("truncated JSON line", truncated[: len(truncated) * 2 // 3]),
        ("input.question missing", dumps(no_question)),
        ("latency_ms is not a number", dumps(latency_text)),
        ("input.columns is empty", dumps(no_columns)),
        ("input is a string, not an object", dumps(input_text)),
        ("line is a JSON array, not an object", dumps(["tr_bad", "nl2query", base[5]["input"]["question"]])),
    ]


def trace_lines(traces: list[GeneratedTrace], seed: int) -> list[str]:
    """The traces.jsonl lines: good traces in time order with bad lines and re-logged
    duplicates (exact copies of an earlier line) at deterministic scattered positions."""
    rng = random.Random(f"{seed}:bad-lines")
    lines = [dumps(t.record) for t in traces]
    inserts: list[tuple[int, str]] = []
    for _, line in bad_lines(traces, rng):
        inserts.append((rng.randrange(50, len(lines)), line))
    for source in rng.sample(range(len(lines) - 60), N_DUPLICATES):
        inserts.append((source + rng.randint(1, 60), lines[source]))
    out = list(lines)
    for position, line in sorted(inserts, key=lambda x: -x[0]):
        out.insert(position, line)
    return out
