"""The simulated production assistant: a gold query in, the raw output string it would log out.

Most outputs are the gold query written the way a chat model writes JSON; a share carries an
injected failure. Modes named after an nl2query assertion fail exactly that assertion (and
the others pass); the semantic modes (``wrong_breakdown``, ``wrong_time_range``,
``wrong_calculation``, ``missing_filter``) pass every assertion but answer the wrong question;
``fenced`` wraps valid JSON in a Markdown code fence, which the parser accepts. In any mode a
plain COUNT is sometimes written without calculations (the spec's default is COUNT).
"""

from __future__ import annotations

import copy
import json
import random
from datetime import timedelta
from typing import Any

from pipeline.demo.datasets import DATASETS, Dataset
from pipeline.demo.questions import WINDOW_DAYS, WINDOW_FIRST_DAY, unix_seconds, window_seconds
from pipeline.engine.tasks import nl2query
from pipeline.engine.tasks.nl2query.checks import LIST_VALUE_FILTER_OPS

CORRECT, FENCED = "correct", "fenced"
SEMANTIC_MODES = ("wrong_breakdown", "wrong_time_range", "wrong_calculation", "missing_filter")

#: Share of traffic per injected mode (the rest is ``correct``). unknown_column depends on
#: whether the base model has seen the dataset: see ``mode_rates``.
MODE_RATES: dict[str, float] = {
    "wrong_breakdown": 0.02, "wrong_time_range": 0.02, "wrong_calculation": 0.02, "missing_filter": 0.01,
    FENCED: 0.03,
    "invalid_json": 0.025,
    "unknown_calculation_op": 0.015,
    "unknown_filter_op": 0.015,
    "count_with_column": 0.015,
    "missing_column": 0.015,
    "order_not_in_calculations": 0.015,
    "time_range_not_integer": 0.015,
    "limit_not_integer": 0.01,
    "having_not_in_calculations": 0.005,
    "invalid_shape": 0.005,
    "invalid_filter_value": 0.01,
    "invalid_having": 0.005,
    "heatmap_not_allowed": 0.005,
    "invalid_time_window": 0.005,
    "invalid_granularity": 0.005,
}
UNKNOWN_COLUMN_RATE = {"base": 0.02, "team": 0.095}
#: Share of plain-COUNT outputs written without calculations (COUNT is what none means).
IMPLIED_COUNT_SHARE = 0.25

_GENERIC_COLUMNS = ("latency", "status", "endpoint", "service", "duration", "status_code", "timestamp",
                    "user_id", "error_message", "response_time", "host", "env", "name", "type")
_BAD_CALC_OPS = {
    "P50": ("MEDIAN", "PERCENTILE"), "AVG": ("AVERAGE", "MEAN"), "P95": ("P95_LATENCY", "PERCENTILE"),
    "P99": ("P99_LATENCY", "PERCENTILE_99"), "P90": ("PERCENTILE", "P90_LATENCY"), "SUM": ("TOTAL",),
    "MAX": ("MAXIMUM",), "MIN": ("MINIMUM",), "COUNT": ("COUNT(*)", "TOTAL"),
    "COUNT_DISTINCT": ("DISTINCT_COUNT", "UNIQUE"), "HEATMAP": ("HISTOGRAM",), "CONCURRENCY": ("CONCURRENT",),
}
_BAD_FILTER_OPS = {
    "=": ("==", "equals", "eq"), "!=": ("<>", "not_equals"), ">": ("gt", "greater_than"), "<": ("lt",),
    ">=": ("gte", "=>"), "<=": ("lte", "=<"), "contains": ("like", "CONTAINS"),
    "starts-with": ("startswith", "begins-with"), "in": ("IN", "one-of"), "exists": ("is-set", "not-null"),
    "does-not-exist": ("is-null",), "does-not-contain": ("not-contains",),
}
_SIBLING_OPS = {
    "P95": ("P99", "P90", "AVG"), "P99": ("P95", "MAX"), "P90": ("P95", "P50"), "P50": ("AVG", "P90"),
    "AVG": ("P50", "SUM", "MAX"), "SUM": ("AVG", "MAX"), "MAX": ("P99", "AVG"), "MIN": ("AVG", "P50"),
    "HEATMAP": ("P95", "AVG"), "COUNT": ("CONCURRENCY",), "CONCURRENCY": ("COUNT",),
    "COUNT_DISTINCT": ("COUNT",),
}
_NUMBER_WORDS = {3: "three", 5: "five", 10: "ten", 20: "twenty", 25: "twenty-five", 50: "fifty", 100: "a hundred"}
_PROSE_BEFORE = ("Here is the query:\n", "Sure! Here's the JSON query:\n\n", "The query you need is:\n",
                 "Based on the columns provided, the query is:\n")
_PROSE_AFTER = ("\n\nThis query groups the results as requested.", "\n\nLet me know if you want a different time range.",
                "\n\nNote: adjust the time_range if needed.")


def mode_rates(team_only: bool) -> dict[str, float]:
    """Injection probability per mode for traffic on a team-only or a base dataset."""
    return {**MODE_RATES, "unknown_column": UNKNOWN_COLUMN_RATE["team" if team_only else "base"]}


def sample_mode(team_only: bool, rng: random.Random) -> str:
    """The mode the assistant will answer in for one request: ``correct`` or an injected one."""
    r = rng.random()
    for mode, rate in mode_rates(team_only).items():
        if r < rate:
            return mode
        r -= rate
    return CORRECT


def applicable(mode: str, gold: dict[str, Any]) -> bool:
    """Whether ``mode`` can be injected into ``gold`` (e.g. missing_filter needs a filter)."""
    calcs = gold["calculations"]
    return {
        "missing_filter": bool(gold.get("filters")),
        "unknown_filter_op": bool(gold.get("filters")),
        "unknown_column": bool(nl2query.columns_used(gold)),
        "count_with_column": any(c["op"] in ("COUNT", "COUNT_DISTINCT") for c in calcs),
        "missing_column": any("column" in c for c in calcs),
        "order_not_in_calculations": bool(gold.get("orders")),
        "time_range_not_integer": "time_range" in gold,
        "limit_not_integer": "limit" in gold,
        "having_not_in_calculations": bool(gold.get("havings") or gold.get("breakdowns")),
        "invalid_filter_value": bool(gold.get("filters")),
        "invalid_having": bool(gold.get("havings") or gold.get("breakdowns")),
        "heatmap_not_allowed": any(c["op"] == "HEATMAP" for c in calcs),
        "invalid_time_window": "time_range" in gold or "start_time" in gold,
        "wrong_breakdown": True,
    }.get(mode, True)


def _rename_calc(query: dict[str, Any], old: dict[str, Any], new: dict[str, Any]) -> None:
    """Replace calculation ``old`` by ``new`` everywhere it is referred to (orders, havings)."""
    key = (old["op"], old.get("column"))
    query["calculations"] = [new if (c["op"], c.get("column")) == key else c for c in query["calculations"]]
    for order in query.get("orders", []):
        if "op" in order and (order.get("op"), order.get("column")) == key:
            direction = order.get("order", "ascending")
            order.clear()
            order.update({"op": new["op"], **({"column": new["column"]} if "column" in new else {}),
                          "order": direction})
    for having in query.get("havings", []):
        if (having.get("calculate_op"), having.get("column")) == key:
            having["calculate_op"] = new["op"]
            having.pop("column", None)
            if "column" in new:
                having["column"] = new["column"]


def _retarget(query: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """The query with every use of column ``old`` replaced by ``new``."""
    text = json.dumps(query)
    replaced = json.loads(text.replace(f'"column": {json.dumps(old)}', f'"column": {json.dumps(new)}'))
    replaced["breakdowns"] = [new if b == old else b for b in replaced.get("breakdowns", [])] or None
    if replaced["breakdowns"] is None:
        del replaced["breakdowns"]
    return replaced


def _hallucinated_column(old: str, dataset: Dataset, rng: random.Random) -> str:
    known = set(dataset.listed_names)
    r = rng.random()
    if r < 0.4:
        pool = [a.replace(" ", "_") for a in dataset.column(old).aliases]
    elif r < 0.7:
        pool = sorted({c for d in DATASETS if d.name != dataset.name for c in d.column_names})
    else:
        pool = list(_GENERIC_COLUMNS)
    pool = [c for c in pool if c not in known] or [c for c in _GENERIC_COLUMNS if c not in known]
    return rng.choice(pool)


def _semantic(mode: str, q: dict[str, Any], dataset: Dataset, rng: random.Random) -> None:
    if mode == "wrong_breakdown":
        used = set(q.get("breakdowns", [])) | {f["column"] for f in q.get("filters", [])}
        pool = [c.name for c in dataset.columns if c.groupable and c.name not in used]
        if not pool:
            raise ValueError("no other column to group by")
        new = rng.choice(pool)
        if q.get("breakdowns"):
            old = q["breakdowns"][0]
            q["breakdowns"][0] = new
            for order in q.get("orders", []):
                if "op" not in order and order.get("column") == old:
                    order["column"] = new
        else:
            q["breakdowns"] = [new]
    elif mode == "wrong_time_range":
        if "start_time" in q and "end_time" in q:  # the right length on the wrong day or hour
            shift = rng.choice((-86400, 86400, -3600, 3600))
            q["start_time"] += shift
            q["end_time"] += shift
            return
        current = q.get("time_range")
        choices = [60, 900, 3600, 7200, 86400, 604800, 2592000]
        if current:
            choices += [current * 60, max(60, current // 60), current * 24]
        granularity = q.get("granularity")
        options = [c for c in choices if c != current
                   and (granularity is None or c / 1000 <= granularity <= c / 10)]
        if not options:
            raise ValueError("no other time range fits the granularity")
        q["time_range"] = rng.choice(options)
    elif mode == "wrong_calculation":
        calcs = q["calculations"]
        keys = {(c["op"], c.get("column")) for c in calcs}
        for calc in rng.sample(calcs, len(calcs)):
            options = [op for op in _SIBLING_OPS[calc["op"]]
                       if (op, None if op in nl2query.NO_COLUMN_OPS else calc.get("column")) not in keys]
            if options:
                op = rng.choice(options)
                new = {"op": op, **({} if op in nl2query.NO_COLUMN_OPS else {"column": calc["column"]})}
                _rename_calc(q, calc, new)
                return
        raise ValueError("no sibling calculation")
    elif mode == "missing_filter":
        q["filters"].pop(rng.randrange(len(q["filters"])))
        if len(q["filters"]) < 2:
            q.pop("filter_combination", None)


def _assertion_failure(mode: str, q: dict[str, Any], dataset: Dataset, rng: random.Random) -> None:
    calcs = q["calculations"]
    if mode == "unknown_column":
        used = list(dict.fromkeys(nl2query.columns_used(q)))
        old = rng.choice(used)
        q.update(_retarget(q, old, _hallucinated_column(old, dataset, rng)))
    elif mode == "unknown_calculation_op":
        calc = rng.choice(calcs)
        new_op = rng.choice(_BAD_CALC_OPS[calc["op"]])
        _rename_calc(q, calc, {**calc, "op": new_op})
    elif mode == "unknown_filter_op":
        f = rng.choice(q["filters"])
        f["op"] = rng.choice(_BAD_FILTER_OPS[f["op"]])
    elif mode == "count_with_column":
        calc = next(c for c in calcs if c["op"] in ("COUNT", "COUNT_DISTINCT"))
        if calc["op"] == "COUNT_DISTINCT":
            new = {"op": "COUNT", "column": calc["column"]}
        else:
            used = nl2query.columns_used(q)
            ids = [c.name for c in dataset.columns if c.kind == "id"]
            new = {"op": "COUNT", "column": rng.choice(used or ids or dataset.column_names)}
        if (new["op"], new["column"]) in {(c["op"], c.get("column")) for c in calcs}:
            raise ValueError("duplicate calculation")
        _rename_calc(q, calc, new)
    elif mode == "missing_column":
        calc = rng.choice([c for c in calcs if "column" in c])
        if calc["op"] in {c["op"] for c in calcs if c is not calc}:
            raise ValueError("two calculations with the same op")
        _rename_calc(q, calc, {"op": calc["op"]})
    elif mode == "order_not_in_calculations":
        order = q["orders"][0]
        keys = {(c["op"], c.get("column")) for c in calcs}
        if "op" in order and order.get("column"):
            options = [op for op in _SIBLING_OPS[order["op"]] if op not in nl2query.NO_COLUMN_OPS
                       and (op, order["column"]) not in keys]
            order["op"] = rng.choice(options) if options else "P99"
        elif "COUNT" not in {c["op"] for c in calcs}:
            order.clear()
            order.update({"op": "COUNT", "order": "descending"})
        else:
            measure = next(c.name for c in dataset.columns if c.is_measure)
            order.clear()
            order.update({"op": "P95", "column": measure, "order": "descending"})
        if (order.get("op"), order.get("column")) in keys:
            raise ValueError("order still refers to a calculation")
    elif mode == "having_not_in_calculations":
        keys = {(c["op"], c.get("column")) for c in calcs}
        if q.get("havings"):
            having = q["havings"][0]
            options = [op for op in _SIBLING_OPS[having["calculate_op"]]
                       if (op, None if op in nl2query.NO_COLUMN_OPS else having.get("column")) not in keys]
            if not options:
                raise ValueError("no sibling op")
            having["calculate_op"] = options[0] if len(options) == 1 else rng.choice(options)
            if having["calculate_op"] in nl2query.NO_COLUMN_OPS:
                having.pop("column", None)
        elif ("COUNT", None) not in keys:
            q["havings"] = [{"calculate_op": "COUNT", "op": ">", "value": rng.choice((10, 100, 1000))}]
        else:
            raise ValueError("COUNT already computed")
    elif mode == "time_range_not_integer":
        seconds = q["time_range"]
        hours = seconds // 3600
        short = f"{hours}h" if hours and seconds % 3600 == 0 else f"{seconds // 60}m"
        q["time_range"] = rng.choice((short, str(seconds), seconds + 0.5, f"{seconds}s"))
    elif mode == "limit_not_integer":
        limit = q["limit"]
        q["limit"] = rng.choice((str(limit), _NUMBER_WORDS.get(limit, str(limit)), float(limit) + 0.5))
    elif mode == "invalid_shape":
        r = rng.random()
        if r < 0.35 and len(calcs) == 1 and not q.get("orders") and not q.get("havings"):
            q["calculations"] = calcs[0]
        elif r < 0.7 and q.get("breakdowns"):
            q["group_by"] = q.pop("breakdowns")
            if q.get("orders") and any("op" not in o for o in q["orders"]):
                raise ValueError("order refers to a breakdown")
        else:
            key, value = rng.choice((("interval", 60), ("dataset", dataset.name), ("query_type", "timeseries")))
            q[key] = value
    elif mode == "invalid_filter_value":
        _bad_filter_value(rng.choice(q["filters"]), rng)
    elif mode == "invalid_having":
        _bad_having(q, rng)
    elif mode == "heatmap_not_allowed":
        heatmap = next(c for c in calcs if c["op"] == "HEATMAP")
        if rng.random() < 0.6:
            q["orders"] = [{"op": "HEATMAP", "column": heatmap["column"], "order": "descending"}]
        else:
            q["havings"] = [{"calculate_op": "HEATMAP", "column": heatmap["column"], "op": ">", "value": 100}]
    elif mode == "invalid_time_window":
        _bad_time_window(q, rng)
    elif mode == "invalid_granularity":
        window = window_seconds(q)
        options: list[Any] = [window, window // 2, window // 5, "5m", "1h"]
        if window > 1000:
            options.append(1)
        q["granularity"] = rng.choice(options)
    else:
        raise ValueError(f"unknown mode {mode!r}")


def _bad_filter_value(f: dict[str, Any], rng: random.Random) -> None:
    """Give filter ``f`` a value its op does not take: one for exists, a scalar for in, none or a list otherwise."""
    op = f["op"]
    if op in nl2query.NO_VALUE_FILTER_OPS:
        f["value"] = rng.choice((True, "true", ""))
    elif op in LIST_VALUE_FILTER_OPS:
        f["value"] = rng.choice((f["value"][0], ", ".join(map(str, f["value"]))))
    elif rng.random() < 0.5:
        del f["value"]
    else:
        f["value"] = [f["value"]]


def _bad_having(q: dict[str, Any], rng: random.Random) -> None:
    """Leave out a having's op or calculate_op, or write its value as text."""
    if q.get("havings"):
        having = q["havings"][0]
    else:
        calc = q["calculations"][0]
        if calc["op"] == "HEATMAP":
            raise ValueError("no having on HEATMAP")
        having = {"calculate_op": calc["op"], **({"column": calc["column"]} if "column" in calc else {}),
                  "op": ">", "value": 100}
        q["havings"] = [having]
    r = rng.random()
    if r < 0.4:
        del having["op"]
    elif r < 0.7 and "column" in having:
        del having["calculate_op"]  # written like a filter on the column
    else:
        having["value"] = rng.choice((str(having["value"]), f"{having['value']}ms", "high"))


def _bad_time_window(q: dict[str, Any], rng: random.Random) -> None:
    """Break the query's time window: start after end, all three time keys, or a date as text."""
    if "start_time" in q and "end_time" in q:
        if rng.random() < 0.5:
            q["start_time"], q["end_time"] = q["end_time"], q["start_time"]
        else:
            q["time_range"] = q["end_time"] - q["start_time"]
        return
    if "end_time" not in q:
        day = WINDOW_FIRST_DAY + timedelta(days=rng.randrange(WINDOW_DAYS), hours=rng.randrange(24))
        if rng.random() < 0.4:
            q["end_time"] = day.strftime("%Y-%m-%dT%H:%M:%SZ")
            return
        q["end_time"] = unix_seconds(day)
    q["start_time"] = q["end_time"] - q["time_range"]


def render(query: dict[str, Any], rng: random.Random) -> str:
    """The query as a chat model writes it: key order kept, sometimes defaults spelled out or
    indented, sometimes a plain COUNT's calculations left out."""
    r = rng.random()
    if r < 0.12:
        full = {"calculations": query.get("calculations"), "filters": [], "filter_combination": "AND",
                "breakdowns": [], "orders": [], "havings": []}
        full.update(query)
        query = full
    elif query.get("calculations") == [{"op": "COUNT"}] and rng.random() < IMPLIED_COUNT_SHARE:
        query = {k: v for k, v in query.items() if k != "calculations"}
    if rng.random() < 0.2:
        return json.dumps(query, indent=2)
    return json.dumps(query)


def _invalid_json(text: str, rng: random.Random) -> str:
    r = rng.random()
    if r < 0.35:
        return rng.choice(_PROSE_BEFORE) + text + (rng.choice(_PROSE_AFTER) if rng.random() < 0.4 else "")
    if r < 0.6:
        return text[: int(len(text) * rng.uniform(0.4, 0.92))]
    if r < 0.8:
        return text[:-1].rstrip() + ",}" if rng.random() < 0.5 else text.replace("]", ",]", 1)
    return text.replace('"', "'")


def respond(gold: dict[str, Any], dataset: Dataset, mode: str, rng: random.Random) -> str:
    """The assistant's raw output for a request whose right answer is ``gold``, in ``mode``.

    Raises ValueError when ``mode`` cannot be injected into this gold query.
    """
    q = copy.deepcopy(gold)
    if mode in SEMANTIC_MODES:
        _semantic(mode, q, dataset, rng)
    elif mode not in (CORRECT, FENCED, "invalid_json"):
        _assertion_failure(mode, q, dataset, rng)
    text = render(q, rng)
    if mode == FENCED:
        return f"```json\n{json.dumps(q, indent=2) if rng.random() < 0.7 else text}\n```"
    if mode == "invalid_json":
        text = _invalid_json(text, rng)
        if nl2query.parse(text) is not None:
            text = text[: len(text) // 2]
    _verify(mode, gold, dataset, text)
    return text


def _verify(mode: str, gold: dict[str, Any], dataset: Dataset, text: str) -> None:
    """Raise ValueError unless ``text`` fails exactly the assertion ``mode`` names (or none)."""
    results = nl2query.check({"columns": dataset.listed_names}, text)
    failed = [r.check_name for r in results if r.passed is False]
    expected = [mode] if mode in nl2query.CHECK_NAMES else []
    if failed != expected:
        raise ValueError(f"{mode}: output fails {failed}")
    if mode in SEMANTIC_MODES and nl2query.normalise(text) == nl2query.dump(gold):
        raise ValueError(f"{mode}: output equals the gold query")
