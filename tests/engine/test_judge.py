"""The LLM judge through the real openai client against the fake OpenAI API."""

import json
from datetime import datetime, timedelta, timezone

import polars as pl
import pytest

from pipeline.engine.label.annotations import ANNOTATION_SCHEMA
from pipeline.engine.label.judge import (
    JUDGEMENT_SCHEMA, JudgeOutputError, few_shot_examples, item_id, judge_failures, judge_items, judge_version,
    load_prompt, messages, output_items, parse_verdict, select_pending, with_judge_pass,
)
from pipeline.engine.providers import ProviderAuthError
from pipeline.engine.providers.openai_chat import OpenAIChatProvider
from tests.fakes import FakeOpenAI

T0 = datetime(2026, 10, 20, tzinfo=timezone.utc)
PROMPT = load_prompt("nl2query")


def annotations(rows):
    return pl.DataFrame([{"annotation_id": f"a{n}", "trace_id": t, "label": label, "failure_mode": None,
                          "correction": None, "critique": critique, "annotator": "Priya",
                          "annotated_at": T0 + timedelta(minutes=n), "source": "test"}
                         for n, (t, label, critique) in enumerate(rows)], schema=ANNOTATION_SCHEMA)


def traces(ids):
    return pl.DataFrame({"trace_id": ids, "input": [json.dumps({"question": f"q {t}", "columns": ["a"]}) for t in ids],
                         "output": [f'{{"calculations": [{{"op": "COUNT"}}], "id": "{t}"}}' for t in ids]})


def chat(fake, key="sk-judge-key-123456"):
    return OpenAIChatProvider("judge-model", api_key=key, http_client=fake.http_client(), strict_validation=True)


def test_packaged_prompt_loads_and_names_its_version():
    assert PROMPT.name == "nl2query.v1" and "$examples" in PROMPT.template
    with pytest.raises(ValueError, match="no judge prompt"):
        load_prompt("unknown_task")


def test_few_shot_examples_are_balanced_stable_and_need_a_critique():
    rows = [(f"g{n}", "good", f"fine {n}") for n in range(5)] + [(f"b{n}", "bad", f"wrong {n}") for n in range(5)]
    rows += [("nocrit", "bad", None), ("g0", "bad", "changed my mind")]  # the latest decision wins
    shots = few_shot_examples(annotations(rows), traces([r[0] for r in rows]), k=4)
    assert shots.height == 4 and sorted(shots["label"].to_list()) == ["bad", "bad", "good", "good"]
    assert "nocrit" not in shots["trace_id"].to_list()
    assert ("g0", "good") not in set(shots.select("trace_id", "label").rows())
    again = few_shot_examples(annotations(list(reversed(rows[:10])) + rows[10:]), traces([r[0] for r in rows]), k=4)
    assert set(again["trace_id"]) == set(shots["trace_id"])
    only_bad = few_shot_examples(annotations([(f"b{n}", "bad", "x") for n in range(5)]), traces([f"b{n}" for n in range(5)]), 4)
    assert only_bad.height == 4


def test_judge_version_changes_with_prompt_model_and_examples():
    shots = few_shot_examples(annotations([("g1", "good", "fine")]), traces(["g1"]), k=2)
    version = judge_version(PROMPT, "m1", shots)
    assert version != judge_version(PROMPT, "m2", shots)
    assert version != judge_version(PROMPT, "m1", shots.head(0))
    assert version != judge_version(type(PROMPT)("nl2query.v1", PROMPT.template + "x"), "m1", shots)


def test_messages_hold_the_few_shot_critiques_and_the_item():
    shots = few_shot_examples(annotations([("g1", "good", "Right columns."), ("b1", "bad", "Wrong window.")]),
                              traces(["g1", "b1"]), k=2)
    system, user = messages(PROMPT, shots, '{"question": "q"}', "OUT")
    assert "Right columns." in system["content"] and "Wrong window." in system["content"]
    assert "$examples" not in system["content"]
    assert user["content"].endswith("Output:\nOUT")


@pytest.mark.parametrize("text,reason", [("nope", "not JSON"), ("[1]", "not a JSON object"),
                                         ('{"outcome": "meh", "critique": ""}', "not one of"),
                                         ('{"outcome": "good"}', "critique")])
def test_malformed_verdicts_are_rejected_with_a_reason(text, reason):
    with pytest.raises(JudgeOutputError, match=reason):
        parse_verdict(text)


def test_judge_items_structured_output_errors_and_usage():
    fake = FakeOpenAI(api_key="sk-judge-key-123456")

    def responder(request):
        user = request["messages"][-1]["content"]
        if '"t2"' in user:
            return "not a verdict"
        if '"t3"' in user:
            return {"status": 400, "message": "context length exceeded"}
        return json.dumps({"critique": "Uses the right op.", "outcome": "good" if '"t0"' in user else "bad"})

    fake.chat_responder = responder
    items = traces(["t0", "t1", "t2", "t3"])
    frame = judge_items(chat(fake), PROMPT, items.head(0), items, "v", concurrency=2, now=T0)
    assert frame.schema == pl.Schema(JUDGEMENT_SCHEMA)
    by_id = {r["trace_id"]: r for r in frame.iter_rows(named=True)}
    assert (by_id["t0"]["outcome"], by_id["t1"]["outcome"]) == ("good", "bad")
    assert by_id["t0"]["critique"] == "Uses the right op." and by_id["t0"]["prompt_tokens"] > 0
    assert by_id["t2"]["outcome"] is None and "not JSON" in by_id["t2"]["error"]
    assert by_id["t3"]["outcome"] is None and "context length exceeded" in by_id["t3"]["error"]
    sent = fake.requests[0]
    assert sent["response_format"]["type"] == "json_schema" and sent["temperature"] == 0
    assert sent["response_format"]["json_schema"]["schema"]["properties"]["outcome"]["enum"] == ["good", "bad"]
    failures = judge_failures(frame)
    assert failures["trace_id"].to_list() == ["t1"] and failures["label_source"].to_list() == ["judge"]


def test_a_rejected_key_stops_the_batch_without_leaking_it():
    fake = FakeOpenAI(api_key="sk-right-key-000000")
    with pytest.raises(ProviderAuthError) as info:
        judge_items(chat(fake, key="sk-wrong-key-999999"), PROMPT, traces([]).head(0), traces(["t0", "t1"]), "v")
    assert "999999" not in str(info.value)


def test_item_id_is_a_content_hash():
    assert item_id("{}", "a") == item_id("{}", "a") != item_id("{}", "b")


def test_pending_items_skip_judged_and_few_shot_and_put_labelled_first():
    items = traces([f"t{n}" for n in range(10)])
    pending = select_pending(items, judged=pl.Series(["t0", "t1"]), first=pl.Series(["t9", "t8", "t0"]),
                             exclude=pl.Series(["t2"]), limit=4)
    ids = pending["trace_id"].to_list()
    assert len(ids) == 4 and set(ids[:2]) == {"t8", "t9"} and not {"t0", "t1", "t2"} & set(ids)
    assert select_pending(items, pl.Series([], dtype=pl.String)).height == 10


def test_model_outputs_share_a_judgement_when_they_are_the_same():
    test = pl.DataFrame({"example_id": ["e1", "e2"], "input": ['{"q": 1}', '{"q": 2}'], "output": ["r1", "r2"]})
    a = pl.DataFrame({"example_id": ["e1", "e2"], "output": ["same", "a-only"], "passed_checks": [True, True]})
    b = pl.DataFrame({"example_id": ["e2", "e1"], "output": ["b-only", "same"], "passed_checks": [True, False]})
    items_a, items_b = output_items(a, test), output_items(b, test)
    shared = set(items_a["trace_id"]) & set(items_b["trace_id"])
    assert shared == {item_id('{"q": 1}', "same")}
    outcomes = pl.DataFrame({"trace_id": [item_id('{"q": 1}', "same"), item_id('{"q": 2}', "a-only")],
                             "outcome": ["good", "bad"]})
    assert with_judge_pass(a, items_a, outcomes).sort("example_id")["judge_pass"].to_list() == [True, False]
    assert with_judge_pass(b, items_b, outcomes).sort("example_id")["judge_pass"].to_list() == [True, None]
