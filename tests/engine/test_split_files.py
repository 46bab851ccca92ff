"""Each split's training file: records per split, PII scrubbed, problems named by split, tokens."""

import json

import polars as pl

from pipeline.engine.curate.export import (MAX_TOKENS_PER_EXAMPLE, SPLIT_MINIMUMS, TokenCounter, chat_records,
                                          scrub_records, split_files, token_counter)
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


def test_examples_over_the_token_limit_are_left_out_and_counted_not_problems():
    files = split_files(examples(["train"] * 10 + ["validation", "test"]), TASK, COUNTER, max_tokens_per_example=5)
    assert files.dropped == {"over 5 tokens": 12} and files.counts == {"train": 0, "validation": 0, "test": 0}
    assert files.problems == ["train: 0 examples; at least 10 are required",  # what is left is too little
                              "validation: 0 examples; at least 1 are required", "test: 0 examples; at least 1 are required"]


def test_a_long_question_among_normal_examples_is_left_out_and_the_files_are_valid():
    frame = examples(["train"] * 11 + ["validation", "test"])
    long_input = json.dumps({**INPUT, "question": "p95 duration_ms by service.name " * 28_000})  # about 0.9 MB
    frame = frame.with_columns(input=pl.when(pl.int_range(pl.len()) == 4).then(pl.lit(long_input)).otherwise("input"))
    counter = token_counter()
    files = split_files(frame, TASK, counter)
    assert files.problems == [] and files.counts == {"train": 10, "validation": 1, "test": 1}
    assert files.dropped == {f"over {MAX_TOKENS_PER_EXAMPLE} tokens": 1}
    assert files.tokens["train"] == sum(counter.example_tokens(r) for r in files.records["train"]) < MAX_TOKENS_PER_EXAMPLE
