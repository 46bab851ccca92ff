"""The incumbent_outputs asset: nothing sent while no incumbent is registered; a registered one
captured through a served fake OpenAI API, cached on the next run (same data version), and a
rejected key failing the run in words that hold no key."""

import json
from datetime import datetime, timezone

import dagster as dg
import polars as pl
import pytest

from assets.incumbent import incumbent_outputs
from pipeline.engine.core import store
from pipeline.resources import FlywheelDuckDB, TaskResource
from pipeline.resources.incumbent import IncumbentResource
from tests.fakes import FakeOpenAI

KEY = "sk-incumbent-asset-SECRET-0123456789"
MODEL = "ft:gpt-4o-mini-2024-07-18:acme::AbC12"
GOOD = '{"calculations":[{"op":"COUNT"}],"time_range":7200}'


@pytest.fixture
def database(tmp_path):
    path = str(tmp_path / "flywheel.duckdb")
    with store.connect(path) as conn:
        store.upsert(conn, "training_examples", pl.DataFrame({
            "example_id": ["e0", "e1", "e2"], "source": "trace", "group_id": ["g0", "g1", "g2"], "split": "test",
            "input": [json.dumps({"question": f"count of errors {i}", "columns": ["error", "http.route"]})
                      for i in range(3)],
            "output": GOOD, "created_at": datetime(2026, 11, 1, tzinfo=timezone.utc)}), ["example_id"])
    return path


def run(database: str, incumbent: IncumbentResource, instance) -> tuple[dg.ExecuteInProcessResult, dict]:
    result = dg.materialize([incumbent_outputs], instance=instance, raise_on_error=False, resources={
        "duckdb": FlywheelDuckDB(database=database), "task": TaskResource(name="nl2query"), "incumbent": incumbent})
    events = result.get_asset_materialization_events()
    return result, events[0].event_specific_data.materialization if events else None


def test_without_an_incumbent_nothing_is_sent_and_the_run_says_so(database):
    with dg.instance_for_test() as instance:
        result, materialization = run(database, IncumbentResource(), instance)
    assert result.success
    assert materialization.metadata["incumbent"].value == "none"
    assert "no incumbent registered" in materialization.metadata["status"].value


def test_a_registered_incumbent_is_captured_then_cached_with_its_cost(database, monkeypatch):
    fake = FakeOpenAI(api_key=KEY)
    fake.chat_responder = lambda request: GOOD
    monkeypatch.setenv("PROD_OPENAI_KEY", KEY)
    with fake.serve() as base_url, dg.instance_for_test() as instance:
        incumbent = IncumbentResource(model=MODEL, base_url=base_url, api_key_env="PROD_OPENAI_KEY", max_retries=0)
        first, captured = run(database, incumbent, instance)
        second, cached = run(database, incumbent, instance)
    assert first.success and second.success and len(fake.requests) == 3
    meta = {k: v.value for k, v in captured.metadata.items()}
    assert (meta["incumbent"], meta["captured_now"], meta["cached"], meta["failed"]) == (MODEL, 3, 0, 0)
    assert 0 < meta["cost_usd_so_far"] < 0.01 and meta["pricing"].startswith("OpenAI list price")
    again = {k: v.value for k, v in cached.metadata.items()}
    assert (again["captured_now"], again["cached"], again["cost_usd_now"]) == (0, 3, 0)
    assert cached.tags["dagster/data_version"] == captured.tags["dagster/data_version"]
    assert KEY not in json.dumps(meta, default=str)


def test_a_rejected_key_fails_the_run_without_the_key(database, monkeypatch):
    fake = FakeOpenAI(api_key=KEY)
    monkeypatch.setenv("PROD_OPENAI_KEY", "sk-wrong-0123456789ABCDEFGH")
    with fake.serve() as base_url, dg.instance_for_test() as instance:
        incumbent = IncumbentResource(model=MODEL, base_url=base_url, api_key_env="PROD_OPENAI_KEY", max_retries=0)
        result, _ = run(database, incumbent, instance)
    assert not result.success
    failure = result.get_step_failure_events()[0].event_specific_data.error.message
    assert "rejected the API key" in failure and "ABCDEFGH" not in failure
