"""The queue's one-line summary of a trace: what the task says a person reads first of its input."""

import json

from pipeline.annotate import views
from pipeline.annotate.app import _row
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
