"""`dagster dev` as a person starts it: launch a materialization through the GraphQL API, wait
for it, and take a screenshot of the asset graph in headless Chromium. Everything started here
is stopped by its process group id."""

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


def test_dagster_dev_runs_a_materialization_and_shows_the_asset_graph(tmp_path, tiny_demo):
    home, folder, port = tmp_path / "dagster_home", tmp_path / "flywheel", _free_port()
    home.mkdir()
    folder.mkdir()
    # one run at a time (one DuckDB writer), nothing phones home
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\nrun_queue:\n  max_concurrent_runs: 1\n")
    env = {**os.environ, "DAGSTER_HOME": str(home), "FLYWHEEL_UI_FOLDER": str(folder),
           # the sources are not observed during the test, so the daemon starts no run of its own
           "FLYWHEEL_OBSERVE_CRON": "0 0 1 1 *",
           "FLYWHEEL_UI_DEMO": str(tiny_demo), "FLYWHEEL_DUCKDB": str(folder / "flywheel.duckdb"),
           "DAGSTER_DISABLE_TELEMETRY": "1", "PYTHONPATH": str(REPO)}
    log = tmp_path / "dagster_dev.log"
    with open(log, "w") as out:
        server = subprocess.Popen([DAGSTER, "dev", "-m", "tests.ui.code_location", "-h", "127.0.0.1", "-p", str(port)],
                                  cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_up(port, server, log)
        repository = graphql(port, LOCATIONS)["repositoriesOrError"]["nodes"][0]
        params = {"selector": {"repositoryLocationName": repository["location"]["name"],
                               "repositoryName": repository["name"], "jobName": "flywheel",
                               "assetSelection": [{"path": ["raw_traces"]}]},
                  "runConfigData": "{}", "mode": "default"}
        launched = graphql(port, LAUNCH, {"params": params})["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]
        deadline, status = time.monotonic() + 240, None
        while status not in ("SUCCESS", "FAILURE", "CANCELED"):
            assert time.monotonic() < deadline, f"run {run_id} still {status}:\n{log.read_text()[-3000:]}"
            time.sleep(1)
            status = graphql(port, STATUS, {"runId": run_id})["runOrError"]["status"]
        assert status == "SUCCESS", log.read_text()[-3000:]
        with duckdb.connect(str(folder / "flywheel.snapshot.duckdb"), read_only=True) as conn:
            assert conn.execute("SELECT count(*) FROM raw_traces").fetchone()[0] > 0

        screenshot = tmp_path / "asset_graph.png"
        with browser() as chromium:
            page = chromium.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/asset-groups", wait_until="networkidle", timeout=120_000)
            skip = page.get_by_role("button", name="Skip")  # the first visit's community dialog
            if skip.count():
                skip.click()
            expand_all_groups(page)
            for name in ("trace_files_source", "raw_traces", "training_files", "fine_tuned_model", "promoted_model"):
                page.get_by_text(name, exact=True).first.wait_for(timeout=30_000)
            page.screenshot(path=str(screenshot))
        assert screenshot.stat().st_size > 20_000
        assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        stop(server)
