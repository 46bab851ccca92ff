"""Write the bundled demo data: traces.jsonl, annotations.jsonl and base_corpus.jsonl."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

from pipeline.demo.annotations import sample_annotations
from pipeline.demo.datasets import BASE_DATASETS, TEAM_DATASETS, get_dataset
from pipeline.demo.questions import sample_example
from pipeline.demo.traces import N_DUPLICATES, bad_lines, dumps, generate_traces, trace_lines

DEFAULT_SEED = 7
N_BASE_CORPUS = 10_000


def base_corpus(seed: int, n: int = N_BASE_CORPUS) -> list[dict[str, Any]]:
    """``n`` correct {input, output} examples over BASE_DATASETS only (own seed stream)."""
    rng = random.Random(f"{seed}:base-corpus")
    rows = []
    for _ in range(n):
        task_input, output = sample_example(get_dataset(rng.choice(BASE_DATASETS)), rng)
        rows.append({"input": task_input, "output": output})
    return rows


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def write_demo_data(out_dir: str | Path, seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """Write the three demo files under ``out_dir``; return counts (lines, modes, team share)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    traces = generate_traces(seed)
    lines = trace_lines(traces, seed)
    _write(out / "traces.jsonl", lines)
    annotations = sample_annotations(traces, seed)
    _write(out / "annotations.jsonl", [dumps(a) for a in annotations])
    corpus = base_corpus(seed)
    _write(out / "base_corpus.jsonl", [dumps(r) for r in corpus])
    team = sum(t.record["input"]["dataset"] in TEAM_DATASETS for t in traces)
    return {
        "traces": len(traces),
        "trace_lines": len(lines),
        "bad_lines": len(bad_lines(traces, random.Random(0))),
        "duplicate_lines": N_DUPLICATES,
        "team_only_share": round(team / len(traces), 3),
        "modes": dict(Counter(t.mode for t in traces).most_common()),
        "annotations": len(annotations),
        "annotation_labels": dict(Counter(a["label"] for a in annotations)),
        "base_corpus": len(corpus),
    }


__all__ = ["DEFAULT_SEED", "base_corpus", "write_demo_data"]
