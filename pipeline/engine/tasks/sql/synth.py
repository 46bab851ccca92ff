"""Offline synthetic generators for the sql task: no LLM, question and query changed together.

Each generator takes a seed example and returns a variation whose question and query still
agree, or None when the seed does not lend itself to it:

- ``swap_literal``: a literal compared with a column in the query (``genre = 'Poetry'``,
  ``pages > 300``) and written once in the question is changed in both, to another value seen
  for that column in the seeds of the same database (numbers: or a nearby number).
- ``vary_limit``: "the 5 longest books" with ``LIMIT 5`` -> another number in both.
- ``add_limit``: an ordered query without a limit gets one, and its question "Show only the first K."
- ``substitute_column``: a selected column the question names ("the title", "published year")
  is swapped for another column of the same table, in the question and the query.

:func:`synthesize` runs them over seeds and keeps only outputs that pass every assertion and
are new. Queries are written in their canonical form (:func:`~.checks.canonical`).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlglot import exp

from pipeline.engine.tasks.base import Example, SyntheticExample
from pipeline.engine.tasks.generators import rotate
from pipeline.engine.tasks.sql.checks import canonical, check_values, dialect_of, normalise, parse

_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)
_LIMIT_CHOICES = (3, 5, 10, 15, 20, 25, 50)
_NUMBER_STEPS = (-100, -50, -10, -5, -2, -1, 1, 2, 5, 10, 50, 100)


def _query(ex: Example) -> exp.Select | None:
    """The seed's one SELECT statement, or None."""
    parsed = parse(ex.output, dialect_of(ex.input))
    if parsed.problem or len(parsed.statements) != 1 or not isinstance(parsed.statements[0], exp.Select):
        return None
    return parsed.statements[0]


def _mentions(text: str, value: str) -> list[re.Match[str]]:
    """Where ``value`` is written in ``text`` as a whole word (a number not as part of a decimal)."""
    return list(re.finditer(rf"(?<![\w.]){re.escape(value)}(?!\w|\.\d)", text, flags=re.IGNORECASE))


def _splice(text: str, span: tuple[int, int], new: str) -> str:
    return text[: span[0]] + new + text[span[1]:]


def _column_literal(node: exp.Expression) -> tuple[exp.Column, exp.Literal] | None:
    left, right = node.this, node.expression
    if isinstance(left, exp.Column) and isinstance(right, exp.Literal):
        return left, right
    if isinstance(right, exp.Column) and isinstance(left, exp.Literal):
        return right, left
    return None


# --- literals --------------------------------------------------------------------------------------

def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def swap_literal(ex: Example, pools: Pools, rng: random.Random) -> Example | None:
    tree = _query(ex)
    if tree is None:
        return None
    question = ex.input["question"]
    pairs = [p for p in map(_column_literal, tree.find_all(*_COMPARISONS)) if p is not None]
    rng.shuffle(pairs)
    for column, literal in pairs:
        old = literal.this
        spans = _mentions(question, old)
        same = [lit for lit in tree.find_all(exp.Literal) if lit.this == old]
        if len(spans) != 1 or len(same) != 1:
            continue
        seen = pools.literals.get((ex.input["db_id"], column.name.casefold(), literal.is_string), set())
        options = {v for v in seen if v != old}
        if not literal.is_string:
            try:
                number = float(old)
            except ValueError:
                continue
            options |= {_number_text(number + step) for step in _NUMBER_STEPS if number + step > 0}
        options = sorted(v for v in options if v != old and not _mentions(question, v))
        if not options:
            continue
        new = rng.choice(options)
        literal.replace(exp.Literal.string(new) if literal.is_string else exp.Literal.number(new))
        return Example({**ex.input, "question": _splice(question, spans[0].span(), new)},
                       canonical(tree, dialect_of(ex.input)))
    return None


# --- limits ----------------------------------------------------------------------------------------

def vary_limit(ex: Example, pools: Pools, rng: random.Random) -> Example | None:
    tree = _query(ex)
    limit = tree.args.get("limit") if tree is not None else None
    value = limit.expression if isinstance(limit, exp.Limit) else None
    if not isinstance(value, exp.Literal) or value.is_string or not value.this.isdigit():
        return None
    question = ex.input["question"]
    spans = _mentions(question, value.this)
    options = [n for n in _LIMIT_CHOICES if str(n) != value.this and not _mentions(question, str(n))]
    if len(spans) != 1 or not options:
        return None
    n = rng.choice(options)
    value.replace(exp.Literal.number(n))
    return Example({**ex.input, "question": _splice(question, spans[0].span(), str(n))},
                   canonical(tree, dialect_of(ex.input)))


def add_limit(ex: Example, pools: Pools, rng: random.Random) -> Example | None:
    tree = _query(ex)
    if tree is None or tree.args.get("limit") or not tree.args.get("order") or tree.args.get("offset"):
        return None
    question = ex.input["question"].rstrip()
    options = [n for n in _LIMIT_CHOICES if not _mentions(question, str(n))]
    if not options:
        return None
    n = rng.choice(options)
    sentence = f"Show only the first {n}."
    question = f"{question} {sentence}" if question[-1:] in ".?!" else f"{question}. {sentence}"
    return Example({**ex.input, "question": question}, canonical(tree.limit(n), dialect_of(ex.input)))


# --- columns ---------------------------------------------------------------------------------------

def _forms(column: str) -> tuple[str, ...]:
    """How a question may write a column name: as it is, and with spaces for underscores."""
    spaced = column.replace("_", " ")
    return (column,) if spaced == column else (column, spaced)


def _table_of(tree: exp.Select, column: exp.Column) -> str | None:
    tables = list(tree.find_all(exp.Table))
    if column.table:
        tables = [t for t in tables if t.alias_or_name.casefold() == column.table.casefold()]
    return tables[0].name if len(tables) == 1 else None


def substitute_column(ex: Example, pools: Pools, rng: random.Random) -> Example | None:
    tree = _query(ex)
    if tree is None or tree.find(exp.Subquery, exp.CTE, exp.SetOperation) is not None:
        return None
    question = ex.input["question"]
    used = {c.name.casefold() for c in tree.find_all(exp.Column)}
    names = [c.name.casefold() for c in tree.find_all(exp.Column)]
    selected = [p for p in tree.selects if isinstance(p, exp.Column) and isinstance(p.this, exp.Identifier)
                and names.count(p.name.casefold()) == 1]
    rng.shuffle(selected)
    for column in selected:
        table = _table_of(tree, column)
        written = [(form, m) for form in _forms(column.name) for m in _mentions(question, form)]
        if table is None or len(written) != 1:
            continue
        form, match = written[0]
        columns = next((t["columns"] for t in ex.input["schema"]["tables"]
                        if t["name"].casefold() == table.casefold()), [])
        options = sorted(c for c in columns if c.casefold() not in used
                         and not any(_mentions(question, f) for f in _forms(c)))
        if not options:
            continue
        new = rng.choice(options)
        column.this.replace(exp.to_identifier(new))
        new_form = new if "_" in form else new.replace("_", " ")
        return Example({**ex.input, "question": _splice(question, match.span(), new_form)},
                       canonical(tree, dialect_of(ex.input)))
    return None


# --- pools and the driver -------------------------------------------------------------------------

@dataclass
class Pools:
    """Literals the seeds compare columns with: (db_id, column, is_string) -> values."""

    literals: dict[tuple[str, str, bool], set[str]] = field(default_factory=dict)

    @classmethod
    def from_examples(cls, examples: list[Example]) -> Pools:
        pools = cls()
        for ex in examples:
            tree = _query(ex)
            if tree is None:
                continue
            for column, literal in filter(None, map(_column_literal, tree.find_all(*_COMPARISONS))):
                key = (ex.input.get("db_id", ""), column.name.casefold(), literal.is_string)
                pools.literals.setdefault(key, set()).add(literal.this)
        return pools


Generator = Callable[[Example, Pools, random.Random], "Example | None"]

GENERATORS: dict[str, Generator] = {
    "add_limit": add_limit,
    "substitute_column": substitute_column,
    "swap_literal": swap_literal,
    "vary_limit": vary_limit,
}


def _key(example: Example) -> tuple[str, str | None]:
    return json.dumps(example.input, sort_keys=True), normalise(example.output, example.input)


def _passes(example: Example) -> bool:
    return all(passed is True for passed in check_values(example.input, example.output)[0])


def synthesize(examples: list[Example], n: int, rng: random.Random) -> list[SyntheticExample]:
    """Up to ``n`` examples from the offline generators, each seed meeting every generator in turn.

    Only outputs that pass every assertion are returned; duplicates of each other or of the
    seed examples are not.
    """
    return rotate(examples, n, rng, GENERATORS, Pools.from_examples(examples), _passes, _key)
