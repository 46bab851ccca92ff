"""nl2query's inputs and prompt: the messages a model sees, and the inputs they come from.

The prompt is identical at training and inference; :func:`input_from_messages` is its inverse,
for chat logs. Editing this module does not change the check version.
"""

from __future__ import annotations

from typing import Any

from pipeline.engine.tasks.nl2query.checks import CALCULATION_OPS, FILTER_OPS

SYSTEM_PROMPT = (
    "You translate a question about an observability dataset into a JSON query. "
    "Answer with one JSON object and nothing else. Keys: calculations (list of {op, column}), "
    "filters (list of {column, op, value}), filter_combination (AND|OR), breakdowns (list of "
    "columns), orders (list of {op, column, order}), havings (list of {calculate_op, column, "
    "op, value}), time_range (integer seconds), limit (integer). Use only the given columns. "
    f"Calculation ops: {', '.join(sorted(CALCULATION_OPS))}; COUNT and CONCURRENCY take no "
    f"column. Filter ops: {', '.join(sorted(FILTER_OPS))}."
)


def prompt(input: dict[str, Any]) -> list[dict[str, str]]:
    """System and user messages for ``input`` ({question, columns, dataset?})."""
    user = f"Columns: {', '.join(input['columns'])}\nQuestion: {input['question']}"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def validate_input(input: Any) -> str | None:
    """None for a well-formed input, else why it is not one."""
    if not isinstance(input, dict):
        return f"input must be an object, got {type(input).__name__}"
    question = input.get("question")
    if not isinstance(question, str) or not question.strip():
        return "input.question must be a non-empty string"
    columns = input.get("columns")
    if not isinstance(columns, list) or not columns or not all(isinstance(c, str) and c for c in columns):
        return "input.columns must be a non-empty list of column names"
    return None


#: DuckDB SQL over a JSON value ``{input}``, true only for inputs :func:`validate_input` accepts
#: (ingestion's fast path; anything it is unsure of goes through ``validate_input``).
INPUT_SQL_CHECK = """(starts_with({input}, '{{')
    AND starts_with(json_extract({input}, ['$.question', '$.columns'])[1], '"')
    AND regexp_matches({input} ->> '$.question', '[[:alnum:]]')
    AND regexp_full_match(json_extract({input}, ['$.question', '$.columns'])[2],
                          '\\["[^"\\\\]+"(,"[^"\\\\]+")*\\]'))"""


def input_from_messages(messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The input behind :func:`prompt`'s user message ("Columns: a, b\\nQuestion: q"), or None."""
    users = [m for m in messages if m.get("role") == "user" and isinstance(m.get("content"), str)]
    if not users:
        return None
    head, sep, question = users[-1]["content"].partition("\nQuestion: ")
    if not sep or not head.startswith("Columns: "):
        return None
    return {"question": question, "columns": [c for c in head[len("Columns: "):].split(", ") if c]}
