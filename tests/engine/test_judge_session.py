"""A judge session on an in-memory DuckDB with a stand-in chat provider: traces judged people's
labelled ones first and cached, model outputs judged once whichever model wrote them, the judge
off, and labelled failures with the judge's 'bad' traces."""

import json
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import polars as pl
import pytest

from pipeline.engine.core import store
from pipeline.engine.label.annotations import ANNOTATION_SCHEMA
from pipeline.engine.label.failures import stored_failures
from pipeline.engine.label.judge_session import JUDGE_OFF, judge_outputs, judge_traces, pass_rate
from pipeline.engine.providers import Completion

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
CORRECTION = '{"calculations":[{"op":"COUNT"}]}'


class Judge:
    """A chat provider that calls an output bad when it contains 'bad'."""

    model = "judge-test"

    def __init__(self):
        self.judged = []

    def complete(self, messages, *, temperature=0.0, response_format=None, seed=None):
        output = messages[-1]["content"].split("Output:\n", 1)[1]
        self.judged.append(output)
        return Completion(json.dumps({"critique": f"looked at {output}", "outcome": "bad" if "bad" in output else "good"}),
                          self.model, prompt_tokens=10, completion_tokens=5)


@dataclass
class Settings:
    """What a judge session reads from its configuration (JudgeResource's shape)."""

    chat: Judge
    prompt_path: str
    enabled: bool = True
    prompt_version: str = "v1"
    few_shot: int = 0
    max_traces_per_run: int = 3
    concurrency: int = 2
    min_agreement: float = 0.5

    def provider(self):
        return self.chat


@pytest.fixture
def conn():
    connection = store.connect(":memory:")
    traces = pl.DataFrame({"trace_id": [f"t{i}" for i in range(5)], "source": "test", "task": "nl2query",
                           "input": [json.dumps({"question": f"q{i}"}) for i in range(5)],
                           "output": ["bad 0", "good 1", "bad 2", "good 3", ""], "content_hash": "h",
                           "ingested_at": T0})
    store.upsert(connection, "raw_traces", traces, ["trace_id"])
    people = pl.DataFrame([{"annotation_id": f"a{n}", "trace_id": t, "label": label, "failure_mode": mode,
                            "correction": correction, "critique": None, "annotator": "dana",
                            "annotated_at": T0 + timedelta(minutes=n), "source": "test"}
                           for n, (t, label, mode, correction) in enumerate([
                               ("t2", "bad", "wrong_filter", CORRECTION), ("t3", "good", None, None)])],
                          schema=ANNOTATION_SCHEMA)
    store.upsert(connection, "annotations", people, ["annotation_id"])
    yield connection
    connection.close()


@pytest.fixture
def settings(tmp_path):
    prompt = tmp_path / "judge.md"
    prompt.write_text("Judge the output.\n$examples\n", encoding="utf-8")
    return Settings(Judge(), str(prompt))


def test_traces_are_judged_labelled_first_within_the_budget_and_never_twice(conn, settings):
    logged = []
    new, status, outcomes = judge_traces(lambda: nullcontext(conn), settings, "nl2query", logged.append)
    assert new.height == 3 and set(new["trace_id"]) >= {"t2", "t3"}  # people's labelled traces first
    assert "t4" not in set(new["trace_id"])  # no output, nothing to judge
    assert status["status"] == "on" and status["alignment"]["n_labelled"] == 2
    assert status["alignment"]["agreement"] == 1.0
    assert logged == [f"judge {status['version']}: judging 3 traces"]
    rest, _, outcomes = judge_traces(lambda: nullcontext(conn), settings, "nl2query", logged.append)
    assert rest.height == 1 and outcomes.height == 4 and len(settings.chat.judged) == 4
    assert pass_rate(outcomes, status["alignment"])["observed"] == 0.5


def test_model_outputs_are_judged_once_whichever_model_wrote_them(conn, settings):
    test = pl.DataFrame({"example_id": ["e0", "e1"], "input": ['{"question": "q0"}', '{"question": "q1"}']})
    results = {"ft": pl.DataFrame({"example_id": ["e0", "e1"], "output": ["good a", "bad b"]}),
               "base": pl.DataFrame({"example_id": ["e0", "e1"], "output": ["good a", "good c"]})}
    status, judged = judge_outputs(lambda: nullcontext(conn), settings, "nl2query", results, test, lambda _: None)
    assert status["status"] == "on" and sorted(settings.chat.judged) == ["bad b", "good a", "good c"]
    assert judged["ft"]["judge_pass"].to_list() == [True, False]
    assert judged["base"]["judge_pass"].to_list() == [True, True]
    again, _ = judge_outputs(lambda: nullcontext(conn), settings, "nl2query", results, test, lambda _: None)
    assert len(settings.chat.judged) == 3 and again == status


def test_with_the_judge_off_nothing_is_judged(settings):
    settings.enabled = False
    results = {"ft": pl.DataFrame({"example_id": ["e0"], "output": ["x"]})}
    status, same = judge_outputs(lambda: pytest.fail("the database is not opened"), settings, "nl2query", results,
                                 pl.DataFrame(), lambda _: None)
    assert status == {"status": "off", "reason": JUDGE_OFF} and same is results and not settings.chat.judged


def test_labelled_failures_add_the_judge_with_the_person_s_correction(conn, settings):
    judge_traces(lambda: nullcontext(conn), settings, "nl2query", lambda _: None)
    judge_traces(lambda: nullcontext(conn), settings, "nl2query", lambda _: None)
    assert stored_failures(conn).rows() == [
        ("t0", "judge", "judge", "looked at bad 0", None),  # no person's correction on this trace
        ("t2", "wrong_filter", "human", None, CORRECTION),
        ("t2", "judge", "judge", "looked at bad 2", CORRECTION),
    ]
