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
from pipeline.engine.curation import CurationConfig
from pipeline.engine.ingest.langsmith_source import RunQuery
from pipeline.engine.local_model import FINE_TUNE_CONFIG, ModelConfig, TrainConfig
from pipeline.engine.providers.openai_chat import OpenAIChatProvider
from pipeline.engine.splits import SplitConfig
from pipeline.engine.tasks import Task, load_task


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
    """Trace files to ingest: JSONL, JSON or Parquet (optionally gzip) files, or folders searched
    recursively; records in the project's format, OpenAI chat logs or LangSmith run exports.
    A file modified less than ``settle_seconds`` ago is still being written: only its complete
    lines are read (other formats wait)."""

    paths: list[str] = ["data/demo/traces.jsonl", "data/traces/incoming"]
    source_name: str = "drop_folder"
    max_record_bytes: int = 1_000_000
    settle_seconds: float = 5.0


class LangSmithSource(dg.ConfigurableResource):
    """Runs pulled from the LangSmith API: a project, a run type and a filter expression (for
    example ``has(tags, "production")``). ``api_key`` comes from the environment
    (``dg.EnvVar("LANGSMITH_API_KEY")``), never from code; ``api_url`` defaults to
    LANGSMITH_ENDPOINT or LangSmith's cloud. Unconfigured (no key or project), it pulls nothing."""

    project: str | None = None
    run_type: str | None = "llm"
    filter: str | None = None
    api_url: str | None = None
    api_key: str | None = None
    source_name: str = "langsmith"

    def configured(self) -> bool:
        return bool(self.api_key and self.project)

    def query(self) -> RunQuery:
        return RunQuery(project=self.project or "", run_type=self.run_type, filter=self.filter)

    def client(self):
        from langsmith import Client

        return Client(api_url=self.api_url, api_key=self.api_key)


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

    @property
    def reports_dir(self) -> Path:
        return Path(self.data_dir) / "reports"


class CurationSettings(dg.ConfigurableResource):
    """What goes into training: split shares (and the size check's tolerance), complexity bounds,
    duplicates allowed per output, the cap on synthetic data per split, the near-duplicate threshold."""

    validation_share: float = 0.1
    test_share: float = 0.15
    split_tolerance: float = 0.05
    min_complexity: int | None = 2
    max_complexity: int | None = 30
    max_per_output: int = 10
    max_synthetic_share: float = 0.4
    near_duplicate_threshold: float = 0.9

    def config(self) -> CurationConfig:
        return CurationConfig(
            splits=SplitConfig(validation=self.validation_share, test=self.test_share, tolerance=self.split_tolerance),
            min_complexity=self.min_complexity, max_complexity=self.max_complexity,
            max_per_output=self.max_per_output, max_synthetic_share=self.max_synthetic_share,
            near_duplicate_threshold=self.near_duplicate_threshold)


class JudgeResource(dg.ConfigurableResource):
    """The LLM judge: an OpenAI (or OpenAI-compatible) chat model. Off while ``model`` is None.

    The key is read from OPENAI_API_KEY unless ``api_key`` is set, which must then come from
    ``dg.EnvVar("...")`` (never a literal); OPENAI_BASE_URL or ``base_url`` selects the server.
    """

    model: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    prompt_version: str = "v1"
    #: A prompt file to use instead of the packaged pipeline/prompts/judge/<task>.<version>.md.
    prompt_path: str | None = None
    few_shot: int = 4
    #: Traces judged per run at most (people's labelled traces first): judging costs money.
    max_traces_per_run: int = 500
    concurrency: int = 4
    #: Below this agreement with people the judge is flagged and does not gate promotion.
    min_agreement: float = 0.8
    max_retries: int = 3
    timeout: float = 60.0

    @property
    def enabled(self) -> bool:
        return bool(self.model)

    def provider(self) -> OpenAIChatProvider:
        return OpenAIChatProvider(self.model, api_key=self.api_key, base_url=self.base_url,
                                  max_retries=self.max_retries, timeout=self.timeout)


class LocalTrainer(dg.ConfigurableResource):
    """The local backend: a small seq2seq transformer built from a config and trained on the CPU.

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
