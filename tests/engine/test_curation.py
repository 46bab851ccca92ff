"""Curation: real examples, failing outputs, dedup (input, output, pair), complexity bounds, test
leakage by near-duplicates, synthetic caps, group-aware stable splits and data versions."""

import json
from datetime import datetime, timedelta, timezone

import polars as pl
import pytest

from pipeline.engine.label.annotations import ANNOTATION_SCHEMA, annotation_id
from pipeline.engine.curate.examples import (EXAMPLE_SCHEMA, CurationConfig, CurationOptions, curate, data_version,
                                             plan_splits, real_examples)
from pipeline.engine.curate.splits import SplitConfig, group_id
from pipeline.engine.tasks import hooks, load_task
from pipeline.engine.tasks.nl2query import canonical, dump

TASK = load_task("nl2query")
CONFIG = CurationConfig()
NOW = datetime(2026, 10, 20, 12, 0, tzinfo=timezone.utc)
T0 = datetime(2026, 10, 17, 9, 0, tzinfo=timezone.utc)
COLUMNS = ["duration_ms", "service.name", "http.status_code", "http.route", "region"]


def inp(question, dataset="checkout-api", columns=COLUMNS):
    return json.dumps({"question": question, "columns": list(columns), "dataset": dataset})


def out(query):
    return dump(canonical(query))


P95 = {"calculations": [{"op": "P95", "column": "duration_ms"}], "breakdowns": ["service.name"], "time_range": 7200}
COUNT = {"calculations": [{"op": "COUNT"}], "breakdowns": ["region"]}

# --- real examples ------------------------------------------------------------------------------------

TRACE_SCHEMA = {"trace_id": pl.String, "input": pl.String, "output": pl.String, "error": pl.String}
EVAL_SCHEMA = {"trace_id": pl.String, "check_name": pl.String, "passed": pl.Boolean}


def annotations(rows):
    out_rows = []
    for r in rows:
        r = {"failure_mode": None, "correction": None, "critique": None, "annotator": "ana", "source": "app", **r}
        r["annotation_id"] = annotation_id(r["trace_id"], r["annotator"], r["annotated_at"])
        out_rows.append(r)
    return pl.DataFrame(out_rows, schema=ANNOTATION_SCHEMA)


def evaluated(traces):
    rows = []
    for trace_id, input_json, output, error in traces.iter_rows():
        if error and not output:
            rows += [(trace_id, name, None) for name in TASK.check_names]
        else:
            rows += [(trace_id, r.check_name, r.passed) for r in TASK.check(json.loads(input_json), output)]
    return pl.DataFrame(rows, schema=EVAL_SCHEMA, orient="row")


def test_real_examples_selects_passing_unjudged_traces_and_corrections_with_their_failure_mode():
    fixed = out({**P95, "time_range": 3600})
    traces = pl.DataFrame([
        ("ok", inp("p95 duration_ms by service.name last 2 hours"), "```json\n" + json.dumps(P95, indent=2) + "\n```", None),
        ("failing", inp("p95 duration_ms by service.name last hour"), json.dumps({**P95, "time_range": "1h"}), None),
        ("unlabelled_fix", inp("p95 duration_ms by region"), json.dumps({**P95, "limit": "ten"}), None),
        ("judged_bad", inp("count by region"), json.dumps({**COUNT, "breakdowns": ["service.name"]}), None),
        ("bad_then_good", inp("count by region today"), json.dumps(COUNT), None),
        ("errored", inp("count by http.route"), "", "upstream timeout"),
        ("not_evaluated", inp("count by service.name"), json.dumps(COUNT), None),
    ], schema=TRACE_SCHEMA, orient="row")
    evaluations = evaluated(traces).filter(pl.col("trace_id") != "not_evaluated")
    ann = annotations([
        {"trace_id": "judged_bad", "label": "bad", "failure_mode": "wrong_breakdown", "annotated_at": T0},
        {"trace_id": "failing", "label": "bad", "failure_mode": "wrong_time_unit", "correction": fixed,
         "annotated_at": T0},
        {"trace_id": "unlabelled_fix", "label": "bad", "correction": out(P95), "annotated_at": T0},
        {"trace_id": "bad_then_good", "label": "bad", "failure_mode": "x", "annotated_at": T0},
        {"trace_id": "bad_then_good", "label": "good", "annotated_at": T0 + timedelta(hours=1)},
    ])
    real = real_examples(traces, evaluations, ann, TASK).sort("example_id")
    assert real.select("example_id", "source", "parent_id", "failure_mode").rows() == [
        ("correction:failing", "correction", "failing", "wrong_time_unit"),   # the person's label
        ("correction:unlabelled_fix", "correction", "unlabelled_fix", "limit_not_integer"),  # else the failing check
        ("trace:bad_then_good", "trace", "bad_then_good", None),
        ("trace:ok", "trace", "ok", None),
    ]
    rows = {r["example_id"]: r for r in real.to_dicts()}
    assert rows["trace:ok"]["output"] == out(P95)  # fenced, indented output normalised
    assert rows["correction:failing"]["output"] == fixed
    assert rows["correction:failing"]["input"] == traces.filter(pl.col("trace_id") == "failing")["input"][0]


def test_real_examples_a_correction_on_a_bad_trace_replaces_it_and_unparseable_corrections_are_dropped():
    traces = pl.DataFrame([("t1", inp("count by region"), json.dumps({**COUNT, "breakdowns": ["service.name"]}), None),
                           ("t2", inp("count by http.route"), json.dumps(COUNT), None)],
                          schema=TRACE_SCHEMA, orient="row")
    ann = annotations([
        {"trace_id": "t1", "label": "bad", "failure_mode": "wrong_breakdown", "correction": json.dumps(COUNT),
         "annotated_at": T0},
        {"trace_id": "t2", "label": "bad", "failure_mode": "wrong_breakdown", "correction": "count by route",
         "annotated_at": T0},
    ])
    real = real_examples(traces, evaluated(traces), ann, TASK)
    assert real.select("example_id", "output").rows() == [("correction:t1", out(COUNT))]


# --- curate ---------------------------------------------------------------------------------------------

REAL_SCHEMA = {"example_id": pl.String, "source": pl.String, "parent_id": pl.String, "input": pl.String,
               "output": pl.String, "failure_mode": pl.String}
SYN_SCHEMA = {"example_id": pl.String, "parent_id": pl.String, "generator": pl.String, "input": pl.String,
              "output": pl.String}


def real_frame(rows):
    return pl.DataFrame([dict(zip(REAL_SCHEMA, r)) for r in rows], schema=REAL_SCHEMA)


def syn_frame(rows):
    return pl.DataFrame([{"example_id": e, "parent_id": p, "generator": "substitute_column", "input": i, "output": o}
                         for e, p, i, o in rows], schema=SYN_SCHEMA)


def trace(trace_id, input_json, output=None, failure_mode=None):
    return (f"trace:{trace_id}", "trace", trace_id, input_json, output or out(COUNT), failure_mode)


def correction(trace_id, input_json, output=None, failure_mode="unknown_column"):
    return (f"correction:{trace_id}", "correction", trace_id, input_json, output or out(COUNT), failure_mode)


def pinned(**splits_by_input):
    """``previous`` that pins the groups of the given inputs to splits."""
    return {group_id(TASK, i): s for s, inputs in splits_by_input.items() for i in inputs}


def run(real_rows, syn_rows=(), config=CONFIG, previous=None, now=NOW):
    return curate(real_frame(list(real_rows)), syn_frame(list(syn_rows)), TASK, config, previous, now=now)


def test_curate_groups_splits_and_keeps_synthetic_out_of_test():
    te = [inp(f"count by region for tenant {i}") for i in range(3)]
    tr = [inp(f"count by region for shop {i}") for i in range(4)]
    real = ([trace(f"te{i}", x) for i, x in enumerate(te)] + [trace(f"tr{i}", x) for i, x in enumerate(tr)]
            + [correction("te0", te[0].replace("count", "COUNT"))])
    syn = [("synthetic:a", "trace:te1", inp("max duration_ms for tenant 1"), out(P95)),   # parent in test
           ("synthetic:b", "trace:tr1", inp("max duration_ms for shop 9"), out(P95))]     # parent in train
    result, report = run(real, syn, previous=pinned(test=te, train=tr))
    assert result.schema == pl.Schema(EXAMPLE_SCHEMA)
    assert result.group_by("group_id").agg(pl.col("split").n_unique())["split"].max() == 1
    assert result.filter(pl.col("split") == "test")["source"].unique().sort().to_list() == ["correction", "trace"]
    ids = dict(zip(result["example_id"], result["split"]))
    groups = dict(zip(result["example_id"], result["group_id"]))
    assert "synthetic:a" not in ids
    assert ids["synthetic:b"] == "train" and groups["synthetic:b"] == groups["trace:tr1"]  # its parent's group
    assert "trace:te0" not in ids and ids["correction:te0"] == "test"  # the correction replaced its trace
    assert report["candidates"] == 10
    assert report["dropped"] == {"duplicate_pair": 1, "synthetic_in_test": 1}  # the same output, so a pair duplicate
    assert report["splits"]["test"] == {"examples": 3, "synthetic": 0, "synthetic_share": 0.0, "verified_references": 1}
    assert report["splits"]["train"] == {"examples": 5, "synthetic": 1, "synthetic_share": 0.2, "verified_references": 0}
    assert result["created_at"].to_list() == [NOW] * result.height


@pytest.mark.parametrize("present,winner", [
    (("synthetic", "trace", "correction"), "correction"),
    (("correction", "synthetic", "trace"), "correction"),
    (("synthetic", "trace"), "trace"),
    (("trace", "synthetic"), "trace"),
])
def test_dedup_on_input_prefers_correction_then_trace_then_synthetic(present, winner):
    shared = inp("count by region for tenant 1")
    parent = inp("p95 duration_ms for route 1")
    question = json.loads(shared)["question"]
    spellings = iter([shared, inp(question.replace("count by", "Count  by")), inp(" " + question.upper())])
    real_rows, syn_rows = [trace("parent", parent, out(P95))], []
    for n, source in enumerate(present):
        text = next(spellings)
        output = out({**COUNT, "time_range": 60 * (n + 1)})  # different outputs: a conflict, not a pair duplicate
        if source == "synthetic":
            syn_rows.append(("synthetic:s", "trace:parent", text, output))
        elif source == "trace":
            real_rows.append(trace("t", text, output))
        else:
            real_rows.append(correction("t", text, output))
    result, report = run(real_rows, syn_rows, config=CurationConfig(max_synthetic_share=0.5),
                         previous=pinned(train=[shared, parent]))
    kept = result.filter(pl.col("example_id") != "trace:parent")
    assert kept["source"].to_list() == [winner]
    assert report["dropped"] == {"duplicate_input": len(present) - 1}


def test_dedup_on_the_pair_is_counted_apart_from_conflicting_inputs():
    x = inp("count by region for tenant 1")
    result, report = run([trace("a", x), trace("b", x.replace("count", "Count")),
                          trace("c", x.replace("count", "COUNT"), out({**COUNT, "time_range": 3600}))])
    assert result["example_id"].to_list() == ["trace:a"]
    assert report["dropped"] == {"duplicate_pair": 1, "duplicate_input": 1}


def test_dedup_keeps_examples_with_same_question_but_different_columns():
    result, report = run([trace("a", inp("count by region")),
                          trace("b", inp("count by region", columns=["region", "duration_ms"]))])
    assert result.height == 2 and report["dropped"] == {}


def test_dedup_on_output_keeps_at_most_max_per_output_preferring_real():
    inputs = [inp(f"count by region for tenant {i}") for i in range(6)]
    real = [trace(f"t{i}", x) for i, x in enumerate(inputs[:3])]
    syn = [(f"synthetic:{i}", "trace:t0", x, out(COUNT)) for i, x in enumerate(inputs[3:])]
    config = CurationConfig(max_per_output=4, max_synthetic_share=0.9)
    result, report = run(real, syn, config=config, previous=pinned(train=inputs))
    assert result.height == 4 and report["dropped"] == {"over_max_per_output": 2}
    assert result.filter(pl.col("source") == "trace").height == 3
    unlimited, _ = run(real, syn, config=CurationConfig(max_per_output=10, max_synthetic_share=0.9),
                       previous=pinned(train=inputs))
    assert unlimited.height == 6


def test_complexity_counts_scalar_values_of_json_else_words():
    assert hooks.complexity(TASK, out({"calculations": [{"op": "COUNT"}]})) == 1
    assert hooks.complexity(TASK, out(P95)) == 4  # op, column, breakdown, time_range
    assert hooks.complexity(TASK, "three plain words") == 3


def test_complexity_bounds_drop_both_ends_and_are_configurable():
    simple = trace("simple", inp("count"), out({"calculations": [{"op": "COUNT"}]}))
    middle = trace("middle", inp("p95 duration_ms by service.name last 2 hours"), out(P95))
    big = {**P95, "filters": [{"column": "region", "op": "in", "value": [f"r{i}" for i in range(30)]}]}
    large = trace("large", inp("p95 duration_ms by service.name in 30 regions"), out(big))
    result, report = run([simple, middle, large])
    assert result["example_id"].to_list() == ["trace:middle"]
    assert report["dropped"] == {"too_simple": 1, "too_complex": 1}
    result, report = run([simple, middle, large], config=CurationConfig(min_complexity=0, max_complexity=10_000))
    assert result.height == 3 and report["dropped"] == {}
    result, report = run([simple, middle, large], config=CurationConfig(min_complexity=5))
    assert result["example_id"].to_list() == [] and report["dropped"] == {"too_simple": 2, "too_complex": 1}


def test_complexity_bounds_are_the_tasks_unless_set():
    assert TASK.complexity_bounds == (2, 30)
    assert CurationConfig().complexity_bounds(TASK) == (2, 30)
    assert CurationOptions().config().complexity_bounds(TASK) == (2, 30)
    assert CurationConfig(max_complexity=12).complexity_bounds(TASK) == (2, 12)
    assert CurationConfig(min_complexity=0).complexity_bounds(TASK) == (0, 30)


def test_failing_outputs_are_dropped_whatever_their_source():
    good = trace("good", inp("p95 duration_ms by service.name"), out(P95))
    bad_fix = correction("bad", inp("count by region"), out({**COUNT, "breakdowns": ["no_such_column"]}))
    bad_syn = ("synthetic:x", "trace:good", inp("count by colour"), out({**COUNT, "time_range": "1h"}))
    result, report = run([good, bad_fix], [bad_syn], previous=pinned(train=[good[3]]))
    assert result["example_id"].to_list() == ["trace:good"]
    assert report["dropped"] == {"failing_output": 2}


def test_synthetic_examples_whose_parent_is_not_curated_are_dropped():
    x = inp("p95 duration_ms by service.name")
    result, report = run([trace("a", x, out(P95))], [("synthetic:orphan", "trace:gone", inp("count by region"), out(COUNT))],
                         previous=pinned(train=[x]))
    assert "synthetic:orphan" not in result["example_id"].to_list()
    assert report["dropped"] == {"synthetic_parent_not_curated": 1}


def test_train_examples_that_near_duplicate_a_test_input_are_dropped():
    test_input = inp("Show me the p95 duration_ms by service.name in the last 2 hours?")
    paraphrase = inp("p95 duration_ms by service.name last 2 hours")           # same words once filler is gone
    different = inp("p95 duration_ms by service.name last 3 hours")            # one word differs: kept
    other_dataset = inp("p95 duration_ms by service.name last 2 hours", dataset="payments-worker")
    real = [trace("te", test_input, out(P95)), trace("para", paraphrase, out(P95)),
            trace("diff", different, out({**P95, "time_range": 10800})), trace("other", other_dataset, out(P95))]
    result, report = run(real, previous=pinned(test=[test_input], train=[paraphrase, different, other_dataset]))
    assert sorted(result["example_id"]) == ["trace:diff", "trace:other", "trace:te"]
    assert report["dropped"] == {"near_duplicate_of_test": 1}
    lenient, _ = run(real, config=CurationConfig(near_duplicate_threshold=0.7),
                     previous=pinned(test=[test_input], train=[paraphrase, different, other_dataset]))
    assert sorted(lenient["example_id"]) == ["trace:other", "trace:te"]


@pytest.mark.parametrize("cap,expected", [(0.5, 4), (0.2, 1), (0.0, 0)])
def test_synthetic_share_is_capped_per_split(cap, expected):
    tr = [inp(f"count by region for shop {i}") for i in range(4)]
    va = [inp(f"count by region for tenant {i}") for i in range(2)]
    real = [trace(f"tr{i}", x, out({**COUNT, "time_range": 60 * (i + 1)})) for i, x in enumerate(tr)]
    real += [trace(f"va{i}", x, out({**COUNT, "time_range": 7 * (i + 1)})) for i, x in enumerate(va)]
    syn = [(f"synthetic:t{i}", "trace:tr0", inp(f"max duration_ms for shop {i}"), out({**P95, "time_range": 60 * (i + 1)}))
           for i in range(6)]
    syn += [(f"synthetic:v{i}", "trace:va0", inp(f"max duration_ms for tenant {i}"), out({**P95, "time_range": 7 * (i + 1)}))
            for i in range(6)]
    result, report = run(real, syn, config=CurationConfig(max_synthetic_share=cap), previous=pinned(train=tr, validation=va))
    train = report["splits"]["train"]
    assert train["synthetic"] == expected and train["synthetic_share"] <= cap
    assert report["splits"]["validation"]["synthetic_share"] <= cap
    assert report["dropped"]["synthetic_over_cap_in_train"] == 6 - expected
    # the same synthetic examples survive on every run (stable order, not the input order)
    again, _ = run(real, list(reversed(syn)), config=CurationConfig(max_synthetic_share=cap),
                   previous=pinned(train=tr, validation=va))
    assert sorted(again["example_id"]) == sorted(result["example_id"])


def test_adding_data_does_not_move_existing_examples():
    base = [trace(f"t{i}", inp(f"count by region for tenant {i}"), out({**COUNT, "time_range": 60 * (i + 1)}),
                  failure_mode="unknown_column" if i % 4 == 0 else None) for i in range(80)]
    first, _ = run(base)
    assert set(first["split"]) == {"train", "validation", "test"}
    previous = dict(zip(first["group_id"], first["split"]))
    more = [trace(f"n{i}", inp(f"p95 duration_ms for shop {i}"), out({**P95, "time_range": 60 * (i + 1)}),
                  failure_mode="unknown_column" if i % 3 == 0 else None) for i in range(80)]
    second, report = run(more + base, previous=previous)
    before = dict(zip(first["example_id"], first["split"]))
    after = dict(zip(second["example_id"], second["split"]))
    assert {k: after[k] for k in before} == before
    assert report["real_split_sizes"]["test"]["within_tolerance"]
    # the plan is what the synthetic stage sees too
    assert plan_splits(real_frame(more + base), TASK, CONFIG.splits, previous) == dict(zip(second["group_id"],
                                                                                          second["split"]))


def test_data_version_changes_iff_train_or_validation_changes():
    def rows_for(split, n, tag):
        return [trace(f"{tag}{i}", inp(f"count by region for {tag} {i}"), out({**COUNT, "time_range": 60 * (i + 1)}))
                for i in range(n)]
    rows = rows_for("train", 2, "tr") + rows_for("validation", 2, "va") + rows_for("test", 3, "te")
    previous = {group_id(TASK, r[3]): {"tr": "train", "va": "validation", "te": "test"}[r[2][:2]] for r in rows}

    def version(rows, now=NOW):
        return data_version(run(rows, previous=previous, now=now)[0])

    v = version(rows)
    assert version(list(reversed(rows)), now=NOW + timedelta(days=1)) == v  # order and time do not matter
    assert version([r for r in rows if r[0] != "trace:te1"]) == v  # test-only changes keep the version
    assert version([r if r[0] != "trace:te0" else trace("te0", r[3], out(P95)) for r in rows]) == v
    assert version([r if r[0] != "trace:tr0" else trace("tr0", r[3], out(P95)) for r in rows]) != v
    assert version([r for r in rows if r[0] != "trace:va0"]) != v
    examples = run(rows, previous=previous)[0]
    moved = examples.with_columns(split=pl.when(pl.col("example_id") == "trace:tr0").then(pl.lit("validation"))
                                  .otherwise(pl.col("split")))
    assert data_version(moved) != data_version(examples)


def test_bad_configuration_is_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="max_synthetic_share"):
        CurationConfig(max_synthetic_share=1.0)
    with pytest.raises(ValueError, match="max_per_output"):
        CurationConfig(max_per_output=0)
    with pytest.raises(ValueError, match="leave room for train"):
        SplitConfig(validation=0.5, test=0.5)
