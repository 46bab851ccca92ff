"""The run launcher of the instance ``make dev`` and ``make demo`` use: Dagster's default one,
whose run workers the run monitoring daemon can check.

Dagster's DefaultRunLauncher cannot tell the monitoring daemon whether a run's process is alive,
so a run whose process died without a word (kill -9, the out-of-memory killer) while no code
server watched it stayed STARTED for ever, and the run queue and automation waited on it. Here a
run's worker is the process whose id the run recorded first in its event log ("Started process
for run (pid: ...)", or the executor's "(pid: ...)"); once that process is gone, the daemon marks
the run failed. The daemon and the runs share one machine on this instance; deploy/dagster.yaml
launches runs in containers (DockerRunLauncher), which the daemon checks itself.
"""

from __future__ import annotations

import os

import dagster as dg
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus

#: Engine events read to find the run worker's process id (it is among a run's first).
FIRST_EVENTS = 20


class LocalRunLauncher(dg.DefaultRunLauncher):
    """DefaultRunLauncher with a run-worker health check: is the run's process still there."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        """FAILED once the run's worker process is gone; RUNNING while it lives or has not said its id yet."""
        pid = run_worker_pid(self._instance, run.run_id)
        if pid is None:
            return CheckRunHealthResult(WorkerStatus.RUNNING, "the run worker has not recorded its process id yet")
        if process_exists(pid):
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"run worker process {pid} is running")
        return CheckRunHealthResult(WorkerStatus.FAILED, f"run worker process {pid} is gone (killed, or out of "
                                                         "memory) without marking the run finished")


def run_worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The process id the run recorded first in its engine events (its worker's), or None."""
    events = instance.event_log_storage.get_logs_for_run(
        run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=FIRST_EVENTS)
    for entry in events:
        pid = entry.dagster_event.engine_event_data.metadata.get("pid")
        if pid is not None:
            return int(pid.value)
    return None


def process_exists(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
