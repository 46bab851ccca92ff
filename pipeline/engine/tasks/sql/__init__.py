"""sql: a question about a database plus its schema and SQL dialect in, one read-only SQL query out.

The task's parts, one module each (dependencies one way: synth -> checks; prompting on its own):

- :mod:`~pipeline.engine.tasks.sql.checks`: parsing with sqlglot in the input's dialect, the
  assertions, the canonical form and the complexity (the check code ``check_version`` hashes);
- :mod:`~pipeline.engine.tasks.sql.prompting`: the prompt, input validation and the input
  recovered from chat logs;
- :mod:`~pipeline.engine.tasks.sql.synth`: the offline synthetic generators;
- ``prompts/``: the judge prompt (``judge.<version>.md``) and the LLM synthetic-data prompts and
  dimensions (``synth/``), found through :func:`pipeline.engine.tasks.task_file`.

The engine's hooks (:mod:`pipeline.engine.tasks.hooks`): splits group by database and question,
reports slice by database, near-duplicates are looked for among questions over the same schema,
and complexity counts clauses and conditions, unbounded (the hardest queries are kept).
"""

from __future__ import annotations

from typing import Any

from pipeline.engine.tasks.hooks import DemoData, canonical_json, collapse
from pipeline.engine.tasks.sql.checks import (
    CHECK_NAMES, DEFAULT_DIALECT, Analysis, Parsed, analyse, canonical, check, check_values, complexity, normalise,
    parse, strip_code_fences,
)
from pipeline.engine.tasks.sql.prompting import (
    DIALECTS, SYSTEM_PROMPT, input_from_messages, prompt, schema_lines, validate_input,
)
from pipeline.engine.tasks.sql.synth import GENERATORS, synthesize

NAME = "sql"
VERSION = "1"


def group_key(input: dict[str, Any]) -> str:
    """What never straddles splits: the database and the question (case and spacing collapsed)."""
    return f"{input['db_id']}\n{collapse(input['question'])}"


def slice_of(input: dict[str, Any]) -> str:
    """The report slice of an input: its database."""
    return str(input["db_id"])


def dedup_text(input: dict[str, Any]) -> tuple[str, str]:
    """Near-duplicates are questions over the same database and schema."""
    return canonical_json({"db_id": input["db_id"], "schema": input["schema"]}), input["question"]


def display_text(input: dict[str, Any]) -> str:
    """What a person sees first: the question."""
    return str(input["question"])


class SQL:
    """The sql task as a Task object."""

    name = NAME
    version = VERSION
    check_names = CHECK_NAMES

    prompt = staticmethod(prompt)
    validate_input = staticmethod(validate_input)
    check = staticmethod(check)
    check_values = staticmethod(check_values)
    normalise = staticmethod(normalise)
    synthesize = staticmethod(synthesize)
    input_from_messages = staticmethod(input_from_messages)

    group_key = staticmethod(group_key)
    slice_name = "database"
    slice_of = staticmethod(slice_of)
    dedup_text = staticmethod(dedup_text)
    display_text = staticmethod(display_text)
    complexity = staticmethod(complexity)
    complexity_bounds = (None, None)
    demo_data = DemoData(traces="data/demo/sql/traces.jsonl", annotations="data/demo/sql/annotations.jsonl",
                         base_corpus="data/demo/sql/base_corpus.jsonl")


TASK = SQL()

__all__ = [
    "Analysis", "CHECK_NAMES", "DEFAULT_DIALECT", "DIALECTS", "GENERATORS", "NAME", "Parsed", "SQL", "SYSTEM_PROMPT",
    "TASK", "VERSION", "analyse", "canonical", "check", "check_values", "complexity", "dedup_text", "display_text",
    "group_key", "input_from_messages", "normalise", "parse", "prompt", "schema_lines", "slice_of",
    "strip_code_fences", "synthesize", "validate_input",
]
