"""nl2query's query: the published spec, parsing, the assertions and the canonical form.

The rules follow Honeycomb's published query specification, quoted from four sources:

- [QS] Honeycomb, "Query Specification" (docs.honeycomb.io/api/query-specification/, also
  /reference/query-specification.md): "All fields are optional, but a query without any
  calculations defined will default to a COUNT"; filter_combination "either AND or OR";
  granularity "Valid values are the query's time range /10 at maximum, and /1000 at minimum";
  orders "Each term must appear in either the breakdowns field or the calculations field";
  havings: a calculate_op ("the same set used for op in calculations, but excluding HEATMAP"), a
  column "except for COUNT", an op and a value "currently assumed to be numeric", each
  column/calculate_op pair in calculations; time_range "Cannot be combined with both start_time
  and end_time ... Defaults to two hours"; start_time and end_time "UNIX timestamp" integers.
- [QA] The QUERY SPEC of Honeycomb's query-assistant prompt (the course copy in
  jjallaire/inspect-llm-workshop, honeycomb/prompt.txt, with its validator honeycomb/validate.py):
  "All top-level keys are optional"; "exists and does-not-exist ops only have column";
  "COUNT and CONCURRENCY are just op"; orders and havings "HEATMAP not allowed"; "time_range is
  relative and can be combined with either start_time or end_time but not both"; in / not-in
  "must take a list", other ops "must take a value"; a having "must have an op" and "a value";
  its own example queries use ``"granularity": 0`` (no granularity set; its validator would
  reject 0, the example and [GO] are followed).
- [GO] Honeycomb's API client (honeycombio/terraform-provider-honeycombio, client/query_spec.go):
  filter values "'exists' and 'does-not-exist': value should be nil; 'in' and 'not-in': value
  should be a []string; all other ops: value could be a string, int, bool or float"; having ops
  include ``!=``; granularity 0 is what the Query Builder exports when none is set.
- [API] Honeycomb's Query API schema (generated from its OpenAPI spec, schemas.apis.io/schemas/
  honeycomb-io/honeycomb-query/): start_time "Must be <= end_time".

Query shape (every key optional; ``{}`` is COUNT over the last two hours)::

    {"calculations": [{"op": "P95", "column": "duration_ms"}],
     "filters": [{"column": "http.status_code", "op": ">=", "value": 500}],
     "filter_combination": "AND",
     "breakdowns": ["service.name"],
     "orders": [{"op": "P95", "column": "duration_ms", "order": "descending"}],
     "havings": [{"calculate_op": "P95", "column": "duration_ms", "op": ">", "value": 1000}],
     "time_range": 7200, "end_time": 1525132800, "granularity": 60,
     "limit": 10}

(start_time or end_time with time_range, or start_time and end_time without it.)

A key given as JSON null counts as not given. Each assertion is named after the failure mode it
detects; a problem is reported by one assertion (a having without a column is ``missing_column``,
not also ``having_not_in_calculations``). This module is the task's check code: its source is what
``check_version`` hashes, so it holds no prompt text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from pipeline.engine.tasks.base import CheckResult

NO_COLUMN_OPS = frozenset({"COUNT", "CONCURRENCY"})
COLUMN_OPS = frozenset(
    {"SUM", "AVG", "MAX", "MIN", "COUNT_DISTINCT", "HEATMAP", "P001", "P01", "P05", "P10",
     "P25", "P50", "P75", "P90", "P95", "P99", "P999", "RATE_AVG", "RATE_SUM", "RATE_MAX"}
)
CALCULATION_OPS = NO_COLUMN_OPS | COLUMN_OPS
#: Filter ops that take no value, and those that take a list of values [QA], [GO].
NO_VALUE_FILTER_OPS = frozenset({"exists", "does-not-exist"})
LIST_VALUE_FILTER_OPS = frozenset({"in", "not-in"})
FILTER_OPS = NO_VALUE_FILTER_OPS | LIST_VALUE_FILTER_OPS | frozenset(
    {"=", "!=", ">", ">=", "<", "<=", "starts-with", "does-not-start-with", "contains",
     "does-not-contain"}
)
HAVING_OPS = frozenset({"=", "!=", ">", ">=", "<", "<="})
ORDER_DIRECTIONS = frozenset({"ascending", "descending"})
TOP_LEVEL_KEYS = ("calculations", "filters", "filter_combination", "breakdowns", "orders",
                  "havings", "time_range", "start_time", "end_time", "granularity", "limit")
#: The time range of a query that names none [QS]: two hours.
DEFAULT_TIME_RANGE = 7200

CHECK_NAMES: tuple[str, ...] = (
    "invalid_json",
    "invalid_shape",
    "unknown_calculation_op",
    "unknown_filter_op",
    "unknown_column",
    "count_with_column",
    "missing_column",
    "order_not_in_calculations",
    "having_not_in_calculations",
    "time_range_not_integer",
    "limit_not_integer",
    "invalid_filter_value",
    "invalid_having",
    "heatmap_not_allowed",
    "invalid_time_window",
    "invalid_granularity",
)

_FENCE = re.compile(r"^\s*```[a-zA-Z0-9_-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)


def strip_code_fences(text: str) -> str:
    """The content of a fenced code block if the whole text is one, else the text stripped."""
    match = _FENCE.match(text)
    return (match.group(1) if match else text).strip()


def parse(output: str) -> dict[str, Any] | None:
    """The query as a dict, or None when the output (code fences stripped) is not a JSON object."""
    if not isinstance(output, str):
        return None
    try:
        value = json.loads(strip_code_fences(output))
    except (json.JSONDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def column_names(input: dict[str, Any]) -> list[str]:
    """The input's column names, empty names left out (inputs may list ``""``; no query can use it)."""
    columns = input.get("columns")
    return [c for c in columns if isinstance(c, str) and c] if isinstance(columns, list) else []


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool))


def list_of_dicts(query: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The objects in the list ``query[key]``; nothing when it is missing or not a list."""
    value = query.get(key) or []
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _shape_problems(query: dict[str, Any]) -> list[str]:
    problems = [f"unknown key {key!r}" for key in query if key not in TOP_LEVEL_KEYS]
    for key in ("calculations", "filters", "orders", "havings"):
        value = query.get(key)
        if value is not None and (not isinstance(value, list) or not all(isinstance(item, dict) for item in value)):
            problems.append(f"{key} must be a list of objects")
    breakdowns = query.get("breakdowns")
    if breakdowns is not None and (not isinstance(breakdowns, list) or not all(isinstance(b, str) for b in breakdowns)):
        problems.append("breakdowns must be a list of column names")
    if query.get("filter_combination") not in (None, "AND", "OR"):
        problems.append("filter_combination must be AND or OR")
    for order in list_of_dicts(query, "orders"):
        if order.get("order") is not None and order["order"] not in ORDER_DIRECTIONS:
            problems.append(f"order direction {order.get('order')!r} is not ascending/descending")
    return problems


class QueryParts:
    """A parsed query's parts, extracted once and shared by every check."""

    __slots__ = ("query", "calcs", "filters", "orders", "havings", "calc_keys")

    def __init__(self, query: dict[str, Any]):
        self.query = query
        self.calcs = list_of_dicts(query, "calculations")
        self.filters = list_of_dicts(query, "filters")
        self.orders = list_of_dicts(query, "orders")
        self.havings = list_of_dicts(query, "havings")
        # no calculations means COUNT [QS], so orders and havings may refer to COUNT
        self.calc_keys = {(c.get("op"), c.get("column")) for c in self.calcs} if self.calcs else {("COUNT", None)}

    def columns_used(self) -> list[str]:
        """Every column the query names, in calculations, filters, orders, havings, breakdowns
        order (a name that is not a string as its JSON text)."""
        # "column": null means no column (as for COUNT), the same as leaving the key out
        used = [item["column"] for part in (self.calcs, self.filters, self.orders, self.havings) for item in part
                if item.get("column") is not None]
        breakdowns = self.query.get("breakdowns") or []
        if isinstance(breakdowns, list):
            used += breakdowns
        return [c if isinstance(c, str) else json.dumps(c) for c in used]


def columns_used(query: dict[str, Any]) -> list[str]:
    """Every column a parsed query names (see :meth:`QueryParts.columns_used`)."""
    return QueryParts(query).columns_used()


def _having_lacks_column(having: dict[str, Any]) -> bool:
    return having.get("calculate_op") in COLUMN_OPS and not having.get("column")


def _unknown_calculation_op(q: QueryParts, input: dict[str, Any]) -> list[str]:
    return [f"unknown calculation op {c.get('op')!r}" for c in q.calcs if c.get("op") not in CALCULATION_OPS]


def _unknown_filter_op(q: QueryParts, input: dict[str, Any]) -> list[str]:
    # a having without an op is incomplete (invalid_having), not an unknown op
    return ([f"unknown filter op {f.get('op')!r}" for f in q.filters if f.get("op") not in FILTER_OPS]
            + [f"unknown having op {h.get('op')!r}" for h in q.havings
               if h.get("op") is not None and h.get("op") not in HAVING_OPS])


def _unknown_column(q: QueryParts, input: dict[str, Any]) -> list[str]:
    known = set(column_names(input))
    return [f"column {c!r} is not in the dataset's columns" for c in q.columns_used() if c not in known]


def _count_with_column(q: QueryParts, input: dict[str, Any]) -> list[str]:
    return [f"{c['op']} takes no column but got {c['column']!r}" for c in q.calcs
            if c.get("op") in NO_COLUMN_OPS and c.get("column") is not None]


def _missing_column(q: QueryParts, input: dict[str, Any]) -> list[str]:
    return ([f"{c['op']} needs a column" for c in q.calcs if c.get("op") in COLUMN_OPS and not c.get("column")]
            + [f"filter {f.get('op')!r} needs a column" for f in q.filters if not f.get("column")]
            + [f"having on {h['calculate_op']} needs a column" for h in q.havings if _having_lacks_column(h)])


def _order_not_in_calculations(q: QueryParts, input: dict[str, Any]) -> list[str]:
    if not q.orders:
        return []
    breakdowns = q.query.get("breakdowns")
    breakdowns = {b for b in breakdowns if isinstance(b, str)} if isinstance(breakdowns, list) else set()
    problems = []
    for order in q.orders:
        if order.get("op") is None:
            if order.get("column") not in breakdowns:
                problems.append(f"order by {order.get('column')!r} is neither a calculation nor a breakdown")
        elif (order.get("op"), order.get("column")) not in q.calc_keys:
            problems.append(f"order by {order.get('op')}({order.get('column') or ''}) is not a calculation")
    return problems


def _having_not_in_calculations(q: QueryParts, input: dict[str, Any]) -> list[str]:
    # havings without a calculate_op (invalid_having) or a needed column (missing_column) are reported there
    return [f"having on {h.get('calculate_op')}({h.get('column') or ''}) is not a calculation"
            for h in q.havings if h.get("calculate_op") is not None and not _having_lacks_column(h)
            and (h.get("calculate_op"), h.get("column")) not in q.calc_keys]


def _time_range_not_integer(q: QueryParts, input: dict[str, Any]) -> list[str]:
    value = q.query.get("time_range")
    return ([] if value is None or (_is_int(value) and value > 0)
            else [f"time_range {value!r} is not a positive integer number of seconds"])


def _limit_not_integer(q: QueryParts, input: dict[str, Any]) -> list[str]:
    value = q.query.get("limit")
    return [] if value is None or (_is_int(value) and value > 0) else [f"limit {value!r} is not a positive integer"]


def _invalid_filter_value(q: QueryParts, input: dict[str, Any]) -> list[str]:
    problems = []
    for f in q.filters:
        op, value = f.get("op"), f.get("value")
        if op in NO_VALUE_FILTER_OPS:
            if value is not None:
                problems.append(f"{op} takes no value but got {value!r}")
        elif op in LIST_VALUE_FILTER_OPS:
            if not isinstance(value, list) or not all(_is_scalar(v) for v in value):
                problems.append(f"{op} takes a list of values but got {value!r}")
        elif op in FILTER_OPS and not _is_scalar(value):
            problems.append(f"{op} needs a value (a string, number or boolean) but got {value!r}")
    return problems


def _invalid_having(q: QueryParts, input: dict[str, Any]) -> list[str]:
    problems = []
    for h in q.havings:
        if h.get("calculate_op") is None:
            problems.append("having needs a calculate_op")
        if h.get("op") is None:
            problems.append("having needs an op")
        if not _is_number(h.get("value")):
            problems.append(f"having needs a numeric value but got {h.get('value')!r}")
    return problems


def _heatmap_not_allowed(q: QueryParts, input: dict[str, Any]) -> list[str]:
    return (["order by HEATMAP is not allowed" for o in q.orders if o.get("op") == "HEATMAP"]
            + ["having on HEATMAP is not allowed" for h in q.havings if h.get("calculate_op") == "HEATMAP"])


def _invalid_time_window(q: QueryParts, input: dict[str, Any]) -> list[str]:
    start, end = q.query.get("start_time"), q.query.get("end_time")
    problems = [f"{key} {value!r} is not an integer UNIX timestamp (seconds)"
                for key, value in (("start_time", start), ("end_time", end))
                if value is not None and not _is_int(value)]
    if q.query.get("time_range") is not None and start is not None and end is not None:
        problems.append("time_range cannot be combined with both start_time and end_time")
    if _is_int(start) and _is_int(end) and start > end:
        problems.append(f"start_time {start} is after end_time {end}")
    return problems


def _time_window_seconds(query: dict[str, Any]) -> int | None:
    """How many seconds the query covers: time_range, else end_time - start_time, else the two-hour
    default; None when the given times are themselves invalid."""
    time_range, start, end = query.get("time_range"), query.get("start_time"), query.get("end_time")
    if time_range is not None:
        return time_range if _is_int(time_range) and time_range > 0 else None
    if start is not None and end is not None:
        return end - start if _is_int(start) and _is_int(end) and end > start else None
    return DEFAULT_TIME_RANGE


def _invalid_granularity(q: QueryParts, input: dict[str, Any]) -> list[str]:
    value = q.query.get("granularity")
    if value is None or value == 0 and _is_int(value):  # 0: none set [QA], [GO]
        return []
    if not _is_int(value) or value < 0:
        return [f"granularity {value!r} is not a non-negative integer number of seconds"]
    window = _time_window_seconds(q.query)
    if window is not None and not window / 1000 <= value <= window / 10:
        return [f"granularity {value} is outside {window}/1000 .. {window}/10 seconds for a {window} s time range"]
    return []


#: The assertions on a parsed query, by failure mode: (parts, input) -> problems found (none = pass).
#: ``invalid_json`` comes first and gates them all (nothing to check without a JSON object).
QUERY_CHECKS: dict[str, Callable[[QueryParts, dict[str, Any]], list[str]]] = {
    "invalid_shape": lambda q, input: _shape_problems(q.query),
    "unknown_calculation_op": _unknown_calculation_op,
    "unknown_filter_op": _unknown_filter_op,
    "unknown_column": _unknown_column,
    "count_with_column": _count_with_column,
    "missing_column": _missing_column,
    "order_not_in_calculations": _order_not_in_calculations,
    "having_not_in_calculations": _having_not_in_calculations,
    "time_range_not_integer": _time_range_not_integer,
    "limit_not_integer": _limit_not_integer,
    "invalid_filter_value": _invalid_filter_value,
    "invalid_having": _invalid_having,
    "heatmap_not_allowed": _heatmap_not_allowed,
    "invalid_time_window": _invalid_time_window,
    "invalid_granularity": _invalid_granularity,
}
assert tuple(QUERY_CHECKS) == CHECK_NAMES[1:], "QUERY_CHECKS must follow CHECK_NAMES"
_FINDERS = tuple(QUERY_CHECKS.values())
_SKIPPED = ("skipped: output is not valid JSON",) * (len(CHECK_NAMES) - 1)
_NOT_JSON = (False,) + (None,) * (len(CHECK_NAMES) - 1)


def check_values(input: dict[str, Any], output: str) -> tuple[tuple[bool | None, ...], tuple[str, ...]]:
    """Every assertion's (passed, detail) as two tuples in CHECK_NAMES order: the fast form of
    :func:`check` for large batches (no result objects)."""
    query = parse(output)
    if query is None:
        reason = "output is not a JSON object"
        if isinstance(output, str) and strip_code_fences(output) != output.strip():
            reason += " (after stripping code fences)"
        return _NOT_JSON, (reason,) + _SKIPPED
    parts = QueryParts(query)
    passed: list[bool | None] = [True]
    details = [""]
    for find in _FINDERS:
        problems = find(parts, input)
        passed.append(not problems)
        details.append("; ".join(dict.fromkeys(problems)) if problems else "")
    return tuple(passed), tuple(details)


def check(input: dict[str, Any], output: str) -> list[CheckResult]:
    """Run every nl2query assertion on ``output`` for ``input``; one result per CHECK_NAMES."""
    passed, details = check_values(input, output)
    return [CheckResult(name, ok, why) for name, ok, why in zip(CHECK_NAMES, passed, details)]


def _canonical_filter(f: dict[str, Any]) -> dict[str, Any]:
    out = {"column": f.get("column"), "op": f.get("op")}
    if f.get("value") is not None:
        out["value"] = f["value"]
    return out


def canonical(query: dict[str, Any]) -> dict[str, Any]:
    """The query with a fixed key order, defaults and empty parts dropped, filters sorted; no
    calculations is written as COUNT, the calculation it stands for [QS]."""
    out: dict[str, Any] = {}
    calcs = [{"op": c.get("op"), **({"column": c["column"]} if c.get("column") is not None else {})}
             for c in list_of_dicts(query, "calculations")]
    out["calculations"] = calcs or [{"op": "COUNT"}]
    filters = sorted((_canonical_filter(f) for f in list_of_dicts(query, "filters")),
                     key=lambda f: json.dumps(f, sort_keys=True))
    if filters:
        out["filters"] = filters
        if query.get("filter_combination") not in (None, "AND") and len(filters) > 1:
            out["filter_combination"] = query["filter_combination"]
    if query.get("breakdowns"):
        out["breakdowns"] = list(query["breakdowns"])
    orders = [{**({"op": o["op"]} if o.get("op") is not None else {}),
               **({"column": o["column"]} if o.get("column") is not None else {}),
               "order": o.get("order") or "ascending"} for o in list_of_dicts(query, "orders")]
    if orders:
        out["orders"] = orders
    havings = sorted(({k: h.get(k) for k in ("calculate_op", "column", "op", "value") if h.get(k) is not None}
                      for h in list_of_dicts(query, "havings")),
                     key=lambda h: json.dumps(h, sort_keys=True))
    if havings:
        out["havings"] = havings
    for key in ("time_range", "start_time", "end_time", "limit"):
        if query.get(key) is not None:
            out[key] = query[key]
    if query.get("granularity") not in (None, 0):  # 0: none set
        out["granularity"] = query["granularity"]
    return out


def dump(query: dict[str, Any]) -> str:
    """Compact JSON text of a query."""
    return json.dumps(query, separators=(",", ":"), ensure_ascii=False)


def normalise(output: str) -> str | None:
    """Canonical compact JSON of an output, or None if it does not parse."""
    query = parse(output)
    return None if query is None else dump(canonical(query))
