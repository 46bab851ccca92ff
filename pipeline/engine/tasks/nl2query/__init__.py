"""nl2query: a natural-language question plus a dataset's columns in, a JSON observability query out.

The task's parts, one module each (dependencies one way: synth -> checks; prompting -> checks):

- :mod:`~pipeline.engine.tasks.nl2query.checks`: the query spec, parsing, the assertions and the
  canonical form (the check code ``check_version`` hashes);
- :mod:`~pipeline.engine.tasks.nl2query.prompting`: the prompt, input validation and the input
  recovered from chat logs;
- :mod:`~pipeline.engine.tasks.nl2query.synth`: the offline synthetic generators;
- ``prompts/``: the judge prompt (``judge.<version>.md``) and the LLM synthetic-data prompts and
  dimensions (``synth/``), found through :func:`pipeline.engine.tasks.task_file`.
"""

from __future__ import annotations

from pipeline.engine.tasks.nl2query.checks import (
    CALCULATION_OPS, CHECK_NAMES, COLUMN_OPS, FILTER_OPS, NO_COLUMN_OPS, NO_VALUE_FILTER_OPS, QUERY_CHECKS, QueryParts,
    canonical, check, check_values, columns_used, dump, normalise, parse,
)
from pipeline.engine.tasks.nl2query.prompting import INPUT_SQL_CHECK, input_from_messages, prompt, validate_input
from pipeline.engine.tasks.nl2query.synth import synthesize

NAME = "nl2query"
VERSION = "1"


class NL2Query:
    """The nl2query task as a Task object."""

    name = NAME
    version = VERSION
    check_names = CHECK_NAMES

    prompt = staticmethod(prompt)
    validate_input = staticmethod(validate_input)
    check = staticmethod(check)
    check_values = staticmethod(check_values)
    normalise = staticmethod(normalise)
    synthesize = staticmethod(synthesize)
    input_sql_check = INPUT_SQL_CHECK
    input_from_messages = staticmethod(input_from_messages)


TASK = NL2Query()

__all__ = [
    "CALCULATION_OPS", "CHECK_NAMES", "COLUMN_OPS", "FILTER_OPS", "INPUT_SQL_CHECK", "NAME", "NL2Query",
    "NO_COLUMN_OPS", "NO_VALUE_FILTER_OPS", "QUERY_CHECKS", "QueryParts", "TASK", "VERSION", "canonical", "check",
    "check_values", "columns_used", "dump", "input_from_messages", "normalise", "parse", "prompt", "synthesize",
    "validate_input",
]
