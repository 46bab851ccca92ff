"""Assertions at inference time: repair or retry through a chat provider (the fake OpenAI API)."""

import json

import pytest

from pipeline.engine.label.heal import complete_checked, failed_checks, feedback, repair
from pipeline.engine.providers.openai_chat import OpenAIChatProvider
from pipeline.engine.tasks import load_task
from tests.fakes import FakeOpenAI

TASK = load_task("nl2query")
INPUT = {"question": "p95 duration by service", "columns": ["duration_ms", "service.name"]}
GOOD = json.dumps({"calculations": [{"op": "P95", "column": "duration_ms"}], "breakdowns": ["service.name"]})
WRONG_COLUMN = GOOD.replace("duration_ms", "latency")


def chat(fake):
    return OpenAIChatProvider("gpt-test", api_key="k", http_client=fake.http_client(), strict_validation=True)


def test_a_passing_reply_costs_one_call():
    fake = FakeOpenAI()
    fake.chat_responder = lambda request: GOOD
    result = complete_checked(chat(fake), TASK, INPUT)
    assert (result.output, result.passed, result.attempts, result.repaired) == (GOOD, True, 1, False)
    assert len(fake.requests) == 1


def test_json_inside_chatter_is_repaired_without_another_call():
    fake = FakeOpenAI()
    fake.chat_responder = lambda request: f"Sure! Here is the query:\n{GOOD}\nHope this helps."
    result = complete_checked(chat(fake), TASK, INPUT)
    assert result.passed and result.repaired and json.loads(result.output) == json.loads(GOOD)
    assert len(fake.requests) == 1


def test_a_failing_reply_is_retried_with_the_failed_checks_as_feedback():
    fake = FakeOpenAI()
    fake.chat_responder = lambda request: GOOD if "unknown_column" in request["messages"][-1]["content"] else WRONG_COLUMN
    result = complete_checked(chat(fake), TASK, INPUT, max_attempts=3)
    assert result.passed and result.attempts == 2 and result.output == GOOD
    retry = fake.requests[1]["messages"]
    assert retry[-2] == {"role": "assistant", "content": WRONG_COLUMN}
    assert "'latency' is not in the dataset's columns" in retry[-1]["content"]


def test_the_budget_is_respected_and_the_best_reply_returned():
    fake = FakeOpenAI()
    two_failures = json.dumps({**json.loads(WRONG_COLUMN), "time_range": "2h"})
    replies = iter([two_failures, WRONG_COLUMN, "not json at all"])
    fake.chat_responder = lambda request: next(replies)
    result = complete_checked(chat(fake), TASK, INPUT, max_attempts=3)
    assert not result.passed and result.attempts == 3 and len(fake.requests) == 3
    assert result.output == WRONG_COLUMN and result.failed_checks == ("unknown_column",)


def test_repair_never_returns_an_output_that_still_fails():
    assert repair(TASK, INPUT, f"here: {WRONG_COLUMN}") is None
    assert repair(TASK, INPUT, "no braces") is None
    assert "invalid_json" in feedback(failed_checks(TASK, INPUT, "x"))


def test_max_attempts_must_be_positive():
    with pytest.raises(ValueError):
        complete_checked(chat(FakeOpenAI()), TASK, INPUT, max_attempts=0)
