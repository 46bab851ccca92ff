"""Training files: chat records, OpenAI format rules, atomic JSONL writes."""

import json

import polars as pl
import pytest

from pipeline.engine.export import approx_tokens, chat_records, format_problems, write_jsonl
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


def test_approx_tokens_is_characters_over_four():
    records = [{"messages": [{"role": "user", "content": "a" * 10}, {"role": "assistant", "content": "b" * 30}]}]
    assert approx_tokens(records) == 10
    assert approx_tokens(valid(2)) == sum(len(m["content"]) for r in valid(2) for m in r["messages"]) // 4


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
