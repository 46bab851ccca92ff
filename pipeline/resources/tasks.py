"""The task under improvement."""

import dagster as dg

from pipeline.engine.tasks import Task, load_task


class TaskResource(dg.ConfigurableResource):
    """The task under improvement: a built-in name or an importable module exposing TASK."""

    name: str = "nl2query"

    def load(self) -> Task:
        return load_task(self.name)
