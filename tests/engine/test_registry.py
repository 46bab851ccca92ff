"""The model registry's local run life cycle: running -> succeeded | failed, a finished model reused."""

import json
from contextlib import contextmanager

import pytest

from pipeline.engine.core import store
from pipeline.engine.train import registry
from pipeline.engine.train.local.folders import META_FILE


@pytest.fixture
def connect(tmp_path):
    path = str(tmp_path / "flywheel.duckdb")

    @contextmanager
    def open_database():
        conn = store.connect(path)
        try:
            yield conn
        finally:
            conn.close()

    return open_database


def rows(connect):
    with connect() as conn:
        return conn.execute("SELECT model_id, backend, base_model, status, training_data_version, hyperparameters, "
                            "metrics, error, finished_at IS NOT NULL FROM fine_tuned_models").fetchall()


def test_a_run_records_running_then_succeeded(connect, tmp_path):
    seen = []

    def train(log):
        seen.append(rows(connect))
        log("training")
        return {"loss": 0.25}

    logged = []
    metrics = registry.run_training(connect, "local-ft-1", tmp_path / "model", "local-base-1", "v1",
                                    {"epochs": 2}, train, logged.append)
    assert metrics == {"loss": 0.25} and logged == ["training"]
    assert seen == [[("local-ft-1", "local", "local-base-1", "running", "v1", '{"epochs": 2}', None, None, False)]]
    assert rows(connect) == [("local-ft-1", "local", "local-base-1", "succeeded", "v1", '{"epochs": 2}',
                              '{"loss": 0.25}', None, True)]


def test_a_failed_run_records_the_error_and_raises_it(connect, tmp_path):
    def train(log):
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        registry.run_training(connect, "local-ft-1", tmp_path / "model", None, "v1", {}, train, print)
    (model_id, _, _, status, _, _, metrics, error, finished), = rows(connect)
    assert (model_id, status, metrics, error, finished) == ("local-ft-1", "failed", None,
                                                            "RuntimeError: out of memory", True)


def test_a_finished_model_with_stored_metrics_is_reused_without_training(connect, tmp_path):
    model_dir = tmp_path / "model"
    registry.run_training(connect, "local-ft-1", model_dir, None, "v1", {}, lambda log: {"loss": 0.5}, print)
    model_dir.mkdir()
    (model_dir / META_FILE).write_text(json.dumps({"result": {}}))

    def train(log):
        raise AssertionError("a finished model is not trained again")

    logged = []
    assert registry.run_training(connect, "local-ft-1", model_dir, None, "v1", {}, train, logged.append) == {
        "loss": 0.5, "reused": True}
    assert logged == [f"local-ft-1 is already trained at {model_dir}; reusing it"]
    assert [r[3] for r in rows(connect)] == ["succeeded"]


def test_a_finished_folder_without_a_registered_success_is_trained_again(connect, tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / META_FILE).write_text("{}")
    metrics = registry.run_training(connect, "local-ft-1", model_dir, None, "v1", {}, lambda log: {"loss": 0.1}, print)
    assert metrics == {"loss": 0.1} and [r[3] for r in rows(connect)] == ["succeeded"]


def test_local_rows_are_keyed_by_model_id_and_hosted_rows_by_job_id(connect):
    with connect() as conn:
        registry.write_run(conn, registry.local_row("m", "dir", None, "v1", {}))
        registry.write_run(conn, {**registry.local_row("m", "dir", None, "v1", {}), "status": "succeeded"})
        registry.write_run(conn, {**registry.local_row("ftjob-1", "dir", None, "v1", {}), "job_id": "ftjob-1"})
        registry.write_run(conn, {**registry.local_row("ft:model", "dir", None, "v1", {}), "job_id": "ftjob-1",
                                  "status": "succeeded"})
        stored = conn.execute("SELECT model_id, job_id, status FROM fine_tuned_models ORDER BY model_id").fetchall()
    assert stored == [("ft:model", "ftjob-1", "succeeded"), ("m", None, "succeeded")]
