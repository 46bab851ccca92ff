"""The task under improvement."""

import dagster as dg

from pipeline.engine.tasks import Task, load_task


class TaskResource(dg.ConfigurableResource):
    """The task under improvement: a built-in name (nl2query, sql, chat), an importable module
    exposing TASK, or the path of a task file (YAML or JSON). default_resources takes FLYWHEEL_TASK."""

    name: str = "nl2query"

    def load(self) -> Task:
        return load_task(self.name)
