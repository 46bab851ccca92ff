"""`make demo`, then `make dev`, as a person runs them: the flywheel job executed from the command
line, then `dagster dev` over the finished demo. Its daemon starts no run (the number is printed);
a raw_traces materialization launched through the GraphQL API that ingests nothing starts none
either; the asset graph and eval_report's page are screenshotted in headless Chromium. Everything
started here is stopped by its process group id."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb

from tests.browser import browser

REPO = Path(__file__).resolve().parents[2]
DAGSTER = str(Path(sys.executable).parent / "dagster")

LAUNCH = """mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on Error { message }
  }
}"""
STATUS = """query Status($runId: ID!) {
  runOrError(runId: $runId) { __typename ... on Run { status } }
}"""
LOCATIONS = """{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }"""
RUNS = """{ runsOrError { __typename ... on Runs { results { runId status tags { key value } } } } }"""
TICKS = """query Ticks($selector: SensorSelector!, $after: Float) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { ticks(limit: 50, afterTimestamp: $after) { status skipReason error { message } } } }
  }
}"""
LABELS = """{ assetNodes { assetKey { path } automationCondition { label } } }"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql",
                                     data=json.dumps({"query": query, "variables": variables or {}}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        body = json.loads(response.read())
    assert "errors" not in body, body["errors"]
    return body["data"]


def wait_until_up(port: int, server: subprocess.Popen, log: Path, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while True:
        assert server.poll() is None, f"dagster dev exited:\n{log.read_text()[-3000:]}"
        try:
            nodes = graphql(port, LOCATIONS)["repositoriesOrError"].get("nodes")
            if nodes:
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"dagster dev did not come up:\n{log.read_text()[-3000:]}"
        time.sleep(1)


def expand_all_groups(page, seconds: float = 90) -> None:
    """Press the graph's "Expand all groups" shortcut (⌥E) until the assets show."""
    deadline = time.monotonic() + seconds
    while not page.get_by_text("raw_traces", exact=True).count():
        assert time.monotonic() < deadline, "the asset graph never showed raw_traces"
        page.keyboard.press("Alt+KeyE")
        page.wait_for_timeout(2000)


def dismiss_community_dialog(page, seconds: float = 20) -> None:
    """Skip the first visit's "Join the Dagster community" dialog, which shows a moment after the page."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(timeout=seconds * 1000)
    except PlaywrightTimeout:
        return
    skip.click()
    skip.wait_for(state="hidden", timeout=10_000)


def stop(server: subprocess.Popen) -> None:
    """Stop dagster dev and its children (webserver, daemon, code server): its own process group."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    try:  # children that outlived it
        os.killpg(server.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def runs(port: int) -> list[dict]:
    """Every run the instance holds, newest first."""
    return graphql(port, RUNS)["runsOrError"]["results"]


def wait_for_ticks(port: int, repository: dict, sensor: str, after: float, count: int, log: Path,
                   seconds: float = 300) -> list[dict]:
    """Wait until ``sensor`` has finished ``count`` ticks since ``after``; fails on a failed tick."""
    selector = {"repositoryLocationName": repository["location"]["name"], "repositoryName": repository["name"],
                "sensorName": sensor}
    deadline = time.monotonic() + seconds
    while True:
        found = graphql(port, TICKS, {"selector": selector, "after": after})["sensorOrError"]
        assert found["__typename"] == "Sensor", found
        ticks = found["sensorState"]["ticks"]
        assert not [t for t in ticks if t["status"] == "FAILURE"], ticks
        done = [t for t in ticks if t["status"] in ("SKIPPED", "SUCCESS")]
        if len(done) >= count:
            return done
        assert time.monotonic() < deadline, f"{sensor} ticked {len(done)} of {count} times:\n{log.read_text()[-3000:]}"
        time.sleep(2)


def launch_and_wait(port: int, repository: dict, keys: list[str], log: Path) -> str:
    """Launch a flywheel run of ``keys`` through the GraphQL API as the UI does; its final status."""
    params = {"selector": {"repositoryLocationName": repository["location"]["name"],
                           "repositoryName": repository["name"], "jobName": "flywheel",
                           "assetSelection": [{"path": [key]} for key in keys]},
              "runConfigData": "{}", "mode": "default"}
    launched = graphql(port, LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    deadline, status = time.monotonic() + 240, None
    while status not in ("SUCCESS", "FAILURE", "CANCELED"):
        assert time.monotonic() < deadline, f"run {run_id} still {status}:\n{log.read_text()[-3000:]}"
        time.sleep(1)
        status = graphql(port, STATUS, {"runId": run_id})["runOrError"]["status"]
    return status


def test_make_dev_over_a_finished_demo_starts_no_run(tmp_path, tiny_demo):
    home, folder, port = tmp_path / "dagster_home", tmp_path / "flywheel", _free_port()
    home.mkdir()
    folder.mkdir()
    # one run at a time (one DuckDB writer), nothing phones home
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\nrun_queue:\n  max_concurrent_runs: 1\n")
    env = {**os.environ, "DAGSTER_HOME": str(home), "FLYWHEEL_UI_FOLDER": str(folder),
           "FLYWHEEL_OBSERVE_SECONDS": "5",  # observe often: every observation must start nothing
           "FLYWHEEL_UI_DEMO": str(tiny_demo), "FLYWHEEL_DUCKDB": str(folder / "flywheel.duckdb"),
           "DAGSTER_DISABLE_TELEMETRY": "1", "PYTHONPATH": str(REPO)}
    log = tmp_path / "dagster_dev.log"
    # make demo: the whole flywheel job from the command line, into the same instance
    demo = subprocess.run([DAGSTER, "job", "execute", "-m", "tests.ui.code_location", "-j", "flywheel"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    with open(log, "w") as out:
        server = subprocess.Popen([DAGSTER, "dev", "-m", "tests.ui.code_location", "-h", "127.0.0.1", "-p", str(port)],
                                  cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_up(port, server, log)
        up = time.time()
        repository = graphql(port, LOCATIONS)["repositoriesOrError"]["nodes"][0]
        assert [r["status"] for r in runs(port)] == ["SUCCESS"]  # the demo's run
        # make dev: the daemon observes the sources and evaluates automation over the finished demo
        observed = wait_for_ticks(port, repository, "observe_sources", up, 2, log)
        assert all(t["skipReason"] and t["skipReason"].startswith("unchanged") for t in observed), observed
        wait_for_ticks(port, repository, "flywheel_automation", up, 3, log)
        started = len(runs(port)) - 1
        print(f"runs the daemon started over the finished demo: {started}")
        assert started == 0, runs(port)

        # raw_traces from the UI: nothing new to ingest, so automation requests nothing downstream
        assert launch_and_wait(port, repository, ["raw_traces"], log) == "SUCCESS", log.read_text()[-3000:]
        wait_for_ticks(port, repository, "flywheel_automation", time.time(), 2, log)
        assert len(runs(port)) == 2, runs(port)
        with duckdb.connect(str(folder / "flywheel.snapshot.duckdb"), read_only=True) as conn:
            assert conn.execute("SELECT count(*) FROM raw_traces").fetchone()[0] > 0

        labels = {tuple(n["assetKey"]["path"]): (n["automationCondition"] or {}).get("label")
                  for n in graphql(port, LABELS)["assetNodes"]}
        assert labels[("eval_report",)] == "after a new fine_tuned_model"
        assert labels[("raw_traces",)] == "when the trace files change"

        screenshots = {"asset_graph": tmp_path / "asset_graph.png", "eval_report": tmp_path / "eval_report.png"}
        with browser() as chromium:
            page = chromium.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/asset-groups", wait_until="networkidle", timeout=120_000)
            dismiss_community_dialog(page)
            expand_all_groups(page)
            for name in ("trace_files_source", "raw_traces", "training_files", "fine_tuned_model", "promoted_model"):
                page.get_by_text(name, exact=True).first.wait_for(timeout=30_000)
            page.screenshot(path=str(screenshots["asset_graph"]))
            page.goto(f"http://127.0.0.1:{port}/assets/eval_report", wait_until="networkidle", timeout=120_000)
            page.get_by_text("after a new fine_tuned_model").first.wait_for(timeout=60_000)
            page.screenshot(path=str(screenshots["eval_report"]))
        for screenshot in screenshots.values():
            assert screenshot.stat().st_size > 20_000
            assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        stop(server)
