"""Dagster Definitions: the asset graph, its checks, resources and the main job.

workspace.yaml points here. Every setting has an embedded default that runs offline: the local
DuckDB file data/flywheel.duckdb, the bundled demo traces and annotations, the local trainer.
FLYWHEEL_DUCKDB overrides the database (a path, or an ``md:`` MotherDuck string).
"""

import os

import dagster as dg

from assets import curate, evaluate, evaluations, ingest, train
from pipeline.resources import (
    AnnotationFiles, FlywheelDuckDB, FlywheelPaths, LocalTrainer, TaskResource, TraceFiles,
)

ASSET_MODULES = [ingest, evaluations, curate, train, evaluate]

flywheel_job = dg.define_asset_job(
    "flywheel",
    selection=dg.AssetSelection.all(),
    description="The whole loop: ingest traces and annotations, curate, train, evaluate, promote.",
    # One process: DuckDB allows one writer, and the steps run one after another anyway.
    executor_def=dg.in_process_executor,
    # Progress (training steps, counts) at INFO; Dagster's own step events stay out of the console.
    config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
)


def default_resources() -> dict:
    """Resources with the embedded offline defaults."""
    return {
        "duckdb": FlywheelDuckDB(database=os.environ.get("FLYWHEEL_DUCKDB", "data/flywheel.duckdb")),
        "task": TaskResource(),
        "trace_files": TraceFiles(),
        "annotation_files": AnnotationFiles(),
        "trainer": LocalTrainer(),
        "paths": FlywheelPaths(),
    }


defs = dg.Definitions(
    assets=dg.load_assets_from_modules(ASSET_MODULES),
    asset_checks=dg.load_asset_checks_from_modules(ASSET_MODULES),
    jobs=[flywheel_job],
    resources=default_resources(),
)
