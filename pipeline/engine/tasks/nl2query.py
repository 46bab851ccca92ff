"""nl2query: a natural-language question plus a dataset's columns in, a JSON observability query out.

Query shape::

    {"calculations": [{"op": "P95", "column": "duration_ms"}],
     "filters": [{"column": "http.status_code", "op": ">=", "value": 500}],
     "filter_combination": "AND",
     "breakdowns": ["service.name"],
     "orders": [{"op": "P95", "column": "duration_ms", "order": "descending"}],
     "havings": [{"calculate_op": "P95", "column": "duration_ms", "op": ">", "value": 1000}],
     "time_range": 7200,
     "limit": 10}

Each assertion is named after the failure mode it detects.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

from pipeline.engine.tasks.base import CheckResult, Example, SyntheticExample

NAME = "nl2query"
VERSION = "1"

NO_COLUMN_OPS = frozenset({"COUNT", "CONCURRENCY"})
COLUMN_OPS = frozenset(
    {"SUM", "AVG", "MAX", "MIN", "COUNT_DISTINCT", "HEATMAP", "P001", "P01", "P05", "P10",
     "P25", "P50", "P75", "P90", "P95", "P99", "P999", "RATE_AVG", "RATE_SUM", "RATE_MAX"}
)
CALCULATION_OPS = NO_COLUMN_OPS | COLUMN_OPS
NO_VALUE_FILTER_OPS = frozenset({"exists", "does-not-exist"})
FILTER_OPS = NO_VALUE_FILTER_OPS | frozenset(
    {"=", "!=", ">", ">=", "<", "<=", "starts-with", "does-not-start-with", "contains",
     "does-not-contain", "in", "not-in"}
)
HAVING_OPS = frozenset({"=", "!=", ">", ">=", "<", "<="})
ORDER_DIRECTIONS = frozenset({"ascending", "descending"})
TOP_LEVEL_KEYS = ("calculations", "filters", "filter_combination", "breakdowns", "orders",
                  "havings", "time_range", "limit")

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
)

SYSTEM_PROMPT = (
    "You translate a question about an observability dataset into a JSON query. "
    "Answer with one JSON object and nothing else. Keys: calculations (list of {op, column}), "
    "filters (list of {column, op, value}), filter_combination (AND|OR), breakdowns (list of "
    "columns), orders (list of {op, column, order}), havings (list of {calculate_op, column, "
    "op, value}), time_range (integer seconds), limit (integer). Use only the given columns. "
    f"Calculation ops: {', '.join(sorted(CALCULATION_OPS))}; COUNT and CONCURRENCY take no "
    f"column. Filter ops: {', '.join(sorted(FILTER_OPS))}."
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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _list_of_dicts(query: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = query.get(key) or []
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _shape_problems(query: dict[str, Any]) -> list[str]:
    problems = [f"unknown key {key!r}" for key in query if key not in TOP_LEVEL_KEYS]
    calcs = query.get("calculations")
    if not isinstance(calcs, list) or not calcs:
        problems.append("calculations must be a non-empty list")
    for key in ("calculations", "filters", "orders", "havings"):
        value = query.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            problems.append(f"{key} must be a list of objects")
    breakdowns = query.get("breakdowns", [])
    if not isinstance(breakdowns, list) or not all(isinstance(b, str) for b in breakdowns):
        problems.append("breakdowns must be a list of column names")
    if query.get("filter_combination", "AND") not in ("AND", "OR"):
        problems.append("filter_combination must be AND or OR")
    for order in _list_of_dicts(query, "orders"):
        if order.get("order", "ascending") not in ORDER_DIRECTIONS:
            problems.append(f"order direction {order.get('order')!r} is not ascending/descending")
    return problems


def _columns_used(query: dict[str, Any]) -> list[str]:
    used: list[Any] = []
    for key in ("calculations", "filters", "orders", "havings"):
        # "column": null means no column (as for COUNT), the same as leaving the key out
        used += [item["column"] for item in _list_of_dicts(query, key) if item.get("column") is not None]
    breakdowns = query.get("breakdowns") or []
    if isinstance(breakdowns, list):
        used += breakdowns
    return [c if isinstance(c, str) else json.dumps(c) for c in used]


def check(input: dict[str, Any], output: str) -> list[CheckResult]:
    """Run every nl2query assertion on ``output`` for ``input``; one result per CHECK_NAMES."""
    query = parse(output)
    if query is None:
        reason = "output is not a JSON object"
        if isinstance(output, str) and strip_code_fences(output) != output.strip():
            reason += " (after stripping code fences)"
        return [CheckResult("invalid_json", False, reason)] + [
            CheckResult(name, None, "skipped: output is not valid JSON") for name in CHECK_NAMES[1:]
        ]
    results = [CheckResult("invalid_json", True)]

    def add(name: str, problems: list[str]) -> None:
        results.append(CheckResult(name, not problems, "; ".join(dict.fromkeys(problems))))

    add("invalid_shape", _shape_problems(query))
    calcs = _list_of_dicts(query, "calculations")
    add("unknown_calculation_op",
        [f"unknown calculation op {c.get('op')!r}" for c in calcs if c.get("op") not in CALCULATION_OPS])
    add("unknown_filter_op",
        [f"unknown filter op {f.get('op')!r}" for f in _list_of_dicts(query, "filters")
         if f.get("op") not in FILTER_OPS]
        + [f"unknown having op {h.get('op')!r}" for h in _list_of_dicts(query, "havings")
           if h.get("op") not in HAVING_OPS])
    known = set(input.get("columns") or [])
    add("unknown_column",
        [f"column {c!r} is not in the dataset's columns" for c in _columns_used(query) if c not in known])
    add("count_with_column",
        [f"{c['op']} takes no column but got {c['column']!r}" for c in calcs
         if c.get("op") in NO_COLUMN_OPS and c.get("column") is not None])
    add("missing_column",
        [f"{c['op']} needs a column" for c in calcs
         if c.get("op") in COLUMN_OPS and not c.get("column")])
    calc_keys = {(c.get("op"), c.get("column")) for c in calcs}
    breakdowns = set(b for b in (query.get("breakdowns") or []) if isinstance(b, str))
    order_problems = []
    for order in _list_of_dicts(query, "orders"):
        if order.get("op") is None:
            if order.get("column") not in breakdowns:
                order_problems.append(f"order by {order.get('column')!r} is neither a calculation nor a breakdown")
        elif (order.get("op"), order.get("column")) not in calc_keys:
            order_problems.append(f"order by {order.get('op')}({order.get('column') or ''}) is not a calculation")
    add("order_not_in_calculations", order_problems)
    add("having_not_in_calculations",
        [f"having on {h.get('calculate_op')}({h.get('column') or ''}) is not a calculation"
         for h in _list_of_dicts(query, "havings")
         if (h.get("calculate_op"), h.get("column")) not in calc_keys])
    time_range = query.get("time_range")
    add("time_range_not_integer",
        [] if time_range is None or (_is_int(time_range) and time_range > 0)
        else [f"time_range {time_range!r} is not a positive integer number of seconds"])
    limit = query.get("limit")
    add("limit_not_integer",
        [] if limit is None or (_is_int(limit) and limit > 0)
        else [f"limit {limit!r} is not a positive integer"])
    return results


def _canonical_filter(f: dict[str, Any]) -> dict[str, Any]:
    out = {"column": f.get("column"), "op": f.get("op")}
    if "value" in f:
        out["value"] = f["value"]
    return out


def canonical(query: dict[str, Any]) -> dict[str, Any]:
    """The query with a fixed key order, defaults and empty parts dropped, filters sorted."""
    out: dict[str, Any] = {}
    calcs = [{"op": c.get("op"), **({"column": c["column"]} if c.get("column") is not None else {})}
             for c in _list_of_dicts(query, "calculations")]
    out["calculations"] = calcs
    filters = sorted((_canonical_filter(f) for f in _list_of_dicts(query, "filters")),
                     key=lambda f: json.dumps(f, sort_keys=True))
    if filters:
        out["filters"] = filters
        if query.get("filter_combination", "AND") != "AND" and len(filters) > 1:
            out["filter_combination"] = query["filter_combination"]
    if query.get("breakdowns"):
        out["breakdowns"] = list(query["breakdowns"])
    orders = [{**({"op": o["op"]} if o.get("op") is not None else {}),
               **({"column": o["column"]} if o.get("column") is not None else {}),
               "order": o.get("order", "ascending")} for o in _list_of_dicts(query, "orders")]
    if orders:
        out["orders"] = orders
    havings = sorted(({k: h.get(k) for k in ("calculate_op", "column", "op", "value") if h.get(k) is not None}
                      for h in _list_of_dicts(query, "havings")),
                     key=lambda h: json.dumps(h, sort_keys=True))
    if havings:
        out["havings"] = havings
    for key in ("time_range", "limit"):
        if query.get(key) is not None:
            out[key] = query[key]
    return out


def dump(query: dict[str, Any]) -> str:
    """Compact JSON text of a query."""
    return json.dumps(query, separators=(",", ":"), ensure_ascii=False)


def normalise(output: str) -> str | None:
    """Canonical compact JSON of an output, or None if it does not parse."""
    query = parse(output)
    return None if query is None else dump(canonical(query))


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


# --- offline synthetic generators -----------------------------------------------------------

_LAST_N_HOURS = re.compile(r"\b(?:last|past) (\d+) hours\b")
_TOP_N = re.compile(r"\btop (\d+)\b")


def _column_roles(examples: list[Example]) -> dict[tuple[str, str], set[str]]:
    """Columns seen in each (dataset, role) across valid examples: the pool for substitution."""
    roles: dict[tuple[str, str], set[str]] = {}
    for ex in examples:
        query = parse(ex.output)
        if query is None:
            continue
        dataset = ex.input.get("dataset", "")
        for role, col in _roles_of(query):
            roles.setdefault((dataset, role), set()).add(col)
    return roles


def _roles_of(query: dict[str, Any]) -> list[tuple[str, str]]:
    out = [(f"calc:{c.get('op')}", c["column"]) for c in _list_of_dicts(query, "calculations")
           if isinstance(c.get("column"), str)]
    out += [(f"filter:{f.get('op')}", f["column"]) for f in _list_of_dicts(query, "filters")
            if isinstance(f.get("column"), str) and "value" not in f]
    out += [("breakdown", b) for b in query.get("breakdowns") or [] if isinstance(b, str)]
    return out


def _replace_column(value: Any, old: str, new: str) -> Any:
    if isinstance(value, dict):
        return {k: (new if k == "column" and v == old else _replace_column(v, old, new))
                for k, v in value.items()}
    if isinstance(value, list):
        return [new if v == old else _replace_column(v, old, new) for v in value]
    return value


def _substitute_column(ex: Example, roles: dict, rng: random.Random) -> Example | None:
    query = parse(ex.output)
    if query is None:
        return None
    candidates = [(role, col) for role, col in _roles_of(query) if col in ex.input["question"]]
    if not candidates:
        return None
    role, old = rng.choice(candidates)
    used = set(_columns_used(query))
    pool = sorted(roles.get((ex.input.get("dataset", ""), role), set()) - used)
    pool = [c for c in pool if c in ex.input["columns"] and c not in ex.input["question"]]
    if not pool:
        return None
    new = rng.choice(pool)
    question = re.sub(rf"(?<![\w.]){re.escape(old)}(?![\w.])", new, ex.input["question"])
    if question == ex.input["question"]:
        return None
    new_query = _replace_column(query, old, new)
    return Example({**ex.input, "question": question}, dump(canonical(new_query)))


def _vary_number(ex: Example, pattern: re.Pattern, key: str, scale: int, choices: list[int],
                 rng: random.Random) -> Example | None:
    query = parse(ex.output)
    match = pattern.search(ex.input["question"])
    if query is None or match is None or query.get(key) != int(match.group(1)) * scale:
        return None
    n = rng.choice([c for c in choices if c != int(match.group(1))])
    question = ex.input["question"][: match.start(1)] + str(n) + ex.input["question"][match.end(1):]
    return Example({**ex.input, "question": question}, dump(canonical({**query, key: n * scale})))


GENERATORS = {
    "substitute_column": lambda ex, roles, rng: _substitute_column(ex, roles, rng),
    "vary_time_range": lambda ex, roles, rng: _vary_number(
        ex, _LAST_N_HOURS, "time_range", 3600, [2, 3, 4, 6, 8, 12, 24, 48], rng),
    "vary_limit": lambda ex, roles, rng: _vary_number(ex, _TOP_N, "limit", 1, [3, 5, 10, 15, 20, 25], rng),
}


def synthesize(examples: list[Example], n: int, rng: random.Random) -> list[SyntheticExample]:
    """Up to ``n`` examples from column substitution and time-range/limit variation.

    Only outputs that pass every assertion are returned; duplicates of each other or of the
    seed examples are not.
    """
    roles = _column_roles(examples)
    seen = {(json.dumps(ex.input, sort_keys=True), normalise(ex.output)) for ex in examples}
    out: list[SyntheticExample] = []
    order = list(range(len(examples)))
    rng.shuffle(order)
    names = sorted(GENERATORS)
    for attempt, index in enumerate(order * 3):
        if len(out) >= n:
            break
        # rotate per pass so that every seed meets every generator over the three passes
        name = names[(attempt % len(order) + attempt // len(order)) % len(names)]
        new = GENERATORS[name](examples[index], roles, rng)
        if new is None or not all(r.passed is not False for r in check(new.input, new.output)):
            continue
        key = (json.dumps(new.input, sort_keys=True), normalise(new.output))
        if key in seen:
            continue
        seen.add(key)
        out.append(SyntheticExample(new.input, new.output, index, name))
    return out


class NL2Query:
    """The nl2query task as a Task object."""

    name = NAME
    version = VERSION
    check_names = CHECK_NAMES

    prompt = staticmethod(prompt)
    validate_input = staticmethod(validate_input)
    check = staticmethod(check)
    normalise = staticmethod(normalise)
    synthesize = staticmethod(synthesize)


TASK = NL2Query()
