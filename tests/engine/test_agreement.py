"""People's agreement: routing to a second annotator, kappa and raw agreement, the disagreement
queue, adjudication, and the label that training and the judge's alignment use."""

import json
from datetime import datetime, timedelta, timezone

import duckdb
import polars as pl
import pytest

from pipeline.engine.core import store
from pipeline.engine.curate.examples import real_examples
from pipeline.engine.label.agreement import (ADJUDICATION, annotator_agreement, decided_labels, disagreements,
                                             needs_second_opinion, second_opinion_sql)
from pipeline.engine.label.alignment import alignment
from pipeline.engine.label.annotations import ANNOTATION_SCHEMA, annotation_id
from pipeline.engine.tasks import load_task
from pipeline.engine.tasks.nl2query import canonical, dump

T0 = datetime(2026, 10, 20, 9, 0, tzinfo=timezone.utc)
SCHEMA = {**ANNOTATION_SCHEMA, "role": pl.String}


def decision(trace_id, annotator, label, mode=None, correction=None, at=0, role=None, critique=None):
    """One row of annotations, ``at`` hours after T0."""
    when = T0 + timedelta(hours=at)
    return {"annotation_id": annotation_id(trace_id, annotator, when), "trace_id": trace_id, "label": label,
            "failure_mode": mode if label == "bad" else None, "correction": correction, "critique": critique,
            "annotator": annotator, "annotated_at": when, "source": "app", "role": role}


def frame(rows):
    return pl.DataFrame(rows, schema=SCHEMA)


def ten_pairs():
    """Ten traces decided by two annotators (a first, b second) and one decided once.

    label: 4 good/good, 3 bad/bad, 2 good/bad, 1 bad/good
    failure mode x named by a on t5, t6; by b on t5, t8, t9. y by a on t7, t10; by b on t6, t7.
    """
    pairs = {"t1": (("good",), ("good",)), "t2": (("good",), ("good",)), "t3": (("good",), ("good",)),
             "t4": (("good",), ("good",)), "t5": (("bad", "x"), ("bad", "x")), "t6": (("bad", "x"), ("bad", "y")),
             "t7": (("bad", "y"), ("bad", "y")), "t8": (("good",), ("bad", "x")), "t9": (("good",), ("bad", "x")),
             "t10": (("bad", "y"), ("good",))}
    rows = [decision("t1", "a", "bad", "x", at=0)]  # a's earlier decision on t1, revised below: not current
    for trace, (first, second) in pairs.items():
        rows += [decision(trace, "a", *first, at=1), decision(trace, "b", *second, at=2)]
    rows.append(decision("t11", "a", "bad", "x", at=1))  # one annotator: no pair
    rows.append(decision("t6", "lead", "bad", "y", at=3, role=ADJUDICATION))  # not an annotator's vote
    return rows


# --- agreement ---------------------------------------------------------------------------------------

def test_kappa_and_raw_agreement_on_the_label_and_each_failure_mode_match_hand_computed_values():
    result = {(r["aspect"], r["failure_mode"]): r for r in annotator_agreement(frame(ten_pairs())).iter_rows(named=True)}
    assert list(result) == [("label", None), ("failure_mode", "x"), ("failure_mode", "y")]
    assert all((r["pairs"], r["traces"]) == (10, 10) for r in result.values())
    label = result["label", None]
    # p_o = 7/10; p_e = 6/10 * 5/10 + 4/10 * 5/10 = 0.5; kappa = (0.7 - 0.5) / 0.5
    assert label["agreement"] == pytest.approx(0.7) and label["kappa"] == pytest.approx(0.4)
    x = result["failure_mode", "x"]
    # p_o = 7/10; p_e = 2/10 * 3/10 + 8/10 * 7/10 = 0.62; kappa = 0.08 / 0.38
    assert x["agreement"] == pytest.approx(0.7) and x["kappa"] == pytest.approx(0.08 / 0.38)
    y = result["failure_mode", "y"]
    # p_o = 8/10; p_e = 2/10 * 2/10 + 8/10 * 8/10 = 0.68; kappa = 0.12 / 0.32
    assert y["agreement"] == pytest.approx(0.8) and y["kappa"] == pytest.approx(0.375)


def test_kappa_is_none_when_chance_agreement_is_certain_and_three_annotators_make_three_pairs():
    rows = [decision("t1", n, "good", at=i) for i, n in enumerate("abc")] + [decision("t2", "a", "good")]
    result = annotator_agreement(frame(rows))
    assert result.select("aspect", "pairs", "traces", "agreement", "kappa").rows() == [("label", 3, 1, 1.0, None)]
    assert annotator_agreement(frame(rows[:1] + rows[3:])).is_empty()  # nobody decided a trace twice


# --- routing -----------------------------------------------------------------------------------------

def test_a_stable_share_of_traces_is_routed_to_a_second_annotator():
    ids = [f"tr_{n:05d}" for n in range(20_000)]
    routed = {t for t in ids if needs_second_opinion(t, 0.1)}
    assert 0.09 <= len(routed) / len(ids) <= 0.11
    assert routed == {t for t in ids if needs_second_opinion(t)}  # the default share is 10%
    assert routed < {t for t in ids if needs_second_opinion(t, 0.3)}  # a larger share adds traces
    assert not any(needs_second_opinion(t, 0) for t in ids[:100]) and all(needs_second_opinion(t, 1) for t in ids[:100])
    with pytest.raises(ValueError, match="share"):
        needs_second_opinion("tr_1", 1.5)


def test_the_routing_rule_in_sql_routes_the_same_traces():
    ids = [f"ls_{n}-{n * 7919 % 1000}" for n in range(3_000)]
    with duckdb.connect() as conn:
        conn.execute("CREATE TABLE t AS SELECT unnest(?::VARCHAR[]) AS trace_id", [ids])
        in_sql = {r[0] for r in conn.execute(f"SELECT trace_id FROM t WHERE {second_opinion_sql()}",
                                             {"second_opinion_share": 0.25}).fetchall()}
    assert in_sql == {t for t in ids if needs_second_opinion(t, 0.25)} and in_sql


# --- the disagreement queue and adjudication ------------------------------------------------------------

FIX = dump(canonical({"calculations": [{"op": "COUNT"}], "breakdowns": ["region"]}))
OTHER_FIX = dump(canonical({"calculations": [{"op": "COUNT"}], "breakdowns": ["service.name"]}))


def queue_cases():
    indented = json.dumps(json.loads(FIX), indent=2)
    return [
        decision("label", "a", "good", at=1), decision("label", "b", "bad", "x", at=2),
        decision("mode", "a", "bad", "x", at=0), decision("mode", "b", "bad", "y", at=1),
        decision("fix", "a", "bad", "x", FIX, at=3), decision("fix", "b", "bad", "x", OTHER_FIX, at=4),
        decision("same_fix", "a", "bad", "x", FIX, at=1), decision("same_fix", "b", "bad", "x", indented, at=2),
        decision("one_fix", "a", "bad", "x", FIX, at=1), decision("one_fix", "b", "bad", "x", at=2),
        decision("revised", "a", "good", at=0), decision("revised", "b", "bad", "x", at=1),
        decision("revised", "a", "bad", "x", at=2),  # a changed their mind: they agree now
        decision("settled", "a", "good", at=0), decision("settled", "b", "bad", "x", at=1),
        decision("settled", "lead", "bad", "x", FIX, at=5, role=ADJUDICATION),
        decision("single", "a", "bad", "x", at=0),
    ]


def test_the_queue_holds_unadjudicated_disagreements_on_label_mode_or_correction_oldest_first():
    queue = disagreements(frame(queue_cases()))
    assert queue.select("trace_id", "disagree_on", "annotators", "labels", "failure_modes").rows() == [
        ("mode", ["failure_mode"], ["a", "b"], ["bad", "bad"], ["x", "y"]),
        ("label", ["label"], ["a", "b"], ["good", "bad"], [None, "x"]),
        ("fix", ["correction"], ["a", "b"], ["bad", "bad"], ["x", "x"]),
    ]
    assert queue["decisions"].to_list() == [2, 2, 2]
    assert queue["last_annotated_at"].to_list() == [T0 + timedelta(hours=h) for h in (1, 2, 4)]


def test_an_adjudication_decides_the_label_and_an_unadjudicated_disagreement_is_left_out():
    decided = {r["trace_id"]: r for r in decided_labels(frame(queue_cases())).iter_rows(named=True)}
    assert set(decided) == {"same_fix", "one_fix", "revised", "settled", "single"}  # not label, mode, fix
    settled = decided["settled"]
    assert (settled["label"], settled["correction"], settled["annotator"], settled["decided_by"]) == (
        "bad", FIX, "lead", "adjudication")
    assert {t: decided[t]["decided_by"] for t in ("same_fix", "one_fix", "revised", "single")} == {
        "same_fix": "agreement", "one_fix": "agreement", "revised": "agreement", "single": "single"}
    assert decided["one_fix"]["correction"] == FIX  # the correction one of them gave
    assert decided["revised"]["label"] == "bad"


def test_a_later_annotator_decision_does_not_override_an_adjudication():
    rows = [decision("t", "a", "good", at=0), decision("t", "b", "bad", "x", at=1),
            decision("t", "lead", "good", at=2, role=ADJUDICATION), decision("t", "c", "bad", "x", at=3)]
    assert decided_labels(frame(rows)).select("label", "decided_by").rows() == [("good", "adjudication")]
    assert disagreements(frame(rows)).is_empty()


def test_without_a_role_column_every_row_is_an_annotators_decision():
    rows = pl.DataFrame([{k: v for k, v in r.items() if k != "role"} for r in queue_cases()], schema=ANNOTATION_SCHEMA)
    assert "settled" in disagreements(rows)["trace_id"].to_list()  # the lead's row counts as a third vote
    assert decided_labels(pl.DataFrame(schema=ANNOTATION_SCHEMA)).is_empty()


# --- what training and the judge's alignment use -------------------------------------------------------------

TASK = load_task("nl2query")
COLUMNS = ["duration_ms", "service.name", "region"]


def test_training_uses_the_adjudicated_correction_and_skips_an_unadjudicated_disagreement():
    inp = json.dumps({"question": "count by region", "columns": COLUMNS, "dataset": "checkout-api"})
    wrong = json.dumps({"calculations": [{"op": "COUNT"}], "breakdowns": ["service.name"]})
    traces = pl.DataFrame([(t, inp, wrong, None) for t in ("settled", "open")],
                          schema={"trace_id": pl.String, "input": pl.String, "output": pl.String, "error": pl.String},
                          orient="row")
    evaluations = pl.DataFrame([(t, r.check_name, r.passed) for t in ("settled", "open")
                                for r in TASK.check(json.loads(inp), wrong)],
                               schema={"trace_id": pl.String, "check_name": pl.String, "passed": pl.Boolean}, orient="row")
    rows = [decision(t, "a", "good", at=0) for t in ("settled", "open")]
    rows += [decision(t, "b", "bad", "wrong_breakdown", OTHER_FIX, at=1) for t in ("settled", "open")]
    rows.append(decision("settled", "lead", "bad", "wrong_breakdown", FIX, at=2, role=ADJUDICATION))
    real = real_examples(traces, evaluations, frame(rows), TASK).sort("example_id")
    assert real.select("example_id", "output", "failure_mode", "reference_verified").rows() == [
        ("correction:settled", FIX, "wrong_breakdown", True),
        ("trace:open", dump(canonical(json.loads(wrong))), None, False),  # passes its checks, no human label
    ]


def test_the_judge_is_measured_against_adjudicated_labels_only_where_people_settled():
    rows = [decision("agreed", "a", "bad", "x", at=0), decision("agreed", "b", "bad", "x", at=1),
            decision("settled", "a", "bad", "x", at=0), decision("settled", "b", "good", at=1),
            decision("settled", "lead", "good", at=2, role=ADJUDICATION),
            decision("open", "a", "bad", "x", at=0), decision("open", "b", "good", at=1)]
    judged = pl.DataFrame({"trace_id": ["agreed", "settled", "open"], "outcome": ["bad", "good", "good"]})
    result = alignment(judged, frame(rows))
    assert (result["n_labelled"], result["n_human_good"], result["n_human_bad"]) == (2, 1, 1)
    assert result["tpr"] == 1.0 and result["tnr"] == 1.0


# --- the analysts' views ------------------------------------------------------------------------------------

def test_the_views_on_a_migrated_database_match_the_engine(tmp_path):
    conn = store.connect(str(tmp_path / "flywheel.duckdb"))
    rows = frame(ten_pairs() + queue_cases())
    plain = rows.filter(pl.col("role").is_null()).drop("role")
    store.insert_new(conn, "annotations", plain, ["annotation_id"])  # a writer that does not know role
    store.insert_new(conn, "annotations", rows.filter(pl.col("role").is_not_null()), ["annotation_id"])
    assert conn.execute("SELECT count(*) FROM annotations WHERE role = 'annotation'").fetchone()[0] == plain.height
    stored = store.read(conn, "SELECT * FROM annotations")
    for view, engine in (("annotator_agreement", annotator_agreement), ("disagreements", disagreements),
                         ("decided_labels", decided_labels)):
        assert store.read(conn, f"SELECT * FROM {view}").rows() == engine(stored).rows() == engine(rows).rows(), view
    assert not store.read(conn, "SELECT * FROM disagreements").is_empty()
    conn.close()


def test_migration_12_marks_existing_decisions_as_annotations(tmp_path):
    path = str(tmp_path / "old.duckdb")
    with duckdb.connect(path) as conn:
        conn.execute("CREATE TABLE schema_migrations (version INTEGER, name VARCHAR, applied_at TIMESTAMPTZ DEFAULT now())")
        for version, name, sql in store.MIGRATIONS:
            if version < 12:
                conn.execute(sql)
                conn.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [version, name])
        store.insert_new(conn, "annotations", frame(queue_cases()[:2]).drop("role"), ["annotation_id"])
    with store.connect(path) as conn:
        assert conn.execute("SELECT DISTINCT role FROM annotations").fetchall() == [("annotation",)]
        assert conn.execute("SELECT trace_id FROM disagreements").fetchall() == [("label",)]
