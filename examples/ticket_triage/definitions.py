"""The ticket_triage team's own Dagster code location: the project's graph with its own resources.

``dagster dev -w examples/ticket_triage/workspace.yaml`` (from the repository root) opens it;
``dagster job execute -m examples.ticket_triage.definitions -j flywheel`` runs the whole loop
once. Everything the project embeds is kept (:func:`default_resources`) except what is the
team's: the task, its trace and annotation files and drop folders, the base corpus with a trainer
sized for a laptop, and a database and data folder of its own, so that it never mixes with the
nl2query demo's ``data/flywheel.duckdb``.
"""

from pipeline.definitions import build_defs, default_resources
from pipeline.resources import AnnotationFiles, FlywheelDuckDB, FlywheelPaths, LocalTrainer, TaskResource, TraceFiles

TASK_MODULE = "examples.ticket_triage.task"
DATA = "examples/ticket_triage/data"
#: Where this location's database, models, training files and reports go.
WORK = "data/ticket_triage"


def resources() -> dict:
    """The project's default resources with the ticket_triage team's overrides."""
    return {
        **default_resources(),
        "task": TaskResource(name=TASK_MODULE),
        "duckdb": FlywheelDuckDB(database=f"{WORK}/flywheel.duckdb"),
        "paths": FlywheelPaths(data_dir=WORK),
        "trace_files": TraceFiles(paths=[f"{DATA}/traces.jsonl", f"{WORK}/traces/incoming"]),
        "annotation_files": AnnotationFiles(paths=[f"{DATA}/annotations.jsonl", f"{WORK}/annotations/incoming"]),
        # the built-in small model at its default size: 600 tickets, 20 passes (about 750 steps)
        "trainer": LocalTrainer(base_corpus=f"{DATA}/base_corpus.jsonl", base_epochs=20, replay_examples=300),
    }


defs = build_defs(resources())
