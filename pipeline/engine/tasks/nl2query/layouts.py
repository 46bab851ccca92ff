"""Production prompts whose chat logs nl2query takes in, beyond its own (see
:mod:`pipeline.engine.ingest.layouts` for the template syntax), and the input their slots give.

- ``nlq_columns_pylist``: ``NLQ: "<question>"`` then ``Columns: ['a', 'b']`` (a Python or JSON
  list literal, so names may hold commas).
- ``honeycomb_query_assistant``: the layout of Honeycomb's Query Assistant prompt as published
  with the fine-tuning course data (``COLUMNS:`` and the columns joined by "," on the first line,
  a blank line, ``QUERY SPEC:`` and the spec, tips and few-shot examples, then the question as
  ``NLQ:<question>`` and a final ``EXISTING QUERY:``). Names may hold spaces, not commas. A log
  whose ``EXISTING QUERY:`` is followed by a query (a request to modify it) is not matched: an
  nl2query input cannot hold the query it modifies.
- ``nl2query``: the task's own prompt (:func:`~pipeline.engine.tasks.nl2query.prompting.prompt`),
  also when logged as text content parts, which its inverse does not read.

Empty column names are dropped, as :func:`~pipeline.engine.tasks.nl2query.prompting.input_from_messages`
drops them: the task's own prompt never writes one.
"""

from __future__ import annotations

from typing import Any

LAYOUTS: tuple[dict[str, str], ...] = (
    {"name": "nlq_columns_pylist", "user": 'NLQ: "{question}"\nColumns: {columns:pylist}'},
    {"name": "honeycomb_query_assistant",
     "user": "COLUMNS:{columns:csv}\n\nQUERY SPEC:\n{...}\nNLQ:{question}\nEXISTING QUERY:"},
    {"name": "nl2query", "user": "Columns: {columns:list}\nQuestion: {question}"},
)


def input_from_slots(slots: dict[str, Any]) -> dict[str, Any]:
    """The input a matched layout's slots give: the question, the columns without empty names,
    and the dataset when a slot gives one."""
    columns = slots.get("columns")
    input = {"question": slots.get("question"),
             "columns": [c for c in columns if c != ""] if isinstance(columns, list) else columns}
    if "dataset" in slots:
        input["dataset"] = slots["dataset"]
    return input
