"""The annotation app served from a subprocess on a free port (stopped by its own pid), over a
seeded database."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import pytest

from tests.annotate.seed import HOSTILE, seed_database
from tests.browser import browser

REPO = Path(__file__).resolve().parents[2]
#: The app's environment: no default annotator, the default proxy header, no leads and the default
#: second-opinion share, whatever this shell sets.
CLEAN_ENV = {k: v for k, v in os.environ.items()
             if k not in ("FLYWHEEL_ANNOTATOR", "FLYWHEEL_USER_HEADER", "FLYWHEEL_LEADS", "FLYWHEEL_SECOND_OPINION_SHARE")}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Served:
    """A running app: its url, database and outbox folder."""

    def __init__(self, url: str, database: str, outbox: Path):
        self.url, self.database, self.outbox = url, database, outbox

    def rows(self, sql: str, params=()) -> list[tuple]:
        """Query the database read-only, waiting while the app holds its lock for a moment."""
        for _ in range(100):
            try:
                with duckdb.connect(self.database, read_only=True) as conn:
                    return conn.execute(sql, list(params)).fetchall()
            except duckdb.IOException:
                time.sleep(0.05)
        raise AssertionError("database stayed locked")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    folder = tmp_path_factory.mktemp("annotate")
    database = seed_database(folder / "flywheel.duckdb")
    with duckdb.connect(database) as conn:  # a failure mode someone typed is untrusted too
        conn.execute("INSERT INTO annotations (annotation_id, trace_id, label, failure_mode, annotator, annotated_at, "
                     "source) VALUES ('ann_zed', 't_good', 'bad', ?, 'zed', TIMESTAMPTZ '2026-10-07 00:00:00+00', 'app')",
                     [HOSTILE])
    with open(folder / "app.log", "wb") as log:
        yield from serve(database, folder, log)


def serve(database: str, folder: Path, log, *options: str):
    """Start the app on a free port (with flywheel-annotate's ``options`` too), yield it once it
    answers, stop it by its pid."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "pipeline.annotate", "--database", database, "--outbox", str(folder / "incoming"),
         "--port", str(port), "--busy-seconds", "0.5", *options],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**CLEAN_ENV, "PYTHONPATH": str(REPO)})
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url, timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError((folder / "app.log").read_text()) from None
                time.sleep(0.1)
        yield Served(url, database, folder / "incoming")
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


#: The screen the browser tests drive the app at.
VIEWPORT = {"width": 1600, "height": 1000}


@pytest.fixture(scope="module")
def chromium():
    with browser() as instance:
        yield instance


@pytest.fixture
def screens(tmp_path) -> Path:
    folder = Path(os.environ.get("FLYWHEEL_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def open_page(chromium, app, **context):
    """A new page of ``app`` at :data:`VIEWPORT`, its script errors collected in ``page.errors``."""
    page = chromium.new_context(viewport=VIEWPORT, **context).new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.goto(app.url)
    page.wait_for_selector("[data-form-key]")
    return page
