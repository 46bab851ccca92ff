"""The CRM assistant's Python check (named in task.yaml by import path).

``widgets_match_records``: every contact_card and deal widget shows a record of the account
(its id is among the input's contacts or deals), and every task is due today or later. The
output's shape is the schema's business: anything malformed here is left to the schema checks.
"""

from __future__ import annotations

import json
from typing import Any


def widgets_match_records(input: dict[str, Any], output: str) -> tuple[bool | None, str]:
    """(passed, detail): False naming the widgets that show unknown records or overdue tasks;
    None when the output has no widgets list to look at."""
    try:
        widgets = json.loads(output).get("widgets")
    except (ValueError, AttributeError):
        return None, "skipped: output is not a JSON object"
    if not isinstance(widgets, list):
        return None, "skipped: output has no widgets list"
    known = {"contact_card": {c.get("id") for c in input.get("contacts") or [] if isinstance(c, dict)},
             "deal": {d.get("id") for d in input.get("deals") or [] if isinstance(d, dict)}}
    problems = []
    for widget in (w for w in widgets if isinstance(w, dict)):
        kind = widget.get("type")
        if kind in known and widget.get("id") not in known[kind]:
            problems.append(f"{kind} {widget.get('id')!r} is not one of the account's records")
        due = widget.get("due")
        if kind == "task" and isinstance(due, str) and due < input.get("today", ""):
            problems.append(f"task due {due} is before today ({input.get('today')})")
    return not problems, "; ".join(problems)
