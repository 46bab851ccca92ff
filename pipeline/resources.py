"""Dagster resources: what varies per deployment (database, task, trace sources, trainer, paths)."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from pipeline.engine import store
from pipeline.engine.local_model import FINE_TUNE_CONFIG, ModelConfig, TrainConfig
from pipeline.engine.tasks import Task, load_task
from pipeline.engine.traces import discover


class FlywheelDuckDB(DuckDBResource):
    """The DuckDB database (a local file or an ``md:`` MotherDuck string), schema migrated on connect."""

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if not self.database.startswith("md:") and self.database != ":memory:":
            Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        with super().get_connection() as conn:
            store.migrate(conn)
            yield conn


class TaskResource(dg.ConfigurableResource):
    """The task under improvement: a built-in name or an importable module exposing TASK."""

    name: str = "nl2query"

    def load(self) -> Task:
        return load_task(self.name)


class TraceFiles(dg.ConfigurableResource):
    """Trace files to ingest: JSONL (optionally gzip) files or folders searched recursively."""

    paths: list[str] = ["data/demo/traces.jsonl", "data/traces/incoming"]
    source_name: str = "drop_folder"
    max_record_bytes: int = 1_000_000

    def files(self) -> list[Path]:
        return discover(self.paths)


class AnnotationFiles(dg.ConfigurableResource):
    """Files of human decisions to import (the annotation app writes to the table directly)."""

    paths: list[str] = ["data/demo/annotations.jsonl", "data/annotations/incoming"]

    def files(self) -> list[Path]:
        found = []
        for raw in self.paths:
            path = Path(raw)
            found += [path] if path.is_file() else sorted(path.glob("*.jsonl")) if path.is_dir() else []
        return found


class FlywheelPaths(dg.ConfigurableResource):
    """Where files go: models, training files, reports."""

    data_dir: str = "data"

    @property
    def models_dir(self) -> Path:
        return Path(self.data_dir) / "models"

    @property
    def exports_dir(self) -> Path:
        return Path(self.data_dir) / "exports"


class LocalTrainer(dg.ConfigurableResource):
    """The local backend: a small seq2seq transformer built from a config and trained on CPU/GPU.

    Fields left as None take the engine's demo defaults; set them smaller for tests.
    """

    base_corpus: str = "data/demo/base_corpus.jsonl"
    base_max_examples: int | None = None
    d_model: int | None = None
    num_layers: int | None = None
    num_decoder_layers: int | None = None
    num_heads: int | None = None
    d_ff: int | None = None
    vocab_size: int | None = None
    max_source_tokens: int | None = None
    max_target_tokens: int | None = None
    base_epochs: float | None = None
    base_max_steps: int | None = None
    finetune_epochs: float | None = None
    finetune_max_steps: int | None = None
    finetune_learning_rate: float | None = None
    #: Base-corpus examples mixed into fine-tuning so the model keeps what it knew (0 = none).
    replay_examples: int = 1000
    batch_size: int | None = None
    seed: int = 0

    def architecture(self) -> ModelConfig:
        return _override(ModelConfig(), d_model=self.d_model, num_layers=self.num_layers,
                          num_decoder_layers=self.num_decoder_layers, num_heads=self.num_heads,
                          d_ff=self.d_ff, vocab_size=self.vocab_size, max_source_tokens=self.max_source_tokens,
                          max_target_tokens=self.max_target_tokens)

    def base_train_config(self) -> TrainConfig:
        return _override(TrainConfig(), epochs=self.base_epochs, max_steps=self.base_max_steps,
                         batch_size=self.batch_size, seed=self.seed)

    def finetune_train_config(self) -> TrainConfig:
        return _override(FINE_TUNE_CONFIG, epochs=self.finetune_epochs, max_steps=self.finetune_max_steps,
                         learning_rate=self.finetune_learning_rate, batch_size=self.batch_size, seed=self.seed)


def _override(config, **values):
    """``config`` with the values that are set (not None) replaced."""
    return replace(config, **{k: v for k, v in values.items() if v is not None})
