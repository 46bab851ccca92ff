"""The sql task's output: parsing in the input's dialect, the assertions and the canonical form.

An output is one read-only SQL query over the input's schema, in the input's dialect. Parsing
and analysis use sqlglot's AST and its scope analysis (:mod:`sqlglot.optimizer.scope`): CTE
names and table aliases are tables of the scopes that select from them, a column alias of a
SELECT may be named in its ORDER BY (where it wins over table columns) and, when no table has
the name, in its GROUP BY, HAVING and QUALIFY (and WHERE in SQLite and DuckDB), and a
correlated subquery sees the columns of the query around it.

Names match as the dialect matches them: case-insensitively, except a quoted identifier in a
dialect that folds unquoted names to one case (Postgres, Snowflake, ...), which must match a
schema name exactly.

Each assertion is named after the failure mode it detects. This module is the task's check
code: its source is what ``check_version`` hashes, so it holds no prompt text.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable

import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect, NormalizationStrategy
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers
from sqlglot.optimizer.scope import Scope, traverse_scope, walk_in_scope

from pipeline.engine.tasks.base import CheckResult

class _NoCommandFallbackWarning(logging.Filter):
    """Drops sqlglot's per-call warning that it parsed a statement as an opaque command (the
    checks report such statements themselves); its other messages pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Falling back to parsing as a 'Command'" not in record.getMessage()


logging.getLogger("sqlglot").addFilter(_NoCommandFallbackWarning())

CHECK_NAMES: tuple[str, ...] = (
    "not_sql",
    "multiple_statements",
    "not_read_only",
    "unknown_table",
    "unknown_column",
    "ambiguous_column",
)

#: The dialect an output is read in when no input says which (sqlglot's own, the most lenient).
DEFAULT_DIALECT = ""
#: Dialects that let WHERE name a column alias of the same SELECT.
_WHERE_ALIAS_DIALECTS = frozenset({"sqlite", "duckdb"})
#: Clauses that may name a column alias of their SELECT in any dialect (ORDER BY: before table columns).
_ALIAS_CLAUSES = (exp.Group, exp.Having, exp.Order, exp.Qualify)
_CLAUSES = (exp.Where, exp.Join, exp.From, *_ALIAS_CLAUSES, exp.Select)

_FENCE = re.compile(r"^\s*```[a-zA-Z0-9_-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)


def strip_code_fences(text: str) -> str:
    """The content of a fenced code block if the whole text is one, else the text stripped."""
    match = _FENCE.match(text)
    return (match.group(1) if match else text).strip()


def dialect_of(input: dict[str, Any] | None) -> str:
    """The sqlglot dialect name of an input (``DEFAULT_DIALECT`` when it names none)."""
    dialect = (input or {}).get("dialect")
    return dialect if isinstance(dialect, str) else DEFAULT_DIALECT


# --- parsing ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Parsed:
    """An output's statements, or why it does not parse (``problem``)."""

    statements: tuple[exp.Expression, ...] = ()
    problem: str = ""


def parse(output: str, dialect: str = DEFAULT_DIALECT) -> Parsed:
    """The output's statements in ``dialect`` (code fences stripped), or the reason it is not SQL."""
    if not isinstance(output, str):
        return Parsed(problem=f"output is not text ({type(output).__name__})")
    text = strip_code_fences(output)
    if not text:
        return Parsed(problem="output is empty")
    try:
        statements = tuple(s for s in sqlglot.parse(text, read=dialect or None) if s is not None)
    except (SqlglotError, RecursionError, ValueError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Parsed(problem=f"does not parse as {dialect or 'SQL'}: {first_line}")
    if not statements:
        return Parsed(problem="output holds no statement")
    bare = [s for s in statements if isinstance(s, (exp.Condition, exp.Alias, exp.Identifier, exp.Star))]
    if bare:
        return Parsed(problem=f"not a SQL statement: {bare[0].sql(dialect=dialect or None)[:80]!r}")
    return Parsed(statements)


# --- names as the dialect matches them --------------------------------------------------------------

def _quotes_are_exact(dialect: str) -> bool:
    strategy = Dialect.get_or_raise(dialect or None).NORMALIZATION_STRATEGY
    return strategy in (NormalizationStrategy.LOWERCASE, NormalizationStrategy.UPPERCASE)


class Names:
    """Names (of tables or columns) looked up as a dialect resolves identifiers."""

    def __init__(self, names: Iterable[str], quotes_are_exact: bool):
        self.exact = {name: name for name in names}
        self.folded = {name.casefold(): name for name in self.exact}
        self.quotes_are_exact = quotes_are_exact

    def find(self, name: str, quoted: bool) -> str | None:
        """The stored name ``name`` (as written, quoted or not) refers to, or None."""
        if quoted and self.quotes_are_exact:
            return self.exact.get(name)
        return self.folded.get(name.casefold())


def _ident(node: exp.Expression | None) -> tuple[str, bool]:
    """(name, quoted) of an identifier-valued argument."""
    if isinstance(node, exp.Identifier):
        return node.name, bool(node.quoted)
    return (node.name if node is not None else ""), False


@dataclass
class Schema:
    """An input's tables and their columns."""

    tables: Names
    columns: dict[str, Names]

    @classmethod
    def of(cls, input: dict[str, Any]) -> Schema:
        exact = _quotes_are_exact(dialect_of(input))
        tables = [t for t in (input.get("schema") or {}).get("tables") or [] if isinstance(t, dict)]
        return cls(Names([str(t.get("name")) for t in tables], exact),
                   {str(t.get("name")): Names(map(str, t.get("columns") or []), exact) for t in tables})


# --- the query analysis -----------------------------------------------------------------------------

@dataclass
class Analysis:
    """What the scope analysis of a statement's queries found, by failure mode."""

    unknown_tables: list[str] = field(default_factory=list)
    unknown_columns: list[str] = field(default_factory=list)
    ambiguous_columns: list[str] = field(default_factory=list)


class _Resolver:
    """Resolves every table and column of a query's scopes against the schema."""

    def __init__(self, schema: Schema, dialect: str):
        self.schema = schema
        self.dialect = dialect
        self.found = Analysis()
        self._outputs: dict[int, Names | None] = {}

    def run(self, statement: exp.Expression) -> None:
        for scope in traverse_scope(statement):
            self._check_scope(scope)

    # columns a source provides (None: not known, so anything goes)

    def _source_columns(self, source: Any) -> Names | None:
        if isinstance(source, exp.Table):
            if not isinstance(source.this, exp.Identifier):
                return None  # a table function
            stored = self.schema.tables.find(*_ident(source.this))
            return None if stored is None else self.schema.columns[stored]
        if isinstance(source, Scope):
            key = id(source)
            if key not in self._outputs:
                self._outputs[key] = self._scope_output(source)
            return self._outputs[key]
        return None

    def _scope_output(self, scope: Scope) -> Names | None:
        exact = self.schema.tables.quotes_are_exact
        parent = scope.expression.parent
        alias = parent.args.get("alias") if isinstance(parent, (exp.CTE, exp.Subquery)) else None
        if isinstance(alias, exp.TableAlias) and alias.columns:
            return Names([c.name for c in alias.columns], exact)
        expression = scope.expression
        if isinstance(expression, exp.SetOperation):
            names = expression.named_selects
            return None if "*" in names else Names(names, exact)
        if not isinstance(expression, exp.Select):
            return None
        names: list[str] = []
        for projection in expression.selects:
            if isinstance(projection, exp.Star):
                sources = [source for _, source in scope.selected_sources.values()]
            elif isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star):
                hit = self._selected(scope, *_ident(projection.args.get("table")))
                sources = [hit[1]] if hit else [None]
            else:
                names.append(projection.alias_or_name)
                continue
            for source in sources:
                columns = self._source_columns(source)
                if columns is None:
                    return None
                names.extend(columns.exact)
        return Names(names, exact)

    # scopes

    def _selected(self, scope: Scope, name: str, quoted: bool) -> tuple[str, Any] | None:
        aliases = Names(scope.selected_sources, self.schema.tables.quotes_are_exact)
        stored = aliases.find(name, quoted)
        return None if stored is None else (stored, scope.selected_sources[stored][1])

    @staticmethod
    def _visible_scopes(scope: Scope) -> list[Scope]:
        """The scope and those whose tables its columns may name (a subquery sees its outer query)."""
        chain = [scope]
        while chain[-1].parent is not None and (chain[-1].is_subquery or chain[-1].is_set_operation
                                                or chain[-1].is_udtf):
            chain.append(chain[-1].parent)
        return chain

    def _check_scope(self, scope: Scope) -> None:
        for _, source in scope.selected_sources.values():
            if isinstance(source, exp.Table) and isinstance(source.this, exp.Identifier) \
                    and self.schema.tables.find(*_ident(source.this)) is None:
                self.found.unknown_tables.append(f"table {source.name!r} is not in the schema")
        expression = scope.expression
        if not isinstance(expression, exp.Select):
            return
        joins = expression.args.get("joins") or []
        using = {ident.name.casefold() for join in joins for ident in join.args.get("using") or []}
        natural = any(join.args.get("method") == "NATURAL" for join in joins)
        projections = Names(expression.named_selects, self.schema.tables.quotes_are_exact)
        chain = self._visible_scopes(scope)
        for column in walk_in_scope(expression):
            if not isinstance(column, exp.Column) or column.find_ancestor(exp.Table) is not None \
                    or _is_lambda_parameter(column):
                continue
            qualifier = column.args.get("table")
            if qualifier is not None:
                self._check_qualified(column, qualifier, chain)
            elif not isinstance(column.this, exp.Star):
                alias = self._may_name_alias(column, projections)
                if alias != "first":
                    self._check_unqualified(column, chain, using, natural, alias_fallback=alias == "fallback")

    def _may_name_alias(self, column: exp.Column, projections: Names) -> str:
        """"first" when the column names an alias of its SELECT that wins over table columns (ORDER BY),
        "fallback" when it may name one that no table has (GROUP BY, HAVING, QUALIFY; WHERE in some
        dialects), else ""."""
        if projections.find(*_ident(column.this)) is None or column.find_ancestor(exp.Window) is not None:
            return ""
        clause = column.find_ancestor(*_CLAUSES)
        if isinstance(clause, exp.Order):
            return "first"
        in_where = isinstance(clause, exp.Where) and self.dialect in _WHERE_ALIAS_DIALECTS
        if isinstance(clause, _ALIAS_CLAUSES) or in_where:
            return "fallback"
        return ""

    def _check_qualified(self, column: exp.Column, qualifier: exp.Expression, chain: list[Scope]) -> None:
        alias, quoted = _ident(qualifier)
        name, name_quoted = _ident(column.this)
        for scope in chain:
            hit = self._selected(scope, alias, quoted)
            if hit is None:
                continue
            columns = self._source_columns(hit[1])
            if columns is not None and not isinstance(column.this, exp.Star) \
                    and columns.find(name, name_quoted) is None:
                self.found.unknown_columns.append(f"{column.sql(dialect=self.dialect or None)}: "
                                                  f"{_source_name(hit)} has no column {name!r}")
            return
        self.found.unknown_columns.append(f"{column.sql(dialect=self.dialect or None)}: "
                                          f"no table or alias {alias!r} in the FROM clause")

    def _check_unqualified(self, column: exp.Column, chain: list[Scope], using: set[str], natural: bool,
                           alias_fallback: bool) -> None:
        name, quoted = _ident(column.this)
        for depth, scope in enumerate(chain):
            having: list[str] = []
            unknown = False
            for alias, (_, source) in scope.selected_sources.items():
                columns = self._source_columns(source)
                if columns is None:
                    unknown = True
                elif columns.find(name, quoted) is not None:
                    having.append(alias)
            shared = depth == 0 and (natural or name.casefold() in using)
            if len(having) > 1 and not shared:
                self.found.ambiguous_columns.append(
                    f"column {name!r} is in {', '.join(sorted(having))}; qualify it")
            if having or unknown:
                return
        if alias_fallback:
            return
        tables = sorted({alias for scope in chain for alias in scope.selected_sources})
        self.found.unknown_columns.append(
            f"column {name!r} is in none of the tables in scope ({', '.join(tables) or 'no FROM clause'})")


def _source_name(hit: tuple[str, Any]) -> str:
    alias, source = hit
    if isinstance(source, exp.Table) and source.name != alias:
        return f"{source.name} ({alias})"
    return alias


def _is_lambda_parameter(column: exp.Column) -> bool:
    lam = column.find_ancestor(exp.Lambda)
    return lam is not None and column.name in {p.name for p in lam.expressions}


def analyse(statements: Iterable[exp.Expression], input: dict[str, Any]) -> Analysis:
    """Unknown tables, unknown columns and ambiguous columns of the queries among ``statements``."""
    resolver = _Resolver(Schema.of(input), dialect_of(input))
    for statement in statements:
        resolver.run(statement)
    return resolver.found


# --- the assertions --------------------------------------------------------------------------------

def _write_problems(statement: exp.Expression) -> list[str]:
    if not isinstance(statement, (exp.Query, exp.Values)):
        return [f"{statement.key.upper()} is not a read-only query"]
    problems = [f"contains {node.key.upper()}" for node in statement.find_all(exp.DML, exp.DDL)]
    problems += ["SELECT ... INTO creates a table" for select in statement.find_all(exp.Select)
                 if select.args.get("into")]
    return problems


_NOT_SQL = (False,) + (None,) * (len(CHECK_NAMES) - 1)
_SKIPPED_NOT_SQL = ("skipped: output is not SQL",) * (len(CHECK_NAMES) - 1)


def check_values(input: dict[str, Any], output: str) -> tuple[tuple[bool | None, ...], tuple[str, ...]]:
    """Every assertion's (passed, detail) as two tuples in CHECK_NAMES order: the fast form of
    :func:`check` for large batches (no result objects)."""
    dialect = dialect_of(input)
    parsed = parse(output, dialect)
    if parsed.problem:
        return _NOT_SQL, (parsed.problem,) + _SKIPPED_NOT_SQL
    statements = parsed.statements
    passed: list[bool | None] = [True, len(statements) == 1]
    details = ["", "" if len(statements) == 1 else f"{len(statements)} statements; expected one query"]
    writes = [f"statement {i}: {p}" if len(statements) > 1 else p
              for i, s in enumerate(statements, 1) for p in _write_problems(s)]
    passed.append(not writes)
    details.append("; ".join(dict.fromkeys(writes)))
    queries = [s for s in statements if isinstance(s, exp.Query)]
    if not queries:
        return tuple(passed + [None] * 3), tuple(details + ["skipped: no query to check"] * 3)
    try:
        found = analyse(queries, input)
    except (SqlglotError, RecursionError) as exc:
        reason = f"skipped: could not analyse the query ({exc})"
        return tuple(passed + [None] * 3), tuple(details + [reason] * 3)
    for problems in (found.unknown_tables, found.unknown_columns, found.ambiguous_columns):
        passed.append(not problems)
        details.append("; ".join(dict.fromkeys(problems)))
    return tuple(passed), tuple(details)


def check(input: dict[str, Any], output: str) -> list[CheckResult]:
    """Run every sql assertion on ``output`` for ``input``; one result per CHECK_NAMES."""
    passed, details = check_values(input, output)
    return [CheckResult(name, ok, why) for name, ok, why in zip(CHECK_NAMES, passed, details)]


# --- the canonical form ----------------------------------------------------------------------------

_SIMPLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@lru_cache(maxsize=64)
def _reserved(dialect: str) -> frozenset[str]:
    """Words of ``dialect``'s keywords, the first of multi-word ones ("ORDER BY") included, and USER."""
    keywords = Dialect.get_or_raise(dialect or None).tokenizer_class.KEYWORDS
    return frozenset({"USER"} | {word for keyword in keywords for word in keyword.upper().split()})


@lru_cache(maxsize=4096)
def _bare_is_safe(name: str, dialect: str) -> bool:
    """Whether ``name`` written without quotes means the same identifier everywhere in ``dialect``."""
    d = Dialect.get_or_raise(dialect or None)
    if not _SIMPLE.fullmatch(name) or name.upper() in _reserved(dialect) \
            or d.normalize_identifier(exp.to_identifier(name, quoted=False)).name != name:
        return False
    probe = f"SELECT {name}, {name}.{name} FROM {name} AS {name} WHERE {name} = 1 GROUP BY {name} ORDER BY {name}"
    try:
        tree = sqlglot.parse_one(probe, read=dialect or None)
    except SqlglotError:
        return False
    return sum(1 for ident in tree.find_all(exp.Identifier) if ident.name == name) == 8


def canonical(statement: exp.Expression, dialect: str = DEFAULT_DIALECT) -> str:
    """One statement as canonical text: identifiers in the dialect's case, quoted only when they must
    be, keywords upper case, single spaces."""
    tree = normalize_identifiers(statement.copy(), dialect=dialect or None)
    for ident in tree.find_all(exp.Identifier):
        ident.set("quoted", not _bare_is_safe(ident.name, dialect))
    return tree.sql(dialect=dialect or None, pretty=False)


def normalise(output: str, input: dict[str, Any] | None = None) -> str | None:
    """Canonical text of an output in the input's dialect (statements joined by ``; ``), or None
    when it is not SQL."""
    dialect = dialect_of(input)
    parsed = parse(output, dialect)
    if parsed.problem:
        return None
    return "; ".join(canonical(s, dialect) for s in parsed.statements)


#: AST nodes that count as one unit of a query's complexity: its clauses and its conditions.
_COMPLEX_NODES = (exp.Select, exp.From, exp.Join, exp.Where, exp.Group, exp.Having, exp.Order, exp.Limit,
                  exp.CTE, exp.SetOperation, exp.Window, exp.Subquery, exp.AggFunc, exp.Predicate, exp.Case)


def complexity(output: str) -> int:
    """How complex an output is: its clauses, subqueries, aggregates and conditions (words when it
    does not parse)."""
    parsed = parse(output)
    if parsed.problem:
        return len(output.split()) if isinstance(output, str) else 0
    return sum(1 for s in parsed.statements for node in s.walk() if isinstance(node, _COMPLEX_NODES))
