"""Dagster Definitions: the asset graph, its checks, resources, jobs, schedules and sensors.

workspace.yaml points here. Owners and automation conditions come from one policy
(:mod:`pipeline.automation`). Every setting has an embedded default that runs offline: the local
DuckDB file data/flywheel.duckdb, the task nl2query with its bundled demo traces, annotations and
base corpus, the local trainer. The environment chooses without an edit of the project:
FLYWHEEL_TASK (a built-in name, a module path or a task file), FLYWHEEL_TRACE_PATHS and
FLYWHEEL_ANNOTATION_PATHS (``os.pathsep``-separated files or folders), FLYWHEEL_PROMPT_LAYOUTS
(layout files of the production prompts that wrote the chat logs) and FLYWHEEL_BASE_CORPUS
(a task's own demo files are the defaults only for that task), FLYWHEEL_DUCKDB (a path, or an
``md:`` MotherDuck string), FLYWHEEL_INCUMBENT_* (the model in production today, to capture and
compare: :func:`pipeline.resources.incumbent.incumbent_from_env`). A team's own definitions module
calls :func:`build_defs` with :func:`default_resources` and its overrides (README, "Adding a task").
"""

import os

import dagster as dg

from assets import curate, evaluate, ingest, label, sources, train
from assets import incumbent as incumbent_assets
from assets import langsmith as langsmith_assets
from pipeline.automation import SOURCES, apply_policy, automation_sensor, nightly_schedule, retraining_job
from pipeline.engine.tasks import load_task
from pipeline.engine.tasks.hooks import demo_data
from pipeline.engine.train.hosted.api import KEY_VARIABLES
from pipeline.resources import (
    AnnotationFiles, CurationSettings, EvalServing, FineTuning, FlywheelDuckDB, FlywheelPaths, JudgeResource,
    LangSmithSource, LocalTrainer, TaskResource, TraceFiles, TrainingCompute,
)
from pipeline.resources.incumbent import incumbent_from_env

ASSET_MODULES = [ingest, label, curate, train, evaluate]

flywheel_job = dg.define_asset_job(
    "flywheel",
    # LangSmith pulls are daily partitions with their own job and schedule: the loop runs offline.
    # The sources are observed first, so what the run read is what the observe_sources sensor
    # sees afterwards: a finished run leaves automation nothing to catch up on.
    selection=(dg.AssetSelection.all() - dg.AssetSelection.assets("langsmith_traces"))
    | dg.AssetSelection.assets(*SOURCES),
    description="The whole loop: observe the trace files and decisions, ingest traces and annotations, "
                "curate, train, evaluate, promote.",
    # One process: DuckDB allows one writer, and the steps run one after another anyway.
    executor_def=dg.in_process_executor,
    # Progress (training steps, counts) at INFO; Dagster's own step events stay out of the console.
    config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
)

langsmith_job = dg.define_asset_job(
    "langsmith_pull", selection=dg.AssetSelection.assets("langsmith_traces"),
    description="Pull one day of LangSmith runs into raw_traces (backfills: select a range of days).")
# Stopped until someone configures LangSmith and turns it on; pulls yesterday's runs each night.
langsmith_schedule = dg.build_schedule_from_partitioned_job(langsmith_job, hour_of_day=1)


def fine_tuning_resource() -> FineTuning:
    """Local unless FLYWHEEL_FINE_TUNING_BACKEND says openai or azure (key from the environment)."""
    backend = os.environ.get("FLYWHEEL_FINE_TUNING_BACKEND", "local")
    variable = KEY_VARIABLES.get(backend)
    return FineTuning(backend=backend,
                      **({"api_key": dg.EnvVar(variable)} if variable and os.environ.get(variable) else {}))


def chosen_task() -> str:
    """The task under improvement: FLYWHEEL_TASK, else the demo task nl2query."""
    return os.environ.get("FLYWHEEL_TASK") or "nl2query"


def locations(variable: str, *defaults: str | None) -> list[str]:
    """The paths in ``variable`` (separated by ``os.pathsep``), else ``defaults`` that are set."""
    given = os.environ.get(variable)
    return [p for p in (given.split(os.pathsep) if given else defaults) if p]


def default_resources() -> dict:
    """Resources with the embedded offline defaults, for the task and data the environment names."""
    task = chosen_task()
    demo = demo_data(load_task(task))
    return {
        "duckdb": FlywheelDuckDB(database=os.environ.get("FLYWHEEL_DUCKDB", "data/flywheel.duckdb")),
        "task": TaskResource(name=task),
        "trace_files": TraceFiles(paths=locations("FLYWHEEL_TRACE_PATHS", demo.traces, TraceFiles.INCOMING),
                                  prompt_layouts=locations("FLYWHEEL_PROMPT_LAYOUTS", demo.prompt_layouts)),
        "annotation_files": AnnotationFiles(
            paths=locations("FLYWHEEL_ANNOTATION_PATHS", demo.annotations, AnnotationFiles.INCOMING)),
        "trainer": LocalTrainer(base_corpus=os.environ.get("FLYWHEEL_BASE_CORPUS") or demo.base_corpus or ""),
        "paths": FlywheelPaths(),
        "judge": JudgeResource(model=os.environ.get("FLYWHEEL_JUDGE_MODEL") or None),
        "curation": CurationSettings(distill_from=os.environ.get("FLYWHEEL_DISTILL_FROM") or None),
        "fine_tuning": fine_tuning_resource(),
        "training_compute": TrainingCompute(launcher=os.environ.get("FLYWHEEL_TRAINING_LAUNCHER", "in_process"),
                                            image=os.environ.get("FLYWHEEL_TRAINING_IMAGE") or None),
        "eval_serving": EvalServing(base_url=os.environ.get("FLYWHEEL_EVAL_BASE_URL") or None),
        "incumbent": incumbent_from_env(),
        "langsmith": LangSmithSource(
            project=os.environ.get("LANGSMITH_PROJECT"),
            prompt_layouts=locations("FLYWHEEL_PROMPT_LAYOUTS", demo.prompt_layouts),
            **({"api_key": dg.EnvVar("LANGSMITH_API_KEY")} if os.environ.get("LANGSMITH_API_KEY") else {})),
    }


def build_defs(resources: dict) -> dg.Definitions:
    """The whole code location with ``resources`` (tests and deployments pass their own)."""
    assets = dg.load_assets_from_modules([*ASSET_MODULES, langsmith_assets, incumbent_assets])
    return dg.Definitions(
        assets=apply_policy([*assets, *sources.SOURCES]),
        asset_checks=dg.load_asset_checks_from_modules([*ASSET_MODULES, langsmith_assets]),
        jobs=[flywheel_job, langsmith_job, retraining_job],
        schedules=[langsmith_schedule, nightly_schedule()],
        sensors=[automation_sensor, sources.observe_sources, train.hosted_fine_tuning_job],
        resources=resources,
        # runs that the automation sensor or the UI launch execute their steps one after another in
        # one process: DuckDB has one writer, and parallel step processes would contend for it
        executor=dg.in_process_executor,
    )


defs = build_defs(default_resources())
