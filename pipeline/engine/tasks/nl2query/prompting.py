"""nl2query's inputs and prompt: the messages a model sees, and the inputs they come from.

The prompt is identical at training and inference; :func:`input_from_messages` is its inverse,
for chat logs. Editing this module does not change the check version.
"""

from __future__ import annotations

from typing import Any

from pipeline.engine.tasks.nl2query.checks import (
    CALCULATION_OPS, FILTER_OPS, LIST_VALUE_FILTER_OPS, NO_VALUE_FILTER_OPS, column_names,
)

SYSTEM_PROMPT = (
    "You translate a question about an observability dataset into a JSON query. "
    "Answer with one JSON object and nothing else. Every key is optional: calculations (list of "
    "{op, column}; none means COUNT), filters (list of {column, op, value}), filter_combination "
    "(AND|OR), breakdowns (list of columns), orders (list of {op, column, order}, each a "
    "calculation or a breakdown), havings (list of {calculate_op, column, op, value}, each on a "
    "calculation), time_range (integer seconds), start_time and end_time (UNIX seconds; not both "
    "with time_range), granularity (integer seconds, time_range/1000 to time_range/10), limit "
    "(integer). Use only the given columns. "
    f"Calculation ops: {', '.join(sorted(CALCULATION_OPS))}; COUNT and CONCURRENCY take no "
    "column; HEATMAP is not allowed in orders or havings. "
    f"Filter ops: {', '.join(sorted(FILTER_OPS))}; {' and '.join(sorted(NO_VALUE_FILTER_OPS))} take no "
    f"value, {' and '.join(sorted(LIST_VALUE_FILTER_OPS))} take a list."
)


def prompt(input: dict[str, Any]) -> list[dict[str, str]]:
    """System and user messages for ``input`` ({question, columns, dataset?}); empty column
    names are left out."""
    user = f"Columns: {', '.join(column_names(input))}\nQuestion: {input['question']}"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def empty_column_count(input: dict[str, Any]) -> int:
    """How many empty names (``""``) the input's columns list holds: the prompt and the checks
    leave them out."""
    columns = input.get("columns")
    return sum(c == "" for c in columns) if isinstance(columns, list) else 0


def validate_input(input: Any) -> str | None:
    """None for a well-formed input, else why it is not one. Column names may be any strings
    (spaces, dots, tabs, emoji, any length, any number of them); empty names are allowed and
    left out, but at least one name must be non-empty."""
    if not isinstance(input, dict):
        return f"input must be an object, got {type(input).__name__}"
    question = input.get("question")
    if not isinstance(question, str) or not question.strip():
        return "input.question must be a non-empty string"
    columns = input.get("columns")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        return "input.columns must be a list of column names (strings)"
    if not any(columns):
        return "input.columns must name at least one column (empty names are left out)"
    return None


#: DuckDB SQL over a JSON value ``{input}``, true only for inputs :func:`validate_input` accepts
#: (ingestion's fast path; anything it is unsure of goes through ``validate_input``): a question
#: with a letter or digit, and columns a list of strings with no quote or backslash in their JSON
#: text (names with escapes take the Python path), empty names allowed, at least one not empty.
INPUT_SQL_CHECK = """(starts_with({input}, '{{')
    AND starts_with(json_extract({input}, ['$.question', '$.columns'])[1], '"')
    AND regexp_matches({input} ->> '$.question', '[[:alnum:]]')
    AND regexp_full_match(json_extract({input}, ['$.question', '$.columns'])[2],
                          '\\[("",)*"[^"\\\\]+"(,"[^"\\\\]*")*\\]'))"""


def input_from_messages(messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The input behind :func:`prompt`'s user message ("Columns: a, b\\nQuestion: q"), or None."""
    users = [m for m in messages if m.get("role") == "user" and isinstance(m.get("content"), str)]
    if not users:
        return None
    # Windows line ends and trailing spaces are how logs come; the layout is the same
    head, sep, question = users[-1]["content"].replace("\r\n", "\n").partition("\nQuestion: ")
    if not sep or not head.startswith("Columns: ") or not question.strip():
        return None
    return {"question": question.strip(), "columns": [c for c in head[len("Columns: "):].rstrip().split(", ") if c]}
