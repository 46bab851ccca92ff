"""How the app shows things: the queue's one-line summary of a trace (what the task says a person
reads first of its input), the agreement between annotators, disputed decisions side by side,
and who may adjudicate."""

import json

from pipeline.annotate import views
from pipeline.annotate.app import _row, is_lead
from tests.annotate.seed import COLUMNS, HOSTILE, TASK


class Tickets:
    """A task with no display hook (only what the app reads of it here)."""

    name = "tickets"


def queue_row(trace_id, input):
    return {"trace_id": trace_id, "input": json.dumps(input), "n_failed": 1}


def test_a_queue_row_is_summarised_by_the_tasks_display_text():
    row = _row(queue_row("t1", {"question": "p95 duration by service", "columns": COLUMNS}), TASK)
    assert row["summary"] == "p95 duration by service" and row["input"]["columns"] == COLUMNS
    other = _row(queue_row("t2", {"priority": "high", "body": "the printer on floor 3 is on fire"}), Tickets())
    assert other["summary"] == "the printer on floor 3 is on fire"  # the longest text of the input


def test_the_upcoming_table_shows_each_summary_escaped_and_shortened():
    rows = [_row(queue_row(f"t{i}", {"question": q, "columns": COLUMNS}), TASK)
            for i, q in enumerate(["first", f"show {HOSTILE}", "x" * 100])]
    html = str(views.upcoming(rows, 0))
    assert "show &lt;script&gt;" in html and "<script>" not in html
    assert "x" * 69 + "…" in html and "x" * 70 not in html
    assert "first" not in html  # the row being shown is not upcoming


def test_agreement_is_rounded_for_people_and_says_when_there_is_none():
    empty = str(views.agreement([], 0.1, None))
    assert "No trace has two annotators yet" in empty and "10% of traces are routed to two annotators" in empty
    rows = [{"aspect": "label", "failure_mode": None, "pairs": 3, "traces": 3, "agreement": 2 / 3, "kappa": 0.39999999},
            {"aspect": "failure_mode", "failure_mode": "unknown_column", "pairs": 3, "traces": 3, "agreement": 1.0,
             "kappa": None}]
    html = str(views.agreement(rows, 0.25, 2))
    assert "Cohen's kappa 0.40 (fair), raw agreement 67% over 3 pair(s)" in html
    assert "n/a (every rating the same)" in html and "100%" in html
    assert "2 disagreement(s) wait for a lead" in html and "25% of traces" in html
    assert [views.kappa_words(k) for k in (0.9, 0.61, 0.5, 0.0, -0.2)] == [
        "0.90 (almost perfect)", "0.61 (substantial)", "0.50 (moderate)", "0.00 (slight)", "-0.20 (worse than chance)"]


def test_decisions_side_by_side_are_text_and_a_non_lead_is_told_why_not():
    rows = [{"annotation_id": "a1", "annotator": "ana", "label": "bad", "failure_mode": HOSTILE,
             "critique": HOSTILE, "correction": HOSTILE},
            {"annotation_id": "b1", "annotator": "ben", "label": "good", "failure_mode": None, "critique": None,
             "correction": None}]
    html = str(views.side_by_side(rows, {"a1": HOSTILE}, ["label", "failure_mode"], "ben"))
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "Disagreement on label, failure mode." in html and "ben (you)" in html and 'data-adopt="a1"' in html
    refused = str(views.adjudication_control(False, ["Maya", "Lee"], "ben"))
    assert "ben is not one: the leads are Maya, Lee" in refused
    assert 'data-action="adjudicate"' not in refused
    assert "no lead is configured (--leads or FLYWHEEL_LEADS)" in str(views.adjudication_control(False, [], ""))
    assert 'data-action="adjudicate"' in str(views.adjudication_control(True, ["Maya"], "maya"))


def test_a_lead_is_named_without_case_or_space():
    assert is_lead(" MAYA ", ["Maya", "Lee"]) and is_lead("lee", [" Lee "])
    assert not is_lead("ana", ["Maya"]) and not is_lead("", ["Maya"]) and not is_lead("Maya", [])
