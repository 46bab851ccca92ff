"""Curation: real examples, group-aware stable splits, dedup, synthetic data and data versions."""

import itertools
import json
from collections import Counter
from datetime import datetime, timedelta, timezone

import polars as pl
import pytest

from pipeline.engine.annotations import ANNOTATION_SCHEMA, annotation_id
from pipeline.engine.curation import (EXAMPLE_SCHEMA, SplitConfig, assign_split, curate, data_version, group_id,
                                      real_examples, synthesize)
from pipeline.engine.tasks import load_task
from pipeline.engine.tasks.nl2query import canonical, dump

TASK = load_task("nl2query")
CONFIG = SplitConfig()
NOW = datetime(2026, 10, 20, 12, 0, tzinfo=timezone.utc)
T0 = datetime(2026, 10, 17, 9, 0, tzinfo=timezone.utc)
COLUMNS = ["duration_ms", "service.name", "http.status_code", "http.route", "region"]


def inp(question, dataset="checkout-api", columns=COLUMNS):
    return json.dumps({"question": question, "columns": list(columns), "dataset": dataset})


def out(query):
    return dump(canonical(query))


P95 = {"calculations": [{"op": "P95", "column": "duration_ms"}], "breakdowns": ["service.name"], "time_range": 7200}
COUNT = {"calculations": [{"op": "COUNT"}], "breakdowns": ["region"]}


def split_of(input_json, config=CONFIG):
    return assign_split(group_id(input_json), config)


def questions_in(split, n=1, template="count by region for tenant {i}", dataset="checkout-api"):
    """``n`` inputs whose group lands in ``split``."""
    found = []
    for i in itertools.count():
        candidate = inp(template.format(i=i), dataset)
        if split_of(candidate) == split:
            found.append(candidate)
            if len(found) == n:
                return found


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


def test_real_examples_selects_passing_unjudged_traces_and_corrections():
    fixed = out({**P95, "time_range": 3600})
    traces = pl.DataFrame([
        ("ok", inp("p95 duration_ms by service.name last 2 hours"), "```json\n" + json.dumps(P95, indent=2) + "\n```", None),
        ("failing", inp("p95 duration_ms by service.name last hour"), json.dumps({**P95, "time_range": "1h"}), None),
        ("judged_bad", inp("count by region"), json.dumps({**COUNT, "breakdowns": ["service.name"]}), None),
        ("bad_then_good", inp("count by region today"), json.dumps(COUNT), None),
        ("errored", inp("count by http.route"), "", "upstream timeout"),
        ("not_evaluated", inp("count by service.name"), json.dumps(COUNT), None),
    ], schema=TRACE_SCHEMA, orient="row")
    evaluations = evaluated(traces).filter(pl.col("trace_id") != "not_evaluated")
    ann = annotations([
        {"trace_id": "judged_bad", "label": "bad", "failure_mode": "wrong_breakdown", "annotated_at": T0},
        {"trace_id": "failing", "label": "bad", "failure_mode": "time_range_not_integer", "correction": fixed,
         "annotated_at": T0},
        {"trace_id": "bad_then_good", "label": "bad", "failure_mode": "x", "annotated_at": T0},
        {"trace_id": "bad_then_good", "label": "good", "annotated_at": T0 + timedelta(hours=1)},
    ])
    real = real_examples(traces, evaluations, ann, TASK).sort("example_id")
    assert real.select("example_id", "source", "parent_id").rows() == [
        ("correction:failing", "correction", "failing"),
        ("trace:bad_then_good", "trace", "bad_then_good"),
        ("trace:ok", "trace", "ok"),
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


# --- groups and splits ------------------------------------------------------------------------------

def test_group_id_ignores_case_and_whitespace_but_not_dataset_or_wording():
    a = group_id(inp("P95 duration_ms by service.name  last 2 hours"))
    assert a == group_id(inp("  p95 duration_ms BY service.name\tlast 2 hours\n"))
    assert a == group_id(inp("p95 duration_ms by service.name last 2 hours", columns=["duration_ms", "service.name"]))
    assert a != group_id(inp("p95 duration_ms by service.name last 2 hours", dataset="payments-worker"))
    assert a != group_id(inp("p95 duration_ms by service.name last 3 hours"))
    assert a.startswith("g_")


def test_assign_split_is_stable_and_matches_shares():
    groups = [group_id(inp(f"count of requests for customer {i}")) for i in range(20000)]
    first = [assign_split(g, CONFIG) for g in groups]
    assert first == [assign_split(g, SplitConfig()) for g in groups]
    shares = {k: v / len(groups) for k, v in Counter(first).items()}
    assert shares["test"] == pytest.approx(0.15, abs=0.015)
    assert shares["validation"] == pytest.approx(0.10, abs=0.015)
    assert shares["train"] == pytest.approx(0.75, abs=0.015)
    custom = Counter(assign_split(g, SplitConfig(validation=0.2, test=0.3)) for g in groups)
    assert custom["test"] / len(groups) == pytest.approx(0.3, abs=0.015)
    assert custom["validation"] / len(groups) == pytest.approx(0.2, abs=0.015)
    assert Counter(assign_split(g, SplitConfig(validation=0.0, test=0.0)) for g in groups) == {"train": len(groups)}


def test_salt_reshuffles_groups():
    groups = [group_id(inp(f"q {i}")) for i in range(500)]
    a = [assign_split(g, CONFIG) for g in groups]
    b = [assign_split(g, SplitConfig(salt="other")) for g in groups]
    assert a != b


# --- curate ---------------------------------------------------------------------------------------------

REAL_SCHEMA = {"example_id": pl.String, "source": pl.String, "parent_id": pl.String, "input": pl.String,
               "output": pl.String}
SYN_SCHEMA = {"example_id": pl.String, "parent_id": pl.String, "generator": pl.String, "input": pl.String,
              "output": pl.String}


def real_frame(rows):
    return pl.DataFrame([dict(zip(REAL_SCHEMA, r)) for r in rows], schema=REAL_SCHEMA)


def syn_frame(rows):
    return pl.DataFrame([{"example_id": e, "parent_id": p, "generator": "substitute_column", "input": i, "output": o}
                         for e, p, i, o in rows], schema=SYN_SCHEMA)


def trace(trace_id, input_json, output=None):
    return (f"trace:{trace_id}", "trace", trace_id, input_json, output or out(COUNT))


def test_curate_groups_splits_and_keeps_synthetic_out_of_test():
    test_inputs = questions_in("test", 3)
    train_inputs = questions_in("train", 4)
    real = real_frame([trace(f"te{i}", x) for i, x in enumerate(test_inputs)]
                      + [trace(f"tr{i}", x) for i, x in enumerate(train_inputs)]
                      + [("correction:te0", "correction", "te0", test_inputs[0].replace("count", "COUNT"), out(COUNT))])
    # synthetic children of a test parent and of a train parent, with questions whose own group lands elsewhere
    syn = syn_frame([("synthetic:a", "trace:te1", questions_in("train", 1, "max duration_ms {i}")[0], out(P95)),
                     ("synthetic:b", "trace:tr1", questions_in("test", 1, "max duration_ms {i}")[0], out(P95))])
    result, counts = curate(real, syn, CONFIG, now=NOW)
    assert result.schema == pl.Schema(EXAMPLE_SCHEMA)
    # no group in two splits
    assert result.group_by("group_id").agg(pl.col("split").n_unique())["split"].max() == 1
    # test holds only real examples
    assert result.filter(pl.col("split") == "test")["source"].unique().sort().to_list() == ["correction", "trace"]
    ids = dict(zip(result["example_id"], result["split"]))
    assert "synthetic:a" not in ids                           # parent in test: dropped
    assert ids["synthetic:b"] == "train"                      # follows its parent's group, not its own
    groups = dict(zip(result["example_id"], result["group_id"]))
    assert groups["synthetic:b"] == groups["trace:tr1"]
    # the correction replaced its trace (same input up to case)
    assert "trace:te0" not in ids and ids["correction:te0"] == "test"
    assert counts["candidates"] == 10
    assert counts["dropped_duplicate_input"] == 1 and counts["dropped_synthetic_in_test"] == 1
    assert counts["split_test"] == 3 and counts["split_train"] == 5
    assert result["created_at"].to_list() == [NOW] * result.height


@pytest.mark.parametrize("present,winner", [
    (("synthetic", "trace", "correction"), "correction"),
    (("correction", "synthetic", "trace"), "correction"),
    (("synthetic", "trace"), "trace"),
    (("trace", "synthetic"), "trace"),
])
def test_dedup_on_input_prefers_correction_then_trace_then_synthetic(present, winner):
    (shared,) = questions_in("train", 1)
    parent = questions_in("train", 1, "p95 duration_ms for route {i}")[0]
    real_rows = [trace("parent", parent, out(P95))]
    syn_rows = []
    question = json.loads(shared)["question"]
    spellings = iter([shared, inp(question.replace("count by", "Count  by")), inp(" " + question.upper())])
    for source in present:
        text = next(spellings)
        if source == "synthetic":
            syn_rows.append(("synthetic:s", "trace:parent", text, out(COUNT)))
        elif source == "trace":
            real_rows.append(trace("t", text))
        else:
            real_rows.append(("correction:t", "correction", "t", text, out(COUNT)))
    result, counts = curate(real_frame(real_rows), syn_frame(syn_rows), CONFIG, now=NOW)
    kept = result.filter(pl.col("example_id") != "trace:parent")
    assert kept["source"].to_list() == [winner]
    assert counts["dropped_duplicate_input"] == len(present) - 1


def test_dedup_keeps_examples_with_same_question_but_different_columns():
    real = real_frame([trace("a", inp("count by region")),
                       trace("b", inp("count by region", columns=["region", "duration_ms"]))])
    result, counts = curate(real, syn_frame([]), CONFIG, now=NOW)
    assert result.height == 2 and counts["dropped_duplicate_input"] == 0


def test_adding_data_does_not_move_existing_examples():
    base_inputs = [inp(f"count by region for tenant {i}") for i in range(60)]
    real1 = real_frame([trace(f"t{i}", x) for i, x in enumerate(base_inputs)])
    first, _ = curate(real1, syn_frame([]), CONFIG, now=NOW)
    more = [inp(f"p95 duration_ms for shop {i}") for i in range(60)]
    real2 = real_frame([trace(f"n{i}", x) for i, x in enumerate(more)] + real1.rows())
    second, _ = curate(real2, syn_frame([]), CONFIG, now=NOW)
    before = dict(zip(first["example_id"], zip(first["group_id"], first["split"])))
    after = dict(zip(second["example_id"], zip(second["group_id"], second["split"])))
    assert set(before) <= set(after)
    assert {k: after[k] for k in before} == before
    assert set(first["split"]) == {"train", "validation", "test"}


def test_data_version_changes_iff_train_or_validation_changes():
    train_inputs, val_inputs, test_inputs = (questions_in(s, 2) for s in ("train", "validation", "test"))
    rows = ([trace(f"tr{i}", x) for i, x in enumerate(train_inputs)]
            + [trace(f"va{i}", x) for i, x in enumerate(val_inputs)]
            + [trace(f"te{i}", x) for i, x in enumerate(test_inputs)])

    def version(rows, now=NOW):
        return data_version(curate(real_frame(rows), syn_frame([]), CONFIG, now=now)[0])

    v = version(rows)
    assert version(list(reversed(rows)), now=NOW + timedelta(days=1)) == v  # order and time do not matter
    # test-only changes keep the version
    assert version(rows + [trace("te_new", questions_in("test", 3)[2])]) == v
    assert version([r if r[0] != "trace:te0" else trace("te0", r[3], out(P95)) for r in rows]) == v
    assert version([r for r in rows if r[0] != "trace:te1"]) == v
    # train and validation changes move it
    assert version(rows + [trace("tr_new", questions_in("train", 3)[2])]) != v
    assert version([r if r[0] != "trace:tr0" else trace("tr0", r[3], out(P95)) for r in rows]) != v
    assert version([r if r[0] != "trace:va1" else trace("va1", r[3], out(P95)) for r in rows]) != v
    assert version([r for r in rows if r[0] != "trace:va0"]) != v
    # an example moving between train and validation changes it too
    examples = curate(real_frame(rows), syn_frame([]), CONFIG, now=NOW)[0]
    moved = examples.with_columns(split=pl.when(pl.col("example_id") == "trace:tr0").then(pl.lit("validation"))
                                  .otherwise(pl.col("split")))
    assert data_version(moved) != data_version(examples)


# --- synthesize ------------------------------------------------------------------------------------------

def seeds_frame(n=40):
    rows = []
    for i in range(n):
        breakdown = ["service.name", "region", "http.route"][i % 3]
        hours = [2, 4, 6, 8][i % 4]
        question = f"count by {breakdown} for tenant {i} last {hours} hours, top 10"
        query = {"calculations": [{"op": "COUNT"}], "breakdowns": [breakdown],
                 "orders": [{"op": "COUNT", "order": "descending"}], "time_range": hours * 3600, "limit": 10}
        rows.append(trace(f"s{i}", inp(question), out(query)))
    return real_frame(rows)


def test_synthesize_never_uses_seeds_from_test_groups():
    seeds = seeds_frame()
    splits = dict(zip(seeds["example_id"], seeds["input"].map_elements(split_of, return_dtype=pl.String)))
    assert "test" in splits.values()
    generated = synthesize(seeds, TASK, 200, seed=7, split_config=CONFIG, now=NOW)
    assert generated.height > 20
    assert all(splits[p] != "test" for p in generated["parent_id"])
    assert set(generated["parent_id"]) - set(seeds["example_id"]) == set()
    assert generated["example_id"].is_unique().all()
    assert generated["example_id"].str.starts_with("synthetic:").all()
    assert set(generated["seed"]) == {7} and set(generated["created_at"]) == {NOW}
    for input_json, output in generated.select("input", "output").iter_rows():
        assert all(r.passed is True for r in TASK.check(json.loads(input_json), output))
    # then curate keeps every one of them out of test, in its parent's split
    result, _ = curate(seeds, generated, CONFIG, now=NOW)
    synthetic = result.filter(pl.col("source") == "synthetic")
    assert synthetic.height > 0 and (synthetic["split"] != "test").all()
    parent_split = {e: splits[p] for e, p in generated.select("example_id", "parent_id").iter_rows()}
    assert all(parent_split[e] == s for e, s in synthetic.select("example_id", "split").iter_rows())


def test_synthesize_is_deterministic_and_ids_are_content_hashes():
    seeds = seeds_frame(12)
    a = synthesize(seeds, TASK, 30, seed=1, split_config=CONFIG, now=NOW)
    b = synthesize(seeds, TASK, 30, seed=1, split_config=CONFIG, now=NOW + timedelta(days=1))
    assert a.drop("created_at").equals(b.drop("created_at"))
    assert synthesize(seeds, TASK, 30, seed=2, split_config=CONFIG, now=NOW)["example_id"].to_list() != a["example_id"].to_list()


def test_synthesize_with_only_test_seeds_is_empty():
    seeds = real_frame([trace(f"t{i}", x) for i, x in enumerate(questions_in("test", 3, "count by region last {i} hours"))])
    generated = synthesize(seeds, TASK, 10, seed=0, split_config=CONFIG, now=NOW)
    assert generated.is_empty()
    assert "example_id" in generated.columns and "parent_id" in generated.columns
