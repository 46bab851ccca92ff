"""OpenAI chat logs and LangSmith run exports in the drop folder, mapped onto the trace format."""

import gzip
import json
from datetime import datetime, timezone

import pytest

from pipeline.engine.ingest.formats import detect, to_trace
from pipeline.engine.ingest.records import RecordError
from pipeline.engine.tasks import load_task
from pipeline.engine.ingest.files import read_trace_files
from tests.engine.test_traces import INPUT, OUTPUT, record

TASK = load_task("nl2query")
NOW = datetime(2026, 11, 20, tzinfo=timezone.utc)
USER = f"Columns: {', '.join(INPUT['columns'])}\nQuestion: {INPUT['question']}"


def chat(**changes):
    rec = {"id": "chatcmpl-9x1", "created": 1763600000, "model": "gpt-4o-mini-2024-07-18",
           "messages": [{"role": "system", "content": "You translate questions into queries."},
                        {"role": "user", "content": USER}, {"role": "assistant", "content": OUTPUT}],
           "usage": {"prompt_tokens": 312, "completion_tokens": 41, "total_tokens": 353},
           "metadata": {"user": "u_17"}}
    rec.update(changes)
    return rec


def run(**changes):
    rec = {"id": "0b5e7c7a-1f7e-4c49-9d5e-3f0f6a1f2a10", "name": "ChatOpenAI", "run_type": "llm",
           "start_time": "2026-11-19T08:00:00.000000+00:00", "end_time": "2026-11-19T08:00:01.250000+00:00",
           "inputs": {"messages": [[{"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", "HumanMessage"],
                                     "kwargs": {"content": USER, "type": "human"}}]]},
           "outputs": {"generations": [[{"text": OUTPUT, "type": "ChatGeneration"}]]},
           "error": None, "extra": {"metadata": {"ls_model_name": "gpt-4o", "app_version": "web-3.9.0"}},
           "tags": ["production"], "trace_id": "0b5e7c7a-1f7e-4c49-9d5e-3f0f6a1f2a10",
           "session_id": "5a1c1d10-0000-4000-8000-00000000aaaa", "prompt_tokens": 300, "completion_tokens": 40,
           "feedback_stats": {"user_score": {"n": 1, "avg": 0.0}}}
    rec.update(changes)
    return rec


def read(tmp_path, name, lines):
    path = tmp_path / name
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path, read_trace_files([path], TASK, "drop", now=NOW)


def test_detects_each_format_per_record():
    assert [detect(x) for x in (record(), chat(), run(), [1], {"messages": [], "input": {}})] == [
        "trace", "openai_chat", "langsmith_run", "trace", "trace"]


def test_openai_chat_log_maps_reply_tokens_model_time_and_recovers_the_task_input(tmp_path):
    _, batch = read(tmp_path, "chat.jsonl", [chat()])
    assert batch.rejected.is_empty(), batch.rejected["reason"].to_list()
    row = batch.traces.row(0, named=True)
    assert row["trace_id"] == "chatcmpl-9x1" and row["output"] == OUTPUT
    assert json.loads(row["input"]) == {"question": INPUT["question"], "columns": INPUT["columns"]}
    assert (row["prompt_tokens"], row["completion_tokens"], row["model"]) == (312, 41, "gpt-4o-mini-2024-07-18")
    assert row["ts"] == datetime.fromtimestamp(1763600000, timezone.utc)
    assert json.loads(row["metadata"]) == {"user": "u_17", "format": "openai_chat"}


def test_a_failed_call_logged_with_its_error_and_no_answer_is_a_trace_with_the_error(tmp_path):
    _, batch = read(tmp_path, "chat.jsonl", [chat(messages=[{"role": "user", "content": USER}], error="upstream timeout")])
    assert batch.rejected.is_empty(), batch.rejected["reason"].to_list()
    row = batch.traces.row(0, named=True)
    assert (row["output"], row["error"]) == ("", "upstream timeout")
    assert json.loads(row["input"]) == {"question": INPUT["question"], "columns": INPUT["columns"]}


def test_chat_records_that_cannot_be_traces_are_rejected_with_reasons(tmp_path):
    no_answer = chat(messages=[{"role": "user", "content": USER}])
    not_our_prompt = chat(messages=[{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}])
    path, batch = read(tmp_path, "chat.jsonl", [no_answer, not_our_prompt, chat(messages="oops")])
    reasons = dict(zip(batch.rejected["location"], batch.rejected["reason"]))
    assert reasons == {f"{path}:1": "chat record has no assistant message to use as the output (nor an error)",
                       f"{path}:2": "task 'nl2query' cannot recover its input from chat messages: the user message "
                                    "matches none of the 3 production prompt layouts (nlq_columns_pylist, "
                                    "honeycomb_query_assistant, nl2query) nor the task's own prompt; first lines: 'hello'",
                       f"{path}:3": "messages must be a list of message objects"}


def test_records_that_break_a_format_adapter_are_rejected_alone_with_the_error(tmp_path):
    odd_run = run(inputs={"messages": [{"data": "not a message"}]})
    path, batch = read(tmp_path, "odd.jsonl", [chat(created=10**20), odd_run, chat()])
    reasons = dict(zip(batch.rejected["location"], batch.rejected["reason"]))
    assert reasons == {
        f"{path}:1": "timestamp 100000000000000000000 (seconds since 1970) falls outside the years 1-9999",
        f"{path}:2": "record could not be read: AttributeError: 'str' object has no attribute 'get'"}
    assert batch.traces.height == 1


def test_langsmith_run_export_as_json_array_maps_latency_feedback_and_metadata(tmp_path):
    path = tmp_path / "runs.json.gz"
    bad = run(id="1c9d0000-0000-4000-8000-000000000002", outputs={"generations": [[{"text": ""}]]})
    with gzip.open(path, "wt") as handle:
        json.dump([run(), bad], handle, indent=2)
    batch = read_trace_files([path], TASK, "drop", now=NOW)
    row = batch.traces.row(0, named=True)
    assert row["trace_id"] == "ls_0b5e7c7a-1f7e-4c49-9d5e-3f0f6a1f2a10" and row["output"] == OUTPUT
    assert row["latency_ms"] == 1250.0 and row["model"] == "gpt-4o" and row["prompt_tokens"] == 300
    assert row["ts"] == datetime(2026, 11, 19, 8, tzinfo=timezone.utc)
    metadata = json.loads(row["metadata"])
    assert metadata["feedback"] == {"user_score": {"n": 1, "avg": 0.0}} and metadata["tags"] == ["production"]
    assert metadata["app_version"] == "web-3.9.0" and metadata["run_type"] == "llm"
    assert batch.rejected["location"].to_list() == [f"{path}[1]"]
    assert batch.rejected["reason"].to_list() == ["output is missing and no error is recorded"]
    assert json.loads(batch.rejected["raw"][0])["id"] == bad["id"]


def test_langsmith_chain_run_with_task_inputs_and_an_error_is_kept(tmp_path):
    failed = run(run_type="chain", inputs=dict(INPUT), outputs=None, error="RateLimitError: 429")
    _, batch = read(tmp_path, "runs.jsonl", [failed, record(trace_id="own-format")])
    assert batch.rejected.is_empty()
    rows = {r["trace_id"]: r for r in batch.traces.to_dicts()}
    assert rows["ls_0b5e7c7a-1f7e-4c49-9d5e-3f0f6a1f2a10"]["error"] == "RateLimitError: 429"
    assert json.loads(rows["ls_0b5e7c7a-1f7e-4c49-9d5e-3f0f6a1f2a10"]["input"]) == INPUT
    assert "own-format" in rows  # one file may mix formats


class _NoInverse:
    """A task without input_from_messages: chat logs cannot give its input."""

    name = "plain"

    @staticmethod
    def validate_input(input):
        return None


def test_a_chat_record_for_a_task_that_cannot_invert_its_prompt_is_rejected_saying_so():
    with pytest.raises(RecordError) as raised:
        to_trace(chat(), _NoInverse())
    assert str(raised.value) == "task 'plain' cannot recover its input from chat messages: it has no input_from_messages"


def test_the_reason_quotes_the_first_lines_of_the_unmatched_user_message_cut_short():
    long_line = "x" * 200
    record = chat(messages=[{"role": "user", "content": f"  {long_line}\n\nsecond line\nthird"},
                            {"role": "assistant", "content": "y"}])
    with pytest.raises(RecordError) as raised:
        to_trace(record, TASK)
    assert str(raised.value).endswith(f"; first lines: {'x' * 77 + '...' + chr(10) + 'second line'!r}")
    parts = chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u"}}]},
                           {"role": "assistant", "content": "y"}])
    with pytest.raises(RecordError, match="the last user message has no text content"):
        to_trace(parts, TASK)


def test_a_chat_task_takes_any_logged_conversation_as_its_input(tmp_path):
    chat_task = load_task("chat")
    conversation = [{"role": "developer", "content": "Be brief."},
                    {"role": "user", "content": [{"type": "text", "text": "hello "}, {"type": "text", "text": "there"}]}]
    row = to_trace(chat(messages=conversation + [{"role": "assistant", "content": "Hi!"}]), chat_task)
    assert row["input"] == {"messages": [{"role": "system", "content": "Be brief."},
                                         {"role": "user", "content": "hello there"}]}
    assert row["output"] == "Hi!"
