"""Training never holds the DuckDB write lock: another process can write while a model trains."""

import subprocess
import sys
from pathlib import Path

import duckdb

from pipeline.engine.train.registry import run_training
from pipeline.resources import FlywheelDuckDB


def write_from_another_process(database: Path) -> None:
    code = f"import duckdb; duckdb.connect({str(database)!r}).execute('CREATE TABLE IF NOT EXISTS ping (x INT)')"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=60)


def test_the_database_is_free_while_a_local_model_trains(tmp_path):
    database = tmp_path / "flywheel.duckdb"
    resource = FlywheelDuckDB(database=str(database), snapshot="")

    def train(log):
        write_from_another_process(database)  # raises if this process held the file
        return {"loss": 0.5}

    metrics = run_training(resource.get_connection, "local-test", tmp_path / "model", None, "v1", {}, train, print)
    assert metrics == {"loss": 0.5}
    with duckdb.connect(str(database), read_only=True) as conn:
        assert conn.execute("SELECT status FROM fine_tuned_models").fetchall() == [("succeeded",)]
        assert conn.execute("SELECT count(*) FROM ping").fetchone() == (0,)
