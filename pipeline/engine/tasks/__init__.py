"""Task plugins. ``load_task("nl2query")`` or ``load_task("my_package.my_task")``.

A task module exposes ``TASK``, an object satisfying :class:`pipeline.engine.tasks.base.Task`.
The files it ships (judge and synthetic-data prompts) lie in a ``prompts/`` folder next to it:
inside the package when the task is a package, beside the module file otherwise
(:func:`task_file`).
"""

from __future__ import annotations

import importlib
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from types import ModuleType

from pipeline.engine.tasks.base import CheckResult, Example, SyntheticExample, Task

BUILTIN = {"nl2query": "pipeline.engine.tasks.nl2query"}


def _task_module(name: str) -> ModuleType:
    """The module of the task named ``name`` (a built-in name or an importable module path)."""
    module_name = BUILTIN.get(name, name)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ValueError(
            f"unknown task {name!r}: not a built-in ({', '.join(BUILTIN)}) and not importable ({exc})"
        ) from exc


def load_task(name: str) -> Task:
    """The task named ``name``: a built-in name or an importable module path exposing TASK."""
    module = _task_module(name)
    task = getattr(module, "TASK", None)
    if not isinstance(task, Task):
        raise ValueError(f"module {module.__name__!r} does not expose a TASK implementing the Task interface")
    return task


def task_file(task_name: str, relative: str) -> Traversable:
    """The file ``prompts/<relative>`` (``/``-separated) shipped next to the task's module.

    Raises ValueError naming the path looked at when there is no such file, or when the task
    is unknown.
    """
    module = _task_module(task_name)
    package = module.__package__  # the package itself, or the one holding the module
    folder = resources.files(package) if package else Path(module.__file__).parent
    path = folder.joinpath("prompts", *relative.split("/"))
    if not path.is_file():
        raise ValueError(f"task {task_name!r} has no file prompts/{relative} (looked at {path})")
    return path


__all__ = ["CheckResult", "Example", "SyntheticExample", "Task", "load_task", "task_file"]
