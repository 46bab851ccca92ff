"""Each split's training file: records per split, PII scrubbed, problems named by split, tokens."""

import json

import polars as pl

from pipeline.engine.curate.export import SPLIT_MINIMUMS, TokenCounter, chat_records, scrub_records, split_files
from pipeline.engine.tasks import load_task

TASK = load_task("nl2query")
COUNTER = TokenCounter(lambda text: len(text.split()), "words")
INPUT = {"question": "p95 duration_ms by service.name", "columns": ["duration_ms", "service.name"],
         "dataset": "checkout-api"}
OUTPUT = '{"calculations":[{"op":"P95","column":"duration_ms"}],"breakdowns":["service.name"]}'


def examples(splits, question=INPUT["question"]):
    return pl.DataFrame({"split": list(splits),
                         "input": [json.dumps({**INPUT, "question": f"{question} #{i}"}) for i in range(len(splits))],
                         "output": [OUTPUT] * len(splits)})


def test_every_split_gets_its_records_and_tokens_and_a_valid_set_has_no_problems():
    frame = examples(["train"] * 10 + ["validation", "test", "test"])
    files = split_files(frame, TASK, COUNTER)
    assert list(files.records) == ["train", "validation", "test"] == list(SPLIT_MINIMUMS)
    assert files.counts == {"train": 10, "validation": 1, "test": 2}
    assert files.problems == [] and files.scrubbed == {}
    assert files.records["test"] == scrub_records(chat_records(frame.filter(pl.col("split") == "test"), TASK))[0]
    assert files.tokens == {s: sum(COUNTER.example_tokens(r) for r in records) for s, records in files.records.items()}
    assert files.tokens["train"] > 0


def test_problems_name_their_split_and_each_split_has_its_minimum():
    files = split_files(examples(["train"] * 9 + ["test"]), TASK, COUNTER, max_tokens_per_example=10_000)
    assert files.problems == ["train: 9 examples; at least 10 are required",
                              "validation: 0 examples; at least 1 are required"]
    assert files.counts["validation"] == 0 and files.tokens["validation"] == 0


def test_pii_is_scrubbed_from_every_split_and_counted_across_them():
    frame = examples(["train"] * 10 + ["validation", "test"], question="count where user.email is ana@example.com")
    files = split_files(frame, TASK, COUNTER)
    assert files.scrubbed == {"email": 12}
    assert "ana@example.com" not in json.dumps(files.records)


def test_examples_over_the_token_limit_are_problems():
    files = split_files(examples(["train"] * 10 + ["validation", "test"]), TASK, COUNTER, max_tokens_per_example=5)
    assert len(files.problems) == 12 and files.problems[0].startswith("train: example 1: ")
    assert files.problems[-1].startswith("test: example 1: ")
