"""Offline synthetic generators for nl2query: no LLM, question and query changed together.

Each generator takes a seed example and returns a variation whose question and query still
agree, or None when the seed does not lend itself to it:

- ``substitute_column``: a column named in the question is swapped, in the question, the query
  and consistently everywhere, for another column of the same dataset seen in the same role.
- ``vary_time_range``: "last 2 hours" -> "past day" (and the query's time_range with it).
- ``vary_limit``: "top 10" / "Which 10" / "limit 50" / "first 20 rows" -> another N.
- ``vary_operator``: "duration_ms > 500" / "is over 500" -> "is at most 500" (numeric filters).
- ``vary_breakdowns``: "by region" -> "by region and service.name", or back.
- ``compose_dimensions``: a new question from a (feature, scenario, persona) tuple and
  templates, filled with columns and filters seen in the seed's dataset.

:func:`synthesize` runs them over seeds and keeps only outputs that pass every assertion and
are new.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from pipeline.engine.tasks.base import Example, SyntheticExample
from pipeline.engine.tasks.generators import rotate
from pipeline.engine.tasks.nl2query.checks import canonical, check, columns_used, dump, list_of_dicts, normalise, parse

#: The dimensions of a question: what is asked (feature), in which situation (scenario), by whom (persona).
DIMENSIONS: dict[str, tuple[str, ...]] = {
    "feature": ("latency_percentile", "average_by_group", "top_groups", "error_count", "distinct_count"),
    "scenario": ("incident", "daily_check", "weekly_review"),
    "persona": ("oncall_engineer", "product_manager", "analyst"),
}

_COLUMN = r"(?<![\w.]){}(?![\w.])"

# --- time ranges ------------------------------------------------------------------------------------

_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400, "week": 604800}
#: Phrases that follow "in the"/"over the"/nothing ("last 2 hours"); "today" and "this week" take no article.
_TIME_WITH_ARTICLE = ("last 15 minutes", "last 30 minutes", "past 30 minutes", "last hour", "past hour",
                      "last 2 hours", "last 3 hours", "last 4 hours", "last 6 hours", "last 12 hours",
                      "last 24 hours", "past day", "last 2 days", "last 7 days", "past week")
_TIME_BARE = ("today", "this week")
_TIME = re.compile(r"\b(?:(?:last|past) (?:(\d+) )?(minute|hour|day|week)s?|today|this week)\b", re.IGNORECASE)


def time_phrase_seconds(phrase: str) -> int:
    """Seconds meant by a time phrase ("last 2 hours" -> 7200, "today" -> 86400)."""
    phrase = phrase.lower()
    if phrase == "today":
        return 86400
    if phrase == "this week":
        return 604800
    match = _TIME.fullmatch(phrase)
    if match is None:
        raise ValueError(f"not a time phrase: {phrase!r}")
    return int(match.group(1) or 1) * _UNIT_SECONDS[match.group(2)]


def _same_case(new: str, old: str) -> str:
    return new[0].upper() + new[1:] if old[:1].isupper() else new


def vary_time_range(ex: Example, pools: Pools, rng: random.Random) -> Example | None:
    query = parse(ex.output)
    matches = list(_TIME.finditer(ex.input["question"]))
    if query is None or len(matches) != 1 or query.get("time_range") != time_phrase_seconds(matches[0].group(0)):
        return None
    old = matches[0].group(0)
    choices = _TIME_BARE if old.lower() in _TIME_BARE else _TIME_WITH_ARTICLE
    options = [p for p in choices if time_phrase_seconds(p) != query["time_range"]]
    new = rng.choice(options)
    question = _splice(ex.input["question"], matches[0].span(), _same_case(new, old))
    return Example({**ex.input, "question": question},
                   dump(canonical({**query, "time_range": time_phrase_seconds(new)})))


# --- limits ---------------------------------------------------------------------------------------

_LIMIT = re.compile(r"\b(?:top|bottom|which|limit|first) (\d+)\b", re.IGNORECASE)
_LIMIT_CHOICES = (3, 5, 10, 15, 20, 25, 50, 100)


def vary_limit(ex: Example, pools: Pools, rng: random.Random) -> Example | None:
    query = parse(ex.output)
    matches = list(_LIMIT.finditer(ex.input["question"]))
    if query is None or len(matches) != 1 or query.get("limit") != int(matches[0].group(1)):
        return None
    n = rng.choice([c for c in _LIMIT_CHOICES if c != query["limit"]])
    question = _splice(ex.input["question"], matches[0].span(1), str(n))
    return Example({**ex.input, "question": question}, dump(canonical({**query, "limit": n})))


# --- filter operators -----------------------------------------------------------------------------

#: How people write a numeric comparison; the first phrase of each op is its symbol.
OPERATOR_PHRASES: dict[str, tuple[str, ...]] = {
    ">": ("> {v}", "is over {v}", "is above {v}", "is greater than {v}", "exceeds {v}"),
    ">=": (">= {v}", "is at least {v}", "is {v} or more"),
    "<": ("< {v}", "is under {v}", "is below {v}", "is less than {v}"),
    "<=": ("<= {v}", "is at most {v}", "is {v} or less"),
    "=": ("= {v}", "equals {v}"),
    "!=": ("!= {v}", "is not {v}", "isn't {v}"),
}


def _operator_spans(question: str, op: str, value: Any) -> list[tuple[int, int, str]]:
    spans = []
    for phrase in OPERATOR_PHRASES[op]:
        pattern = re.escape(phrase).replace(re.escape("{v}"), re.escape(str(value)))
        spans += [(m.start(), m.end(), phrase) for m in re.finditer(rf"(?<![\w<>=!]){pattern}(?![\w.])", question)]
    return spans


def vary_operator(ex: Example, pools: Pools, rng: random.Random) -> Example | None:
    query = parse(ex.output)
    if query is None:
        return None
    numeric = [f for f in list_of_dicts(query, "filters") if f.get("op") in OPERATOR_PHRASES
               and isinstance(f.get("value"), (int, float)) and not isinstance(f.get("value"), bool)]
    rng.shuffle(numeric)
    for f in numeric:
        spans = _operator_spans(ex.input["question"], f["op"], f["value"])
        # the value must be written once with this operator, and no other operator's phrase may claim it
        others = [s for op in OPERATOR_PHRASES if op != f["op"] for s in _operator_spans(ex.input["question"], op, f["value"])]
        if len(spans) != 1 or any(o[0] <= spans[0][0] < o[1] or spans[0][0] <= o[0] < spans[0][1] for o in others):
            continue
        start, end, phrase = spans[0]
        symbolic = phrase == OPERATOR_PHRASES[f["op"]][0]
        new_op = rng.choice([op for op in OPERATOR_PHRASES if op != f["op"]])
        words = OPERATOR_PHRASES[new_op][:1] if symbolic else OPERATOR_PHRASES[new_op][1:]
        question = _splice(ex.input["question"], (start, end), rng.choice(words).format(v=f["value"]))
        filters = [({**g, "op": new_op} if g is f else g) for g in list_of_dicts(query, "filters")]
        return Example({**ex.input, "question": question}, dump(canonical({**query, "filters": filters})))
    return None


# --- breakdowns -----------------------------------------------------------------------------------

_BREAKDOWN_LEAD = r"\b(?:by|per|grouped by|broken down by|split by) "


def vary_breakdowns(ex: Example, pools: Pools, rng: random.Random) -> Example | None:
    query = parse(ex.output)
    breakdowns = (query or {}).get("breakdowns") or []
    question = ex.input["question"]
    if query is None or not all(isinstance(b, str) for b in breakdowns):
        return None
    if len(breakdowns) == 1:
        (old,) = breakdowns
        match = re.search(_BREAKDOWN_LEAD + _COLUMN.format(re.escape(old)), question)
        pool = sorted(pools.columns(ex, "breakdown") - set(columns_used(query)) - _named(question, pools.columns(ex, "breakdown")))
        if match is None or not pool:
            return None
        new = rng.choice(pool)
        new_query = {**query, "breakdowns": [old, new]}
        return Example({**ex.input, "question": _splice(question, match.span(), f"{match.group(0)} and {new}")},
                       dump(canonical(new_query)))
    if len(breakdowns) == 2:
        first, second = breakdowns
        match = re.search(_BREAKDOWN_LEAD + _COLUMN.format(re.escape(first)) + " and " + _COLUMN.format(re.escape(second)),
                          question)
        if match is None:
            return None
        kept = match.group(0)[: -len(f" and {second}")]
        orders = [o for o in list_of_dicts(query, "orders") if o.get("op") is not None or o.get("column") != second]
        return Example({**ex.input, "question": _splice(question, match.span(), kept)},
                       dump(canonical({**query, "breakdowns": [first], "orders": orders})))
    return None


def _named(question: str, columns: set[str]) -> set[str]:
    return {c for c in columns if re.search(_COLUMN.format(re.escape(c)), question)}


# --- column substitution --------------------------------------------------------------------------

def _roles_of(query: dict[str, Any]) -> list[tuple[str, str]]:
    out = [(f"calc:{c.get('op')}", c["column"]) for c in list_of_dicts(query, "calculations")
           if isinstance(c.get("column"), str)]
    out += [(f"filter:{f.get('op')}", f["column"]) for f in list_of_dicts(query, "filters")
            if isinstance(f.get("column"), str) and "value" not in f]
    out += [("breakdown", b) for b in query.get("breakdowns") or [] if isinstance(b, str)]
    return out


def _replace_column(value: Any, old: str, new: str) -> Any:
    if isinstance(value, dict):
        return {k: (new if k == "column" and v == old else _replace_column(v, old, new)) for k, v in value.items()}
    if isinstance(value, list):
        return [new if v == old else _replace_column(v, old, new) for v in value]
    return value


def substitute_column(ex: Example, pools: Pools, rng: random.Random) -> Example | None:
    query = parse(ex.output)
    if query is None:
        return None
    question = ex.input["question"]
    candidates = [(role, col) for role, col in _roles_of(query) if re.search(_COLUMN.format(re.escape(col)), question)]
    if not candidates:
        return None
    role, old = rng.choice(candidates)
    pool = sorted(pools.columns(ex, role) - set(columns_used(query)) - _named(question, pools.columns(ex, role)))
    if not pool:
        return None
    new = rng.choice(pool)
    return Example({**ex.input, "question": re.sub(_COLUMN.format(re.escape(old)), new, question)},
                   dump(canonical(_replace_column(query, old, new))))


# --- composition from dimension tuples -------------------------------------------------------------

_PERCENTILES = {"P50": "p50", "P90": "p90", "P95": "p95", "P99": "p99"}
_SCENARIO_TIMES = {"incident": ("last 15 minutes", "last 30 minutes", "last hour"),
                   "daily_check": ("past day", "last 24 hours", "today"),
                   "weekly_review": ("past week", "last 7 days", "this week")}
_PERSONA_TEMPLATES = {
    "oncall_engineer": ("{calc} {bd} {filt} {time}", "{calc} {filt} {bd} {time}"),
    "product_manager": ("What was the {calc} {bd} {filt} {time}?", "Can you chart {calc} {bd} {filt} {time}?"),
    "analyst": ("Show me {calc} {bd} {filt} {time}", "Give me {calc} {bd} {filt} {time}"),
}
_SYMBOLS = ("=", "!=", ">", ">=", "<", "<=")


def compose_dimensions(ex: Example, pools: Pools, rng: random.Random) -> Example | None:
    """A new question over the seed's dataset from a random (feature, scenario, persona) tuple."""
    feature, scenario, persona = (rng.choice(DIMENSIONS[d]) for d in ("feature", "scenario", "persona"))
    measures = sorted(pools.measures(ex))
    groups = sorted(pools.columns(ex, "breakdown"))
    distinct = sorted(pools.columns(ex, "calc:COUNT_DISTINCT"))
    filters = pools.filters(ex)
    query: dict[str, Any] = {}
    bd = ""
    if feature in ("latency_percentile", "average_by_group", "top_groups") and not measures:
        return None
    if feature == "latency_percentile":
        op = rng.choice(sorted(_PERCENTILES))
        column = rng.choice(measures)
        query["calculations"], calc = [{"op": op, "column": column}], f"{_PERCENTILES[op]} {column}"
    elif feature == "distinct_count":
        if not distinct:
            return None
        column = rng.choice(distinct)
        query["calculations"], calc = [{"op": "COUNT_DISTINCT", "column": column}], f"count of distinct {column}"
    elif feature == "error_count":
        query["calculations"], calc = [{"op": "COUNT"}], "count"
    else:
        column = rng.choice(measures)
        query["calculations"], calc = [{"op": "AVG", "column": column}], f"average {column}"
    if feature in ("average_by_group", "top_groups") or (feature != "top_groups" and groups and rng.random() < 0.4):
        if not groups:
            return None
        group = rng.choice(groups)
        query["breakdowns"], bd = [group], f"by {group}"
    filt = ""
    if feature == "error_count" or scenario == "incident":
        if not filters:
            return None
        f = rng.choice(filters)
        query["filters"], filt = [f], "where " + _filter_text(f)
    if feature == "top_groups":
        n = rng.choice((5, 10))
        query["orders"], query["limit"] = [{**query["calculations"][0], "order": "descending"}], n
        calc = f"top {n} {query['breakdowns'][0]} by {calc}"
        bd = ""
    time = rng.choice(_SCENARIO_TIMES[scenario])
    query["time_range"] = time_phrase_seconds(time)
    if time not in _TIME_BARE:
        time = rng.choice(("in the ", "over the ", "")) + time
    text = rng.choice(_PERSONA_TEMPLATES[persona]).format(calc=calc, bd=bd, filt=filt, time=time)
    text = re.sub(r"\s+", " ", text).strip().replace(" ?", "?")
    return Example({**ex.input, "question": text[0].upper() + text[1:]}, dump(canonical(query)))


def _filter_text(f: dict[str, Any]) -> str:
    value = f.get("value")
    if "value" not in f:
        return f"{f['column']} {'exists' if f['op'] == 'exists' else 'does not exist'}"
    if isinstance(value, list):
        return f"{f['column']} is one of " + ", ".join(json.dumps(v) if isinstance(v, str) else str(v) for v in value)
    shown = "true" if value is True else "false" if value is False else f"'{value}'" if isinstance(value, str) else str(value)
    return f"{f['column']} {f['op'].replace('-', ' ')} {shown}"


# --- pools and the driver -------------------------------------------------------------------------

@dataclass
class Pools:
    """What the seeds of each dataset show: columns per role, filters that passed the assertions."""

    roles: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    dataset_filters: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def from_examples(cls, examples: list[Example]) -> Pools:
        pools = cls()
        for ex in examples:
            query = parse(ex.output)
            if query is None:
                continue
            dataset = ex.input.get("dataset", "")
            for role, col in _roles_of(query):
                pools.roles.setdefault((dataset, role), set()).add(col)
            known = pools.dataset_filters.setdefault(dataset, [])
            for f in list_of_dicts(query, "filters"):
                if f not in known and (f.get("op") in _SYMBOLS or "value" not in f or isinstance(f.get("value"), list)):
                    known.append(f)
        return pools

    def columns(self, ex: Example, role: str) -> set[str]:
        """Columns seen in ``role`` in the example's dataset that its column list holds."""
        return self.roles.get((ex.input.get("dataset", ""), role), set()) & set(ex.input["columns"])

    def measures(self, ex: Example) -> set[str]:
        ops = ("P50", "P90", "P95", "P99", "AVG", "MAX", "MIN", "SUM")
        return set().union(*(self.columns(ex, f"calc:{op}") for op in ops))

    def filters(self, ex: Example) -> list[dict[str, Any]]:
        return [f for f in self.dataset_filters.get(ex.input.get("dataset", ""), []) if f.get("column") in ex.input["columns"]]


def _splice(text: str, span: tuple[int, int], new: str) -> str:
    return text[: span[0]] + new + text[span[1]:]


Generator = Callable[[Example, Pools, random.Random], "Example | None"]

GENERATORS: dict[str, Generator] = {
    "compose_dimensions": compose_dimensions,
    "substitute_column": substitute_column,
    "vary_breakdowns": vary_breakdowns,
    "vary_limit": vary_limit,
    "vary_operator": vary_operator,
    "vary_time_range": vary_time_range,
}


def _key(example: Example) -> tuple[str, str | None]:
    return json.dumps(example.input, sort_keys=True), normalise(example.output)


def _passes(example: Example) -> bool:
    return all(r.passed is not False for r in check(example.input, example.output))


def synthesize(examples: list[Example], n: int, rng: random.Random) -> list[SyntheticExample]:
    """Up to ``n`` examples from the offline generators, each seed meeting every generator in turn.

    Only outputs that pass every assertion are returned; duplicates of each other or of the
    seed examples are not.
    """
    return rotate(examples, n, rng, GENERATORS, Pools.from_examples(examples), _passes, _key)
