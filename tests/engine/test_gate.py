"""The promotion gate (which metrics gate, verdicts and regressions per baseline) and the
promotion policy, on tiny comparisons and an in-memory DuckDB."""

import json
from datetime import datetime, timedelta, timezone

import polars as pl
import pytest

from pipeline.engine.core import store
from pipeline.engine.evaluate.gate import (
    NothingToPromote, Thresholds, current_promoted, decide_promotion, gate_against, promote_latest, record_promotion,
    skipped_metrics, verdict_details,
)
from pipeline.engine.evaluate.scoring import JUDGE_METRIC

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
ALIGNED = {"status": "on", "alignment": {"flagged": False}}
FLAGGED = {"status": "on", "alignment": {"flagged": True}}
OFF = {"status": "off", "reason": "no judge model configured"}


def change(difference, p_value, wins=0, losses=0):
    return {"candidate": 0.5 + difference, "baseline": 0.5, "difference": difference, "n": 40,
            "ci_low": difference - 0.1, "ci_high": difference + 0.1, "wins": wins, "losses": losses,
            "p_value": p_value}


# --- which metrics gate ----------------------------------------------------------------------------------

@pytest.mark.parametrize("judge, judge_gates, skipped", [
    (OFF, True, (JUDGE_METRIC,)),
    (FLAGGED, True, (JUDGE_METRIC,)),
    (ALIGNED, False, (JUDGE_METRIC,)),
    (ALIGNED, True, ()),
])
def test_the_judge_gates_only_when_on_aligned_and_allowed(judge, judge_gates, skipped):
    assert skipped_metrics(judge, judge_gates) == skipped


def test_a_skipped_judge_regression_neither_blocks_nor_makes_the_verdict_worse():
    comparison = {"passed_checks": change(0.2, 0.001, wins=8), "exact_match": change(0.0, 1.0),
                  JUDGE_METRIC: change(-0.4, 0.0001, losses=16)}
    assert gate_against(comparison, "base-1", Thresholds(), (JUDGE_METRIC,)) == ("better", [])
    decision, blocking = gate_against(comparison, "base-1", Thresholds(), ())
    assert decision == "worse"
    assert len(blocking) == 1 and blocking[0].startswith("judge pass vs base-1: 50.0% -> 10.0% (-40.0 pts")


def test_the_gate_thresholds_decide_what_is_a_regression():
    comparison = {"passed_checks": change(-0.05, 0.03, losses=6), "exact_match": change(0.0, 1.0)}
    decision, blocking = gate_against(comparison, "ft-old", Thresholds(alpha=0.05), ())
    assert decision == "worse" and "passes all assertions vs ft-old" in blocking[0] and "6 losses / 0 wins" in blocking[0]
    assert gate_against(comparison, "ft-old", Thresholds(alpha=0.01), ()) == ("no_significant_difference", [])
    assert gate_against(comparison, "ft-old", Thresholds(min_regression=0.1), ()) == ("no_significant_difference", [])


# --- the promotion policy --------------------------------------------------------------------------------

PROMOTED = "Promoted: the fine-tuned model is significantly better than its base, and not significantly worse than " \
           "the promoted model"


def test_a_candidate_better_than_its_base_and_not_worse_than_the_promoted_model_is_promoted():
    decision, promote = decide_promotion("ft-new", "base-1", {"base-1": "better", "ft-old": "no_significant_difference"},
                                         "ft-old")
    assert promote and decision == PROMOTED


def test_a_candidate_worse_than_a_baseline_is_not_promoted_and_says_which():
    decision, promote = decide_promotion("ft-new", "base-1", {"base-1": "better", "ft-old": "worse"}, "ft-old")
    assert not promote and decision == "Not promoted: the fine-tuned model is significantly worse than the promoted model"


@pytest.mark.parametrize("verdicts, said", [
    ({"base-1": "no_significant_difference"}, "is not significantly better than its base"),
    ({"ft-old": "better"}, "was not compared with its base"),
])
def test_a_candidate_not_better_than_its_base_is_not_promoted(verdicts, said):
    decision, promote = decide_promotion("ft-new", "base-1", verdicts, "ft-old")
    assert not promote and decision == f"Not promoted: the fine-tuned model {said}"


def test_the_promoted_model_is_not_promoted_again():
    decision, promote = decide_promotion("ft-new", "base-1", {"base-1": "better"}, "ft-new")
    assert not promote and decision == "Already promoted: the fine-tuned model is the model in use"


def test_the_decision_says_in_one_sentence_on_which_metrics_and_by_how_much():
    vs_base = {"passed_checks": change(0.342, 2e-26, wins=110), "exact_match": change(0.01, 0.5, wins=4, losses=3)}
    vs_promoted = {"passed_checks": change(0.0, 1.0), "exact_match": change(-0.041, 0.0123, losses=13, wins=2),
                   JUDGE_METRIC: change(-0.3, 0.001, losses=20)}
    details = {b: verdict_details(c, gate_against(c, b, Thresholds(), (JUDGE_METRIC,))[0], Thresholds(), (JUDGE_METRIC,))
               for b, c in (("base-1", vs_base), ("ft-old", vs_promoted))}
    assert details == {"base-1": ["passes all assertions (+34.2 pts, p=2e-26)"],
                       "ft-old": ["exact match (-4.1 pts, p=0.012)"]}  # the judge does not gate: not named
    decision, promote = decide_promotion("ft-new", "base-1", {"base-1": "better", "ft-old": "worse"}, "ft-old", details)
    assert not promote and decision == ("Not promoted: the fine-tuned model is significantly worse than the promoted "
                                        "model on exact match (-4.1 pts, p=0.012)")
    decision, promote = decide_promotion("ft-new", "base-1", {"base-1": "better"}, None, details)
    assert promote and decision == ("Promoted: the fine-tuned model is significantly better than its base on passes "
                                    "all assertions (+34.2 pts, p=2e-26)")
    flat = {"passed_checks": change(0.03, 0.25), "exact_match": change(0.01, 0.5)}
    decision, _ = decide_promotion("ft-new", "base-1", {"base-1": "no_significant_difference"}, None,
                                   {"base-1": verdict_details(flat, "no_significant_difference", Thresholds(), ())})
    assert decision == ("Not promoted: the fine-tuned model is not significantly better than its base "
                        "(passes all assertions (+3.0 pts, p=0.25); exact match (+1.0 pts, p=0.5))")


# --- against the database --------------------------------------------------------------------------------

@pytest.fixture
def conn():
    connection = store.connect(":memory:")
    models = pl.DataFrame([
        {"model_id": "base-1", "backend": "local", "base_model": None, "status": "succeeded", "created_at": T0},
        {"model_id": "ft-old", "backend": "local", "base_model": "base-1", "status": "succeeded", "created_at": T0},
        {"model_id": "ft-new", "backend": "local", "base_model": "base-1", "status": "succeeded", "created_at": T0},
    ])
    store.upsert(connection, "fine_tuned_models", models, ["model_id"])
    yield connection
    connection.close()


def report(conn, verdicts, at, model_id="ft-new", metrics="{}"):
    rows = pl.DataFrame([{"model_id": model_id, "baseline_model_id": b, "test_set_version": "v1", "n_examples": 40,
                          "metrics": metrics, "verdict": v, "created_at": at} for b, v in verdicts.items()])
    store.upsert(conn, "eval_reports", rows, ["model_id", "baseline_model_id", "test_set_version"])


def test_the_model_in_use_is_the_newest_promotion(conn):
    assert current_promoted(conn) is None
    record_promotion(conn, "ft-old", None, "first", now=T0)
    record_promotion(conn, "base-1", "ft-old", "rolled back", now=T0 + timedelta(hours=1))
    assert current_promoted(conn) == ("base-1", "rolled back")


def test_promote_latest_records_a_promotion_once(conn):
    record_promotion(conn, "ft-old", None, "first", now=T0)
    report(conn, {"base-1": "better", "ft-old": "no_significant_difference"}, T0 + timedelta(hours=1))
    outcome = promote_latest(conn, now=T0 + timedelta(hours=2))
    assert (outcome.candidate_id, outcome.in_use, outcome.promoted) == ("ft-new", "ft-new", True)
    assert outcome.decision == PROMOTED
    assert conn.execute("SELECT model_id, previous_model_id FROM model_promotions ORDER BY promoted_at").fetchall() \
        == [("ft-old", None), ("ft-new", "ft-old")]
    again = promote_latest(conn)
    assert again.decision.startswith("Already promoted") and again.in_use == "ft-new" and not again.promoted
    assert conn.execute("SELECT count(*) FROM model_promotions").fetchone()[0] == 2


def test_promote_latest_decides_on_the_newest_report_only(conn):
    record_promotion(conn, "ft-old", None, "first", now=T0)
    report(conn, {"base-1": "better"}, T0 + timedelta(hours=1), model_id="ft-old")
    report(conn, {"base-1": "better", "ft-old": "worse"}, T0 + timedelta(hours=2))
    outcome = promote_latest(conn)
    assert outcome.candidate_id == "ft-new" and outcome.in_use == "ft-old"
    assert outcome.decision == "Not promoted: the fine-tuned model is significantly worse than the promoted model"
    assert conn.execute("SELECT count(*) FROM model_promotions").fetchone()[0] == 1


def test_promote_latest_says_why_from_the_stored_comparison(conn):
    record_promotion(conn, "ft-old", None, "first", now=T0)
    comparison = {"passed_checks": change(0.0, 1.0), "exact_match": change(-0.041, 0.0123, losses=13, wins=2)}
    thresholds = {"alpha": 0.05, "min_regression": 0.0, "judge_gates": False}
    report(conn, {"base-1": "better", "ft-old": "worse"}, T0 + timedelta(hours=1),
           metrics=json.dumps({"comparison": comparison, "thresholds": thresholds}))
    outcome = promote_latest(conn)
    assert outcome.decision.endswith("worse than the promoted model on exact match (-4.1 pts, p=0.012)")
    assert not outcome.promoted


def test_nothing_to_promote_without_an_eval_report(conn):
    with pytest.raises(NothingToPromote, match="no eval report yet; materialize eval_report first"):
        promote_latest(conn)
