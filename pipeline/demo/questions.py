"""Sample a gold nl2query query for a dataset and phrase it as a natural-language question.

The query and its question are built together, part by part, so every literal in the query
(numbers, string values, durations, "top N") appears in the question. Columns are named
verbatim about 70% of the time and otherwise by a natural alias ("latency" for duration_ms).

A few questions use the rest of Honeycomb's query spec: an absolute window in UTC ("between
2026-11-10 14:00 and 2026-11-10 16:00 UTC", start_time and end_time as UNIX seconds; "in the 6
hours before ...", time_range and end_time) and a bucket size ("in 5 minute buckets",
granularity in seconds, within the window's /1000 .. /10).
"""

from __future__ import annotations

import random
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from pipeline.demo.datasets import BOOL, ID, NUMERIC, STRING, Column, Dataset
from pipeline.engine.tasks import nl2query
from pipeline.engine.tasks.nl2query.checks import DEFAULT_TIME_RANGE

VERBATIM_SHARE = 0.7

#: (phrase, seconds, takes an article: "in the last 2 hours" vs "this week")
TIME_PHRASES: tuple[tuple[str, int, bool], ...] = (
    ("last 15 minutes", 900, True), ("last 30 minutes", 1800, True), ("past 30 minutes", 1800, True),
    ("last hour", 3600, True), ("past hour", 3600, True), ("last 2 hours", 7200, True),
    ("last 3 hours", 10800, True), ("last 4 hours", 14400, True), ("last 6 hours", 21600, True),
    ("last 12 hours", 43200, True), ("last 24 hours", 86400, True), ("past day", 86400, True),
    ("last 2 days", 172800, True), ("last 7 days", 604800, True), ("past week", 604800, True),
    ("this week", 604800, False), ("today", 86400, False),
)

_CALC_OPS = ("COUNT", "CONCURRENCY", "AVG", "SUM", "MAX", "MIN", "P50", "P90", "P95", "P99",
             "COUNT_DISTINCT", "HEATMAP")
_CALC_WEIGHTS = (24, 2, 12, 7, 8, 3, 6, 4, 12, 8, 9, 5)

_CALC_WORDS: dict[str, tuple[str, ...]] = {
    "AVG": ("average {c}", "avg {c}", "mean {c}"),
    "SUM": ("total {c}", "sum of {c}"),
    "MAX": ("max {c}", "maximum {c}", "peak {c}"),
    "MIN": ("min {c}", "minimum {c}"),
    "P50": ("median {c}", "p50 {c}", "p50 of {c}"),
    "P90": ("p90 {c}", "90th percentile {c}"),
    "P95": ("p95 {c}", "P95 {c}", "95th percentile of {c}"),
    "P99": ("p99 {c}", "P99 {c}", "99th percentile {c}"),
    "COUNT_DISTINCT": ("distinct {c} count", "number of unique {c}", "count of distinct {c}"),
    "HEATMAP": ("heatmap of {c}", "{c} heatmap", "distribution of {c}"),
}

_NUM_OPS = {
    ">": ("> {v}", "is over {v}", "is above {v}", "is greater than {v}", "exceeds {v}"),
    ">=": (">= {v}", "is at least {v}", "is {v} or more"),
    "<": ("< {v}", "is under {v}", "is below {v}", "is less than {v}"),
    "<=": ("<= {v}", "is at most {v}", "is {v} or less"),
    "=": ("= {v}", "is {v}", "equals {v}"),
    "!=": ("!= {v}", "is not {v}", "isn't {v}"),
}
_LABEL_OPS = {
    "=": ("is {v}", "= {v}", "equals {v}"),
    "!=": ("is not {v}", "!= {v}", "isn't {v}"),
    "in": ("is {a} or {b}", "in ({a}, {b})", "is one of {a}, {b}"),
}
_TEXT_OPS = {
    "contains": ("contains {v}", "includes {v}"),
    "starts-with": ("starts with {v}", "begins with {v}"),
    "does-not-contain": ("does not contain {v}", "doesn't contain {v}"),
}
_PRESENCE_OPS = {
    "exists": ("is set", "exists", "is present"),
    "does-not-exist": ("is missing", "does not exist", "is not set"),
}
#: Share of timed questions that ask for an absolute UTC window, and for a bucket size.
ABSOLUTE_WINDOW_SHARE = 0.03
GRANULARITY_SHARE = 0.06
#: Absolute windows fall on these days (the demo traffic's month), starting on the hour.
WINDOW_FIRST_DAY = datetime(2026, 10, 16, tzinfo=timezone.utc)
WINDOW_DAYS = 30
#: (seconds, how a person says it) for the bucket sizes a question may ask for.
GRANULARITIES: tuple[tuple[int, str], ...] = (
    (60, "1 minute"), (300, "5 minute"), (900, "15 minute"), (3600, "1 hour"), (86400, "1 day"),
)
_GRANULARITY_WORDS = ("in {g} buckets", "at {g} granularity", "with {g} resolution")

_BREAKDOWN_WORDS = ("by {c}", "by {c}", "per {c}", "grouped by {c}", "broken down by {c}", "split by {c}")


def mention(column: Column, rng: random.Random, plural: bool = False) -> str:
    """How a person names ``column``: verbatim about 70% of the time, else an alias.

    Identifier columns list a singular then a plural alias ("user", "users"); ``plural``
    picks which ("number of unique users" but "where user is 'u_1'").
    """
    aliases = column.aliases
    if column.kind == ID and len(aliases) > 1:
        aliases = aliases[-1:] if plural else aliases[:1]
    if aliases and rng.random() >= VERBATIM_SHARE:
        return rng.choice(aliases)
    return column.name


def _literal(value: Any, rng: random.Random) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, str):
        return str(value)
    r = rng.random()
    if r < 0.4 or " " in value:
        return f"'{value}'"
    if r < 0.6:
        return f'"{value}"'
    return value


def _number(column: Column, value: Any, rng: random.Random) -> str:
    text = str(value)
    if column.name.endswith("_ms") and rng.random() < 0.3:
        text += rng.choice(("ms", " ms"))
    return text


def _calc_text(op: str, column: Column | None, dataset: Dataset, rng: random.Random) -> str:
    if op == "COUNT":
        return rng.choice(("count", f"number of {dataset.noun}", f"{dataset.noun} count", f"count of {dataset.noun}"))
    if op == "CONCURRENCY":
        return rng.choice(("concurrency", f"concurrent {dataset.noun}"))
    assert column is not None
    return rng.choice(_CALC_WORDS[op]).format(c=mention(column, rng, plural=op == "COUNT_DISTINCT"))


def _sample_calcs(dataset: Dataset, rng: random.Random, n: int) -> list[tuple[str, Column | None]]:
    measures = [c for c in dataset.columns if c.is_measure]
    distinctable = [c for c in dataset.columns if c.kind in (ID, STRING)]
    calcs: list[tuple[str, Column | None]] = []
    while len(calcs) < n:
        op = rng.choices(_CALC_OPS, _CALC_WEIGHTS)[0]
        if op in nl2query.NO_COLUMN_OPS:
            col = None
        elif op == "COUNT_DISTINCT":
            col = rng.choice(distinctable)
        else:
            col = rng.choice(measures)
        key = (op, col.name if col else None)
        if key not in [(o, c.name if c else None) for o, c in calcs]:
            calcs.append((op, col))
    return calcs


def _sample_filter(column: Column, rng: random.Random) -> tuple[dict[str, Any], str]:
    """One filter on ``column`` and its phrase ("duration_ms > 500")."""
    name = mention(column, rng)
    if rng.random() < 0.06:
        op = rng.choice(tuple(_PRESENCE_OPS))
        return {"column": column.name, "op": op}, f"{name} {rng.choice(_PRESENCE_OPS[op])}"
    if column.kind == NUMERIC:
        op = rng.choices(tuple(_NUM_OPS), (30, 15, 15, 8, 20 if column.groupable else 4, 8))[0]
        value = rng.choice(column.values)
        return ({"column": column.name, "op": op, "value": value},
                f"{name} {rng.choice(_NUM_OPS[op]).format(v=_number(column, value, rng))}")
    if column.kind == BOOL:
        value = rng.random() < 0.75
        word = rng.choice(("is {v}", "= {v}")).format(v=_literal(value, rng))
        return {"column": column.name, "op": "=", "value": value}, f"{name} {word}"
    if column.kind == ID:
        if rng.random() < 0.5:
            op = rng.choice(tuple(_PRESENCE_OPS))
            return {"column": column.name, "op": op}, f"{name} {rng.choice(_PRESENCE_OPS[op])}"
        value = rng.choice(column.values)
        return ({"column": column.name, "op": "=", "value": value},
                f"{name} {rng.choice(_LABEL_OPS['=']).format(v=_literal(value, rng))}")
    if column.groupable:
        op = rng.choices(("=", "!=", "in"), (60, 20, 20))[0]
        if op == "in" and len(column.values) >= 2:
            a, b = rng.sample(column.values, 2)
            word = rng.choice(_LABEL_OPS["in"]).format(a=_literal(a, rng), b=_literal(b, rng))
            return {"column": column.name, "op": "in", "value": [a, b]}, f"{name} {word}"
        op = "=" if op == "in" else op
        value = rng.choice(column.values)
        return ({"column": column.name, "op": op, "value": value},
                f"{name} {rng.choice(_LABEL_OPS[op]).format(v=_literal(value, rng))}")
    op = rng.choices(tuple(_TEXT_OPS), (55, 35, 10))[0]
    value = rng.choice(column.values)
    return ({"column": column.name, "op": op, "value": value},
            f"{name} {rng.choice(_TEXT_OPS[op]).format(v=_literal(value, rng))}")


def _time(rng: random.Random) -> tuple[int, str]:
    phrase, seconds, article = rng.choice(TIME_PHRASES)
    if article:
        phrase = rng.choice(("in the ", "over the ", "for the ", "in the ", "")) + phrase
    return seconds, phrase


def unix_seconds(ts: datetime) -> int:
    """``ts`` as a UNIX timestamp in whole seconds."""
    return int(ts.timestamp())


def _utc(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%d %H:%M")


def _absolute_window(rng: random.Random) -> tuple[dict[str, int], str]:
    """Time keys for an absolute UTC window and its phrase: start and end, a whole day, or the
    hours before an end (time_range with end_time)."""
    day = WINDOW_FIRST_DAY + timedelta(days=rng.randrange(WINDOW_DAYS))
    r = rng.random()
    if r < 0.2:
        return ({"start_time": unix_seconds(day), "end_time": unix_seconds(day + timedelta(days=1))},
                f"on {day:%Y-%m-%d} UTC")
    start = day + timedelta(hours=rng.randrange(0, 21))
    hours = rng.choice((1, 2, 3, 4, 6))
    end = start + timedelta(hours=hours)
    if r < 0.7:
        return ({"start_time": unix_seconds(start), "end_time": unix_seconds(end)},
                rng.choice(("between {a} and {b} UTC", "from {a} to {b} UTC")).format(a=_utc(start), b=_utc(end)))
    span = f"{hours} hours" if hours > 1 else "hour"
    return ({"time_range": hours * 3600, "end_time": unix_seconds(end)},
            f"in the {span} before {_utc(end)} UTC")


def window_seconds(query: dict[str, Any]) -> int:
    """How many seconds a gold query covers: time_range, else end - start, else the two-hour default."""
    if "time_range" in query:
        return query["time_range"]
    if "start_time" in query and "end_time" in query:
        return query["end_time"] - query["start_time"]
    return DEFAULT_TIME_RANGE


def _granularity(window: int, rng: random.Random) -> tuple[int, str] | None:
    """A bucket size valid for a ``window``-second query and its phrase, or None when none fits."""
    options = [(g, words) for g, words in GRANULARITIES if window / 1000 <= g <= window / 10]
    if not options:
        return None
    seconds, words = rng.choice(options)
    return seconds, rng.choice(_GRANULARITY_WORDS).format(g=words)


def _having_value(op: str, column: Column | None) -> Any:
    if op in ("COUNT", "CONCURRENCY", "COUNT_DISTINCT"):
        return 100
    return column.values[len(column.values) // 2] if column and column.values else 100


def _clean(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r" ([?,])", r"\1", text).replace(",?", "?")
    return text[0].upper() + text[1:]


def sample_query(dataset: Dataset, rng: random.Random) -> tuple[dict[str, Any], str]:
    """A gold query (canonical dict) over ``dataset`` and a question that asks for it."""
    calcs = _sample_calcs(dataset, rng, rng.choices((1, 2), (80, 20))[0])
    query: dict[str, Any] = {"calculations": [
        {"op": op, **({"column": col.name} if col else {})} for op, col in calcs]}
    calc_texts = [_calc_text(op, col, dataset, rng) for op, col in calcs]
    calc_text = " and ".join(calc_texts)

    used = {col.name for _, col in calcs if col}
    n_filters = rng.choices((0, 1, 2), (40, 42, 18))[0]
    filter_cols = rng.sample([c for c in dataset.columns if c.name not in used], n_filters)
    filters, phrases = [], []
    for col in filter_cols:
        f, phrase = _sample_filter(col, rng)
        filters.append(f)
        phrases.append(phrase)
    filter_text = ""
    if filters:
        query["filters"] = filters
        joiner = " and "
        if len(filters) == 2 and rng.random() < 0.15:
            query["filter_combination"] = "OR"
            joiner = " or "
        filter_text = rng.choice(("where ", "where ", "where ", "when ")) + joiner.join(phrases)

    groupable = [c for c in dataset.columns if c.groupable and c.name not in {f["column"] for f in filters}]
    n_bd = rng.choices((0, 1, 2), (35, 50, 15))[0]
    bds = rng.sample(groupable, min(n_bd, len(groupable)))
    bd_names = [mention(c, rng) for c in bds]
    bd_text = ""
    if bds:
        query["breakdowns"] = [c.name for c in bds]
        bd_text = rng.choice(_BREAKDOWN_WORDS).format(c=" and ".join(bd_names))

    time_text = ""
    if rng.random() < (0.8 if filters or bds else 0.95):
        if rng.random() < ABSOLUTE_WINDOW_SHARE:
            window, time_text = _absolute_window(rng)
            query.update(window)
        else:
            query["time_range"], time_text = _time(rng)
        bucket = _granularity(window_seconds(query), rng) if rng.random() < GRANULARITY_SHARE else None
        if bucket is not None:
            query["granularity"] = bucket[0]
            time_text += " " + bucket[1]

    op0, col0 = calcs[0]
    calc0 = {"op": op0, **({"column": col0.name} if col0 else {})}
    first_calc = calc_texts[0]
    extra, top = "", None
    if bds and op0 != "HEATMAP":
        r = rng.random()
        if r < 0.36 and any(c.kind == BOOL for c in bds):
            r = 0.36 + (r % 0.12)  # no "top 10 error values": order without a limit instead
        if r < 0.30:
            top = ("descending", rng.choice((5, 10, 10, 10, 20, 25)))
        elif r < 0.36:
            top = ("ascending", rng.choice((3, 5, 10)))
        elif r < 0.44:
            query["orders"] = [{**calc0, "order": "descending"}]
            extra = rng.choice((", sorted by {c} descending", ", highest {c} first", ", ordered by {c} desc")).format(c=first_calc)
        elif r < 0.48:
            query["orders"] = [{"column": bds[0].name, "order": "ascending"}]
            extra = f", sorted by {bd_names[0]}"
        if rng.random() < 0.08:
            value = _having_value(op0, col0)
            hop = rng.choice((">", ">=", "<"))
            query["havings"] = [{"calculate_op": op0, **({"column": col0.name} if col0 else {}),
                                 "op": hop, "value": value}]
            word = {">": "is over", ">=": "is at least", "<": "is below"}[hop]
            extra += rng.choice((f", only where {first_calc} {word} {value}",
                                 f", keeping groups where {first_calc} {word} {value}"))
    if top is not None:
        query["orders"] = [{**calc0, "order": top[0]}]
        query["limit"] = top[1]
    elif "limit" not in query and rng.random() < 0.03:
        query["limit"] = rng.choice((20, 50, 100))
        extra += rng.choice((f", limit {query['limit']}", f", first {query['limit']} rows"))

    if top is not None:
        bd_col = " and ".join(bd_names)
        word = "top" if top[0] == "descending" else "bottom"
        high = "highest" if top[0] == "descending" else "lowest"
        template = rng.choice((
            f"{word} {top[1]} {bd_col} by {first_calc} {{filt}} {{time}}",
            f"Which {top[1]} {bd_col} values have the {high} {first_calc} {{time}} {{filt}}?",
            f"show the {word} {top[1]} {bd_col} by {first_calc} {{time}} {{filt}}",
        ))
        if len(calcs) > 1:
            template = template.rstrip("?") + f", with {calc_texts[1]}" + ("?" if template.endswith("?") else "")
        question = template.format(filt=filter_text, time=time_text) + extra
    elif op0 == "COUNT" and len(calcs) == 1 and rng.random() < 0.5:
        template = rng.choice(("How many {noun} {filt} {bd} {time}?", "Count {noun} {filt} {bd} {time}",
                               "Number of {noun} {bd} {filt} {time}"))
        question = template.format(noun=dataset.noun, filt=filter_text, bd=bd_text, time=time_text)
        question = question.rstrip("?") + extra + ("?" if question.endswith("?") else "")
    else:
        template = rng.choice((
            "{calc} {bd} {filt} {time}{extra}",
            "What is the {calc} {bd} {filt} {time}{extra}?",
            "What's the {calc} {filt} {bd} {time}{extra}?",
            "Show me {calc} {bd} {filt} {time}{extra}",
            "Show {calc} {bd} {time} {filt}{extra}",
            "Can you chart {calc} {bd} {filt} {time}{extra}?",
            "Graph {calc} {bd} {filt} {time}{extra}",
            "{Time}, what was the {calc} {bd} {filt}{extra}?",
            "I need the {calc} {bd} {filt} {time}{extra}",
            "Give me {calc} {bd} {filt} {time}{extra}",
        ))
        if "{Time}" in template and not time_text:
            template = "What was the {calc} {bd} {filt}{extra}?"
        question = template.format(calc=calc_text, bd=bd_text, filt=filter_text, time=time_text,
                                   Time=time_text, extra=extra)
    gold = nl2query.canonical(query)
    return gold, _clean(question)


def sample_example(dataset: Dataset, rng: random.Random) -> tuple[dict[str, Any], str]:
    """An nl2query input ({question, columns, dataset}) and its gold output (canonical JSON)."""
    gold, question = sample_query(dataset, rng)
    example_input = {"question": question, "columns": [c for c in dataset.listed_names if c],
                     "dataset": dataset.name}
    output = nl2query.dump(gold)
    failed = [r for r in nl2query.check(example_input, output) if r.passed is not True]
    assert not failed, f"gold query fails its own checks: {failed} for {output}"
    return example_input, output
