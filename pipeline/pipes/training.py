"""The local training step where the ``TrainingCompute`` resource says: in this process (torchrun
started from it for several processes), a torchrun subprocess through Dagster Pipes, or pods on
Kubernetes through Dagster Pipes (:mod:`.k8s`). Bound to a step's context and compute,
:func:`run_training_step` takes the place of ``launch.train_in_processes``: same arguments, same
result."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Callable

import dagster as dg

from pipeline.engine.train.local import launch
from pipeline.engine.train.local.config import TrainResult
from pipeline.pipes import k8s, train_step
from pipeline.resources.models import TrainingCompute

LAUNCHERS = ("in_process", "subprocess", "kubernetes")


def run_training_step(context: dg.AssetExecutionContext, compute: TrainingCompute, job: launch.Job,
                      processes: int, log: Callable[[str], None]) -> TrainResult:
    """Train ``job`` in ``processes`` data-parallel processes where ``compute`` says. In process,
    progress goes to ``log``; through Pipes the training process logs into the step's log and
    reports the result as the materialization's metadata, which is what this returns."""
    if compute.nnodes > 1 and compute.launcher != "kubernetes":
        raise ValueError(f"several nodes (nnodes={compute.nnodes}) need the kubernetes launcher, not {compute.launcher!r}")
    if compute.launcher == "in_process":
        return launch.train_in_processes(job, processes, log)
    if compute.launcher == "subprocess":
        with tempfile.TemporaryDirectory(prefix="flywheel-job-") as folder:
            command = train_step.command(sys.executable, job.save(Path(folder) / "job.json"), processes)
            invocation = dg.PipesSubprocessClient().run(context=context, command=command)
    elif compute.launcher == "kubernetes":
        invocation = k8s.run_on_kubernetes(context, compute, job, processes)
    else:
        raise ValueError(f"training launcher {compute.launcher!r}: expected {', '.join(LAUNCHERS)}")
    return reported_result(invocation.get_materialize_result())


def reported_result(materialization: dg.MaterializeResult) -> TrainResult:
    """The TrainResult the training process reported through Pipes."""
    reported = (materialization.metadata or {}).get(train_step.RESULT_KEY)
    if reported is None:
        raise RuntimeError("the training process ended without reporting a result through Dagster Pipes")
    return TrainResult.from_dict(reported.value)
