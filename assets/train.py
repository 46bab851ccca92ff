"""Train group: the base model (a stand-in for a pretrained LLM) and the fine-tuned model."""

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import dagster as dg
import polars as pl

from assets.curate import training_files
from pipeline.engine import store
from pipeline.engine.curation import data_version
from pipeline.engine.training import (
    config_hash, file_hash, fine_tune_model, is_complete, read_corpus, train_base_model,
)
from pipeline.resources import FlywheelDuckDB, FlywheelPaths, LocalTrainer, TaskResource

REGISTRY_SCHEMA = {
    "model_id": pl.String, "backend": pl.String, "base_model": pl.String, "job_id": pl.String,
    "status": pl.String, "training_data_version": pl.String, "hyperparameters": pl.String,
    "metrics": pl.String, "artifact_path": pl.String, "created_at": pl.Datetime("us", "UTC"),
    "finished_at": pl.Datetime("us", "UTC"), "error": pl.String,
}


def base_model_id(trainer: LocalTrainer) -> str:
    """Id of the base model that the trainer's corpus and configuration produce."""
    corpus = file_hash(Path(trainer.base_corpus))
    settings = config_hash(trainer.architecture(), trainer.base_train_config(), trainer.base_max_examples)
    return f"local-base-{corpus[:8]}-{settings}"


def _write_row(conn, row: dict) -> None:
    store.upsert(conn, "fine_tuned_models", pl.DataFrame([row], schema=REGISTRY_SCHEMA), ["model_id"])


def _registered_metrics(conn, model_id: str) -> dict | None:
    """The stored metrics of a model that finished successfully, else None."""
    row = conn.execute("SELECT metrics FROM fine_tuned_models WHERE model_id = ? AND status = 'succeeded'",
                       [model_id]).fetchone()
    return json.loads(row[0]) if row and row[0] else None


def run_training(context: dg.AssetExecutionContext, conn, model_id: str, model_dir: Path, base: str | None,
                 version: str, hyperparameters: dict, train: Callable[[Callable[[str], None]], dict]) -> dict:
    """Train once per model id: reuse a finished model, else run ``train`` with the registry row
    going running -> succeeded | failed (the error recorded, then re-raised)."""
    if is_complete(model_dir):
        stored = _registered_metrics(conn, model_id)
        if stored is not None:
            context.log.info(f"{model_id} is already trained at {model_dir}; reusing it")
            return {**stored, "reused": True}
    now = datetime.now(timezone.utc)
    row = {"model_id": model_id, "backend": "local", "base_model": base, "job_id": None, "status": "running",
           "training_data_version": version, "hyperparameters": json.dumps(hyperparameters, default=str),
           "metrics": None, "artifact_path": str(model_dir), "created_at": now, "finished_at": None, "error": None}
    _write_row(conn, row)
    try:
        metrics = train(context.log.info)
    except Exception as exc:
        _write_row(conn, {**row, "status": "failed", "finished_at": datetime.now(timezone.utc),
                          "error": f"{type(exc).__name__}: {exc}"})
        raise
    _write_row(conn, {**row, "status": "succeeded", "metrics": json.dumps(metrics),
                      "finished_at": datetime.now(timezone.utc)})
    return metrics


def training_metadata(model_id: str, metrics: dict) -> dict:
    """Model id, scalar training metrics and the loss curve for the UI."""
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    history = metrics.get("loss_history") or []
    curve = "| step | loss |\n|---|---|\n" + "".join(f"| {s} | {loss:.4f} |\n" for s, loss in history[-40:])
    return {"model_id": model_id, "reused": bool(metrics.get("reused")), **scalars,
            "loss_curve": dg.MetadataValue.md(curve if history else "_no loss history recorded_")}


@dg.asset(
    group_name="train",
    kinds={"pytorch", "duckdb"},
    description="The base model: a small encoder-decoder transformer with its own tokenizer, trained "
                "once from the base corpus (which covers only some datasets), standing in for a "
                "pretrained LLM that does not know the team's schemas. Reused while its corpus and "
                "configuration are unchanged.",
)
def base_model(context: dg.AssetExecutionContext, duckdb: FlywheelDuckDB, task: TaskResource,
               trainer: LocalTrainer, paths: FlywheelPaths) -> dg.MaterializeResult:
    the_task = task.load()
    model_id = base_model_id(trainer)
    model_dir = paths.models_dir / model_id
    architecture, train_config = trainer.architecture(), trainer.base_train_config()

    def train(log):
        corpus = read_corpus(Path(trainer.base_corpus), trainer.base_max_examples)
        log(f"training base model {model_id} on {corpus.height} examples from {trainer.base_corpus}")
        return train_base_model(model_dir, corpus, the_task, architecture, train_config, log)

    with duckdb.get_connection() as conn:
        metrics = run_training(context, conn, model_id, model_dir, None, file_hash(Path(trainer.base_corpus)),
                               {"architecture": architecture, "training": train_config}, train)
    return dg.MaterializeResult(metadata=training_metadata(model_id, metrics))


@dg.asset(
    group_name="train",
    kinds={"pytorch", "duckdb"},
    deps=[training_files, base_model],
    description="The fine-tuned model: warm-started from the base checkpoint (tokenizer frozen) and "
                "trained on the curated train split, validated on the validation split. One run per "
                "training data version and configuration; a re-run reuses the finished model.",
)
def fine_tuned_model(context: dg.AssetExecutionContext, duckdb: FlywheelDuckDB, task: TaskResource,
                     trainer: LocalTrainer, paths: FlywheelPaths) -> dg.MaterializeResult:
    the_task = task.load()
    base_id = base_model_id(trainer)
    base_dir = paths.models_dir / base_id
    if not is_complete(base_dir):
        raise dg.Failure(f"base model {base_id} is not trained yet at {base_dir}; materialize base_model first")
    train_config = trainer.finetune_train_config()
    with duckdb.get_connection() as conn:
        examples = store.read(conn, "SELECT example_id, split, input::VARCHAR AS input, output FROM training_examples "
                                    "WHERE split IN ('train', 'validation') ORDER BY example_id")
        version = data_version(examples)
        model_id = f"local-ft-{version[:10]}-{config_hash(base_id, train_config, trainer.replay_examples)}"
        model_dir = paths.models_dir / model_id
        train_split = examples.filter(pl.col("split") == "train")
        validation = examples.filter(pl.col("split") == "validation")
        if train_split.is_empty():
            raise dg.Failure("the train split is empty: there is nothing to fine-tune on")

        def train(log):
            corpus = read_corpus(Path(trainer.base_corpus), trainer.base_max_examples)
            replay = corpus.sample(min(trainer.replay_examples, corpus.height), seed=trainer.seed)
            log(f"fine-tuning {model_id} from {base_id} on {train_split.height} examples "
                f"(+{replay.height} replayed from the base corpus; {validation.height} for validation)")
            return fine_tune_model(base_dir, model_dir, train_split, validation, the_task, train_config, log, replay)

        metrics = run_training(context, conn, model_id, model_dir, base_id, version,
                               {"training": train_config, "base_model": base_id,
                                "replay_examples": trainer.replay_examples}, train)
    return dg.MaterializeResult(metadata={**training_metadata(model_id, metrics), "base_model": base_id,
                                          "training_data_version": version, "train_examples": train_split.height,
                                          "validation_examples": validation.height})
