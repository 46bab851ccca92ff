"""Dagster resources: what varies per deployment (database, task, trace sources, trainer, paths)."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from pipeline.engine.core import snapshot as snapshots
from pipeline.engine.core import store
from pipeline.engine.curate.examples import CurationConfig
from pipeline.engine.train.hosted.api import FineTuningAPI
from pipeline.engine.train.hosted.jobs import JobSpec
from pipeline.engine.ingest.langsmith_source import RunQuery
from pipeline.engine.train.local import FINE_TUNE_CONFIG, LoraSettings, ModelConfig, TrainConfig
from pipeline.engine.train.local import pretrained
from pipeline.engine.providers.openai_chat import OpenAIChatProvider
from pipeline.engine.curate.splits import SplitConfig
from pipeline.engine.tasks import Task, load_task


class FlywheelDuckDB(DuckDBResource):
    """The DuckDB database (a local file or an ``md:`` MotherDuck string), schema migrated on connect.

    DuckDB allows one writing process, so readers never open a local file while the pipeline may
    write: when a connection that changed the database is done, a read-only copy is published
    atomically at ``snapshot`` (default ``<database stem>.snapshot.duckdb`` beside it; "" turns
    it off). A reader holding the old copy keeps it; the next open sees the new one.
    """

    snapshot: str | None = None

    @property
    def local(self) -> bool:
        return not self.database.startswith("md:") and self.database != ":memory:"

    @property
    def snapshot_path(self) -> Path | None:
        """Where the read-only copy is published, or None (MotherDuck, in memory, or turned off)."""
        if not self.local or self.snapshot == "":
            return None
        return Path(self.snapshot) if self.snapshot else Path(self.database).with_suffix(".snapshot.duckdb")

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if self.local:
            Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        with super().get_connection() as conn:
            started = _mtime(Path(self.database))
            store.migrate(conn)
            yield conn
            if self.snapshot_path is not None:
                try:
                    snapshots.publish(conn, Path(self.database), self.snapshot_path, started)
                except (duckdb.Error, OSError) as exc:  # readers keep the previous copy; the write stands
                    dg.get_dagster_logger().warning(f"snapshot {self.snapshot_path} not published: {exc}")

    @contextmanager
    def read_connection(self, wait_seconds: float = 5.0, use_snapshot: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection to the database, retried while a writer holds it; after
        ``wait_seconds`` the snapshot if there is one (and ``use_snapshot``), else the lock error
        is raised."""
        fallback = self.snapshot_path if use_snapshot else None
        conn = snapshots.connect_read_only(self.database, wait_seconds, fallback)
        try:
            yield conn
        finally:
            conn.close()


def _mtime(path: Path) -> int:
    return path.stat().st_mtime_ns if path.exists() else 0


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
    """The local backend: the built-in small seq2seq transformer (trained here from the base corpus)
    or a pretrained transformers model (``model_name_or_path``: an HF id or a local path),
    fine-tuned fully or with LoRA (``lora``), on ``device`` ("auto": cuda when available).

    Fields left as None take the engine's defaults (the demo's for the built-in model); set them
    smaller for tests. Training is checkpointed every ``checkpoint_every_seconds`` (and/or
    ``checkpoint_every_steps``) under the model's folder, and a crashed run resumes from there.
    """

    base_corpus: str = "data/demo/base_corpus.jsonl"
    base_max_examples: int | None = None
    #: A pretrained model to fine-tune instead of the built-in one (None: the built-in one).
    model_name_or_path: str | None = None
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
    finetune_max_seconds: float | None = None
    finetune_learning_rate: float | None = None
    #: Base-corpus examples mixed into fine-tuning so the model keeps what it knew (0 = none).
    replay_examples: int = 1000
    batch_size: int | None = None
    seed: int = 0
    #: LoRA adapters (peft) instead of full fine-tuning; pretrained models only.
    lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    #: Modules to adapt (None: peft's default for the architecture; ["all-linear"]: every linear layer).
    lora_target_modules: list[str] | None = None
    device: str = "auto"
    checkpoint_every_seconds: float | None = 60.0
    checkpoint_every_steps: int | None = None

    def architecture(self) -> ModelConfig | pretrained.PretrainedSpec:
        if self.model_name_or_path:
            return _override(pretrained.PretrainedSpec(self.model_name_or_path),
                             max_source_tokens=self.max_source_tokens, max_target_tokens=self.max_target_tokens)
        return _override(ModelConfig(), d_model=self.d_model, num_layers=self.num_layers,
                          num_decoder_layers=self.num_decoder_layers, num_heads=self.num_heads,
                          d_ff=self.d_ff, vocab_size=self.vocab_size, max_source_tokens=self.max_source_tokens,
                          max_target_tokens=self.max_target_tokens)

    def base_train_config(self) -> TrainConfig:
        return _override(TrainConfig(), epochs=self.base_epochs, max_steps=self.base_max_steps,
                         batch_size=self.batch_size, seed=self.seed, **self._runtime())

    def finetune_train_config(self) -> TrainConfig:
        if self.model_name_or_path:
            defaults = pretrained.FINE_TUNE_CONFIG
            if self.lora:
                defaults = replace(defaults, learning_rate=pretrained.LORA_LEARNING_RATE)
        else:
            defaults = FINE_TUNE_CONFIG
        lora = LoraSettings(r=self.lora_r, alpha=self.lora_alpha, dropout=self.lora_dropout,
                            target_modules=tuple(self.lora_target_modules) if self.lora_target_modules else None)
        return _override(defaults, epochs=self.finetune_epochs, max_steps=self.finetune_max_steps,
                         max_seconds=self.finetune_max_seconds, learning_rate=self.finetune_learning_rate,
                         batch_size=self.batch_size, seed=self.seed, lora=lora if self.lora else None,
                         **self._runtime())

    def _runtime(self) -> dict:
        """Settings that do not change the model (left out of model ids)."""
        return {"device": self.device, "checkpoint_every_seconds": self.checkpoint_every_seconds,
                "checkpoint_every_steps": self.checkpoint_every_steps}


def _override(config, **values):
    """``config`` with the values that are set (not None) replaced."""
    return replace(config, **{k: v for k, v in values.items() if v is not None})


class FineTuning(dg.ConfigurableResource):
    """Which backend fine-tunes, and the hosted job's settings.

    ``backend``: ``local`` (the default: the LocalTrainer trains an open model here), ``openai``
    or ``azure`` (the same fine-tuning API; ``azure_endpoint``/``api_version`` or
    AZURE_OPENAI_ENDPOINT/OPENAI_API_VERSION). ``api_key`` must come from ``dg.EnvVar(...)``
    (unset, OPENAI_API_KEY or AZURE_OPENAI_API_KEY is read); ``base_url`` or OPENAI_BASE_URL
    points at any OpenAI-compatible server. A job is followed for ``max_wait_s`` at most; a
    re-materialization resumes it. Hyperparameters left as None are the provider's "auto".
    On Azure a fine-tuned model answers through a deployment named after its model id.
    """

    backend: str = "local"
    base_model: str = "gpt-4o-mini-2024-07-18"
    suffix: str | None = "flywheel"
    seed: int | None = 0
    n_epochs: int | None = None
    batch_size: int | None = None
    learning_rate_multiplier: float | None = None
    poll_interval_s: float = 30.0
    max_wait_s: float = 1800.0
    api_key: str | None = None
    base_url: str | None = None
    azure_endpoint: str | None = None
    api_version: str | None = None
    max_retries: int = 5
    timeout: float = 60.0
    #: Price of 1M training tokens for the cost estimate (gpt-4o-mini's list price when written).
    price_per_1m_training_tokens: float = 3.0
    #: Parallel chat calls when evaluating a hosted model.
    inference_concurrency: int = 4

    def __repr_args__(self):
        return [(k, "***" if k == "api_key" and v else v) for k, v in super().__repr_args__()]

    @property
    def hosted(self) -> bool:
        if self.backend not in ("local", "openai", "azure"):
            raise ValueError(f"fine-tuning backend {self.backend!r}: expected local, openai or azure")
        return self.backend != "local"

    def api(self, backend: str | None = None) -> FineTuningAPI:
        """The fine-tuning client for ``backend`` (default: the configured one)."""
        return FineTuningAPI(backend or self.backend, api_key=self.api_key, base_url=self.base_url,
                             azure_endpoint=self.azure_endpoint, api_version=self.api_version,
                             max_retries=self.max_retries, timeout=self.timeout)

    def spec(self, data_version: str) -> JobSpec:
        """The job to run on ``data_version`` with these settings."""
        hyper = {"n_epochs": self.n_epochs, "batch_size": self.batch_size,
                 "learning_rate_multiplier": self.learning_rate_multiplier}
        return JobSpec(backend=self.backend, base_model=self.base_model, data_version=data_version,
                       suffix=self.suffix, seed=self.seed,
                       hyperparameters=tuple((k, v) for k, v in hyper.items() if v is not None))
