"""nl2query's offline generators: question and query change together, outputs pass every assertion."""

import json
import random
import re

import pytest

from pipeline.engine.tasks import Example
from pipeline.engine.tasks.nl2query import synth as S
from pipeline.engine.tasks.nl2query import canonical, check, columns_used, dump, normalise, parse, synthesize

COLUMNS = ["duration_ms", "service.name", "http.status_code", "http.route", "region"]
WORKER = ["queue.name", "job.type", "queue.wait_ms"]


def _ex(question, query, dataset="checkout-api", columns=COLUMNS):
    return Example({"question": question, "columns": list(columns), "dataset": dataset}, dump(canonical(query)))


SEEDS = [
    _ex("p95 duration_ms by service.name last 2 hours",
        {"calculations": [{"op": "P95", "column": "duration_ms"}], "breakdowns": ["service.name"], "time_range": 7200}),
    _ex("count of requests by http.route over the last 4 hours, top 10",
        {"calculations": [{"op": "COUNT"}], "breakdowns": ["http.route"],
         "orders": [{"op": "COUNT", "order": "descending"}], "time_range": 14400, "limit": 10}),
    _ex("max duration_ms by region where http.status_code >= 500 in the past day",
        {"calculations": [{"op": "MAX", "column": "duration_ms"}], "breakdowns": ["region"],
         "filters": [{"column": "http.status_code", "op": ">=", "value": 500}], "time_range": 86400}),
    _ex("What's the p95 http.status_code by service.name and region this week?",
        {"calculations": [{"op": "P95", "column": "http.status_code"}], "breakdowns": ["service.name", "region"],
         "time_range": 604800}),
    _ex("Which 5 queue.name values have the highest count in the last 30 minutes when queue.wait_ms is over 200?",
        {"calculations": [{"op": "COUNT"}], "breakdowns": ["queue.name"],
         "filters": [{"column": "queue.wait_ms", "op": ">", "value": 200}],
         "orders": [{"op": "COUNT", "order": "descending"}], "time_range": 1800, "limit": 5},
        dataset="payments-worker", columns=WORKER),
    _ex("avg queue.wait_ms by job.type today",
        {"calculations": [{"op": "AVG", "column": "queue.wait_ms"}], "breakdowns": ["job.type"], "time_range": 86400},
        dataset="payments-worker", columns=WORKER),
]
POOLS = S.Pools.from_examples(SEEDS)


def passes(ex):
    return all(r.passed is True for r in check(ex.input, ex.output))


def test_synthesize_outputs_pass_checks_are_new_and_keep_provenance():
    out = synthesize(SEEDS, 80, random.Random(3))
    assert 10 <= len(out) <= 80
    seed_inputs = {json.dumps(s.input, sort_keys=True) for s in SEEDS}
    keys = set()
    for sx in out:
        assert passes(sx), sx
        assert json.dumps(sx.input, sort_keys=True) not in seed_inputs
        key = (json.dumps(sx.input, sort_keys=True), normalise(sx.output))
        assert key not in keys, "duplicate synthetic example"
        keys.add(key)
        parent = SEEDS[sx.parent_index]
        assert sx.generator in S.GENERATORS
        assert (sx.input["columns"], sx.input["dataset"]) == (parent.input["columns"], parent.input["dataset"])
        assert sx.input["question"] != parent.input["question"]
    assert {sx.generator for sx in out} == set(S.GENERATORS)


def test_synthesize_respects_n_is_deterministic_and_handles_no_or_bad_seeds():
    assert len(synthesize(SEEDS, 2, random.Random(1))) == 2
    assert synthesize(SEEDS, 0, random.Random(1)) == []
    assert synthesize(SEEDS, 10, random.Random(5)) == synthesize(SEEDS, 10, random.Random(5))
    assert synthesize([], 10, random.Random(0)) == []
    out = synthesize([Example(dict(SEEDS[0].input), "{not json"), SEEDS[0]], 20, random.Random(0))
    assert out and all(sx.parent_index == 1 for sx in out)


@pytest.mark.parametrize("phrase,seconds", [("last 15 minutes", 900), ("past hour", 3600), ("last 2 hours", 7200),
                                            ("past day", 86400), ("last 7 days", 604800), ("This week", 604800),
                                            ("today", 86400), ("past 30 minutes", 1800)])
def test_time_phrases_of_real_questions(phrase, seconds):
    assert S.time_phrase_seconds(phrase) == seconds


def test_vary_time_range_keeps_question_and_query_in_step():
    for seed in SEEDS:
        for i in range(5):
            new = S.vary_time_range(seed, POOLS, random.Random(i))
            assert new is not None and passes(new)
            (phrase,) = [m.group(0) for m in S._TIME.finditer(new.input["question"])]
            assert parse(new.output)["time_range"] == S.time_phrase_seconds(phrase) != parse(seed.output)["time_range"]
            rest = {k: v for k, v in parse(new.output).items() if k != "time_range"}
            assert rest == {k: v for k, v in parse(seed.output).items() if k != "time_range"}
            # "this week" / "today" never become "in the today"
            assert "the today" not in new.input["question"].lower() and "the this week" not in new.input["question"].lower()


def test_vary_time_range_refuses_when_question_and_query_disagree():
    # "last 2 hours" but time_range says 3 hours: varying would spread an inconsistency
    seed = _ex("p95 duration_ms last 2 hours", {"calculations": [{"op": "P95", "column": "duration_ms"}], "time_range": 10800})
    assert S.vary_time_range(seed, POOLS, random.Random(0)) is None


def test_vary_limit_on_top_and_which_phrasings():
    for seed in (SEEDS[1], SEEDS[4]):
        new = S.vary_limit(seed, POOLS, random.Random(1))
        n = int(re.search(r"(?:top|Which) (\d+)", new.input["question"]).group(1))
        assert parse(new.output)["limit"] == n != parse(seed.output)["limit"] and passes(new)
    assert S.vary_limit(SEEDS[0], POOLS, random.Random(1)) is None  # no limit to vary


def test_vary_operator_changes_the_phrase_and_the_filter_op():
    for seed, old in ((SEEDS[2], ">="), (SEEDS[4], ">")):
        seen = set()
        for i in range(12):
            new = S.vary_operator(seed, POOLS, random.Random(i))
            (f,) = parse(new.output)["filters"]
            assert f["op"] != old and passes(new)
            phrases = [p.format(v=f["value"]) for p in S.OPERATOR_PHRASES[f["op"]]]
            assert any(p in new.input["question"] for p in phrases), (new.input["question"], f)
            seen.add(f["op"])
        assert len(seen) >= 3
    # symbolic stays symbolic ("http.status_code >= 500" -> "http.status_code < 500"), words stay words
    new = S.vary_operator(SEEDS[2], POOLS, random.Random(0))
    assert re.search(r"http\.status_code (?:[<>]=?|!?=) 500", new.input["question"])


def test_vary_operator_refuses_ambiguous_or_unwritten_values():
    no_value_in_question = _ex("max duration_ms where latency is high",
                               {"calculations": [{"op": "MAX", "column": "duration_ms"}],
                                "filters": [{"column": "duration_ms", "op": ">", "value": 500}]})
    assert S.vary_operator(no_value_in_question, POOLS, random.Random(0)) is None


def test_vary_breakdowns_adds_then_drops_a_breakdown():
    added = S.vary_breakdowns(SEEDS[0], POOLS, random.Random(0))
    (old, new) = parse(added.output)["breakdowns"]
    assert old == "service.name" and new in {"http.route", "region"}
    assert f"by service.name and {new}" in added.input["question"] and passes(added)
    dropped = S.vary_breakdowns(SEEDS[3], POOLS, random.Random(0))
    assert parse(dropped.output)["breakdowns"] == ["service.name"]
    assert "and region" not in dropped.input["question"] and passes(dropped)


def test_substitute_column_replaces_one_column_consistently():
    for i in range(20):
        for seed in SEEDS:
            sx = S.substitute_column(seed, POOLS, random.Random(i))
            if sx is None:
                continue
            before, after = set(columns_used(parse(seed.output))), set(columns_used(parse(sx.output)))
            (old,), (new,) = before - after, after - before
            assert new in seed.input["columns"] and new not in seed.input["question"]
            assert not re.search(rf"(?<![\w.]){re.escape(old)}(?![\w.])", sx.input["question"])
            assert parse(sx.output) == canonical(S._replace_column(parse(seed.output), old, new))


def test_compose_dimensions_builds_questions_from_the_dataset_pools():
    out = [S.compose_dimensions(SEEDS[i % len(SEEDS)], POOLS, random.Random(i)) for i in range(60)]
    out = [o for o in out if o is not None]
    assert len(out) > 20
    for ex in out:
        assert passes(ex), ex
        query = parse(ex.output)
        assert query["time_range"] in {900, 1800, 3600, 86400, 604800}
        for column in columns_used(query):
            assert column in ex.input["question"]
    assert len({o.input["question"] for o in out}) >= 0.8 * len(out)  # varied, not one template
