"""Train group: the base model and the fine-tuned model, trained here (local) or by a hosted
fine-tuning API (openai, azure) as the ``fine_tuning`` resource says.

The database is never held open while a model trains or a job is followed: read, close, do the
long work, then open again to write (the annotation app and analysts need the write lock)."""

import json
from functools import partial

import dagster as dg
import polars as pl

from assets.curate import training_files
from pipeline.engine.curate.examples import training_data_version
from pipeline.engine.providers import ProviderError
from pipeline.engine.train import registry
from pipeline.engine.train.hosted.events import loss_markdown
from pipeline.engine.train.hosted.jobs import TERMINAL, retrieve
from pipeline.engine.train.hosted.run import HostedRun, run_hosted
from pipeline.engine.train.local import runs
from pipeline.pipes.training import run_training_step
from pipeline.engine.tasks import Task
from pipeline.resources import FineTuning, FlywheelDuckDB, FlywheelPaths, LocalTrainer, TaskResource, TrainingCompute


def base_model_id(trainer: LocalTrainer, task: Task) -> str:
    """Id of the base model that the trainer's corpus and configuration (and the task's literal
    masking) produce."""
    corpus = runs.corpus_file(trainer.base_corpus, required=trainer.model_name_or_path is None)
    return runs.base_model_id(corpus, trainer.architecture(),
                              trainer.base_train_config(), trainer.base_max_examples, task)


def training_metadata(model_id: str, metrics: dict) -> dict:
    """Model id, scalar training metrics and the loss curve for the UI."""
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    history = metrics.get("loss_history") or []
    curve = "| step | loss |\n|---|---|\n" + "".join(f"| {s} | {loss:.4f} |\n" for s, loss in history[-40:])
    return {"model_id": model_id, "reused": bool(metrics.get("reused")), **scalars,
            "loss_curve": dg.MetadataValue.md(curve if history else "_no loss history recorded_")}


def fully_trained_spec(asset: str) -> dg.AssetCheckSpec:
    """The fully_trained check of a training asset."""
    return dg.AssetCheckSpec("fully_trained", asset=asset,
                             description="Warns when the model trained less than planned: stopped early by the "
                                         "wall-clock limit (max_seconds), fewer steps than planned, or under one "
                                         "epoch of the data (max_steps). The model is still registered and evaluated.")


def fully_trained(training: registry.Training, processes: int | None = None) -> dg.AssetCheckResult:
    """The fully_trained check's result: a warning with the reason when the run trained less than
    planned; planned vs actual steps, epochs, tokens and processes as metadata."""
    figures = {"planned_steps": training.planned_steps, "steps": training.steps,
               "planned_epochs": training.planned_epochs, "epochs": training.epochs, "tokens": training.tokens,
               "processes": processes, "stopped_early": training.stopped_early}
    said = {True: f"trained as planned: {training.figures}",
            False: training.reason, None: "no training plan recorded: nothing to check (not trained here)"}
    return dg.AssetCheckResult(check_name="fully_trained", passed=training.complete is not False,
                               severity=dg.AssetCheckSeverity.WARN, description=said[training.complete],
                               metadata={k: v for k, v in figures.items() if v is not None})


def training_result(model_id: str, metrics: dict, **metadata) -> dg.MaterializeResult:
    """A local training asset's result: the model id as its data version (a reused model is no
    new data), its metadata and the fully_trained check."""
    return dg.MaterializeResult(data_version=dg.DataVersion(model_id),
                                metadata={**training_metadata(model_id, metrics), **metadata},
                                check_results=[fully_trained(registry.Training.of_result(metrics),
                                                             metrics.get("processes"))])


@dg.asset(
    group_name="train",
    kinds={"pytorch", "duckdb", "openai"},
    check_specs=[fully_trained_spec("base_model")],
    description="The base model: a small encoder-decoder transformer with its own tokenizer, trained "
                "once from the base corpus (which covers only some datasets), standing in for a "
                "pretrained LLM that does not know the team's schemas. Reused while its corpus and "
                "configuration are unchanged. With a pretrained model (trainer.model_name_or_path: an HF "
                "id or a local path) it is saved into the base folder instead, and with a hosted "
                "fine-tuning backend the hosted base model is registered (neither is trained).",
)
def base_model(context: dg.AssetExecutionContext, duckdb: FlywheelDuckDB, task: TaskResource, trainer: LocalTrainer,
               paths: FlywheelPaths, fine_tuning: FineTuning, training_compute: TrainingCompute) -> dg.MaterializeResult:
    if fine_tuning.hosted:
        with duckdb.get_connection() as conn:
            registry.register_base(conn, fine_tuning.backend, fine_tuning.base_model)
        return dg.MaterializeResult(
            data_version=dg.DataVersion(f"{fine_tuning.backend}:{fine_tuning.base_model}"),
            metadata={"model_id": fine_tuning.base_model, "backend": fine_tuning.backend, "trained": False},
            check_results=[fully_trained(registry.Training())])
    the_task = task.load()
    model_id = base_model_id(trainer, the_task)
    model_dir = paths.models_dir / model_id
    architecture, train_config = trainer.architecture(), trainer.base_train_config()

    def train(log):
        corpus = runs.read_corpus(runs.corpus_file(trainer.base_corpus, required=False), trainer.base_max_examples)
        log(f"training base model {model_id} on {corpus.height} examples from {trainer.base_corpus}")
        return runs.train_base_model(model_dir, corpus, the_task, architecture, train_config, log,
                                     train_job=partial(run_training_step, context, training_compute))

    metrics = registry.run_training(duckdb.get_connection, model_id, model_dir, None,
                                    runs.corpus_version(trainer.base_corpus),
                                    {"architecture": architecture, "training": train_config}, train, context.log.info)
    return training_result(model_id, metrics)


@dg.asset(
    group_name="train",
    kinds={"pytorch", "duckdb", "openai"},
    deps=[training_files, base_model],
    check_specs=[fully_trained_spec("fine_tuned_model")],
    description="The fine-tuned model: warm-started from the base checkpoint (tokenizer frozen) and "
                "trained on the curated train split, validated on the validation split; or, with a "
                "hosted backend, a fine-tuning job on the exported training files, followed for a "
                "bounded time (re-materialize to resume it). One run per training data version and "
                "configuration; a re-run reuses the finished model or resumes the running job.",
)
def fine_tuned_model(context: dg.AssetExecutionContext, duckdb: FlywheelDuckDB, task: TaskResource,
                     trainer: LocalTrainer, paths: FlywheelPaths, fine_tuning: FineTuning,
                     training_compute: TrainingCompute) -> dg.MaterializeResult:
    if fine_tuning.hosted:
        return _hosted_fine_tune(context, duckdb, fine_tuning, paths)
    the_task = task.load()
    base_id = base_model_id(trainer, the_task)
    base_dir = paths.models_dir / base_id
    if not runs.is_complete(base_dir):
        raise dg.Failure(f"base model {base_id} is not trained yet at {base_dir}; materialize base_model first")
    train_config = trainer.finetune_train_config()
    with duckdb.get_connection() as conn:
        examples, version = training_data_version(conn)
    model_id = runs.fine_tuned_model_id(version, base_id, train_config, trainer.replay_examples)
    model_dir = paths.models_dir / model_id
    train_split = examples.filter(pl.col("split") == "train")
    validation = examples.filter(pl.col("split") == "validation")
    if train_split.is_empty():
        raise dg.Failure("the train split is empty: there is nothing to fine-tune on")

    def train(log):
        corpus = runs.read_corpus(runs.corpus_file(trainer.base_corpus, required=False), trainer.base_max_examples)
        replay = corpus.sample(min(trainer.replay_examples, corpus.height), seed=trainer.seed)
        log(f"fine-tuning {model_id} from {base_id} on {train_split.height} examples "
            f"(+{replay.height} replayed from the base corpus; {validation.height} for validation)")
        return runs.fine_tune_model(base_dir, model_dir, train_split, validation, the_task, train_config, log, replay,
                                    train_job=partial(run_training_step, context, training_compute))

    metrics = registry.run_training(duckdb.get_connection, model_id, model_dir, base_id, version,
                                    {"training": train_config, "base_model": base_id,
                                     "replay_examples": trainer.replay_examples}, train, context.log.info)
    return training_result(model_id, metrics, base_model=base_id, training_data_version=version,
                           train_examples=train_split.height, validation_examples=validation.height)


def _hosted_fine_tune(context: dg.AssetExecutionContext, duckdb: FlywheelDuckDB, fine_tuning: FineTuning,
                      paths: FlywheelPaths) -> dg.MaterializeResult:
    """Fine-tune through the hosted API on the files training_files exported for this data version."""
    with duckdb.get_connection() as conn:
        _, version = training_data_version(conn)
    train_file, validation_file = (paths.exports_dir / version / f"{s}.jsonl" for s in ("train", "validation"))
    if not train_file.is_file():
        raise dg.Failure(f"no training file for data version {version} at {train_file}; "
                         "materialize training_files first")
    has_validation = validation_file.is_file() and validation_file.stat().st_size > 0
    try:
        run = run_hosted(fine_tuning.api(), fine_tuning.spec(version), train_file,
                         validation_file if has_validation else None, duckdb.get_connection, context.log.info,
                         max_wait_s=fine_tuning.max_wait_s, poll_interval_s=fine_tuning.poll_interval_s,
                         price_per_1m_tokens=fine_tuning.price_per_1m_training_tokens)
    except (ProviderError, ValueError) as exc:
        raise dg.Failure(str(exc)) from None
    metadata = hosted_metadata(run)
    if run.error:
        raise dg.Failure(run.error, metadata=metadata)
    return dg.MaterializeResult(data_version=dg.DataVersion(run.row["model_id"]), metadata=metadata,
                                check_results=[fully_trained(registry.Training.of_row(run.row))])


def hosted_metadata(run: HostedRun) -> dict:
    """Model, job, cost and the loss curve of a hosted run, for the UI."""
    metrics = json.loads(run.row["metrics"])
    messages = run.events.filter(pl.col("type") != "metrics").tail(15)
    return {
        "model_id": run.row["model_id"], "job_id": run.job.id, "backend": run.row["backend"],
        "status": run.job.status, "new_job": run.created, "base_model": run.row["base_model"],
        "training_data_version": run.row["training_data_version"],
        "estimated_training_cost_usd": dg.MetadataValue.float(run.row["cost_estimate_usd"]),
        "cost_estimate_basis": metrics["cost_estimate_basis"],
        **({"trained_tokens": run.job.trained_tokens, "training_cost_usd": dg.MetadataValue.float(metrics["cost_usd"])}
           if run.job.trained_tokens else {}),
        **{k: metrics[k] for k in ("steps", "train_loss", "valid_loss", "duration_s") if metrics.get(k) is not None},
        "loss_curve": dg.MetadataValue.md(loss_markdown(run.events)),
        "events": dg.MetadataValue.md("\n".join(f"- {level}: {message}" for level, message in
                                                messages.select("level", "message").iter_rows()) or "none"),
    }


@dg.sensor(
    name="hosted_fine_tuning_job",
    asset_selection=[fine_tuned_model],
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Completes a hosted fine-tuning run that stopped waiting (max_wait_s): when the provider "
                "reports the job for the current training data as ended, fine_tuned_model is materialized "
                "again, which records the result without creating a job. Does nothing with the local backend.",
)
def hosted_fine_tuning_job(context: dg.SensorEvaluationContext, duckdb: FlywheelDuckDB, fine_tuning: FineTuning):
    if not fine_tuning.hosted:
        return dg.SkipReason("the fine-tuning backend is local")
    with duckdb.read_connection() as conn:  # a sensor only reads: no write lock, no snapshot
        known = registry.find_run(conn, fine_tuning.spec(training_data_version(conn)[1]))
    if not known or known[1] != "running":
        return dg.SkipReason("no hosted fine-tuning job is waiting for the current training data")
    job = retrieve(fine_tuning.api(), known[0])
    if job.status not in TERMINAL:
        return dg.SkipReason(f"fine-tuning job {job.id} is still {job.status}")
    return dg.RunRequest(run_key=f"{job.id}:{job.status}")
