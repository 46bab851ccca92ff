"""An analyst reads while the pipeline writes: a reader holds the published snapshot open across a
run and keeps querying it, another opens the database file itself for a moment as the run starts;
the run succeeds, and the reader sees the new rows when it opens the snapshot again."""

import json
import subprocess
import sys
import time

import dagster as dg

from assets.ingest import raw_traces
from tests.assets.tiny import tiny_resources

# Holds one read-only connection to the snapshot and queries it until told to stop, then opens it
# again: what a notebook does.
READER = """
import json, sys, time, duckdb
snapshot, ready, stop = sys.argv[1:4]
conn = duckdb.connect(snapshot, read_only=True)
counts, errors = [], []
open(ready, "w").close()
while True:
    stopping = __import__("os").path.exists(stop)
    try:
        counts.append(conn.execute("SELECT count(*) FROM raw_traces").fetchone()[0])
    except Exception as exc:
        errors.append(repr(exc))
    if stopping:
        break
    time.sleep(0.05)
conn.close()
with duckdb.connect(snapshot, read_only=True) as again:
    after = again.execute("SELECT count(*) FROM raw_traces").fetchone()[0]
print(json.dumps({"counts": counts, "errors": errors, "after": after}))
"""

# Opens the database file itself (as someone might with the duckdb CLI) and holds it a moment.
HOLDER = """
import sys, time, duckdb
database, ready, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
conn = duckdb.connect(database, read_only=True)
open(ready, "w").close()
time.sleep(seconds)
conn.close()
"""


def wait_for(path, seconds=30):
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def test_reader_holds_the_snapshot_across_a_run_and_an_analyst_on_the_file_does_not_fail_it(tmp_path, tiny_demo):
    resources = tiny_resources(tmp_path, tiny_demo)
    database, snapshot = tmp_path / "flywheel.duckdb", resources["duckdb"].snapshot_path
    with dg.instance_for_test() as instance:
        assert dg.materialize([raw_traces], resources=resources, instance=instance).success
        assert snapshot.exists()
        reader = subprocess.Popen([sys.executable, "-c", READER, str(snapshot), str(tmp_path / "reader.ready"),
                                   str(tmp_path / "reader.stop")], stdout=subprocess.PIPE, text=True)
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(database), str(tmp_path / "holder.ready"), "3"])
        try:
            wait_for(tmp_path / "reader.ready")
            wait_for(tmp_path / "holder.ready")
            (tmp_path / "incoming").mkdir(exist_ok=True)
            record = {"trace_id": "tr_during_run", "ts": "2026-11-20T10:00:00Z", "model": "m", "output": "{}",
                      "input": {"question": "count of requests", "columns": ["duration_ms"], "dataset": "x"}}
            (tmp_path / "incoming" / "new.jsonl").write_text(json.dumps(record) + "\n")
            # the file is held for 3 s from here: the run's connection retries until it is released
            assert dg.materialize([raw_traces], resources=resources, instance=instance).success
            assert holder.wait(timeout=30) == 0
            (tmp_path / "reader.stop").touch()
            out, _ = reader.communicate(timeout=60)
        finally:
            for process in (reader, holder):
                if process.poll() is None:
                    process.kill()
                    process.wait()
    seen = json.loads(out)
    before = seen["counts"][0]
    assert seen["errors"] == [] and len(seen["counts"]) > 5
    assert set(seen["counts"]) == {before}  # the held snapshot stays consistent throughout the run
    assert seen["after"] == before + 1  # a new open sees the run's rows
