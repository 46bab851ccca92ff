"""The promotion gate (which metrics gate, verdicts and regressions per baseline) and the
promotion policy, on tiny comparisons and an in-memory DuckDB."""

import json
from datetime import datetime, timedelta, timezone

import polars as pl
import pytest

from pipeline.engine.core import store
from pipeline.engine.evaluate.gate import (
    Contender, NothingToPromote, Thresholds, current_promoted, gate_against, inferiority, pick_winner, promote_latest,
    record_promotion, skipped_metrics, usd, verdict_details,
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


# --- the promotion policy: the cheapest candidate non-inferior within the margin ------------------------

def held(difference, lower):
    return {"difference": difference, "lower_one_sided": lower}


def contender(model_id, cost, label=None, vs_base="better", quality=0.8, **references):
    """A contender better than its base (unless ``vs_base`` says otherwise), held to ``references``
    (name -> metric -> (difference, lower bound))."""
    return Contender(model_id, label or model_id, cost, quality, vs_base, ("passes all assertions (+30.0 pts, p=1e-05)",),
                     {name.replace("_", " "): {m: held(*v) for m, v in metrics.items()}
                      for name, metrics in references.items()})


NON_INFERIOR = {"passed_checks": (-0.01, -0.015), "exact_match": (0.0, -0.012)}


def test_a_lower_bound_above_minus_the_margin_is_non_inferior_and_below_it_is_not():
    within = contender("fs", 1e-5, "few-shot k=3", the_incumbent=NON_INFERIOR)
    beyond = contender("fs", 1e-5, "few-shot k=3", the_incumbent={"passed_checks": (0.0, -0.01),
                                                                 "exact_match": (-0.08, -0.112)})
    assert inferiority(within, 0.02) == []
    assert inferiority(beyond, 0.02) == ["exact match 8.0 pts below the incumbent (lower bound -11.2 < -2)"]
    assert inferiority(within, 0.01) == [
        "passes all assertions 1.0 pts below the incumbent (lower bound -1.5 < -1)",
        "exact match +0.0 pts against the incumbent, too uncertain to rule out a larger drop (lower bound -1.2 < -1)"]
    # as good on average, but too few examples to rule out a drop beyond the margin: not non-inferior
    uncertain = contender("ft", 1e-5, the_incumbent={"exact_match": (0.01, -0.05)})
    assert inferiority(uncertain, 0.02) == ["exact match +1.0 pts against the incumbent, too uncertain to rule out a "
                                            "larger drop (lower bound -5.0 < -2)"]
    # exactly at -margin is not above it
    assert inferiority(contender("ft", 1e-5, the_incumbent={"exact_match": (-0.01, -0.02)}), 0.02) != []


def test_the_cheapest_non_inferior_candidate_wins_and_each_other_says_why_it_lost():
    few_shot = contender("fs", 3e-5, "few-shot k=3", quality=0.9, the_incumbent=NON_INFERIOR,
                         the_promoted_model=NON_INFERIOR)
    fine_tuned = contender("ft", 1e-5, "fine-tuned", quality=0.7, the_incumbent=NON_INFERIOR,
                           the_promoted_model=NON_INFERIOR)
    worse = contender("ft2", 1e-6, "fine-tuned 2", the_incumbent={"exact_match": (-0.08, -0.112)},
                      the_promoted_model=NON_INFERIOR)
    promoted = contender("old", 2e-4, "promoted", the_incumbent=NON_INFERIOR)
    decision = pick_winner([few_shot, fine_tuned, worse, promoted], 0.02, "old")
    assert decision.winner == "ft" and decision.promote  # cheaper wins over better
    assert decision.sentence == (
        "Promoted: fine-tuned is the cheapest candidate significantly better than its base on passes all assertions "
        "(+30.0 pts, p=1e-05) and non-inferior to the incumbent and the promoted model within 2 pts on every gated "
        "metric")
    assert decision.reasons == [
        "fine-tuned 2: exact match 8.0 pts below the incumbent (lower bound -11.2 < -2)",
        "few-shot k=3: qualifies, but costs $0.000030 per call against $0.000010 for fine-tuned",
        "promoted: qualifies, but costs $0.00020 per call against $0.000010 for fine-tuned",
    ]


def test_without_an_incumbent_a_candidate_is_held_to_the_promoted_model_only():
    candidate = contender("ft", 1e-5, "fine-tuned", the_promoted_model=NON_INFERIOR)
    promoted = contender("old", 1e-5, "promoted", quality=0.5)
    decision = pick_winner([candidate, promoted], 0.02, "old")
    assert decision.winner == "ft" and decision.promote
    assert decision.sentence.endswith("and non-inferior to the promoted model within 2 pts on every gated metric")
    assert "incumbent" not in decision.sentence
    # neither an incumbent nor a promoted model: better than its base is enough
    first = pick_winner([contender("ft", 1e-5, "fine-tuned")], 0.02, None)
    assert first.promote and first.sentence == ("Promoted: fine-tuned is the cheapest candidate significantly better "
                                                "than its base on passes all assertions (+30.0 pts, p=1e-05)")
    assert first.lost == {}


def test_costs_within_ten_percent_tie_and_go_to_the_better_rates_then_to_the_first_listed():
    a = contender("fs", 1.00e-5, "few-shot k=3", quality=0.80)
    b = contender("ft", 1.05e-5, "fine-tuned", quality=0.85)
    decision = pick_winner([a, b], 0.02, None)
    assert decision.winner == "ft"
    assert decision.lost == {"fs": "qualifies and costs about the same as fine-tuned (within 10%), which scores higher "
                                   "on the gated metrics"}
    same = pick_winner([contender("fs", 1.05e-5, "few-shot k=3"), contender("ft", 1.0e-5, "fine-tuned")], 0.02, None)
    assert same.winner == "fs"  # listed first: the simpler candidate
    assert same.lost["ft"].startswith("qualifies and ties with few-shot k=3 on cost (within 10%) and quality")
    # beyond the tie, the cheaper wins even with worse rates
    assert pick_winner([contender("fs", 1.2e-5, quality=0.9), contender("ft", 1e-5, quality=0.5)], 0.02,
                       None).winner == "ft"


def test_a_known_cost_beats_an_unknown_one():
    decision = pick_winner([contender("hosted", None, "fine-tuned 2"), contender("ft", 5e-4, "fine-tuned")], 0.02, None)
    assert decision.winner == "ft" and decision.lost == {"hosted": "qualifies, but its cost per call is unknown"}


@pytest.mark.parametrize("vs_base, said", [
    ("no_significant_difference", "few-shot k=3: not significantly better than its base (passes all assertions "
                                  "(+30.0 pts, p=1e-05))"),
    ("worse", "few-shot k=3: significantly worse than its base on passes all assertions (+30.0 pts, p=1e-05)"),
    (None, "few-shot k=3: not compared with its base"),
])
def test_a_candidate_must_still_be_significantly_better_than_its_base(vs_base, said):
    decision = pick_winner([contender("fs", 1e-6, "few-shot k=3", vs_base=vs_base)], 0.02, None)
    assert decision.winner is None and not decision.promote and decision.reasons == [said]
    assert decision.sentence == "Not promoted: no candidate is significantly better than its base"


def test_when_none_qualifies_the_promoted_model_stays_and_the_sentence_says_what_was_required():
    inferior = {"exact_match": (-0.08, -0.112)}
    decision = pick_winner([contender("ft", 1e-6, "fine-tuned", the_incumbent=inferior, the_promoted_model=inferior),
                            contender("old", 1e-6, "promoted", the_incumbent=inferior)], 0.02, "old")
    assert decision.winner is None and not decision.promote
    assert decision.sentence == ("Not promoted: no candidate is significantly better than its base and non-inferior to "
                                 "the incumbent and the promoted model within 2 pts on every gated metric; the "
                                 "promoted model stays in use")
    assert decision.reasons == [
        "fine-tuned: exact match 8.0 pts below the incumbent (lower bound -11.2 < -2); exact match 8.0 pts below the "
        "promoted model (lower bound -11.2 < -2)",
        "promoted: exact match 8.0 pts below the incumbent (lower bound -11.2 < -2)"]


def test_the_promoted_model_stays_when_it_is_the_cheapest_that_qualifies():
    decision = pick_winner([contender("ft", 1e-4, "fine-tuned", the_promoted_model=NON_INFERIOR),
                            contender("old", 1e-5, "promoted")], 0.02, "old")
    assert decision.winner == "old" and not decision.promote
    assert decision.sentence == ("Not promoted: the model in use stays, the cheapest candidate significantly better "
                                 "than its base")
    assert decision.reasons == ["fine-tuned: qualifies, but costs $0.00010 per call against $0.000010 for promoted"]


def test_a_verdict_rests_on_the_gated_metrics_that_decided_it():
    vs_base = {"passed_checks": change(0.342, 2e-26, wins=110), "exact_match": change(0.01, 0.5, wins=4, losses=3)}
    vs_promoted = {"passed_checks": change(0.0, 1.0), "exact_match": change(-0.041, 0.0123, losses=13, wins=2),
                   JUDGE_METRIC: change(-0.3, 0.001, losses=20)}
    details = {b: verdict_details(c, gate_against(c, b, Thresholds(), (JUDGE_METRIC,))[0], Thresholds(), (JUDGE_METRIC,))
               for b, c in (("base-1", vs_base), ("ft-old", vs_promoted))}
    assert details == {"base-1": ["passes all assertions (+34.2 pts, p=2e-26)"],
                       "ft-old": ["exact match (-4.1 pts, p=0.012)"]}  # the judge does not gate: not named
    flat = {"passed_checks": change(0.03, 0.25), "exact_match": change(0.01, 0.5)}
    assert verdict_details(flat, "no_significant_difference", Thresholds(), ()) == [
        "passes all assertions (+3.0 pts, p=0.25)", "exact match (+1.0 pts, p=0.5)"]


def test_the_margin_is_a_share_and_costs_read_to_two_significant_digits():
    with pytest.raises(ValueError, match="0.02 = 2 points"):
        Thresholds(margin=2.0)
    assert [usd(v) for v in (None, 0.0, 1.234e-5, 0.15, 2.5)] == ["n/a", "$0", "$0.000012", "$0.15", "$2.50"]


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


def report(conn, at, winner, promoted, decision="Promoted: fine-tuned is the cheapest candidate", model_id="ft-new"):
    """An eval report's rows as evaluate_candidates writes them: every row holds the decision."""
    metrics = json.dumps({"decision": decision, "winner": winner, "promoted": promoted, "primary_id": model_id,
                          "promote": winner is not None and winner != promoted})
    rows = pl.DataFrame([{"model_id": model_id, "baseline_model_id": b, "test_set_version": "v1", "n_examples": 40,
                          "metrics": metrics, "verdict": "better", "created_at": at} for b in ("base-1", "ft-old")])
    store.upsert(conn, "eval_reports", rows, ["model_id", "baseline_model_id", "test_set_version"])


def test_the_model_in_use_is_the_newest_promotion(conn):
    assert current_promoted(conn) is None
    record_promotion(conn, "ft-old", None, "first", now=T0)
    record_promotion(conn, "base-1", "ft-old", "rolled back", now=T0 + timedelta(hours=1))
    assert current_promoted(conn) == ("base-1", "rolled back")


def test_promote_latest_records_the_winner_once(conn):
    record_promotion(conn, "ft-old", None, "first", now=T0)
    report(conn, T0 + timedelta(hours=1), winner="ft-new", promoted="ft-old")
    outcome = promote_latest(conn, now=T0 + timedelta(hours=2))
    assert (outcome.candidate_id, outcome.in_use, outcome.promoted) == ("ft-new", "ft-new", True)
    assert outcome.decision == "Promoted: fine-tuned is the cheapest candidate"
    assert conn.execute("SELECT model_id, previous_model_id, reason FROM model_promotions ORDER BY promoted_at").fetchall() \
        == [("ft-old", None, "first"), ("ft-new", "ft-old", "Promoted: fine-tuned is the cheapest candidate")]
    again = promote_latest(conn)
    assert again.decision == "Already promoted: ft-new is the model in use" and again.in_use == "ft-new"
    assert not again.promoted and conn.execute("SELECT count(*) FROM model_promotions").fetchone()[0] == 2


def test_a_few_shot_winner_is_promoted_by_its_id(conn):
    report(conn, T0, winner="base-1+3-shot", promoted=None, decision="Promoted: few-shot k=3 is the cheapest candidate")
    outcome = promote_latest(conn)
    assert outcome.promoted and current_promoted(conn).model_id == "base-1+3-shot"


def test_promote_latest_decides_on_the_newest_report_only(conn):
    record_promotion(conn, "ft-old", None, "first", now=T0)
    report(conn, T0 + timedelta(hours=1), winner="ft-old", promoted="ft-old", model_id="ft-old",
           decision="Not promoted: the model in use stays")
    assert promote_latest(conn).decision == "Not promoted: the model in use stays"  # the report's, not "Already"
    report(conn, T0 + timedelta(hours=2), winner=None, promoted="ft-old",
           decision="Not promoted: no candidate is significantly better than its base")
    outcome = promote_latest(conn)
    assert (outcome.candidate_id, outcome.in_use, outcome.promoted) == ("ft-new", "ft-old", False)
    assert outcome.decision == "Not promoted: no candidate is significantly better than its base"
    assert conn.execute("SELECT count(*) FROM model_promotions").fetchone()[0] == 1


def test_a_winner_is_not_promoted_when_the_model_in_use_changed_since_the_report(conn):
    report(conn, T0, winner="ft-new", promoted=None)
    record_promotion(conn, "ft-old", None, "by hand", now=T0 + timedelta(hours=1))
    outcome = promote_latest(conn)
    assert not outcome.promoted and outcome.in_use == "ft-old"
    assert outcome.decision == ("Not promoted: the model in use changed since the eval report (now ft-old); "
                                "materialize eval_report again")


def test_nothing_to_promote_without_an_eval_report(conn):
    with pytest.raises(NothingToPromote, match="no eval report yet; materialize eval_report first"):
        promote_latest(conn)
