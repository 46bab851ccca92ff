"""Verified references: curation says which references a person verified, migration 9 backfills
the flag, the split spreads verified groups into test by the same shares, and the evaluation, the
report and the summary give exact match on verified references apart from agreement with
production on the others, each with its count, without changing what gates promotion."""

import json
from collections import Counter
from contextlib import closing
from datetime import datetime, timedelta, timezone

import duckdb
import polars as pl
import pytest

from pipeline.engine.core import store
from pipeline.engine.curate.examples import CurationConfig, curate, plan_splits, real_examples, real_groups
from pipeline.engine.curate.reads import verified_test_references
from pipeline.engine.curate.splits import SplitConfig, assign_splits, group_id
from pipeline.engine.evaluate import report_html
from pipeline.engine.evaluate.candidates import select_candidates
from pipeline.engine.evaluate.comparison import evaluate_candidates
from pipeline.engine.evaluate.gate import Thresholds
from pipeline.engine.evaluate.scoring import score
from pipeline.engine.label.annotations import ANNOTATION_SCHEMA, annotation_id
from pipeline.engine.tasks import load_task
from pipeline.engine.tasks.nl2query import canonical, dump
from pipeline.summary import summary

TASK = load_task("nl2query")
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)
COLUMNS = ["duration_ms", "service.name", "http.route", "region"]
COUNT = {"calculations": [{"op": "COUNT"}], "breakdowns": ["region"], "time_range": 3600}
TRACE_SCHEMA = {"trace_id": pl.String, "input": pl.String, "output": pl.String, "error": pl.String}
EVAL_SCHEMA = {"trace_id": pl.String, "check_name": pl.String, "passed": pl.Boolean}
SYN_SCHEMA = {"example_id": pl.String, "parent_id": pl.String, "generator": pl.String, "input": pl.String,
              "output": pl.String}


def inp(question, dataset="checkout-api"):
    return json.dumps({"question": question, "columns": COLUMNS, "dataset": dataset})


def query(seconds):
    return dump(canonical({**COUNT, "time_range": seconds}))


def traces_frame(rows):
    return pl.DataFrame(rows, schema=TRACE_SCHEMA, orient="row")


def evaluated(traces):
    return pl.DataFrame([(t, r.check_name, r.passed) for t, i, o, _ in traces.iter_rows()
                         for r in TASK.check(json.loads(i), o)], schema=EVAL_SCHEMA, orient="row")


def decisions(rows):
    out = []
    for trace_id, label, at, correction in rows:
        out.append({"annotation_id": annotation_id(trace_id, "ana", at), "trace_id": trace_id, "label": label,
                    "failure_mode": "wrong_time_range" if label == "bad" else None, "correction": correction,
                    "critique": None, "annotator": "ana", "annotated_at": at, "source": "app"})
    return pl.DataFrame(out, schema=ANNOTATION_SCHEMA)


# --- curation sets the flag ----------------------------------------------------------------------------------

def test_curation_marks_corrections_and_traces_a_person_marked_good_as_verified():
    traces = traces_frame([
        ("good", inp("count by region last hour"), query(3600), None),
        ("plain", inp("count by region last 2 hours"), query(7200), None),
        ("good_then_bad", inp("count by region last 3 hours"), query(10800), None),
        ("bad_then_good", inp("count by region last 4 hours"), query(14400), None),
        ("wrong", inp("count by region last 5 hours"), query(60), None),
    ])
    people = decisions([("good", "good", T0, None),
                        ("good_then_bad", "good", T0, None), ("good_then_bad", "bad", T0 + timedelta(hours=1), None),
                        ("bad_then_good", "bad", T0, None), ("bad_then_good", "good", T0 + timedelta(hours=1), None),
                        ("wrong", "bad", T0, query(18000))])
    real = real_examples(traces, evaluated(traces), people, TASK)
    assert dict(zip(real["example_id"], real["reference_verified"])) == {
        "trace:good": True, "trace:plain": False, "trace:bad_then_good": True, "correction:wrong": True}
    synthetic = pl.DataFrame([("synthetic:s", "trace:plain", "substitute_column", inp("count by region for shop 1"),
                               query(120))], schema=SYN_SCHEMA, orient="row")
    previous = {group_id(TASK, i): "train" for i in [*traces["input"], inp("count by region for shop 1")]}
    curated, report = curate(real, synthetic, TASK, CurationConfig(max_synthetic_share=0.3), previous)
    assert dict(zip(curated["example_id"], curated["reference_verified"])) == {
        "trace:good": True, "trace:plain": False, "trace:bad_then_good": True, "correction:wrong": True,
        "synthetic:s": False}
    assert report["splits"]["train"]["verified_references"] == 3


def test_among_duplicate_traces_the_one_a_person_verified_is_kept():
    traces = traces_frame([("first", inp("count by region last hour"), query(3600), None),
                           ("second", inp("Count by region  last hour"), query(3600), None)])
    people = decisions([("second", "good", T0, None)])
    real = real_examples(traces, evaluated(traces), people, TASK)
    curated, report = curate(real, pl.DataFrame(schema=SYN_SCHEMA), TASK, CurationConfig(),
                             {group_id(TASK, inp("count by region last hour")): "test"})
    assert curated.select("example_id", "reference_verified").rows() == [("trace:second", True)]
    assert report["dropped"] == {"duplicate_pair": 1}
    unverified, _ = curate(real_examples(traces, evaluated(traces), people.head(0), TASK),
                           pl.DataFrame(schema=SYN_SCHEMA), TASK, CurationConfig(), None)
    assert unverified["example_id"].to_list() == ["trace:first"]  # without a decision: the first, as before


# --- migration 9 backfills an old database ------------------------------------------------------------------

def test_migration_9_backfills_reference_verified_from_sources_and_latest_decisions(tmp_path):
    path = str(tmp_path / "old.duckdb")
    with duckdb.connect(path) as conn:
        conn.execute("CREATE TABLE schema_migrations (version INTEGER, name VARCHAR, applied_at TIMESTAMPTZ DEFAULT now())")
        for version, name, sql in store.MIGRATIONS[:8]:
            conn.execute(sql)
            conn.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [version, name])
        assert "reference_verified" not in {r[0] for r in conn.execute("DESCRIBE training_examples").fetchall()}
        rows = [("correction:c", "correction", "c"), ("trace:good", "trace", "good"), ("trace:plain", "trace", "plain"),
                ("trace:good_then_bad", "trace", "good_then_bad"), ("trace:bad_then_good", "trace", "bad_then_good"),
                ("synthetic:s", "synthetic", "trace:good"), ("trace:orphan", "trace", None)]
        for example_id, source, parent in rows:
            conn.execute("INSERT INTO training_examples (example_id, source, group_id, split, input, output, parent_id, "
                         "created_at) VALUES (?, ?, 'g', 'test', '{}', '{}', ?, ?)", [example_id, source, parent, T0])
        people = decisions([("good", "good", T0, None), ("c", "bad", T0, None),
                            ("good_then_bad", "good", T0, None), ("good_then_bad", "bad", T0 + timedelta(hours=1), None),
                            ("bad_then_good", "bad", T0, None), ("bad_then_good", "good", T0 + timedelta(hours=1), None)])
        # columns later migrations add do not exist yet in a version-8 database
        store.upsert(conn, "annotations", people.drop("supersedes", "role", strict=False), ["annotation_id"])
    with closing(store.connect(path)) as conn:
        assert 9 in {v for (v,) in conn.execute("SELECT version FROM schema_migrations").fetchall()}
        flags = dict(conn.execute("SELECT example_id, reference_verified FROM training_examples").fetchall())
        assert flags == {"correction:c": True, "trace:good": True, "trace:plain": False, "trace:good_then_bad": False,
                         "trace:bad_then_good": True, "synthetic:s": False, "trace:orphan": False}
        assert verified_test_references(conn) == {"correction:c", "trace:good", "trace:bad_then_good"}
        # a writer that does not say is not verified
        conn.execute("INSERT INTO training_examples (example_id, source, group_id, split, input, output, created_at) "
                     "VALUES ('trace:new', 'trace', 'g', 'train', '{}', '{}', ?)", [T0])
        assert conn.execute("SELECT reference_verified FROM training_examples WHERE example_id = 'trace:new'"
                            ).fetchone() == (False,)


# --- the split --------------------------------------------------------------------------------------------

def real_rows(n_plain, n_good, tag=""):
    """Passing traces (n_plain unverified, n_good marked good), each its own group."""
    rows = [(f"trace:{tag}p{i}", "trace", f"{tag}p{i}", inp(f"count by region for {tag}shop {i}"), query(60 + i),
             None, False) for i in range(n_plain)]
    rows += [(f"trace:{tag}g{i}", "trace", f"{tag}g{i}", inp(f"count by region for {tag}tenant {i}"), query(60 + i),
              None, True) for i in range(n_good)]
    return pl.DataFrame(rows, schema={"example_id": pl.String, "source": pl.String, "parent_id": pl.String,
                                      "input": pl.String, "output": pl.String, "failure_mode": pl.String,
                                      "reference_verified": pl.Boolean}, orient="row")


def test_test_holds_verified_groups_in_the_same_share_as_the_rest():
    real = real_rows(400, 100)
    splits = plan_splits(real, TASK, SplitConfig())
    verified = dict(zip(real["input"].map_elements(lambda i: group_id(TASK, i), return_dtype=pl.String),
                        real["reference_verified"]))
    counts = Counter((splits[g], v) for g, v in verified.items())
    assert counts[("test", True)] == round(0.15 * 100) and counts[("test", False)] == round(0.15 * 400)
    assert counts[("validation", True)] == round(0.1 * 100)


def test_groups_keep_their_split_when_they_become_verified_and_new_groups_fill_their_stratum():
    first_real = real_rows(200, 0)
    first = plan_splits(first_real, TASK, SplitConfig())
    # a person marks every earlier trace good, and new traces arrive, verified and not
    again = pl.concat([first_real.with_columns(reference_verified=pl.lit(True)), real_rows(100, 100, tag="n")])
    second = plan_splits(again, TASK, SplitConfig(), previous=first)
    assert {g: second[g] for g in first} == first
    strata = real_groups(again, TASK)
    test_verified = sum(1 for g, s in second.items() if s == "test" and strata[g][1])
    assert test_verified == round(0.15 * 300)  # 200 old verified ones hold their share already; new ones top it up


def test_without_verified_references_the_split_is_the_failure_mode_split():
    real = real_rows(300, 0).with_columns(
        failure_mode=pl.when(pl.int_range(pl.len()) % 5 == 0).then(pl.lit("unknown_column")))
    strata = real_groups(real, TASK)
    by_mode = {g: mode for g, (mode, _) in strata.items()}
    assert plan_splits(real, TASK, SplitConfig()) == assign_splits(by_mode, SplitConfig())


# --- evaluation, report and summary ----------------------------------------------------------------------------

GOOD = '{"calculations":[{"op":"COUNT"}],"time_range":7200}'
OTHER = '{"calculations":[{"op":"COUNT"}],"time_range":3600}'
N, N_VERIFIED = 40, 16


def model(model_id, base=None, days=0):
    return {"model_id": model_id, "backend": "local", "base_model": base, "status": "succeeded",
            "artifact_path": f"/models/{model_id}", "created_at": T0, "finished_at": T0 + timedelta(days=days)}


@pytest.fixture
def database(tmp_path):
    path = str(tmp_path / "flywheel.duckdb")
    with closing(store.connect(path)) as conn:
        store.upsert(conn, "fine_tuned_models", pl.DataFrame([model("base-1"), model("ft-1", "base-1", days=1)]),
                     ["model_id"])
        store.upsert(conn, "training_examples", pl.DataFrame({
            "example_id": [f"trace:e{i:03d}" for i in range(N)], "source": "trace",
            "group_id": [f"g{i}" for i in range(N)], "split": "test",
            "input": [json.dumps({"question": f"count {i}", "columns": ["duration_ms"]}) for i in range(N)],
            "output": GOOD, "reference_verified": [i < N_VERIFIED for i in range(N)], "created_at": T0}),
            ["example_id"])
    return path


def evaluation_of(conn, candidate_outputs, base_outputs, with_verified=True):
    chosen = select_candidates(conn)
    results = {"ft-1": score(chosen.test, candidate_outputs, TASK, "ft-1", now=T0),
               "base-1": score(chosen.test, base_outputs, TASK, "base-1", now=T0)}
    return evaluate_candidates(chosen, results, {"status": "off", "reason": "no judge"}, Thresholds(), TASK, now=T0,
                               verified=verified_test_references(conn) if with_verified else ())


def test_exact_match_on_verified_references_is_reported_apart_with_its_count_and_does_not_gate(database):
    # the candidate matches every unverified reference and misses every verified one; the base the reverse
    candidate = [OTHER] * N_VERIFIED + [GOOD] * (N - N_VERIFIED)
    base = [GOOD] * N_VERIFIED + [OTHER] * (N - N_VERIFIED)
    with closing(store.connect(database)) as conn:
        evaluation = evaluation_of(conn, candidate, base)
        store.upsert(conn, "eval_reports", evaluation.rows, ["model_id", "baseline_model_id", "test_set_version"])
    n_unverified = N - N_VERIFIED
    cand = evaluation.summaries["ft-1"]
    assert (cand["n_verified"], cand["n_unverified"]) == (N_VERIFIED, n_unverified)
    assert cand["exact_match_verified"] == 0.0 and cand["exact_match_unverified"] == 1.0
    low, high = cand["exact_match_unverified_ci"]
    assert low < 1.0 == high
    comparison = evaluation.comparisons["base-1"]["comparison"]
    verified = comparison["exact_match_verified"]
    assert (verified["n"], verified["losses"], verified["wins"]) == (N_VERIFIED, N_VERIFIED, 0)
    assert verified["p_value"] < 0.001 and verified["ci_high"] < 0
    assert comparison["exact_match_unverified"]["n"] == n_unverified and comparison["exact_match"]["n"] == N
    # significantly worse on verified references, not on all of them: the gate reads exact match over all
    assert comparison["exact_match"]["p_value"] > 0.05 and comparison["exact_match"]["difference"] > 0
    assert evaluation.comparisons["base-1"]["regressions"] == []
    assert evaluation.comparisons["base-1"]["verdict"] == "no_significant_difference"
    headline = evaluation.headline()
    assert headline["n_verified_references"] == N_VERIFIED
    assert (headline["base_exact_match_verified_pct"], headline["candidate_exact_match_verified_pct"]) == (100.0, 0.0)

    markdown = evaluation.markdown
    assert (f"| passes all assertions (n={N}) | exact match, verified references (n={N_VERIFIED}) | "
            f"agreement with production, unverified references (n={n_unverified}) |") in markdown
    assert "| fine-tuned | 100.0% (91.2 to 100.0%) | 0.0% (0.0 to 19.4%) | 100.0% (86.2 to 100.0%) |" in markdown
    assert (f"| exact match, verified references (n={N_VERIFIED}) | {N_VERIFIED} | 100.0% (80.6 to 100.0%) | "
            "0.0% (0.0 to 19.4%) | -100.0 pts |") in markdown
    assert (f"| agreement with production, unverified references (n={n_unverified}) | {n_unverified} | "
            "0.0% (0.0 to 13.8%) | 100.0% (86.2 to 100.0%) |") in markdown
    assert f"| exact match, all references (n={N}) | {N} | 40.0% (26.3 to 55.4%) | 60.0% (44.6 to 73.7%) | +20.0 pts |" \
        in markdown
    assert f"{N_VERIFIED} of {N} test references were verified by a person" in markdown
    assert "  - reference (verified): " in markdown and "  - reference (unverified): " in markdown

    document = evaluation.html()
    assert f"<th>exact match, verified references (n={N_VERIFIED})</th>" in document
    assert (f"<td>exact match, verified references (n={N_VERIFIED})</td><td>{N_VERIFIED}</td>"
            "<td>100.0% (80.6 to 100.0%)</td><td>0.0% (0.0 to 19.4%)</td>") in document
    assert (f"<td>exact match, all references (n={N})</td><td>{N}</td><td>40.0% (26.3 to 55.4%)</td>"
            "<td>60.0% (44.6 to 73.7%)</td>") in document

    lines = summary(database).splitlines()
    assert f"  test references verified by a person: {N_VERIFIED} of {N} (the others are production outputs " \
           "that passed the assertions)" in lines
    assert f"  Promotion gate: {evaluation.decision}." in lines
    assert evaluation.decision == "Not promoted: no candidate is significantly better than its base"
    assert evaluation.policy.reasons == ["fine-tuned: not significantly better than its base (passes all assertions "
                                         "(+0.0 pts, p=1); exact match (+20.0 pts, p=0.27))"]
    rows = {line.split("  ")[1]: line.split()[-8:] for line in lines if line.startswith("  ") and "%" in line}
    assert rows[f"exact match, verified references (n={N_VERIFIED})"] == [
        "100.0%", "0.0%", "-100.0", "pts", "(-100.0", "to", "-100.0)", f"{verified['p_value']:.2g}"]
    assert rows[f"agreement with production, unverified references (n={n_unverified})"][:2] == ["0.0%", "100.0%"]
    assert rows[f"exact match, all references (n={N})"] == ["40.0%", "60.0%", "+20.0", "pts", "(-10.0", "to", "+50.0)",
                                                         "0.27"]


def test_without_verified_references_only_the_labels_change(database):
    candidate = [GOOD] * 30 + [OTHER] * (N - 30)
    base = [GOOD] * 10 + [OTHER] * (N - 10)
    with closing(store.connect(database)) as conn:
        conn.execute("UPDATE training_examples SET reference_verified = false")
        evaluation = evaluation_of(conn, candidate, base)
        store.upsert(conn, "eval_reports", evaluation.rows, ["model_id", "baseline_model_id", "test_set_version"])
    comparison = evaluation.comparisons["base-1"]["comparison"]
    assert "exact_match_verified" not in comparison
    assert comparison["exact_match_unverified"] == comparison["exact_match"]
    cand = evaluation.summaries["ft-1"]
    assert cand["exact_match_unverified"] == cand["exact_match"] and cand["exact_match_verified"] is None
    assert cand["exact_match_unverified_ci"] == cand["exact_match_ci"] and cand["n_verified"] == 0
    markdown = evaluation.markdown
    assert "| exact match, verified references (n=0) | n/a | n/a | n/a | n/a | n/a | n/a | n/a |" in markdown
    assert (f"| agreement with production, unverified references (n={N}) | {N} | 25.0% (14.2 to 40.2%) | "
            "75.0% (59.8 to 85.8%) | +50.0 pts |") in markdown
    assert "all references (n=" not in markdown  # the same figures as the row above
    assert "0 of 40 test references were verified by a person" in markdown
    document = report_html.render_html("ft-1", evaluation.summaries, {}, evaluation.judge, evaluation.comparisons,
                                       [], "v")
    assert "<tr><td>exact match, verified references (n=0)</td>" + "<td>n/a</td>" * 7 + "</tr>" in document
    assert "all references (n=" not in document
    lines = summary(database).splitlines()
    assert "  test references verified by a person: 0 of 40 (the others are production outputs that passed the " \
           "assertions)" in lines
    row = next(line for line in lines if line.startswith("  exact match, verified references (n=0)"))
    assert row.split()[-2:] == ["n/a", "n/a"]
    assert not any("all references" in line for line in lines)
    # the evaluation not told which references are verified is the same evaluation
    with closing(store.connect(database)) as conn:
        untold = evaluation_of(conn, candidate, base, with_verified=False)
    assert untold.summaries == evaluation.summaries
    assert {b: (c["comparison"], c["verdict"]) for b, c in untold.comparisons.items()} == \
        {b: (c["comparison"], c["verdict"]) for b, c in evaluation.comparisons.items()}
