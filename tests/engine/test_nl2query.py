"""nl2query task: every assertion passes and fails where it should, normalisation, prompt,
synthetic generators, and task loading."""

import json

import pytest

from pipeline.engine.tasks import Task, load_task
from pipeline.engine.tasks import nl2query
from pipeline.engine.tasks.nl2query import CHECK_NAMES, canonical, check, normalise, parse, prompt, validate_input
from pipeline.engine.tasks.nl2query.checks import LIST_VALUE_FILTER_OPS

COLUMNS = ["duration_ms", "service.name", "http.status_code", "http.route", "region"]
INPUT = {"question": "p95 duration_ms by service.name last 2 hours", "columns": COLUMNS,
         "dataset": "checkout-api"}

GOOD = {
    "calculations": [{"op": "P95", "column": "duration_ms"}, {"op": "COUNT"}],
    "filters": [{"column": "http.status_code", "op": ">=", "value": 500},
                {"column": "region", "op": "exists"}],
    "filter_combination": "AND",
    "breakdowns": ["service.name"],
    "orders": [{"op": "P95", "column": "duration_ms", "order": "descending"}],
    "havings": [{"calculate_op": "P95", "column": "duration_ms", "op": ">", "value": 1000}],
    "time_range": 7200,
    "limit": 10,
}


def q(**changes):
    """GOOD with top-level keys replaced (None removes the key)."""
    out = {k: v for k, v in GOOD.items()}
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return json.dumps(out)


def failures(output, input=INPUT):
    """{check_name: detail} of the checks that failed."""
    return {r.check_name: r.detail for r in check(input, output) if r.passed is False}


def assert_only_fails(output, name, *detail_parts, input=INPUT):
    failed = failures(output, input)
    assert set(failed) == {name}, failed
    for part in detail_parts:
        assert part in failed[name], failed[name]
    return failed[name]


# --- the reference query passes everything -------------------------------------------------------

def test_good_query_passes_every_check_in_order():
    results = check(INPUT, json.dumps(GOOD))
    assert [r.check_name for r in results] == list(CHECK_NAMES)
    assert all(r.passed is True for r in results), [r for r in results if r.passed is not True]
    assert all(r.detail == "" for r in results)


def test_minimal_query_passes():
    results = check(INPUT, '{"calculations": [{"op": "COUNT"}]}')
    assert all(r.passed is True for r in results)


def test_every_check_name_is_reported_once_in_order_even_when_several_fail():
    bad = json.dumps({"calculations": [{"op": "COUNT", "column": "nope"}], "time_range": "2h", "limit": "ten"})
    results = check(INPUT, bad)
    assert tuple(r.check_name for r in results) == CHECK_NAMES
    assert {r.check_name for r in results if r.passed is False} == {
        "unknown_column", "count_with_column", "time_range_not_integer", "limit_not_integer"}


# --- invalid_json ----------------------------------------------------------------------------------

def test_fenced_valid_json_passes():
    fenced = "```json\n" + json.dumps(GOOD, indent=2) + "\n```"
    assert failures(fenced) == {}
    assert failures("```\n" + json.dumps(GOOD) + "\n```") == {}


@pytest.mark.parametrize("output", [
    '{"calculations": [{"op": "COUNT"}]',                      # truncated
    "{'calculations': [{'op': 'COUNT'}]}",                      # python repr, not JSON
    'Here is the query: {"calculations": [{"op": "COUNT"}]}',   # prose before JSON
    '[{"calculations": [{"op": "COUNT"}]}]',                    # an array, not an object
    '"COUNT"',
    "",
    "null",
])
def test_not_a_json_object_fails_invalid_json_and_skips_the_rest(output):
    results = check(INPUT, output)
    assert [r.check_name for r in results] == list(CHECK_NAMES)
    assert results[0].passed is False
    assert "not a JSON object" in results[0].detail
    for r in results[1:]:
        assert r.passed is None
        assert r.detail.startswith("skipped")


def test_invalid_json_inside_fences_fails_and_says_fences_were_stripped():
    results = check(INPUT, '```json\n{"calculations": [{"op": "COUNT"},]}\n```')
    assert results[0].check_name == "invalid_json" and results[0].passed is False
    assert "after stripping code fences" in results[0].detail
    assert all(r.passed is None for r in results[1:])


def test_prose_around_fenced_json_fails():
    assert "invalid_json" in failures('Sure!\n```json\n{"calculations": [{"op": "COUNT"}]}\n```')


def test_non_string_output_is_invalid_json():
    assert check(INPUT, None)[0].passed is False  # type: ignore[arg-type]


# --- invalid_shape ---------------------------------------------------------------------------------

@pytest.mark.parametrize("output,detail", [
    (q(group_by=["service.name"]), "unknown key 'group_by'"),
    (q(calculations={"op": "COUNT"}), "calculations must be"),
    (q(filters={"column": "region", "op": "exists"}), "filters must be a list of objects"),
    (q(filters=["region exists"]), "filters must be a list of objects"),
    (q(breakdowns="service.name"), "breakdowns must be a list of column names"),
    (q(breakdowns=[["service.name"]]), "breakdowns must be a list of column names"),
    (q(filter_combination="XOR"), "filter_combination must be AND or OR"),
    (q(orders=[{"op": "P95", "column": "duration_ms", "order": "desc"}]), "'desc' is not ascending/descending"),
])
def test_invalid_shape(output, detail):
    failed = failures(output)
    assert "invalid_shape" in failed, failed
    assert detail in failed["invalid_shape"]


def test_shape_near_misses_pass():
    assert failures(q(filter_combination="OR")) == {}
    assert failures(q(filter_combination=None, orders=[{"op": "P95", "column": "duration_ms"}])) == {}
    assert failures(q(filters=[], breakdowns=[], orders=[], havings=[])) == {}


def test_unknown_key_fails_only_the_shape_check():
    assert_only_fails(q(interval=60), "invalid_shape", "unknown key 'interval'")


# --- unknown_calculation_op ------------------------------------------------------------------------

@pytest.mark.parametrize("op", ["PERCENTILE", "p95", "AVERAGE", "COUNT_DISTINCTS", None])
def test_unknown_calculation_op(op):
    output = q(calculations=[{"op": op, "column": "duration_ms"}], orders=None, havings=None)
    assert_only_fails(output, "unknown_calculation_op", repr(op))


@pytest.mark.parametrize("op", sorted(nl2query.COLUMN_OPS))
def test_every_known_column_op_passes(op):
    assert failures(q(calculations=[{"op": op, "column": "duration_ms"}], orders=None, havings=None)) == {}


# --- unknown_filter_op -----------------------------------------------------------------------------

@pytest.mark.parametrize("op", ["==", "like", "EQUALS", "not in", "gt"])
def test_unknown_filter_op(op):
    output = q(filters=[{"column": "http.status_code", "op": op, "value": 500}])
    assert_only_fails(output, "unknown_filter_op", f"unknown filter op {op!r}")


@pytest.mark.parametrize("op", sorted(nl2query.FILTER_OPS))
def test_every_known_filter_op_passes(op):
    value = {} if op in nl2query.NO_VALUE_FILTER_OPS else {"value": ["a"] if op in LIST_VALUE_FILTER_OPS else "a"}
    assert failures(q(filters=[{"column": "region", "op": op, **value}])) == {}


@pytest.mark.parametrize("op", ["=>", "contains", "exists"])
def test_having_with_bad_op_fails_unknown_filter_op(op):
    output = q(havings=[{"calculate_op": "P95", "column": "duration_ms", "op": op, "value": 1000}])
    assert_only_fails(output, "unknown_filter_op", f"unknown having op {op!r}")


# --- unknown_column --------------------------------------------------------------------------------

@pytest.mark.parametrize("output,bad", [
    (q(calculations=[{"op": "P95", "column": "latency_ms"}], orders=None, havings=None), "latency_ms"),
    (q(filters=[{"column": "status_code", "op": ">=", "value": 500}]), "status_code"),
    (q(breakdowns=["service_name"]), "service_name"),      # near-miss of service.name
    (q(breakdowns=["Service.Name"]), "Service.Name"),      # case matters
    (q(calculations=[{"op": "P95", "column": "duration_ms"}, {"op": "MAX", "column": "duration"}],
       orders=[{"op": "MAX", "column": "duration", "order": "descending"}], havings=None), "duration"),
    (q(calculations=[{"op": "P95", "column": "duration_ms"}, {"op": "AVG", "column": "dur"}],
       havings=[{"calculate_op": "AVG", "column": "dur", "op": ">", "value": 1}], orders=None), "dur"),
])
def test_column_not_in_the_column_list(output, bad):
    assert_only_fails(output, "unknown_column", repr(bad), "not in the dataset's columns")


def test_order_by_unknown_column_is_reported_as_unknown_column():
    output = q(orders=[{"op": "P95", "column": "latency", "order": "descending"}])
    failed = failures(output)
    assert "'latency'" in failed["unknown_column"]


def test_having_on_unknown_column_is_reported_as_unknown_column():
    output = q(havings=[{"calculate_op": "P95", "column": "latency", "op": ">", "value": 1}])
    failed = failures(output)
    assert "'latency'" in failed["unknown_column"]


def test_columns_come_from_the_input_not_a_global_list():
    other = {"question": "count by queue.name", "columns": ["queue.name", "job.type"], "dataset": "payments-worker"}
    output = json.dumps({"calculations": [{"op": "COUNT"}], "breakdowns": ["queue.name"]})
    assert failures(output, other) == {}
    assert "unknown_column" in failures(output, INPUT)


# --- count_with_column / missing_column ------------------------------------------------------------

@pytest.mark.parametrize("op", ["COUNT", "CONCURRENCY"])
def test_count_ops_with_a_column_fail(op):
    output = q(calculations=[{"op": op, "column": "duration_ms"}], orders=None, havings=None)
    assert_only_fails(output, "count_with_column", f"{op} takes no column but got 'duration_ms'")


@pytest.mark.parametrize("op", ["COUNT", "CONCURRENCY"])
def test_count_ops_without_a_column_pass(op):
    assert failures(q(calculations=[{"op": op}], orders=[{"op": op, "order": "descending"}], havings=None)) == {}
    assert failures(q(calculations=[{"op": op, "column": None}], orders=None, havings=None)) == {}


@pytest.mark.parametrize("calc", [{"op": "P95"}, {"op": "AVG", "column": ""}, {"op": "COUNT_DISTINCT", "column": None}])
def test_column_ops_without_a_column_fail(calc):
    output = q(calculations=[calc], orders=None, havings=None)
    failed = failures(output)
    assert "missing_column" in failed, failed
    assert f"{calc['op']} needs a column" in failed["missing_column"]
    assert set(failed) <= {"missing_column", "unknown_column"}  # "" is also not a known column


# --- order_not_in_calculations ---------------------------------------------------------------------

def test_order_by_a_different_calculation_fails():
    output = q(orders=[{"op": "P99", "column": "duration_ms", "order": "descending"}])
    assert_only_fails(output, "order_not_in_calculations", "P99(duration_ms) is not a calculation")


def test_order_by_same_op_other_column_fails():
    output = q(orders=[{"op": "P95", "column": "http.status_code", "order": "descending"}])
    assert_only_fails(output, "order_not_in_calculations", "P95(http.status_code)")


def test_order_by_count_needs_a_count_calculation():
    output = q(orders=[{"op": "COUNT", "order": "descending"}])
    assert failures(output) == {}  # GOOD has COUNT
    output = q(calculations=[{"op": "P95", "column": "duration_ms"}], orders=[{"op": "COUNT", "order": "descending"}])
    assert_only_fails(output, "order_not_in_calculations", "COUNT()")


def test_order_by_a_breakdown_column_is_fine_but_not_by_another_column():
    assert failures(q(orders=[{"column": "service.name", "order": "ascending"}])) == {}
    assert_only_fails(q(orders=[{"column": "region", "order": "ascending"}]), "order_not_in_calculations",
                      "'region' is neither a calculation nor a breakdown")


# --- having_not_in_calculations --------------------------------------------------------------------

def test_having_not_matching_a_calculation_fails():
    output = q(havings=[{"calculate_op": "P99", "column": "duration_ms", "op": ">", "value": 1000}])
    assert_only_fails(output, "having_not_in_calculations", "P99(duration_ms) is not a calculation")


def test_having_on_count_matches_count_calculation():
    assert failures(q(havings=[{"calculate_op": "COUNT", "op": ">", "value": 10}])) == {}


# --- time_range_not_integer / limit_not_integer ----------------------------------------------------

@pytest.mark.parametrize("value", ["2h", "7200", 3600.5, True, False, -3600, 0, [7200], {"hours": 2}])
def test_time_range_not_a_positive_integer_fails(value):
    detail = assert_only_fails(q(time_range=value), "time_range_not_integer")
    assert repr(value) in detail and "seconds" in detail


@pytest.mark.parametrize("value", [1, 7200, 604800])
def test_time_range_integer_passes(value):
    assert failures(q(time_range=value)) == {}


def test_time_range_may_be_absent_or_null():
    assert failures(q(time_range=None)) == {}
    out = dict(GOOD, time_range=None)
    assert failures(json.dumps(out)) == {}


@pytest.mark.parametrize("value", ["10", 10.5, True, 0, -5])
def test_limit_not_a_positive_integer_fails(value):
    detail = assert_only_fails(q(limit=value), "limit_not_integer")
    assert repr(value) in detail


def test_limit_integer_passes():
    assert failures(q(limit=1)) == {}
    assert failures(q(limit=None)) == {}


# --- normalise ---------------------------------------------------------------------------------------

def test_normalise_equivalent_queries_are_equal():
    a = json.dumps(GOOD)
    reordered = {k: GOOD[k] for k in reversed(list(GOOD))}
    reordered["filters"] = list(reversed(GOOD["filters"]))
    reordered["calculations"] = [{"column": "duration_ms", "op": "P95"}, {"op": "COUNT"}]
    b = "```json\n" + json.dumps(reordered, indent=4) + "\n```"
    c = "  " + json.dumps(GOOD, separators=(",", ":")) + "\n\n"
    assert normalise(a) == normalise(b) == normalise(c)
    assert normalise(a) is not None


def test_normalise_drops_defaults_and_empty_parts():
    plain = '{"calculations": [{"op": "COUNT"}]}'
    verbose = json.dumps({"calculations": [{"op": "COUNT", "column": None}], "filters": [], "breakdowns": [],
                          "orders": [], "havings": [], "filter_combination": "AND", "time_range": None})
    assert normalise(plain) == normalise(verbose) == '{"calculations":[{"op":"COUNT"}]}'
    # default order direction is ascending
    assert normalise(q(orders=[{"op": "P95", "column": "duration_ms"}])) == \
        normalise(q(orders=[{"op": "P95", "column": "duration_ms", "order": "ascending"}]))


@pytest.mark.parametrize("change", [
    {"time_range": 3600},
    {"limit": 20},
    {"breakdowns": ["region"]},
    {"calculations": [{"op": "P99", "column": "duration_ms"}, {"op": "COUNT"}]},
    {"filters": [{"column": "http.status_code", "op": ">=", "value": "500"}, {"column": "region", "op": "exists"}]},
    {"filter_combination": "OR"},
    {"orders": [{"op": "P95", "column": "duration_ms", "order": "ascending"}]},
    {"havings": [{"calculate_op": "P95", "column": "duration_ms", "op": ">", "value": 999}]},
])
def test_normalise_different_queries_differ(change):
    assert normalise(q(**change)) != normalise(json.dumps(GOOD))


def test_normalise_keeps_calculation_order_and_breakdown_order():
    a = q(calculations=[{"op": "COUNT"}, {"op": "P95", "column": "duration_ms"}])
    assert normalise(a) != normalise(json.dumps(GOOD))
    assert normalise(q(breakdowns=["service.name", "region"])) != normalise(q(breakdowns=["region", "service.name"]))


def test_normalise_unparseable_is_none():
    assert normalise("not json") is None
    assert normalise("[1, 2]") is None


def test_canonical_is_idempotent():
    once = canonical(parse(json.dumps(GOOD)))
    assert canonical(once) == once


# --- validate_input / prompt ---------------------------------------------------------------------

def test_validate_input_accepts_a_well_formed_input():
    assert validate_input(INPUT) is None
    assert validate_input({"question": "count", "columns": ["a"]}) is None  # dataset optional


@pytest.mark.parametrize("bad,part", [
    (None, "input must be an object, got NoneType"),
    (["p95 duration_ms"], "input must be an object, got list"),
    ({"columns": COLUMNS}, "input.question"),
    ({"question": "   ", "columns": COLUMNS}, "input.question"),
    ({"question": 42, "columns": COLUMNS}, "input.question"),
    ({"question": "count"}, "input.columns"),
    ({"question": "count", "columns": []}, "input.columns"),
    ({"question": "count", "columns": "duration_ms"}, "input.columns"),
    ({"question": "count", "columns": ["", ""]}, "input.columns"),
    ({"question": "count", "columns": ["duration_ms", 3]}, "input.columns"),
])
def test_validate_input_rejects_with_reason(bad, part):
    reason = validate_input(bad)
    assert reason is not None and part in reason


def test_prompt_is_system_then_user_with_columns_and_question():
    messages = prompt(INPUT)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "JSON" in messages[0]["content"] and "COUNT" in messages[0]["content"]
    user = messages[1]["content"]
    assert INPUT["question"] in user
    assert "duration_ms, service.name, http.status_code, http.route, region" in user
    # the same input gives the same prompt (training and inference must match)
    assert prompt(dict(INPUT)) == messages
    other = prompt({**INPUT, "question": "count by region"})
    assert other[0] == messages[0] and other[1] != messages[1]


# --- load_task -----------------------------------------------------------------------------------------

def test_load_task_builtin_and_by_module_path():
    task = load_task("nl2query")
    assert isinstance(task, Task)
    assert task.name == "nl2query" and task.check_names == CHECK_NAMES
    assert load_task("pipeline.engine.tasks.nl2query") is task
    assert [r.check_name for r in task.check(INPUT, json.dumps(GOOD))] == list(CHECK_NAMES)


def test_load_task_unknown_module_raises_clear_error():
    with pytest.raises(ValueError, match=r"unknown task 'no\.such\.module'.*nl2query"):
        load_task("no.such.module")


def test_load_task_module_without_task_raises_clear_error():
    with pytest.raises(ValueError, match=r"module 'json' does not expose a TASK"):
        load_task("json")


def test_a_log_of_the_own_prompt_with_windows_line_ends_and_trailing_spaces_gives_the_clean_input():
    message = {"role": "user", "content": "Columns: duration_ms, service.name  \r\nQuestion: p95 latency by service\r\n"}
    assert nl2query.input_from_messages([message]) == {
        "question": "p95 latency by service", "columns": ["duration_ms", "service.name"]}
    assert nl2query.input_from_messages([{"role": "user", "content": "Columns: a\r\nQuestion: \r\n"}]) is None
