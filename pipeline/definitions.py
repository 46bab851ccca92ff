"""Dagster Definitions: the asset graph, its checks, resources and the main job.

workspace.yaml points here. Every setting has an embedded default that runs offline: the local
DuckDB file data/flywheel.duckdb, the bundled demo traces and annotations, the local trainer.
FLYWHEEL_DUCKDB overrides the database (a path, or an ``md:`` MotherDuck string).
"""

import os

import dagster as dg

from assets import curate, evaluate, evaluations, ingest, train
from assets import langsmith as langsmith_assets
from pipeline.resources import (
    AnnotationFiles, CurationSettings, FlywheelDuckDB, FlywheelPaths, JudgeResource, LangSmithSource, LocalTrainer,
    TaskResource, TraceFiles,
)

ASSET_MODULES = [ingest, evaluations, curate, train, evaluate]

flywheel_job = dg.define_asset_job(
    "flywheel",
    # LangSmith pulls are daily partitions with their own job and schedule: the loop runs offline.
    selection=dg.AssetSelection.all() - dg.AssetSelection.assets("langsmith_traces"),
    description="The whole loop: ingest traces and annotations, curate, train, evaluate, promote.",
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


def default_resources() -> dict:
    """Resources with the embedded offline defaults."""
    return {
        "duckdb": FlywheelDuckDB(database=os.environ.get("FLYWHEEL_DUCKDB", "data/flywheel.duckdb")),
        "task": TaskResource(),
        "trace_files": TraceFiles(),
        "annotation_files": AnnotationFiles(),
        "trainer": LocalTrainer(),
        "paths": FlywheelPaths(),
        "judge": JudgeResource(model=os.environ.get("FLYWHEEL_JUDGE_MODEL") or None),
        "curation": CurationSettings(),
        "langsmith": LangSmithSource(
            project=os.environ.get("LANGSMITH_PROJECT"),
            **({"api_key": dg.EnvVar("LANGSMITH_API_KEY")} if os.environ.get("LANGSMITH_API_KEY") else {})),
    }


defs = dg.Definitions(
    assets=dg.load_assets_from_modules([*ASSET_MODULES, langsmith_assets]),
    asset_checks=dg.load_asset_checks_from_modules([*ASSET_MODULES, langsmith_assets]),
    jobs=[flywheel_job, langsmith_job],
    schedules=[langsmith_schedule],
    resources=default_resources(),
)
