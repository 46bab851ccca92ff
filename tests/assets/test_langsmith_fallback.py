"""The LangSmith asset on a server without runs.query: it still pulls, and its log says how."""

from datetime import datetime, timezone

from assets.langsmith import langsmith_traces
from pipeline.resources import LangSmithSource
from tests.assets.test_ingest_sources import materialize
from tests.engine.test_langsmith_source import CHAT_INPUT, CHAT_OUTPUT, KEY
from tests.fakes.langsmith_api import FakeLangSmith, make_run


def test_a_partition_on_a_server_without_runs_query_pulls_with_list_runs_and_logs_it(tmp_path, monkeypatch):
    monkeypatch.setenv("LANGSMITH_TRACING", "false")
    with FakeLangSmith(api_key=KEY, v2=False) as fake:
        session = fake.add_project("nl2query-prod")
        for hour in (2, 14):
            fake.runs.append(make_run(session_id=session, inputs=CHAT_INPUT, outputs=CHAT_OUTPUT,
                                      start=datetime(2026, 11, 19, hour, tzinfo=timezone.utc)))
        source = LangSmithSource(api_url=fake.url, api_key=KEY, project="nl2query-prod")
        result, logs = materialize(tmp_path, [langsmith_traces], {"langsmith": source}, partition_key="2026-11-19")
    assert result.success
    (event,) = result.get_asset_materialization_events()
    assert event.event_specific_data.materialization.metadata["new_traces"].value == 2
    assert any("deprecated list_runs" in (m or "") for m in logs) and not any(KEY in (m or "") for m in logs)
