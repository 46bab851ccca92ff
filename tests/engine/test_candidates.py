"""What an evaluation runs (candidate, base, promoted model, test split, stored results), how it
gets each model's results, and the comparison that makes the report rows, on an in-memory DuckDB."""

import json
from contextlib import nullcontext
from datetime import datetime, timedelta, timezone

import polars as pl
import pytest

from pipeline.engine.core import store
from pipeline.engine.evaluate.candidates import NothingToEvaluate, model_results, select_candidates
from pipeline.engine.evaluate.comparison import REPORT_SCHEMA, evaluate_candidates
from pipeline.engine.evaluate.gate import Thresholds, record_promotion
from pipeline.engine.evaluate.scoring import score
from pipeline.engine.tasks import load_task

TASK = load_task("nl2query")
T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
GOOD = '{"calculations":[{"op":"COUNT"}],"time_range":7200}'
N = 30


def model(model_id, base=None, days=0, status="succeeded"):
    return {"model_id": model_id, "backend": "local", "base_model": base, "status": status,
            "artifact_path": f"/models/{model_id}", "created_at": T0, "finished_at": T0 + timedelta(days=days)}


def split_rows(n=N):
    return pl.DataFrame({"example_id": [f"trace:e{i:03d}" for i in range(n)], "source": "trace",
                         "group_id": [f"g{i}" for i in range(n)], "split": "test",
                         "input": [json.dumps({"question": f"count {i}", "columns": ["duration_ms"]}) for i in range(n)],
                         "output": GOOD, "created_at": T0})


@pytest.fixture
def conn():
    connection = store.connect(":memory:")
    yield connection
    connection.close()


def seed(conn, models, test=True):
    store.upsert(conn, "fine_tuned_models", pl.DataFrame(models), ["model_id"])
    if test:
        store.upsert(conn, "training_examples", split_rows(), ["example_id"])


# --- selection --------------------------------------------------------------------------------------------

def test_nothing_to_evaluate_says_what_is_missing(conn):
    with pytest.raises(NothingToEvaluate, match="no fine-tuned model has finished yet"):
        select_candidates(conn)
    seed(conn, [model("ft-1", base="base-1")], test=False)
    with pytest.raises(NothingToEvaluate, match="base model base-1 of ft-1 is not registered"):
        select_candidates(conn)
    seed(conn, [model("base-1")], test=False)
    with pytest.raises(NothingToEvaluate, match="the test split is empty"):
        select_candidates(conn)


def test_the_newest_fine_tuned_model_its_base_and_the_promoted_model(conn):
    seed(conn, [model("base-1"), model("ft-old", "base-1", days=1), model("ft-new", "base-1", days=2),
                model("ft-failed", "base-1", days=3, status="failed")])
    record_promotion(conn, "ft-old", None, "first", now=T0)
    chosen = select_candidates(conn)
    assert (chosen.candidate_id, chosen.base_id, chosen.promoted_id) == ("ft-new", "base-1", "ft-old")
    assert chosen.models == {"ft-new": ("local", "/models/ft-new"), "base-1": ("local", "/models/base-1"),
                             "ft-old": ("local", "/models/ft-old")}
    assert chosen.baselines == ["base-1", "ft-old"]
    assert chosen.roles == {"ft-new": "fine-tuned", "base-1": "base", "ft-old": "promoted"}
    assert chosen.test.height == N and all(frame.is_empty() for frame in chosen.stored.values())


def test_a_promoted_model_missing_from_the_registry_is_left_out(conn):
    seed(conn, [model("base-1"), model("ft-new", "base-1", days=2)])
    record_promotion(conn, "gpt-external", None, "by hand", now=T0)
    chosen = select_candidates(conn)
    assert chosen.promoted_id is None and list(chosen.models) == ["base-1", "ft-new"]


def test_the_promoted_candidate_keeps_both_roles(conn):
    seed(conn, [model("base-1"), model("ft-new", "base-1", days=2)])
    record_promotion(conn, "ft-new", None, "first", now=T0)
    assert select_candidates(conn).roles == {"ft-new": "fine-tuned, promoted", "base-1": "base"}


# --- results: reused or generated -------------------------------------------------------------------------

class Echo:
    """A model that writes the same output for every input."""

    def __init__(self, output):
        self.output = output
        self.calls = 0

    def complete(self, inputs):
        self.calls += 1
        return [self.output] * len(inputs)


def test_results_are_reused_when_stored_for_this_test_set_and_generated_otherwise(conn):
    seed(conn, [model("base-1"), model("ft-new", "base-1", days=2)])
    test = select_candidates(conn).test
    store.upsert(conn, "eval_results", score(test, [GOOD] * N, TASK, "ft-new"), ["model_id"])
    chosen = select_candidates(conn)
    served, logged = {}, []

    def serve(backend, model_id, path):
        served[model_id] = (backend, path)
        return Echo("nope")

    results = model_results(lambda: nullcontext(conn), chosen, TASK, serve, logged.append)
    assert served == {"base-1": ("local", "/models/base-1")}  # the candidate's results were stored
    assert results["ft-new"]["passed_checks"].all() and not results["base-1"]["passed_checks"].any()
    assert logged[0].startswith(f"base-1: generated {N} outputs, ") and "ms per item (median; p95 " in logged[0]
    assert logged[1] == f"ft-new: reusing {N} stored results for test set {chosen.version}"
    stored = conn.execute("SELECT model_id, count(*) FROM eval_results GROUP BY model_id ORDER BY model_id").fetchall()
    assert stored == [("base-1", N), ("ft-new", N)]


def test_results_on_a_new_test_set_are_stored_beside_the_old_ones(conn):
    seed(conn, [model("base-1"), model("ft-new", "base-1", days=2)])
    first = select_candidates(conn)
    model_results(lambda: nullcontext(conn), first, TASK, lambda *model: Echo(GOOD), lambda line: None)
    store.upsert(conn, "training_examples", split_rows(N + 5), ["example_id"])  # the test split grew
    second = select_candidates(conn)
    assert second.version != first.version and all(frame.is_empty() for frame in second.stored.values())
    model_results(lambda: nullcontext(conn), second, TASK, lambda *model: Echo(GOOD), lambda line: None)
    stored = conn.execute("SELECT model_id, test_set_version, count(*) FROM eval_results GROUP BY ALL ORDER BY ALL")
    assert stored.fetchall() == sorted((m, version, n) for m in ("base-1", "ft-new")
                                       for version, n in ((first.version, N), (second.version, N + 5)))


# --- the comparison -----------------------------------------------------------------------------------------

def test_the_candidate_is_compared_with_every_baseline_and_the_gate_says_why_it_lost(conn):
    seed(conn, [model("base-1"), model("ft-old", "base-1", days=1), model("ft-new", "base-1", days=2)])
    record_promotion(conn, "ft-old", None, "first", now=T0)
    chosen = select_candidates(conn)
    outputs = {"ft-new": ["nope"] * 10 + [GOOD] * (N - 10), "base-1": ["nope"] * N, "ft-old": [GOOD] * N}
    results = {m: score(chosen.test, out, TASK, m, latencies_ms=[5.0] * N) for m, out in outputs.items()}
    evaluation = evaluate_candidates(chosen, results, {"status": "off", "reason": "no judge"}, Thresholds(), TASK,
                                     now=T0, pricing=chosen.pricing(1.0))
    assert {b: item["verdict"] for b, item in evaluation.comparisons.items()} == {"base-1": "better", "ft-old": "worse"}
    lost = ("fine-tuned: passes all assertions 33.3 pts below the promoted model (lower bound -46.7 < -2); exact match "
            "33.3 pts below the promoted model (lower bound -46.7 < -2)")
    assert evaluation.gate == [lost] and evaluation.policy.winner == "ft-old" and not evaluation.promote
    assert evaluation.decision == ("Not promoted: the model in use stays, the cheapest candidate significantly better "
                                   "than its base")
    assert not evaluation.judge_gates
    assert evaluation.rows.schema == pl.Schema(REPORT_SCHEMA)
    # the newest fine-tuned model against each reference first, then the promoted model against its base
    assert list(evaluation.rows.select("model_id", "baseline_model_id").iter_rows()) == [
        ("ft-new", "base-1"), ("ft-new", "ft-old"), ("ft-old", "base-1")]
    metrics = json.loads(evaluation.rows["metrics"][1])
    assert metrics["regressions"][0].startswith("passes all assertions vs ft-old") and metrics["primary"]
    assert metrics["thresholds"] == {"alpha": 0.05, "min_regression": 0.0, "judge_gates": False, "margin": 0.02}
    assert (metrics["winner"], metrics["promoted"], metrics["lost"]) == ("ft-old", "ft-old", {"ft-new": lost[12:]})
    assert metrics["lower_one_sided"]["passed_checks"] == pytest.approx(-0.467, abs=0.001)
    share = (N - 10) / N
    assert metrics["candidate"]["slices"] == {"name": "dataset", "values": {  # the inputs name no dataset
        "": {"n": N, "passed_checks": pytest.approx(share), "exact_match": pytest.approx(share)}}}
    # each item's 5 ms at $1 per hour
    assert metrics["candidate"]["cost_usd_per_call"] == pytest.approx(0.005 / 3600)
    assert (metrics["candidate"]["latency_ms_p50"], metrics["candidate"]["latency_ms_p95"]) == (5.0, 5.0)
    assert "## By dataset" in evaluation.markdown and "- **count 10**" in evaluation.markdown
    assert "| promoted | `ft-old` |" in evaluation.markdown and "| promoted | 100.0% (88.6 to 100.0%) |" in evaluation.markdown
    assert evaluation.markdown.count("# Eval report: fine-tuned vs") == 2
    assert evaluation.markdown.count("# Eval report: promoted vs base") == 1
    assert evaluation.markdown.startswith(f"# Eval report, test set `{chosen.version}` (n={N} real examples")
    assert evaluation.markdown.splitlines()[2] == f"**{evaluation.decision}.**"
    headline = evaluation.headline()
    assert (headline["verdict_vs_base"], headline["verdict_vs_promoted"], headline["promoted"]) == \
        ("better", "worse", "ft-old")
    assert (headline["winner"], headline["winner_id"], headline["margin_pts"]) == ("promoted", "ft-old", 2.0)
    assert headline["decision"] == evaluation.decision and json.loads(evaluation.rows["metrics"][0])["decision"] == \
        evaluation.decision
    assert (headline["base_passed_checks_pct"], headline["candidate_passed_checks_pct"]) == (0.0, 66.7)  # rounded
    assert evaluation.html_name == f"ft-new.{chosen.version}.html"


def test_a_model_whose_base_is_not_registered_competes_without_it(conn):
    seed(conn, [model("base-1"), model("ft-old", "base-gone", days=1), model("ft-new", "base-1", days=2)])
    record_promotion(conn, "ft-old", None, "first", now=T0)
    chosen = select_candidates(conn)
    assert chosen.order == ["base-1", "ft-new", "ft-old"] and chosen.references("ft-old") == []
    assert chosen.references("ft-new") == ["base-1", "ft-old"]
