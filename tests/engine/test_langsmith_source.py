"""LangSmith runs pulled with the real langsmith client from a stub of the HTTP API."""

import traceback
from datetime import datetime, timedelta, timezone

import pytest
from langsmith import Client
from langsmith.utils import LangSmithError

from pipeline.engine.core import store
from pipeline.engine.ingest.langsmith_source import RunQuery, fetch_runs, ingest_runs, window_filter
from pipeline.engine.tasks import load_task
from tests.engine.test_formats import USER
from tests.engine.test_traces import OUTPUT
from tests.fakes.langsmith_api import FakeLangSmith, make_run

TASK = load_task("nl2query")
KEY = "lsv2_pt_0123456789abcdef0123456789abcdef_0123456789"
DAY = datetime(2026, 11, 19, tzinfo=timezone.utc)
CHAT_INPUT = {"messages": [{"role": "system", "content": "Translate."}, {"role": "user", "content": USER}]}
CHAT_OUTPUT = {"choices": [{"index": 0, "message": {"role": "assistant", "content": OUTPUT}, "finish_reason": "stop"}]}


@pytest.fixture
def api(monkeypatch):
    monkeypatch.setenv("LANGSMITH_TRACING", "false")
    with FakeLangSmith(api_key=KEY, page_size=2) as fake:
        session = fake.add_project("nl2query-prod")
        other = fake.add_project("staging")
        for hour in range(0, 24, 5):  # 5 runs that day, tagged production
            fake.runs.append(make_run(session_id=session, start=DAY + timedelta(hours=hour), inputs=CHAT_INPUT,
                                      outputs=CHAT_OUTPUT, tags=["production"]))
        fake.runs.append(make_run(session_id=session, start=DAY + timedelta(days=1, minutes=1), inputs=CHAT_INPUT,
                                  outputs=CHAT_OUTPUT, tags=["production"]))  # the next day
        fake.runs.append(make_run(session_id=session, start=DAY + timedelta(hours=3), inputs=CHAT_INPUT,
                                  outputs=CHAT_OUTPUT, tags=["canary"]))
        fake.runs.append(make_run(session_id=other, start=DAY + timedelta(hours=3), inputs=CHAT_INPUT,
                                  outputs=CHAT_OUTPUT, tags=["production"]))
        yield fake


def pull(fake, conn, query=RunQuery("nl2query-prod", filter='has(tags, "production")')):
    runs = fetch_runs(Client(api_url=fake.url, api_key=KEY), query, DAY, DAY + timedelta(days=1))
    return ingest_runs(conn, runs, TASK, "langsmith")


def test_window_filter_combines_the_configured_filter_with_the_day():
    query = RunQuery("p", filter='has(tags, "production")')
    assert window_filter(query, DAY, DAY + timedelta(days=1)) == (
        'and(has(tags, "production"), gte(start_time, "2026-11-19T00:00:00+00:00"), '
        'lt(start_time, "2026-11-20T00:00:00+00:00"))')


def test_pulls_every_page_of_the_day_and_maps_runs_onto_traces(api):
    with store.connect(":memory:") as conn:
        report = pull(api, conn)
        assert report.counts() == {"runs read": 5, "ingested": 5, "duplicates": 0, "rejected": 0}
        queries = [body for method, path, body in api.requests if path == "/runs/query"]
        assert len(queries) == 3 and [q.get("cursor") is not None for q in queries] == [False, True, True]
        assert queries[0]["session"] == [api.projects["nl2query-prod"]["id"]] and queries[0]["run_type"] == "llm"
        rows = conn.execute("SELECT source, output, model, latency_ms, prompt_tokens, input->>'$.question' "
                            "FROM raw_traces").fetchall()
        assert {r[:5] for r in rows} == {("langsmith", OUTPUT, "gpt-4o-mini", 1200.0, 250)}


def test_a_second_pull_of_the_same_day_adds_nothing(api):
    with store.connect(":memory:") as conn:
        pull(api, conn)
        again = pull(api, conn)
        assert (again.ingested, again.duplicates) == (0, 5)
        assert conn.execute("SELECT count(*) FROM raw_traces").fetchone()[0] == 5


def test_a_run_that_cannot_be_a_trace_is_rejected_with_its_run_id(api):
    bad = make_run(session_id=api.projects["nl2query-prod"]["id"], start=DAY + timedelta(hours=2),
                   inputs={"messages": [{"role": "user", "content": "hi"}]}, outputs=CHAT_OUTPUT, tags=["production"])
    api.runs.append(bad)
    with store.connect(":memory:") as conn:
        report = pull(api, conn)
        assert (report.ingested, report.rejected) == (5, 1)
        location, reason = conn.execute("SELECT location, reason FROM rejected_traces").fetchone()
        assert location == f"run {bad['id']}" and reason == (
            "task 'nl2query' cannot recover its input from chat messages: the user message matches none of the 3 "
            "production prompt layouts (nlq_columns_pylist, honeycomb_query_assistant, nl2query) nor the task's own "
            "prompt; first lines: 'hi'")


def test_the_api_key_goes_only_in_the_header_never_in_rows_or_bodies(api):
    with store.connect(":memory:") as conn:
        pull(api, conn)
        api.runs[0]["inputs"] = {"messages": "broken"}  # one rejected row too
        pull(api, conn)
        dump = str(conn.execute("SELECT * FROM raw_traces").fetchall()) + str(
            conn.execute("SELECT * FROM rejected_traces").fetchall())
    assert KEY not in dump and KEY not in str(api.requests)


def test_a_wrong_key_fails_loudly(api):
    client = Client(api_url=api.url, api_key="lsv2_pt_wrong")
    with pytest.raises(LangSmithError):
        list(fetch_runs(client, RunQuery("nl2query-prod"), DAY, DAY + timedelta(days=1)))


@pytest.mark.parametrize("status", [400, 401, 403])
def test_a_key_the_server_echoes_is_redacted_from_the_error(monkeypatch, status):
    monkeypatch.setenv("LANGSMITH_TRACING", "false")
    with FakeLangSmith(api_key=KEY, echo_key_status=status) as fake:
        with pytest.raises(LangSmithError) as raised:
            list(fetch_runs(Client(api_url=fake.url, api_key=KEY), RunQuery("nl2query-prod"), DAY, DAY + timedelta(days=1)))
    shown = "".join(traceback.format_exception(raised.value))  # what a log shows: message, traceback, causes
    assert KEY not in shown
    assert "request refused for x-api-key ***" in str(raised.value) and str(status) in str(raised.value)
