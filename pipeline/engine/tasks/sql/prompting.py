"""The sql task's inputs and prompt: the messages a model sees, and the inputs they come from.

Input shape::

    {"question": "How many books did each author write?",
     "schema": {"tables": [{"name": "books", "columns": ["book_id", "title", "author_id"]}, ...]},
     "dialect": "sqlite",
     "db_id": "library"}

The prompt is identical at training and inference; :func:`input_from_messages` is its inverse,
for chat logs. Editing this module does not change the check version.
"""

from __future__ import annotations

import re
from typing import Any

from sqlglot.dialects.dialect import Dialects

#: Dialect names an input may give (sqlglot's, e.g. sqlite, duckdb, postgres).
DIALECTS: tuple[str, ...] = tuple(sorted(d.value for d in Dialects if d.value))

SYSTEM_PROMPT = (
    "You translate a question about a database into one SQL query in the given dialect. "
    "Answer with the query only: a single read-only SELECT statement (WITH and UNION are fine), "
    "no explanation and no code fence. Use only the tables and columns of the schema, and qualify "
    "a column with its table or alias whenever more than one table is in the query."
)

_BARE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def quote_name(name: str) -> str:
    """A name as the schema lines write it: bare when it is a plain word, else double-quoted."""
    return name if _BARE_NAME.fullmatch(name) else '"' + name.replace('"', '""') + '"'


def schema_lines(schema: dict[str, Any]) -> list[str]:
    """One ``CREATE TABLE name (column, ...);`` line per table."""
    return [f"CREATE TABLE {quote_name(t['name'])} ({', '.join(map(quote_name, t['columns']))});"
            for t in schema["tables"]]


def prompt(input: dict[str, Any]) -> list[dict[str, str]]:
    """System and user messages for ``input`` ({question, schema, dialect, db_id})."""
    user = "\n".join([f"Database: {input['db_id']}", f"Dialect: {input['dialect']}", "Schema:",
                      *schema_lines(input["schema"]), f"Question: {input['question']}"])
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def _one_line(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip()) and "\n" not in value and "\r" not in value


def _names_problem(names: Any, what: str) -> str | None:
    if not isinstance(names, list) or not names:
        return f"{what} must be a non-empty list of names"
    for name in names:
        if not _one_line(name):
            return f"{what} holds {name!r}, not a non-empty one-line name"
    folded = [n.casefold() for n in names]
    duplicates = sorted({n for n in names if folded.count(n.casefold()) > 1})
    return f"{what} names {', '.join(map(repr, duplicates))} more than once" if duplicates else None


def validate_input(input: Any) -> str | None:
    """None for a well-formed input, else why it is not one."""
    if not isinstance(input, dict):
        return f"input must be an object, got {type(input).__name__}"
    question = input.get("question")
    if not isinstance(question, str) or not question.strip():
        return "input.question must be a non-empty string"
    if not _one_line(input.get("db_id")):
        return "input.db_id must be a non-empty one-line string"
    dialect = input.get("dialect")
    if dialect not in DIALECTS:
        return f"input.dialect must be one of {', '.join(DIALECTS)}; got {dialect!r}"
    schema = input.get("schema")
    if not isinstance(schema, dict) or not isinstance(schema.get("tables"), list) or not schema["tables"]:
        return "input.schema must be an object with a non-empty list of tables"
    tables = schema["tables"]
    for i, table in enumerate(tables):
        if not isinstance(table, dict):
            return f"input.schema.tables[{i}] must be an object with name and columns"
        if not _one_line(table.get("name")):
            return f"input.schema.tables[{i}].name must be a non-empty one-line string"
        problem = _names_problem(table.get("columns"), f"input.schema.tables[{i}].columns ({table['name']})")
        if problem:
            return problem
    return _names_problem([t["name"] for t in tables], "input.schema.tables")


_NAME = r'(?:[A-Za-z_][A-Za-z0-9_]*|"(?:[^"]|"")+")'
_TABLE_LINE = re.compile(rf"CREATE TABLE ({_NAME}) \(({_NAME}(?:, {_NAME})*)\);")
_NAME_RE = re.compile(_NAME)


def _unquote(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') else name


def input_from_messages(messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The input behind :func:`prompt`'s user message, or None when the last user message is not one."""
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"
             and isinstance(m.get("content"), str)]
    if not users:
        return None
    head, sep, question = users[-1]["content"].partition("\nQuestion: ")
    lines = head.split("\n")
    if not sep or len(lines) < 4 or not lines[0].startswith("Database: ") \
            or not lines[1].startswith("Dialect: ") or lines[2] != "Schema:":
        return None
    tables = []
    for line in lines[3:]:
        match = _TABLE_LINE.fullmatch(line)
        if match is None:
            return None
        columns = [_unquote(m.group(0)) for m in _NAME_RE.finditer(match.group(2))]
        tables.append({"name": _unquote(match.group(1)), "columns": columns})
    return {"question": question, "schema": {"tables": tables},
            "dialect": lines[1][len("Dialect: "):], "db_id": lines[0][len("Database: "):]}
