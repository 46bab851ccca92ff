"""nl2query: a natural-language question plus a dataset's columns in, a JSON observability query out.

The task's parts, one module each (dependencies one way: synth -> checks; prompting -> checks):

- :mod:`~pipeline.engine.tasks.nl2query.checks`: the query spec, parsing, the assertions and the
  canonical form (the check code ``check_version`` hashes);
- :mod:`~pipeline.engine.tasks.nl2query.prompting`: the prompt, input validation and the input
  recovered from chat logs;
- :mod:`~pipeline.engine.tasks.nl2query.synth`: the offline synthetic generators;
- :mod:`~pipeline.engine.tasks.nl2query.hooks`: what the engine asks about inputs (split groups,
  report slices, near-duplicates, what a person sees first);
- ``prompts/``: the judge prompt (``judge.<version>.md``) and the LLM synthetic-data prompts and
  dimensions (``synth/``), found through :func:`pipeline.engine.tasks.task_file`.
"""

from __future__ import annotations

from pipeline.engine.tasks.nl2query.checks import (
    CALCULATION_OPS, CHECK_NAMES, COLUMN_OPS, DEFAULT_TIME_RANGE, FILTER_OPS, HAVING_OPS, LIST_VALUE_FILTER_OPS,
    NO_COLUMN_OPS, NO_VALUE_FILTER_OPS, QUERY_CHECKS, QueryParts, canonical, check, check_values, column_names,
    columns_used, dump, normalise, parse,
)
from pipeline.engine.tasks.hooks import DemoData
from pipeline.engine.tasks.nl2query import hooks
from pipeline.engine.tasks.nl2query.layouts import LAYOUTS, input_from_slots
from pipeline.engine.tasks.nl2query.literals import LITERALS
from pipeline.engine.tasks.nl2query.prompting import (
    INPUT_SQL_CHECK, empty_column_count, input_from_messages, prompt, validate_input,
)
from pipeline.engine.tasks.nl2query.synth import synthesize

NAME = "nl2query"
VERSION = "2"  # 2: the published query spec (optional keys, time keys, value rules)


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
    prompt_layouts = LAYOUTS
    input_from_slots = staticmethod(input_from_slots)

    # what the engine asks through pipeline.engine.tasks.hooks
    group_key = staticmethod(hooks.group_key)
    slice_name = "dataset"
    slice_of = staticmethod(hooks.slice_of)
    dedup_text = staticmethod(hooks.dedup_text)
    filler_words = hooks.FILLER_WORDS
    complexity_bounds = hooks.COMPLEXITY_BOUNDS
    display_text = staticmethod(hooks.display_text)
    literals = LITERALS
    demo_data = DemoData(traces="data/demo/traces", annotations="data/demo/annotations.jsonl",
                         base_corpus="data/demo/base_corpus.jsonl", prompt_layouts="data/demo/prompt_layouts.yaml")


TASK = NL2Query()

__all__ = [
    "CALCULATION_OPS", "CHECK_NAMES", "COLUMN_OPS", "DEFAULT_TIME_RANGE", "FILTER_OPS", "HAVING_OPS", "INPUT_SQL_CHECK",
    "LIST_VALUE_FILTER_OPS", "NAME", "NL2Query", "NO_COLUMN_OPS", "NO_VALUE_FILTER_OPS", "QUERY_CHECKS", "QueryParts",
    "TASK", "VERSION", "canonical", "check", "check_values", "column_names", "columns_used", "dump",
    "empty_column_count", "input_from_messages", "normalise", "parse", "prompt", "synthesize", "validate_input",
]
