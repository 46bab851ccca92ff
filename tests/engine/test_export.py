"""Training files: chat records, OpenAI format rules, atomic JSONL writes."""

import json

import polars as pl
import pytest

from pipeline.engine.curate.export import (TOKENS_PER_MESSAGE, TokenCounter, chat_records, format_problems, token_counter,
                                    training_cost, within_token_limit, write_jsonl)
from pipeline.engine.tasks import load_task

TASK = load_task("nl2query")
INPUT = {"question": "p95 duration_ms by service.name last 2 hours",
         "columns": ["duration_ms", "service.name", "http.status_code"], "dataset": "checkout-api"}
OUTPUT = '{"calculations":[{"op":"P95","column":"duration_ms"}],"breakdowns":["service.name"],"time_range":7200}'


def examples(n):
    return pl.DataFrame({"input": [json.dumps({**INPUT, "question": f"{INPUT['question']} #{i}"}) for i in range(n)],
                         "output": [OUTPUT] * n})


def valid(n=10):
    return chat_records(examples(n), TASK)


def test_chat_records_are_the_task_prompt_then_the_output():
    records = valid(3)
    assert len(records) == 3
    for i, record in enumerate(records):
        assert list(record) == ["messages"]
        messages = record["messages"]
        assert [m["role"] for m in messages] == ["system", "user", "assistant"]
        assert messages[:2] == TASK.prompt({**INPUT, "question": f"{INPUT['question']} #{i}"})
        assert messages[2] == {"role": "assistant", "content": OUTPUT}
        assert f"#{i}" in messages[1]["content"]


def test_valid_records_have_no_problems():
    assert format_problems(valid(10)) == []
    weighted = valid(10)
    weighted[0]["messages"][2]["weight"] = 0
    weighted[1]["messages"][2]["weight"] = 1
    assert format_problems(weighted) == []


def test_too_few_examples():
    problems = format_problems(valid(9))
    assert problems == ["9 examples; at least 10 are required"]
    assert format_problems(valid(3), min_examples=3) == []
    assert format_problems([]) == ["0 examples; at least 10 are required"]


@pytest.mark.parametrize("mutate,expected", [
    (lambda m: m[1].update(role="human"), "example 1 message 2: unknown role 'human'"),
    (lambda m: m[0].pop("role"), "example 1 message 1: unknown role None"),
    (lambda m: m[1].update(content=""), "example 1 message 2: empty content"),
    (lambda m: m[2].update(content="   \n"), "example 1 message 3: empty content"),
    (lambda m: m[2].update(content=None), "example 1 message 3: empty content"),
    (lambda m: m[2].update(content={"calculations": []}), "example 1 message 3: empty content"),
    (lambda m: m.pop(2), "example 1: no assistant message"),
    (lambda m: m[1].update(weight=1), "example 1 message 2: weight is allowed only as 0/1 on assistant messages"),
    (lambda m: m[2].update(weight=0.5), "example 1 message 3: weight is allowed only as 0/1"),
    (lambda m: m[2].update(weight=2), "example 1 message 3: weight is allowed only as 0/1"),
    (lambda m: m[2].update(weight="1"), "example 1 message 3: weight is allowed only as 0/1"),
    (lambda m: m[2].update(weight=True), "example 1 message 3: weight is allowed only as 0/1"),
])
def test_each_rule_is_caught(mutate, expected):
    records = valid(10)
    mutate(records[0]["messages"])
    problems = format_problems(records)
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_records_without_messages():
    records = valid(10) + [{"messages": []}, {"prompt": "x"}, "not a record"]
    assert format_problems(records) == ["example 11: no messages", "example 12: no messages",
                                        "example 13: no messages"]


def test_problems_name_the_right_example():
    records = valid(12)
    records[10]["messages"][1]["content"] = ""
    assert format_problems(records) == ["example 11 message 2: empty content"]


def test_token_counter_falls_back_to_a_labelled_estimate_offline():
    counter = token_counter()
    try:
        import tiktoken  # noqa: F401
        tokenizer_here = counter.method.startswith("tiktoken")
    except ImportError:
        tokenizer_here = False
    if tokenizer_here:
        assert counter.count("hello world") == 2
    else:
        assert counter.method.startswith("estimate") and "tiktoken" in counter.method
        assert counter.count("a" * 10) == 3 and counter.count("") == 0
    assert token_counter("no-such-encoding").method.startswith("estimate")


def test_example_tokens_add_the_per_message_overhead():
    counter = TokenCounter(lambda text: len(text.split()), "words")
    record = {"messages": [{"role": "user", "content": "one two"}, {"role": "assistant", "content": "three"}]}
    assert counter.example_tokens(record) == 3 + 2 * TOKENS_PER_MESSAGE


def test_examples_over_the_token_limit_are_dropped_and_counted_not_refused():
    counter = TokenCounter(lambda text: len(text), "characters")
    records = valid(10)
    records[3]["messages"][1]["content"] = "x" * 5000
    limit = max(counter.example_tokens(r) for i, r in enumerate(records) if i != 3)
    kept, tokens, dropped = within_token_limit(records, counter, max_tokens_per_example=limit)
    assert kept == records[:3] + records[4:] and dropped == {f"over {limit} tokens": 1}
    assert tokens == [counter.example_tokens(r) for r in kept]
    at_the_limit = within_token_limit(records, counter, max_tokens_per_example=counter.example_tokens(records[3]))
    assert at_the_limit[0] == records and at_the_limit[2] == {}
    assert format_problems(records) == []  # its format is fine: the token limit is no format problem


def test_training_cost_is_tokens_times_epochs_times_price():
    assert training_cost(2_000_000, 3, 3.0) == 18.0
    assert training_cost(0, 3, 3.0) == 0.0
    assert training_cost(500_000, 1, 25.0) == 12.5


def test_weight_column_goes_on_the_assistant_message():
    frame = examples(3).with_columns(weight=pl.Series([1, 0, None]))
    records = chat_records(frame, TASK)
    assert [r["messages"][-1].get("weight") for r in records] == [1, 0, None]
    assert all("weight" not in m for r in records for m in r["messages"][:-1])
    assert format_problems(records, min_examples=3) == []


def test_write_jsonl_writes_every_record_and_leaves_no_temp(tmp_path):
    records = valid(10)
    records[0]["messages"][1]["content"] += " — café ✓"
    path = write_jsonl(records, tmp_path / "out" / "train.jsonl")
    assert path == tmp_path / "out" / "train.jsonl"
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    assert [json.loads(x) for x in text.splitlines()] == records
    assert "café ✓" in text  # not \u-escaped
    assert sorted(p.name for p in path.parent.iterdir()) == ["train.jsonl"]
    # rewriting replaces the file completely
    write_jsonl(records[:2], path)
    assert len(path.read_text().splitlines()) == 2
    assert sorted(p.name for p in path.parent.iterdir()) == ["train.jsonl"]


def test_failed_write_keeps_the_previous_file_and_leaves_no_temp(tmp_path):
    path = write_jsonl(valid(10), tmp_path / "train.jsonl")
    before = path.read_bytes()
    with pytest.raises(TypeError):
        write_jsonl(valid(3) + [{"messages": {1, 2}}], path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.jsonl"]


def test_scrub_records_removes_pii_from_user_and_assistant_but_keeps_json_valid():
    from pipeline.engine.curate.export import scrub_records

    records = [{"messages": [
        {"role": "system", "content": "Translate questions."},
        {"role": "user", "content": "Columns: user.email\nQuestion: count where user.email is 'ana.lopez@example.com'"},
        {"role": "assistant", "content": json.dumps({"calculations": [{"op": "COUNT"}], "filters": [
            {"column": "user.email", "op": "=", "value": "ana.lopez@example.com"},
            {"column": "client.ip", "op": "=", "value": "203.0.113.7"}]})},
    ]}]
    scrubbed, counts = scrub_records(records)
    text = json.dumps(scrubbed)
    assert "ana.lopez@example.com" not in text and "203.0.113.7" not in text
    assert counts == {"email": 2, "ip_address": 1}
    assistant = json.loads(scrubbed[0]["messages"][2]["content"])
    assert assistant["filters"][0]["column"] == "user.email"  # column names are not PII
    assert scrubbed[0]["messages"][0] == records[0]["messages"][0]
    assert "ana.lopez@example.com" in records[0]["messages"][1]["content"]  # the input is not modified
