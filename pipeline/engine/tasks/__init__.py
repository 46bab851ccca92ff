"""Task plugins. ``load_task("nl2query")`` or ``load_task("my_package.my_task")``.

A task module exposes ``TASK``, an object satisfying :class:`pipeline.engine.tasks.base.Task`.
"""

from __future__ import annotations

import importlib

from pipeline.engine.tasks.base import CheckResult, Example, SyntheticExample, Task

BUILTIN = {"nl2query": "pipeline.engine.tasks.nl2query"}


def load_task(name: str) -> Task:
    """The task named ``name``: a built-in name or an importable module path exposing TASK."""
    module_name = BUILTIN.get(name, name)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ValueError(
            f"unknown task {name!r}: not a built-in ({', '.join(BUILTIN)}) and not importable ({exc})"
        ) from exc
    task = getattr(module, "TASK", None)
    if not isinstance(task, Task):
        raise ValueError(f"module {module_name!r} does not expose a TASK implementing the Task interface")
    return task


__all__ = ["CheckResult", "Example", "SyntheticExample", "Task", "load_task"]
