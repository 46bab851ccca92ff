"""The ingest assets: the partitioned LangSmith pull and raw_traces' counts and rejection-rate check."""

from datetime import datetime, timezone

import dagster as dg
import duckdb
import pytest

from assets.ingest import raw_traces
from assets.langsmith import langsmith_traces
from pipeline.resources import FlywheelDuckDB, LangSmithSource, TaskResource, TraceFiles
from tests.engine.test_langsmith_source import CHAT_INPUT, CHAT_OUTPUT, KEY
from tests.engine.test_traces import line
from tests.fakes.langsmith_api import FakeLangSmith, make_run


@pytest.fixture
def api(monkeypatch):
    monkeypatch.setenv("LANGSMITH_TRACING", "false")
    with FakeLangSmith(api_key=KEY, page_size=3) as fake:
        session = fake.add_project("nl2query-prod")
        for day in (19, 20):
            for hour in range(4):
                fake.runs.append(make_run(session_id=session, inputs=CHAT_INPUT, outputs=CHAT_OUTPUT,
                                          start=datetime(2026, 11, day, hour * 5, tzinfo=timezone.utc)))
        yield fake


def materialize(tmp_path, assets, resources, **kwargs):
    with dg.instance_for_test() as instance:
        result = dg.materialize(assets, resources={"duckdb": FlywheelDuckDB(database=str(tmp_path / "f.duckdb")),
                                                   "task": TaskResource(), **resources},
                                instance=instance, raise_on_error=False, **kwargs)
        logs = [e.message for e in instance.all_logs(result.run_id)]
    return result, logs


def test_langsmith_partition_pulls_its_day_and_a_backfill_range_in_one_run(tmp_path, api):
    source = LangSmithSource(api_url=api.url, api_key=KEY, project="nl2query-prod")
    result, logs = materialize(tmp_path, [langsmith_traces], {"langsmith": source}, partition_key="2026-11-19")
    assert result.success
    (event,) = result.get_asset_materialization_events()
    metadata = event.event_specific_data.materialization.metadata
    assert metadata["new_traces"].value == 4 and metadata["rejected"].value == 0
    assert KEY not in str(metadata) and not any(KEY in (m or "") for m in logs)
    (check,) = result.get_asset_check_evaluations()
    assert check.passed
    result, _ = materialize(tmp_path, [langsmith_traces], {"langsmith": source},
                            tags={"dagster/asset_partition_range_start": "2026-11-19",
                                  "dagster/asset_partition_range_end": "2026-11-20"})
    assert result.success
    with duckdb.connect(str(tmp_path / "f.duckdb"), read_only=True) as conn:
        assert conn.execute("SELECT count(*), min(source), max(source) FROM raw_traces").fetchone() == (8, "langsmith", "langsmith")


def test_langsmith_without_a_key_fails_with_a_clear_message(tmp_path):
    result, _ = materialize(tmp_path, [langsmith_traces], {"langsmith": LangSmithSource(project="p")},
                            partition_key="2026-11-19")
    assert not result.success
    assert "set LANGSMITH_API_KEY" in result.failure_data_for_node("langsmith_traces").error.message


def test_raw_traces_reports_counts_and_warns_when_too_many_records_are_rejected(tmp_path):
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    (incoming / "a.jsonl").write_text("\n".join([line(trace_id="a"), line(trace_id="a"), "{bad", "[]"]) + "\n")
    files = TraceFiles(paths=[str(incoming)], settle_seconds=0)
    result, _ = materialize(tmp_path, [raw_traces], {"trace_files": files})
    assert result.success
    metadata = result.get_asset_materialization_events()[0].event_specific_data.materialization.metadata
    assert (metadata["new_traces"].value, metadata["duplicates"].value, metadata["rejected_in_run"].value) == (1, 1, 2)
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["rejection_rate"].value == pytest.approx(0.5)
