"""Training runs with the local backend: model ids keyed by data and config, idempotent runs,
and inference through the same prompt the training data used."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import polars as pl

from pipeline.engine.local_model import (
    LocalSeq2Seq,
    ModelConfig,
    TrainConfig,
    fine_tune,
    train_base,
)
from pipeline.engine.local_model.seq2seq import META_FILE
from pipeline.engine.tasks import Task


def config_hash(*parts: Any) -> str:
    """Short stable hash of configuration objects (dataclasses or JSON-able values)."""
    payload = json.dumps([asdict(p) if hasattr(p, "__dataclass_fields__") else p for p in parts],
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:10]


def file_hash(path: Path) -> str:
    """Content hash of a file (the base corpus version)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def model_source(task: Task, input: dict[str, Any]) -> str:
    """What the local model reads: the task prompt's user message (same at training and inference)."""
    return task.prompt(input)[-1]["content"]


def pairs(examples: pl.DataFrame, task: Task) -> tuple[list[str], list[str]]:
    """(sources, targets) for examples with JSON ``input`` and normalised ``output`` columns."""
    sources = [model_source(task, json.loads(i)) for i in examples["input"]]
    targets = [task.normalise(o) or o for o in examples["output"]]
    return sources, targets


def read_corpus(path: Path, max_examples: int | None = None) -> pl.DataFrame:
    """A JSONL corpus of {"input", "output"} lines as a frame with JSON ``input``."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                record = json.loads(line)
                rows.append({"input": json.dumps(record["input"]), "output": record["output"]})
            if max_examples is not None and len(rows) >= max_examples:
                break
    if not rows:
        raise ValueError(f"base corpus {path} has no examples")
    return pl.DataFrame(rows)


def is_complete(model_dir: Path) -> bool:
    """True when ``model_dir`` holds a finished model (models are saved atomically, metadata included)."""
    return (model_dir / META_FILE).is_file()


def reused(model_dir: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """The training result saved in a finished model folder, marked as reused."""
    log(f"model already trained at {model_dir}; reusing it")
    saved = json.loads((model_dir / META_FILE).read_text()).get("result") or {}
    return {**saved, "reused": True}


def train_base_model(model_dir: Path, corpus: pl.DataFrame, task: Task, model_config: ModelConfig,
                     train_config: TrainConfig, log: Callable[[str], None]) -> dict[str, Any]:
    """Train the base model unless ``model_dir`` already holds it; returns its training metrics."""
    if is_complete(model_dir):
        return reused(model_dir, log)
    sources, targets = pairs(corpus, task)
    result = train_base(model_dir, sources, targets, model_config, train_config, log=log)
    return {"reused": False, **asdict(result)}


def fine_tune_model(base_dir: Path, model_dir: Path, train: pl.DataFrame, validation: pl.DataFrame,
                    task: Task, train_config: TrainConfig, log: Callable[[str], None],
                    replay: pl.DataFrame | None = None) -> dict[str, Any]:
    """Warm-start from ``base_dir`` and fine-tune on ``train`` unless already done.

    ``replay`` (examples from the base's own corpus) is mixed into the training set so that
    learning the team's data does not make the model forget what it knew (rehearsal).
    """
    if is_complete(model_dir):
        return reused(model_dir, log)
    sources, targets = pairs(train, task)
    if replay is not None and replay.height:
        replay_sources, replay_targets = pairs(replay, task)
        sources, targets = sources + replay_sources, targets + replay_targets
    valid = pairs(validation, task) if validation.height else None
    result = fine_tune(base_dir, model_dir, sources, targets, train_config, validation=valid, log=log)
    return {"reused": False, "replay_examples": 0 if replay is None else replay.height, **asdict(result)}


class LocalModelProvider:
    """Inference with a local model directory, through the task's prompt."""

    def __init__(self, model_dir: Path, task: Task, batch_size: int = 64):
        self.model = LocalSeq2Seq.load(model_dir)
        self.task = task
        self.batch_size = batch_size

    def complete(self, inputs: list[dict[str, Any]]) -> list[str]:
        """One output per input, batched greedy decoding."""
        return self.model.generate([model_source(self.task, i) for i in inputs], batch_size=self.batch_size)
