"""Run monitoring on the instance the Makefile writes: a run whose process is killed with SIGKILL
is marked failed by the daemon (``dagster-daemon run``), and automation requests its asset again.

Everything runs for real in a temporary DAGSTER_HOME: the run (``dagster job execute``, as
``make demo`` runs the flywheel), the daemon, and the automation conditions evaluated here.
"""

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import dagster as dg
import yaml
from dagster._core.instance.config import dagster_instance_config

from pipeline.run_launcher import run_worker_pid
from tests.ops.location import defs, upstream

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
#: How long past the poll interval the daemon may take on a loaded machine (a bound, not a speed).
SLACK_SECONDS = 180


def dev_instance_home(tmp_path: Path) -> Path:
    """A DAGSTER_HOME holding the dagster.yaml the Makefile writes for ``make dev`` and ``make demo``."""
    home = tmp_path / "dagster_home"
    subprocess.run(["make", "-s", f"{home}/dagster.yaml", f"DAGSTER_HOME={home}"], cwd=REPO, check=True)
    return home


def start(args: list[str], home: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(REPO), "DAGSTER_DISABLE_TELEMETRY": "1"}
    with open(log, "w") as out:
        return subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    """Stop ``process`` and what it started (its own process group)."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue


def wait_for(what: str, found, log: Path, seconds: float = 240):
    deadline = time.monotonic() + seconds
    while not (value := found()):
        assert time.monotonic() < deadline, f"{what} did not happen:\n{log.read_text()[-3000:]}"
        time.sleep(0.5)
    return value


class Automation:
    """The location's automation conditions, evaluated tick by tick (as the automation sensor does)."""

    def __init__(self, instance):
        self.instance, self.cursor = instance, None

    def tick(self) -> set[str]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = dg.evaluate_automation_conditions(defs=defs, instance=self.instance, cursor=self.cursor)
        self.cursor = result.cursor
        return {r.key.to_user_string() for r in result.results if r.true_subset.size}


def test_both_instance_configs_enable_run_monitoring_without_resuming(tmp_path):
    dev = dagster_instance_config(str(dev_instance_home(tmp_path)))[0]
    deployed = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())
    for config in (dev, deployed):
        monitoring = config["run_monitoring"]
        assert monitoring["enabled"] is True and monitoring["max_resume_run_attempts"] == 0
        assert 0 < monitoring["poll_interval_seconds"] <= 60 and monitoring["start_timeout_seconds"] > 0
    assert dev["run_launcher"] == {"module": "pipeline.run_launcher", "class": "LocalRunLauncher"}


def test_a_killed_run_is_marked_failed_and_automation_goes_on(tmp_path):
    home = dev_instance_home(tmp_path)
    poll_interval = dagster_instance_config(str(home))[0]["run_monitoring"]["poll_interval_seconds"]
    daemon_log, run_log = tmp_path / "daemon.log", tmp_path / "run.log"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        automation = Automation(instance)
        automation.tick()  # the first evaluation requests nothing (as the sensor's first tick)
        assert dg.materialize([upstream], instance=instance).success
        assert automation.tick() == {"working"}  # new upstream data: the eager asset is requested

        daemon = start([str(BIN / "dagster-daemon"), "run", "-m", "tests.ops.location"], home, daemon_log)
        run = None
        try:
            wait_for("the monitoring daemon's first heartbeat", lambda: "MONITORING" in instance.get_daemon_heartbeats(),
                     daemon_log)
            run = start([str(BIN / "dagster"), "job", "execute", "-m", "tests.ops.location", "-j", "working_job"],
                        home, run_log)
            run_id = wait_for("the run's start", lambda: next(
                (r.dagster_run.run_id for r in instance.get_run_records(dg.RunsFilter(job_name="working_job"))
                 if r.dagster_run.status == dg.DagsterRunStatus.STARTED), None), run_log)
            assert wait_for("the run worker's pid", lambda: run_worker_pid(instance, run_id), run_log) == run.pid
            assert automation.tick() == set()  # the request is being handled

            assert dg.materialize([upstream], instance=instance).success
            assert automation.tick() == set()  # new data, but a run of the asset is in progress

            os.kill(run.pid, signal.SIGKILL)
            killed = time.monotonic()
            assert run.wait(timeout=60) == -signal.SIGKILL
            status = wait_for("the run's failure", lambda: (s := instance.get_run_by_id(run_id).status)
                              in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.SUCCESS) and s,
                              daemon_log, seconds=poll_interval + SLACK_SECONDS)
            seconds = time.monotonic() - killed
            print(f"\nkilled run marked {status.value} {seconds:.1f} s after SIGKILL "
                  f"(poll_interval_seconds {poll_interval})")
        finally:
            if run is not None and run.poll() is None:
                run.kill()
                run.wait()
            stop(daemon)
        assert status == dg.DagsterRunStatus.FAILURE
        failure = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        assert f"run worker process {run.pid} is gone" in failure[-1].message
        assert automation.tick() == {"working"}  # no longer blocked by the dead run
