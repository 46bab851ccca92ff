"""Write the bundled demo data: the production logs under traces/ (chat_logs.jsonl,
langsmith_runs.jsonl), the layouts of the prompts that wrote them (prompt_layouts.yaml),
annotations.jsonl and base_corpus.jsonl."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from pipeline.demo import production_logs
from pipeline.demo.annotations import sample_annotations
from pipeline.demo.columns import request_view
from pipeline.demo.datasets import BASE_DATASETS, TEAM_DATASETS, get_dataset
from pipeline.demo.questions import sample_example
from pipeline.demo.traces import N_DUPLICATES, bad_chat_lines, bad_run_lines, dumps, generate_traces, log_files
from pipeline.engine.ingest.files import read_trace_files
from pipeline.engine.ingest.layouts import with_prompt_layouts
from pipeline.engine.tasks import nl2query

DEFAULT_SEED = 7
N_BASE_CORPUS = 5_000
#: Where the bundled demo data lives.
DEMO_DIR = Path(__file__).resolve().parents[2] / "data" / "demo"


def base_corpus(seed: int, n: int = N_BASE_CORPUS) -> list[dict[str, Any]]:
    """``n`` correct {input, output} examples over BASE_DATASETS only (own seed stream), their
    column lists as long as production's."""
    rng = random.Random(f"{seed}:base-corpus")
    rows = []
    for _ in range(n):
        dataset = request_view(get_dataset(rng.choice(BASE_DATASETS)), rng, empty_names=False)
        task_input, output = sample_example(dataset, rng)
        rows.append({"input": task_input, "output": output})
    return rows


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def write_demo_data(out_dir: str | Path, seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """Write the demo files under ``out_dir``; return counts (lines, modes, team share, columns)."""
    out = Path(out_dir)
    (out / "traces").mkdir(parents=True, exist_ok=True)
    traces = generate_traces(seed)
    files = log_files(traces, seed)
    for name, lines in files.items():
        _write(out / "traces" / name, lines)
    (out / "prompt_layouts.yaml").write_text(
        "# The production prompts that wrote the demo's logs (pipeline/demo/production_logs.py).\n"
        + yaml.safe_dump(list(production_logs.LAYOUTS), sort_keys=False, allow_unicode=True), encoding="utf-8")
    annotations = sample_annotations(traces, seed)
    _write(out / "annotations.jsonl", [dumps(a) for a in annotations])
    corpus = base_corpus(seed)
    _write(out / "base_corpus.jsonl", [dumps(r) for r in corpus])
    team = sum(t.record["input"]["dataset"] in TEAM_DATASETS for t in traces)
    lengths = sorted(len(t.listed) for t in traces)
    return {
        "traces": len(traces),
        "lines": {name: len(lines) for name, lines in files.items()},
        "bad_lines": len(bad_chat_lines(traces, random.Random(0))) + len(bad_run_lines(traces, random.Random(0))),
        "duplicate_lines": N_DUPLICATES * len(files),
        "prompt_versions": dict(Counter(t.version for t in traces)),
        "columns_listed": {"min": lengths[0], "median": lengths[len(lengths) // 2], "max": lengths[-1]},
        "empty_names": sum("" in t.listed for t in traces),
        "team_only_share": round(team / len(traces), 3),
        "modes": dict(Counter(t.mode for t in traces).most_common()),
        "annotations": len(annotations),
        "annotation_labels": dict(Counter(a["label"] for a in annotations)),
        "base_corpus": len(corpus),
    }


def read_demo_traces(folder: str | Path = DEMO_DIR) -> list[dict[str, Any]]:
    """The good traces of the demo's logs under ``folder``, as ingestion reads them (with the
    layouts of the prompts that wrote them), in the project's trace format (``input`` and
    ``metadata`` as objects, ``ts`` as ISO-8601): what benchmarks scale up."""
    folder = Path(folder)
    task = with_prompt_layouts(nl2query.TASK, [folder / "prompt_layouts.yaml"])
    batch = read_trace_files(sorted((folder / "traces").glob("*.jsonl")), task, "demo")
    return [{**row, "ts": row["ts"].isoformat(), "input": json.loads(row["input"]),
             "metadata": json.loads(row["metadata"])}
            for row in batch.traces.select("trace_id", "ts", "input", "output", "model", "latency_ms", "prompt_tokens",
                                           "completion_tokens", "error", "metadata").iter_rows(named=True)]


__all__ = ["DEFAULT_SEED", "DEMO_DIR", "base_corpus", "read_demo_traces", "write_demo_data"]
