"""LangSmith runs pulled with the real langsmith client from a stub of the HTTP API."""

import asyncio
import json
import traceback
import warnings
from datetime import datetime, timedelta, timezone

import pytest
from langsmith import BadRequestError, Client
from langsmith.utils import LangSmithError

from pipeline.engine.core import store
from pipeline.engine.ingest.langsmith_source import RunQuery, fetch_runs, ingest_runs, window_filter
from pipeline.engine.tasks import load_task
from tests.engine.test_formats import USER
from tests.engine.test_traces import OUTPUT
from tests.fakes.langsmith_api import V2_QUERY, FakeLangSmith, make_run

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
        fake.runs.append(make_run(session_id=session, start=DAY + timedelta(days=1), inputs=CHAT_INPUT,
                                  outputs=CHAT_OUTPUT, tags=["production"]))  # the next day, at its first instant
        fake.runs.append(make_run(session_id=session, start=DAY + timedelta(hours=3), inputs=CHAT_INPUT,
                                  outputs=CHAT_OUTPUT, tags=["canary"]))
        fake.runs.append(make_run(session_id=other, start=DAY + timedelta(hours=3), inputs=CHAT_INPUT,
                                  outputs=CHAT_OUTPUT, tags=["production"]))
        yield fake


def pull(fake, conn, query=RunQuery("nl2query-prod", filter='has(tags, "production")'), log=None):
    runs = fetch_runs(Client(api_url=fake.url, api_key=KEY), query, DAY, DAY + timedelta(days=1), log=log)
    return ingest_runs(conn, runs, TASK, "langsmith")


def test_window_filter_combines_the_configured_filter_with_the_day():
    query = RunQuery("p", filter='has(tags, "production")')
    assert window_filter(query, DAY, DAY + timedelta(days=1)) == (
        'and(has(tags, "production"), gte(start_time, "2026-11-19T00:00:00+00:00"), '
        'lt(start_time, "2026-11-20T00:00:00+00:00"))')


def test_pulls_every_page_of_the_day_with_runs_query_and_maps_runs_onto_traces(api):
    with store.connect(":memory:") as conn, warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*list_runs.*", category=DeprecationWarning)  # not called
        report = pull(api, conn, log=pytest.fail)
        assert report.counts() == {"runs read": 5, "ingested": 5, "duplicates": 0, "rejected": 0}
        assert not [path for method, path, body in api.requests if path == "/runs/query"]
        queries = [body for method, path, body in api.requests if path == V2_QUERY]
        assert len(queries) == 3 and [q.get("cursor") is not None for q in queries] == [False, True, True]
        first = queries[0]
        assert first["project_ids"] == [api.projects["nl2query-prod"]["id"]] and first["run_type"] == "LLM"
        window = (first["min_start_time"], first["max_start_time"])
        assert window == (DAY.isoformat(), (DAY + timedelta(days=1)).isoformat())
        assert {"INPUTS", "OUTPUTS", "EXTRA", "METADATA"} <= set(first["selects"])
        rows = conn.execute("SELECT source, output, model, latency_ms, prompt_tokens, metadata "
                            "FROM raw_traces").fetchall()
        assert {r[:5] for r in rows} == {("langsmith", OUTPUT, "gpt-4o-mini", 1200.0, 250)}
        metadata = json.loads(rows[0][5])  # v2 keeps metadata apart from extra: it is put back
        assert (metadata["run_type"], metadata["ls_provider"], metadata["session_id"]) == (
            "llm", "openai", api.projects["nl2query-prod"]["id"])


def test_the_stub_reads_the_last_day_unless_told_and_wants_upper_case_like_langsmith(api):
    """What the test above relies on: a query without the window misses the day's runs, and
    lower-case run types or selects are refused."""
    runs = Client(api_url=api.url, api_key=KEY).runs
    project = [api.projects["nl2query-prod"]["id"]]

    async def query(**params):
        return await runs.query(project_ids=project, **params)

    with asyncio.Runner() as loop:
        assert loop.run(query(run_type="LLM")).items == []
        for params in ({"run_type": "llm"}, {"selects": ["id", "inputs"]}):
            with pytest.raises(BadRequestError):
                loop.run(query(min_start_time=DAY, **params))
        assert list(loop.run(query(min_start_time=DAY)).items[0].to_dict()) == ["id"]  # nothing selected


def test_a_server_without_runs_query_is_read_with_list_runs_and_the_log_says_so(monkeypatch):
    monkeypatch.setenv("LANGSMITH_TRACING", "false")
    with FakeLangSmith(api_key=KEY, page_size=2, v2=False) as fake:
        session = fake.add_project("nl2query-prod")
        for hour in (1, 9, 17):
            fake.runs.append(make_run(session_id=session, start=DAY + timedelta(hours=hour), inputs=CHAT_INPUT,
                                      outputs=CHAT_OUTPUT))
        fake.runs.append(make_run(session_id=session, start=DAY + timedelta(days=1), inputs=CHAT_INPUT,
                                  outputs=CHAT_OUTPUT))
        logged = []
        with store.connect(":memory:") as conn:
            report = pull(fake, conn, RunQuery("nl2query-prod"), log=logged.append)
            assert report.counts() == {"runs read": 3, "ingested": 3, "duplicates": 0, "rejected": 0}
            assert conn.execute("SELECT DISTINCT model FROM raw_traces").fetchall() == [("gpt-4o-mini",)]
    posts = [path for method, path, body in fake.requests if method == "POST"]
    assert posts == [V2_QUERY, "/runs/query", "/runs/query"]
    (message,) = logged
    assert "POST /api/v2/runs/query answered 404" in message and "deprecated list_runs" in message
    assert KEY not in message


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
@pytest.mark.parametrize("paths, v2", [(None, True), ((V2_QUERY,), True), (("/runs/query",), False)],
                         ids=["project lookup", "runs.query", "list_runs"])
def test_a_key_the_server_echoes_is_redacted_from_the_error(monkeypatch, status, paths, v2):
    monkeypatch.setenv("LANGSMITH_TRACING", "false")
    with FakeLangSmith(api_key=KEY, echo_key_status=status, echo_key_paths=paths, v2=v2) as fake:
        fake.add_project("nl2query-prod")
        with pytest.raises(LangSmithError) as raised:
            list(fetch_runs(Client(api_url=fake.url, api_key=KEY), RunQuery("nl2query-prod"), DAY,
                            DAY + timedelta(days=1), log=lambda message: None))
    shown = "".join(traceback.format_exception(raised.value))  # what a log shows: message, traceback, causes
    assert KEY not in shown
    assert "request refused for x-api-key ***" in str(raised.value) and str(status) in str(raised.value)
    failed = [path for method, path, body in fake.requests if path != "/info"][-1]  # /info: the client's own
    assert failed == (paths[0] if paths else "/sessions")
