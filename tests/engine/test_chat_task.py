"""The chat task: a logged conversation in, the assistant's reply out, checked for its failure modes."""

import json
import pickle
import random
from pathlib import Path

import pytest

from pipeline.engine.ingest.files import read_trace_files
from pipeline.engine.label.assertions import check_version
from pipeline.engine.tasks import Example, hooks, load_task, task_file
from pipeline.engine.tasks.chat import CHECK_NAMES, ChatTask, ReplyChecks

TASK = load_task("chat")
SYSTEM = ("You are the support assistant of Brightline Broadband. Answer briefly and kindly. Only state plans and "
          "prices listed here: Basic 100 costs 35 dollars a month and Fast 500 costs 55 dollars a month.")
CONVERSATION = {"messages": [{"role": "system", "content": SYSTEM},
                             {"role": "user", "content": "how much is Fast 500 per month, and can I switch from Basic?"}]}
GOOD = "Fast 500 costs $55 a month, and yes, you can switch from Basic 100 at any time."


def failures(reply, input=CONVERSATION, task=TASK):
    return {r.check_name: r.detail for r in task.check(input, reply) if r.passed is False}


def test_a_good_reply_passes_every_check_in_check_names_order():
    results = TASK.check(CONVERSATION, GOOD)
    assert [r.check_name for r in results] == list(CHECK_NAMES) == list(TASK.check_names)
    assert all(r.passed is True for r in results)
    assert TASK.check_values(CONVERSATION, GOOD) == (tuple(r.passed for r in results), tuple(r.detail for r in results))


@pytest.mark.parametrize("reply", ["", "  \n\t"])
def test_an_empty_reply_fails_and_skips_the_other_checks(reply):
    results = {r.check_name: r for r in TASK.check(CONVERSATION, reply)}
    assert results["empty_reply"].passed is False
    assert all(r.passed is None and r.detail == "skipped: the reply is empty"
               for name, r in results.items() if name != "empty_reply")


@pytest.mark.parametrize("reply", ["I'm sorry, but I can't help with that.", "I\u2019M SORRY, BUT I CANNOT share prices.",
                                   "As an AI language model, I have no prices."])
def test_a_reply_that_opens_by_declining_is_a_refusal(reply):
    assert "the reply declines" in failures(reply)["refusal"]


def test_declining_words_late_in_a_helpful_reply_are_not_a_refusal():
    reply = GOOD + " " + "Plans are monthly. " * 12 + "If you ask me to change someone else's plan, I can't help with that."
    assert "refusal" not in failures(reply)


def test_refusal_phrases_are_configurable_and_change_the_version():
    strict = ChatTask(ReplyChecks(refusal_phrases=("please call us",)))
    assert "refusal" in failures("Please call us for prices.", task=strict)
    assert "refusal" not in failures("I'm sorry, but I can't help with that.", task=strict)
    assert strict.version != TASK.version and check_version(strict) != check_version(TASK)


@pytest.mark.parametrize("reply, why", [
    ("Fast 500 costs $55 a month and", "ends mid-sentence on 'and'"),
    ("Here are the steps:", "ends on ':'"),
    ("Fast 500 costs $55 a month,", "ends on ','"),
    ("Run this:\n```\nreboot now\n", "code block is left open"),
])
def test_a_reply_cut_off_is_truncated(reply, why):
    assert why in failures(reply)["truncated"]


@pytest.mark.parametrize("reply", ["Run this:\n```\nreboot\n```", "The plan for you is Plan A",
                                   "Let me know if you need anything else"])
def test_finished_replies_are_not_truncated(reply):
    assert "truncated" not in failures(reply)


def test_a_reply_over_the_limit_is_too_long():
    assert "too_long" not in failures("x" * 3999 + ".")
    assert failures("x" * 4000 + ".")["too_long"] == "4,001 characters, over the 4,000 allowed"
    assert "too_long" in failures("Short enough?", task=ChatTask(ReplyChecks(max_chars=5)))


def test_a_reply_leaking_the_system_prompt_or_echoing_the_user_repeats_the_prompt():
    leak = "My instructions: " + SYSTEM
    assert "repeats the system prompt" in failures(leak)["repeats_prompt"]
    echo = "You asked: How much is Fast 500 per month, and can I switch from Basic? Yes."
    assert failures(echo)["repeats_prompt"] == "the reply repeats the user's last message"
    quoting_a_price = "Fast 500 costs 55 dollars a month, so switching is easy."
    assert "repeats_prompt" not in failures(quoting_a_price)


def test_normalise_collapses_white_space_and_gives_none_for_an_empty_reply():
    assert TASK.normalise("  Fast 500\n\n costs  $55. ") == "Fast 500 costs $55."
    assert TASK.normalise(" \n ") is None


@pytest.mark.parametrize("input, reason", [
    ([], "input must be an object, got list"),
    ({"messages": [], "user": "x"}, "input has keys other than messages: 'user'"),
    ({"messages": []}, "input.messages must be a non-empty list of messages"),
    ({"messages": ["hi"]}, "input.messages[0] must be an object, got str"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "input.messages[0].role must be one of system, user, assistant, got 'tool'"),
    ({"messages": [{"role": "user", "content": None}]},
     "input.messages[0].content must be text, got NoneType (content parts other than text, or a tool call, are not kept)"),
    ({"messages": [{"role": "user", "content": " "}]}, "input.messages[0].content is empty"),
    ({"messages": [{"role": "user", "content": "hi", "name": "ana"}]},
     "input.messages[0] has keys other than role and content: 'name'"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
     "the conversation must end with the user message the reply answers, not a assistant message"),
])
def test_validate_input_names_what_is_wrong(input, reason):
    assert TASK.validate_input(input) == reason


def test_the_prompt_is_the_conversation_and_input_from_messages_its_inverse():
    assert TASK.validate_input(CONVERSATION) is None
    assert TASK.prompt(CONVERSATION) == CONVERSATION["messages"]
    assert TASK.input_from_messages(CONVERSATION["messages"]) == CONVERSATION


def test_hooks_group_turns_of_one_conversation_and_show_the_last_user_message():
    later_turn = {"messages": [{"role": "system", "content": "Another prompt version."},
                               *CONVERSATION["messages"][1:],
                               {"role": "assistant", "content": GOOD}, {"role": "user", "content": "ok, do it"}]}
    assert hooks.group_id(TASK, later_turn) == hooks.group_id(TASK, CONVERSATION)
    other = {"messages": [{"role": "user", "content": "my router is down"}]}
    assert hooks.group_id(TASK, other) != hooks.group_id(TASK, CONVERSATION)
    assert hooks.display_text(TASK, later_turn) == "ok, do it"
    scope, text = hooks.dedup_text(TASK, later_turn)
    assert text == "ok, do it" and scope != hooks.dedup_text(TASK, CONVERSATION)[0]
    assert hooks.slice_name(TASK) is None and hooks.slice_of(TASK, CONVERSATION) is None


def test_there_is_no_offline_generator():
    assert TASK.synthesize([Example(CONVERSATION, GOOD)] * 5, 10, random.Random(0)) == []


def test_check_version_hashes_the_check_module_and_survives_pickling():
    assert check_version(pickle.loads(pickle.dumps(TASK))) == check_version(TASK)
    assert any(m.__name__ == "pipeline.engine.tasks.chat.checks" for m in TASK.check_modules)


@pytest.mark.parametrize("relative", ["judge.v1.md", "synth/rewrite.v1.md", "synth/dimensions_spec.v1.md",
                                      "synth/dimensions_question.v1.md", "synth/dimensions.v1.json"])
def test_the_task_ships_its_prompts(relative):
    text = task_file("chat", relative).read_text(encoding="utf-8")
    assert "$messages" in text or relative.startswith(("judge", "synth/dimensions.v1"))
    if relative.endswith(".json"):
        assert set(json.loads(text)) == {"intent", "conversation", "persona"}


def test_the_bundled_sample_ingests_and_holds_failing_replies(tmp_path):
    demo = hooks.demo_data(TASK)
    batch = read_trace_files([Path(demo.traces)], TASK, "demo")
    assert batch.rejected.is_empty() and batch.traces.height == 200
    failed = {r.check_name for row in batch.traces.iter_rows(named=True)
              for r in TASK.check(json.loads(row["input"]), row["output"]) if r.passed is False}
    assert failed == set(CHECK_NAMES)
    ids = set(batch.traces["trace_id"])
    decisions = [json.loads(line) for line in Path(demo.annotations).read_text().splitlines()]
    assert len(decisions) == 40 and {d["trace_id"] for d in decisions} <= ids
    corpus = [json.loads(line) for line in Path(demo.base_corpus).read_text().splitlines()]
    assert len(corpus) == 600 and all(TASK.validate_input(r["input"]) is None for r in corpus)
