"""The nightly retraining schedule: retrains only when the training data changed and enough of it
is new, otherwise skips and says why."""

import json
from datetime import datetime, timedelta, timezone

import dagster as dg
import polars as pl
import pytest

from pipeline.automation import nightly_schedule
from pipeline.engine.core import store
from pipeline.engine.curate.examples import data_version
from pipeline.resources import FlywheelDuckDB

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def add_examples(conn, ids, created_at):
    rows = pl.DataFrame([{"example_id": i, "source": "trace", "group_id": i, "split": "train",
                          "input": json.dumps({"question": i}), "output": "{}", "created_at": created_at} for i in ids],
                        schema_overrides={"created_at": pl.Datetime("us", "UTC")})
    store.upsert(conn, "training_examples", rows, ["example_id"])


def add_model(conn, created_at):
    examples = store.read(conn, "SELECT example_id, split, input::VARCHAR AS input, output FROM training_examples")
    conn.execute("""INSERT INTO fine_tuned_models (model_id, backend, base_model, status, training_data_version,
                    created_at) VALUES ('ft-1', 'local', 'base-1', 'succeeded', ?, ?)""",
                 [data_version(examples), created_at])


def evaluate(database, min_new=5, cron="0 2 * * *"):
    schedule = nightly_schedule(cron, min_new)
    context = dg.build_schedule_context(resources={"duckdb": FlywheelDuckDB(database=str(database))},
                                        scheduled_execution_time=T0 + timedelta(days=1))
    return schedule, schedule(context)


@pytest.fixture
def database(tmp_path):
    path = tmp_path / "flywheel.duckdb"
    store.connect(str(path)).close()
    return path


def test_runs_at_two_utc_by_default_and_is_running(database):
    schedule, _ = evaluate(database)
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 2 * * *", "UTC")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert evaluate(database, cron="30 3 * * 1")[0].cron_schedule == "30 3 * * 1"


def test_skips_without_a_database_or_examples(tmp_path, database):
    assert "no database" in evaluate(tmp_path / "missing.duckdb")[1].skip_message
    assert "no training examples yet" in evaluate(database)[1].skip_message


def test_first_training_runs(database):
    with store.connect(str(database)) as conn:
        add_examples(conn, ["a", "b"], T0)
    request = evaluate(database)[1]
    assert isinstance(request, dg.RunRequest) and request.tags["flywheel/new_examples"] == "2"


def test_unchanged_training_data_skips_and_says_why(database):
    with store.connect(str(database)) as conn:
        add_examples(conn, ["a", "b"], T0)
        add_model(conn, T0 + timedelta(hours=1))
    message = evaluate(database)[1].skip_message
    assert "training data unchanged" in message and "ft-1" in message


def test_too_few_new_examples_skip_with_the_count_and_threshold(database):
    with store.connect(str(database)) as conn:
        add_examples(conn, ["a", "b"], T0)
        add_model(conn, T0 + timedelta(hours=1))
        add_examples(conn, ["c", "d", "e"], T0 + timedelta(hours=2))
    message = evaluate(database, min_new=5)[1].skip_message
    assert "only 3 new training examples since ft-1" in message and "needs 5" in message
    request = evaluate(database, min_new=3)[1]
    assert isinstance(request, dg.RunRequest) and request.tags["flywheel/new_examples"] == "3"
