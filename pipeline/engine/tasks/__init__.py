"""Task plugins. ``load_task("nl2query")``, ``load_task("my_package.my_task")`` or
``load_task("path/to/task.yaml")``.

A task module exposes ``TASK``, an object satisfying :class:`pipeline.engine.tasks.base.Task`;
a task file (``.yaml``, ``.yml`` or ``.json``) describes a task without Python
(:mod:`pipeline.engine.tasks.declarative`). The files a task ships (judge and synthetic-data
prompts) lie in a ``prompts/`` folder next to it: inside the package when the task is a package,
beside the module file or the task file otherwise (:func:`task_file`).
"""

from __future__ import annotations

import importlib
import os
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from types import ModuleType

from pipeline.engine.tasks.base import CheckResult, Example, SyntheticExample, Task
from pipeline.engine.tasks.declarative import is_task_file, load_declarative

BUILTIN = {"nl2query": "pipeline.engine.tasks.nl2query", "sql": "pipeline.engine.tasks.sql",
           "chat": "pipeline.engine.tasks.chat"}


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
    """The task named ``name``: a built-in name, an importable module path exposing TASK, or the
    path of a task file (``.yaml``, ``.yml``, ``.json``)."""
    if is_task_file(name):
        return load_declarative(name)
    module = _task_module(name)
    task = getattr(module, "TASK", None)
    if not isinstance(task, Task):
        raise ValueError(f"module {module.__name__!r} does not expose a TASK implementing the Task interface")
    return task


#: A folder of prompt files (the layout of a task's ``prompts/``) that takes precedence over the
#: task's own: a team edits the judge or synthetic-data prompts without touching the task.
PROMPTS_VARIABLE = "FLYWHEEL_TASK_PROMPTS"


def task_file(task_name: str, relative: str) -> Traversable:
    """The file ``prompts/<relative>`` (``/``-separated) shipped next to the task's module.

    For a task file, the ``prompts/`` folder beside that file. A folder named by
    FLYWHEEL_TASK_PROMPTS is looked at first. Raises ValueError naming the path looked at when
    there is no such file, or when the task is unknown.
    """
    override = os.environ.get(PROMPTS_VARIABLE)
    if override and Path(override, *relative.split("/")).is_file():
        return Path(override, *relative.split("/"))
    if is_task_file(task_name):
        spec = Path(task_name)
        if not spec.is_file():
            raise ValueError(f"unknown task {task_name!r}: there is no task file at {spec.resolve()}")
        folder: Traversable | Path = spec.resolve().parent
    else:
        module = _task_module(task_name)
        package = module.__package__  # the package itself, or the one holding the module
        folder = resources.files(package) if package else Path(module.__file__).parent
    path = folder.joinpath("prompts", *relative.split("/"))
    if not path.is_file():
        raise ValueError(f"task {task_name!r} has no file prompts/{relative} (looked at {path})")
    return path


__all__ = ["CheckResult", "Example", "SyntheticExample", "Task", "load_task", "task_file"]
