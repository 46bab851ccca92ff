"""Run a task's assertions over traces: one trace_evaluations row per trace and check.

Large batches are split into chunks evaluated in worker processes (one per core); each chunk
builds its rows column by column, so a million traces (eleven million rows for nl2query) stay
within a minute on two cores. ``check_version`` names the task version *and* the code of its
checks, so evaluations are redone when a check changes and never otherwise.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import pickle
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime, timezone
from multiprocessing import get_context

import polars as pl

from pipeline.engine.tasks import Task

EVALUATION_SCHEMA = {
    "trace_id": pl.String, "check_name": pl.String, "passed": pl.Boolean, "detail": pl.String,
    "task_version": pl.String, "evaluated_at": pl.Datetime("us", "UTC"),
}
log = logging.getLogger(__name__)
#: Below this many traces a batch is evaluated in process (starting workers costs more).
PARALLEL_MIN_TRACES = 200_000
CHUNK_TRACES = 50_000


def check_version(task: Task) -> str:
    """``<task.version>+<hash>`` of the task's name, its version and the source of its check code.

    The check code is the module defining ``task.check`` (the task's class's module when that
    is unknown) plus the modules the task lists in an optional ``check_modules`` attribute
    (for checks that call into other modules). Editing a check changes the version, so stored
    evaluations are redone even if the task author forgot to bump ``version``; editing code
    outside those modules (the prompt, the synthetic generators) does not.
    """
    modules = (inspect.getmodule(task.check) or inspect.getmodule(type(task)), *getattr(task, "check_modules", ()))
    digest = hashlib.sha256(f"{getattr(task, 'name', '')}\0{task.version}".encode())
    for module in dict.fromkeys(m for m in modules if m is not None):
        try:
            digest.update(b"\0" + inspect.getsource(module).encode())
        except (OSError, TypeError):  # no source to read (a module built at run time)
            digest.update(b"\0")
    return f"{task.version}+{digest.hexdigest()[:10]}"


def _values_from_check(task: Task) -> Callable[[dict, str], tuple[tuple, tuple]]:
    """``check_values`` built from ``task.check``, its names verified against ``check_names``."""
    names = tuple(task.check_names)

    def values(input: dict, output: str) -> tuple[tuple, tuple]:
        results = task.check(input, output)
        if tuple(r.check_name for r in results) != names:
            raise ValueError(f"check() returned {[r.check_name for r in results]}, expected {list(names)}")
        return tuple(r.passed for r in results), tuple(r.detail for r in results)

    return values


def evaluate_rows(task: Task, trace_ids: list[str], inputs: list[str], outputs: list[str | None],
                  errors: list[str | None]) -> pl.DataFrame:
    """trace_id, check_name, passed, detail for one batch (in process), built column by column.

    Uses the task's ``check_values(input, output) -> (passed tuple, detail tuple)`` when it has
    one (the fast form, in ``check_names`` order), else ``check``. A trace whose call failed
    (error set, no output) gets passed=None on every check with the error as detail: there is
    no output to judge. A trace whose input is not JSON, or on which a check raises, gets
    passed=None with the reason, and the rest of the batch is still evaluated.
    """
    names = tuple(task.check_names)
    values = getattr(task, "check_values", None) or _values_from_check(task)
    unknown = (None,) * len(names)
    passed: list[tuple] = []
    detail: list[tuple] = []
    for input_json, output, error in zip(inputs, outputs, errors):
        if error and not output:
            ok, why = unknown, (f"skipped: call failed: {error}",) * len(names)
        else:
            try:
                ok, why = values(json.loads(input_json), output)
            except Exception as exc:  # one bad trace must not stop a million others
                ok, why = unknown, (f"skipped: could not check: {type(exc).__name__}: {exc}",) * len(names)
        passed.append(ok)
        detail.append(why)
    by_check_passed = list(zip(*passed)) or [()] * len(names)
    by_check_detail = list(zip(*detail)) or [()] * len(names)
    schema = dict(list(EVALUATION_SCHEMA.items())[:4])
    return pl.concat([
        pl.DataFrame({"trace_id": trace_ids, "check_name": pl.repeat(name, len(trace_ids), eager=True, dtype=pl.String),
                      "passed": pl.Series(by_check_passed[n], dtype=pl.Boolean),
                      "detail": pl.Series(by_check_detail[n], dtype=pl.String)}, schema=schema)
        for n, name in enumerate(names)])


def _evaluate_chunk(task: Task, chunk: pl.DataFrame) -> pl.DataFrame:
    return evaluate_rows(task, chunk["trace_id"].to_list(), chunk["input"].to_list(),
                         chunk["output"].to_list(), chunk["error"].to_list())


def evaluate_traces(traces: pl.DataFrame, task: Task, now: datetime | None = None,
                    workers: int | None = None) -> pl.DataFrame:
    """Assertion results for ``traces`` (columns trace_id, input as JSON text, output, error).

    ``workers`` processes evaluate chunks in parallel (default: the number of cores) when the
    batch holds at least PARALLEL_MIN_TRACES traces.
    """
    now = now or datetime.now(timezone.utc)
    traces = traces.select("trace_id", "input", "output", "error")
    workers = workers or os.cpu_count() or 1
    if workers > 1 and traces.height >= PARALLEL_MIN_TRACES:
        size = max(1, min(CHUNK_TRACES, -(-traces.height // workers)))
        chunks = [traces.slice(start, size) for start in range(0, traces.height, size)]
        try:
            # forkserver: workers do not inherit the threads of the calling process (Dagster, polars)
            with ProcessPoolExecutor(workers, mp_context=get_context("forkserver")) as pool:
                frame = pl.concat(pool.map(_evaluate_chunk, [task] * len(chunks), chunks))
        except (BrokenProcessPool, pickle.PicklingError, AttributeError) as exc:
            # workers cannot start from here (an interactive __main__, an unpicklable task)
            log.warning("evaluating %d traces in process: worker processes failed (%s)", traces.height, exc)
            frame = _evaluate_chunk(task, traces)
    else:
        frame = _evaluate_chunk(task, traces)
    return frame.with_columns(task_version=pl.lit(check_version(task)), evaluated_at=pl.lit(now)).cast(EVALUATION_SCHEMA)


def failing_traces(evaluations: pl.DataFrame) -> pl.DataFrame:
    """One row per failed (trace, check): trace_id, failure_mode, detail."""
    return (evaluations.filter(pl.col("passed") == False)  # noqa: E712 (null means not run)
            .select("trace_id", pl.col("check_name").alias("failure_mode"), "detail"))
