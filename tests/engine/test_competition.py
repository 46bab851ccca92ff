"""Candidates compete in one report on the same test set: the base, the few-shot candidate, the
fine-tuned models, the promoted model and the incumbent (from its captured outputs), each with
quality, latency and cost per call; promotion picks the cheapest candidate non-inferior to the
incumbent and the promoted model within the margin, and the report (markdown, HTML, summary)
lists every candidate with its verdict. On an in-memory or file DuckDB; models are stand-ins at
the provider interface, their results scored with fixed latencies."""

import json
from contextlib import closing, nullcontext
from datetime import datetime, timedelta, timezone

import polars as pl
import pytest

from pipeline.engine.core import store
from pipeline.engine.evaluate.candidates import NothingToEvaluate, model_results, select_candidates
from pipeline.engine.evaluate.comparison import REPORT_KEY, evaluate_candidates
from pipeline.engine.evaluate.gate import Thresholds, current_promoted, promote_latest, record_promotion
from pipeline.engine.evaluate.incumbent import OUTPUT_SCHEMA, input_hash
from pipeline.engine.evaluate.scoring import score
from pipeline.engine.tasks import load_task
from pipeline.summary import summary

TASK = load_task("nl2query")
T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
GOOD = '{"calculations":[{"op":"COUNT"}],"time_range":7200}'
OTHER = '{"calculations":[{"op":"COUNT"}],"time_range":3600}'  # passes the assertions, another query
INCUMBENT = "ft:gpt-4o-mini-2024-07-18:acme::AbC12"
N = 60
OFF = {"status": "off", "reason": "no judge"}


def model(model_id, base=None, days=0, data=None):
    return {"model_id": model_id, "backend": "local", "base_model": base, "status": "succeeded",
            "artifact_path": f"/models/{model_id}", "training_data_version": data, "created_at": T0,
            "finished_at": T0 + timedelta(days=days)}


def examples(split, n, prefix):
    return pl.DataFrame({"example_id": [f"{prefix}{i:03d}" for i in range(n)], "source": "trace",
                         "group_id": [f"{prefix}g{i}" for i in range(n)], "split": split,
                         "input": [json.dumps({"question": f"count {prefix} {i}", "columns": ["duration_ms"]})
                                   for i in range(n)],
                         "output": GOOD, "created_at": T0})


def capture(conn, outputs, latency_ms=300.0, cost=2e-4):
    """The incumbent's answers on the test split, as incumbent_outputs stores them."""
    test = store.read(conn, "SELECT example_id, input::VARCHAR AS input FROM training_examples WHERE split = 'test' "
                            "ORDER BY example_id")
    rows = [{"model": INCUMBENT, "scope": "test", "item_id": e, "input_hash": input_hash(i), "output": o, "error": None,
             "latency_ms": latency_ms, "prompt_tokens": 400, "completion_tokens": 30, "cost_usd": cost,
             "captured_at": T0, "attempts": 1} for (e, i), o in zip(test.iter_rows(), outputs)]
    store.upsert(conn, "incumbent_outputs", pl.DataFrame(rows, schema=OUTPUT_SCHEMA), ["model", "scope", "item_id"])


def prepare(conn, captured=True):
    store.upsert(conn, "fine_tuned_models", pl.DataFrame([
        model("base-1"), model("ft-old", "base-1", days=1, data="d1"),
        model("ft-a", "base-1", days=2, data="d2"), model("ft-b", "base-1", days=3, data="d2")]), ["model_id"])
    store.upsert(conn, "training_examples", pl.concat([examples("test", N, "test:"), examples("train", 20, "train:")]),
                 ["example_id"])
    record_promotion(conn, "ft-old", None, "first", now=T0)
    if captured:
        capture(conn, [GOOD] * N)


@pytest.fixture
def conn():
    connection = store.connect(":memory:")
    prepare(connection)
    yield connection
    connection.close()


def results_for(chosen, outputs, latencies):
    """Each model's results: ``outputs`` and ``latencies`` (ms per item) by label; the incumbent's as captured."""
    labels = {label: m for m, label in chosen.roles.items()}
    results = {labels[label]: score(chosen.test, out, TASK, labels[label], latencies_ms=[latencies[label]] * N)
               for label, out in outputs.items()}
    return {**results, chosen.incumbent_id: chosen.stored[chosen.incumbent_id]}


def compete(chosen, few_shot=None, few_shot_ms=8.0, thresholds=Thresholds()):
    outputs = {"base": ["nope"] * N, "few-shot k=3": few_shot or [GOOD] * N, "fine-tuned": [GOOD] * N,
               "fine-tuned 2": [GOOD] * N, "promoted": [GOOD] * N}
    latencies = {"base": 5.0, "few-shot k=3": few_shot_ms, "fine-tuned": 5.0, "fine-tuned 2": 5.0, "promoted": 5.0}
    return evaluate_candidates(chosen, results_for(chosen, outputs, latencies), OFF, thresholds, TASK, now=T0,
                               pricing=chosen.pricing(1.0))


# --- who competes ---------------------------------------------------------------------------------------

def test_every_candidate_and_reference_is_selected_with_a_readable_label(conn):
    chosen = select_candidates(conn, TASK, 3, INCUMBENT)
    incumbent = f"incumbent:{INCUMBENT}"
    assert chosen.order == ["base-1", "base-1+3-shot", "ft-b", "ft-a", "ft-old", incumbent]
    assert chosen.roles == {"base-1": "base", "base-1+3-shot": "few-shot k=3", "ft-b": "fine-tuned",
                            "ft-a": "fine-tuned 2", "ft-old": "promoted", incumbent: "incumbent"}
    assert chosen.contenders == ["base-1+3-shot", "ft-b", "ft-a", "ft-old"]
    assert chosen.references("base-1+3-shot") == ["base-1", "ft-old", incumbent]
    assert chosen.references("ft-old") == ["base-1", incumbent]
    # the incumbent's results are its captured outputs, with their cost; no model is asked for them
    captured = chosen.stored[incumbent]
    assert captured.height == N and captured["passed_checks"].all()
    assert json.loads(captured["metrics"][0])["cost_usd"] == 2e-4
    pricing = chosen.pricing(0.5)
    assert pricing["base-1+3-shot"].per_hour == 0.5 and pricing[incumbent] is None


def test_a_registered_incumbent_whose_outputs_were_not_captured_stops_the_evaluation():
    with closing(store.connect(":memory:")) as connection:
        prepare(connection, captured=False)
        with pytest.raises(NothingToEvaluate, match=f"{N} of {N} test examples have no captured output"):
            select_candidates(connection, TASK, 3, INCUMBENT)


def test_a_promoted_few_shot_candidate_competes_as_the_promoted_model(conn):
    record_promotion(conn, "base-1+2-shot", "ft-old", "cheapest", now=T0 + timedelta(days=5))
    chosen = select_candidates(conn, TASK, 3)
    assert list(chosen.few_shot) == ["base-1+3-shot", "base-1+2-shot"] and chosen.promoted_id == "base-1+2-shot"
    assert chosen.roles["base-1+2-shot"] == "few-shot k=2, promoted" and chosen.few_shot["base-1+2-shot"].k == 2
    assert chosen.contenders[-1] == "base-1+2-shot" and chosen.bases["base-1+2-shot"] == "base-1"


class Stand_in:
    """A model at the provider interface answering every input with ``output``; counts the
    examples it was shown."""

    def __init__(self, output):
        self.output, self.shown = output, []

    def complete(self, inputs, shots=None):
        self.shown += [len(s) for s in shots] if shots is not None else [0] * len(inputs)
        return [self.output] * len(inputs)


def test_the_few_shot_candidate_runs_on_its_bases_provider_and_is_reused_for_the_same_examples(conn):
    served = []

    def serve(backend, model_id, path):
        served.append(Stand_in(GOOD))
        return served[-1]

    chosen = select_candidates(conn, TASK, 3, INCUMBENT)
    results = model_results(lambda: nullcontext(conn), chosen, TASK, serve, lambda line: None)
    assert set(results) == set(chosen.order) and len(served) == 4  # base and few-shot on one provider
    assert served[0].shown == [0] * N + [3] * N  # the base as prompted today, then with 3 examples each
    metrics = json.loads(results["base-1+3-shot"]["metrics"][0])
    assert metrics["shots"] == 3 and metrics["shots_version"] == chosen.few_shot["base-1+3-shot"].version
    again = select_candidates(conn, TASK, 3, INCUMBENT)
    assert again.stored["base-1+3-shot"].height == N  # the same examples: reused
    conn.execute("UPDATE training_examples SET output = ? WHERE split = 'train'", [OTHER])
    changed = select_candidates(conn, TASK, 3, INCUMBENT)
    assert changed.stored["base-1+3-shot"].is_empty() and changed.stored["ft-b"].height == N


# --- the margin rule ---------------------------------------------------------------------------------------

def test_the_cheapest_candidate_non_inferior_to_the_incumbent_and_the_promoted_model_wins(conn):
    chosen = select_candidates(conn, TASK, 3, INCUMBENT)
    evaluation = compete(chosen, few_shot_ms=2.0)
    assert evaluation.policy.winner == "base-1+3-shot" and evaluation.promote and evaluation.gate == []
    assert evaluation.decision == (
        "Promoted: few-shot k=3 is the cheapest candidate significantly better than its base on passes all assertions "
        "(+100.0 pts, p=1.7e-18) and exact match (+100.0 pts, p=1.7e-18) and non-inferior to the promoted model and "
        "the incumbent within 2 pts on every gated metric")
    assert evaluation.policy.reasons == [
        "fine-tuned: qualifies, but costs $0.0000014 per call against $0.00000056 for few-shot k=3",
        "fine-tuned 2: qualifies, but costs $0.0000014 per call against $0.00000056 for few-shot k=3",
        "promoted: qualifies, but costs $0.0000014 per call against $0.00000056 for few-shot k=3"]
    store.upsert(conn, "eval_reports", evaluation.rows, REPORT_KEY)
    assert promote_latest(conn).promoted and current_promoted(conn).model_id == "base-1+3-shot"
    assert select_candidates(conn, TASK, 3).roles["base-1+3-shot"] == "few-shot k=3, promoted"


def test_a_cheaper_candidate_below_the_incumbent_beyond_the_margin_loses_and_says_by_how_much(conn):
    chosen = select_candidates(conn, TASK, 3, INCUMBENT)
    evaluation = compete(chosen, few_shot=[OTHER] * 8 + [GOOD] * (N - 8), few_shot_ms=2.0)
    assert evaluation.policy.winner == "ft-b" and evaluation.promote
    lost = evaluation.policy.lost["base-1+3-shot"]
    assert lost.startswith("exact match 13.3 pts below the promoted model (lower bound -")
    assert "; exact match 13.3 pts below the incumbent (lower bound -" in lost and lost.endswith(" < -2)")
    # ties on cost (5 ms each) and quality go to the candidate listed first: the newest fine-tuned model
    assert evaluation.policy.lost["ft-a"].startswith("qualifies and ties with fine-tuned on cost (within 10%)")


def test_within_a_wider_margin_one_miss_is_non_inferior(conn):
    chosen = select_candidates(conn, TASK, 3, INCUMBENT)
    one_miss = [OTHER] + [GOOD] * (N - 1)
    strict = compete(chosen, few_shot=one_miss, few_shot_ms=2.0)
    assert strict.policy.winner == "ft-b"  # n=60 cannot rule out a 2-point drop after one miss
    assert "exact match 1.7 pts below the incumbent" in strict.policy.lost["base-1+3-shot"]
    lenient = compete(chosen, few_shot=one_miss, few_shot_ms=2.0, thresholds=Thresholds(margin=0.10))
    assert lenient.policy.winner == "base-1+3-shot"
    assert lenient.decision.endswith("within 10 pts on every gated metric")


def test_without_an_incumbent_the_candidates_are_held_to_the_promoted_model(conn):
    chosen = select_candidates(conn, TASK, 3)
    outputs = {"base": ["nope"] * N, "few-shot k=3": [GOOD] * N, "fine-tuned": [GOOD] * N,
               "fine-tuned 2": [GOOD] * N, "promoted": [GOOD] * N}
    latencies = {"base": 5.0, "few-shot k=3": 9.0, "fine-tuned": 5.0, "fine-tuned 2": 5.0, "promoted": 5.0}
    labels = {label: m for m, label in chosen.roles.items()}
    results = {labels[k]: score(chosen.test, v, TASK, labels[k], latencies_ms=[latencies[k]] * N)
               for k, v in outputs.items()}
    evaluation = evaluate_candidates(chosen, results, OFF, Thresholds(), TASK, now=T0, pricing=chosen.pricing(1.0))
    assert chosen.incumbent_id is None and evaluation.policy.winner == "ft-b"
    assert "incumbent" not in evaluation.decision and "non-inferior to the promoted model" in evaluation.decision


# --- the report lists every candidate ----------------------------------------------------------------------

def test_the_report_lists_every_candidate_side_by_side_in_markdown_html_and_the_summary(tmp_path):
    database = str(tmp_path / "flywheel.duckdb")
    with closing(store.connect(database)) as connection:
        prepare(connection)
        chosen = select_candidates(connection, TASK, 3, INCUMBENT)
        evaluation = compete(chosen, few_shot=[OTHER] * 8 + [GOOD] * (N - 8), few_shot_ms=2.0)
        store.upsert(connection, "eval_reports", evaluation.rows, REPORT_KEY)
    labels = ["base", "few-shot k=3", "fine-tuned", "fine-tuned 2", "promoted", "incumbent"]
    assert [row["label"] for row in evaluation.board] == labels
    board = evaluation.markdown.split("## Candidates side by side")[1].split("## Models")[0]
    assert ("| candidate | model id | passes all assertions (n=60) | exact match (n=60) | latency per call (median, "
            "p95) | cost per call | verdict |") in board
    for label in labels:
        assert f"\n| {label} | `" in board, label
    assert "| incumbent | `incumbent:ft:gpt-4o-mini-2024-07-18:acme::AbC12` | 100.0% (94.0 to 100.0%) | 100.0% (94.0 " \
           "to 100.0%) | 300.0 ms (p95 300.0) | $0.00020 | reference: the model in production |" in board
    assert "| fine-tuned | `ft-b` | 100.0% (94.0 to 100.0%) | 100.0% (94.0 to 100.0%) | 5.0 ms (p95 5.0) | " \
           "$0.0000014 | won: promoted |" in board
    assert "| few-shot k=3 | `base-1+3-shot` | 100.0% (94.0 to 100.0%) | 86.7% (75.8 to 93.1%) | 2.0 ms (p95 2.0) | " \
           "$0.00000056 | lost: exact match 13.3 pts below the promoted model" in board
    assert "Why the other candidates lost:\n- few-shot k=3: exact match 13.3 pts below" in evaluation.markdown
    document = evaluation.html()
    table = document.split("<h2>Candidates side by side</h2>")[1].split("</table>")[0]
    assert all(f"<tr><td>{label}</td>" in table for label in labels)
    assert "<td class=ok>won: promoted</td>" in table and "<td>reference: the model in production</td>" in table
    assert "<h2>few-shot k=3 vs incumbent: " in document and "<h2>fine-tuned vs incumbent: " in document
    lines = summary(database).splitlines()
    start = lines.index("  Candidates side by side (the same 60 test traces):")
    rows = lines[start + 2:start + 2 + len(labels)]
    assert [row.split("  ")[2] for row in rows] == labels
    assert rows[2].split()[-3:] == ["$0.0000014", "won:", "promoted"]
    assert f"  Promotion gate: {evaluation.decision}." in lines
    assert any(line.startswith("  fine-tuned vs incumbent") for line in lines)
