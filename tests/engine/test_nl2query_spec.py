"""nl2query follows Honeycomb's published query spec (see the sources in
:mod:`pipeline.engine.tasks.nl2query.checks`): every example query the spec texts publish passes
every assertion, and each rule has a query that breaks it and fails exactly its failure mode.
Then inputs as they come: empty column names, long lists and odd names."""

import json

import pytest

from pipeline.engine.tasks.nl2query import check, normalise, prompt, validate_input
from pipeline.engine.tasks.nl2query.checks import CHECK_NAMES, QUERY_CHECKS
from pipeline.engine.tasks.nl2query.prompting import empty_column_count

#: Every column the published examples name.
COLUMNS = ["user_agent", "content_length", "kafka_partition", "exception.message", "parent_name", "error",
           "http.route", "duration_ms", "trace.parent_id", "http.status_code", "name", "db.statement",
           "service.name", "k8s.pod.name"]
INPUT = {"question": "q", "columns": COLUMNS}

#: Honeycomb, "Query Specification" (docs.honeycomb.io/api/query-specification/): the caveat on
#: time and the first example, verbatim.
DOCS_EXAMPLES = [
    {"start_time": 1525125600, "end_time": 1525132800},
    {"end_time": 1525132800, "time_range": 3600},
    {"time_range": 3600},
    {"breakdowns": ["user_agent"], "calculations": [{"op": "COUNT"}],
     "orders": [{"op": "COUNT", "order": "descending"}], "limit": 10, "time_range": 3600, "end_time": 1514768400},
]

#: The queries of Honeycomb's query-assistant prompt (inspect-llm-workshop, honeycomb/prompt.txt),
#: verbatim, "join_column" and "granularity": 0 included.
ASSISTANT_EXAMPLES = [
    '{"breakdowns":["exception.message","parent_name"],"calculations":[{"op":"COUNT"}],"filters":[{"column":"exception.message","op":"exists","join_column":""},{"column":"parent_name","op":"exists","join_column":""}],"orders":[{"op":"COUNT","order":"descending"}],"time_range":7200}',
    '{"breakdowns":["error"],"calculations":[{"op":"COUNT"}],"filters":[{"column":"error","op":"=","value":true,"join_column":""}],"orders":[{"op":"COUNT","order":"descending"}],"time_range":7200}',
    '{"breakdowns":["error"],"calculations":[{"op":"COUNT"}],"orders":[{"op":"COUNT","order":"descending"}],"time_range":7200}',
    '{"breakdowns":["http.route"],"calculations":[{"column":"duration_ms","op":"HEATMAP"},{"column":"duration_ms","op":"MAX"}],"filters":[{"column":"trace.parent_id","op":"does-not-exist","join_column":""}],"orders":[{"column":"duration_ms","op":"MAX","order":"descending"}],"time_range":7200}',
    '{"breakdowns":["http.status_code"],"calculations":[{"column":"duration_ms","op":"HEATMAP"},{"column":"duration_ms","op":"P95"}],"filters":[{"column":"http.status_code","op":"exists","join_column":""}],"time_range":7200}',
    '{"breakdowns":["name","db.statement"],"calculations":[{"column":"duration_ms","op":"SUM"}],"filters":[{"column":"db.statement","op":"exists","join_column":""}],"orders":[{"column":"duration_ms","op":"SUM","order":"descending"}],"time_range":7200}',
    '{"breakdowns":["db.statement"],"calculations":[{"column":"duration_ms","op":"HEATMAP"},{"column":"duration_ms","op":"P95"}],"filters":[{"column":"db.statement","op":"exists","join_column":""}],"orders":[{"column":"duration_ms","op":"P95","order":"descending"}],"time_range":604800}',
    '{"calculations":[{"column":"duration_ms","op":"HEATMAP"},{"column":"duration_ms","op":"MAX"}],"filters":[{"column":"trace.parent_id","op":"does-not-exist","join_column":""}],"orders":[{"column":"duration_ms","op":"MAX","order":"descending"}]}',
    '{"breakdowns":["http.route","name"],"calculations":[{"column":"duration_ms","op":"HEATMAP"},{"column":"duration_ms","op":"MAX"}],"filters":[{"column":"trace.parent_id","op":"does-not-exist","join_column":""}],"orders":[{"column":"duration_ms","op":"MAX","order":"descending"}]}',
    '{"calculations":[{"column":"duration_ms","op":"HEATMAP"}]}',
    '{"breakdowns":["service.name"],"calculations":[{"column":"duration_ms","op":"HEATMAP"}]}',
    '{"calculations":[{"column":"duration_ms","op":"HEATMAP"}],"filters":[{"column":"trace.parent_id","op":"does-not-exist","join_column":""}],"time_range":604800}',
    '{"calculations":[{"column":"duration_ms","op":"HEATMAP"}],"filters":[{"column":"trace.parent_id","op":"does-not-exist","join_column":""},{"column":"name","op":"=","value":"client_request","join_column":""}],"time_range":604800}',
    '{"breakdowns":["name"],"calculations":[{"column":"duration_ms","op":"HEATMAP"}],"filters":[{"column":"http.route","op":"exists","join_column":""}]}',
    '{"breakdowns":["name"],"calculations":[{"column":"duration_ms","op":"HEATMAP"},{"op":"COUNT"}],"filters":[{"column":"http.route","op":"exists","join_column":""}]}',
    '{"breakdowns":["name"],"calculations":[{"column":"duration_ms","op":"HEATMAP"},{"op":"COUNT"}],"filters":[{"column":"service.name","op":"exists","join_column":""}]}',
    '{"calculations":[{"op":"COUNT"}]}',
    '{"breakdowns":["name"],"filters":[{"column":"error","op":"exists","join_column":""}]}',
    '{"breakdowns":["http.route"],"calculations":[{"column":"duration_ms","op":"HEATMAP"}]}',
    '{"calculations":[{"op":"COUNT"}],"filters":[{"column":"k8s.pod.name","op":"starts-with","value":"cron-no-medication-observation-received-cron","join_column":""}],"filter_combination":"AND","limit":100,"time_range":604800,"granularity":0}',
]

#: The having forms the assistant prompt's QUERY SPEC shows, with its placeholders filled in.
HAVING_EXAMPLES = [
    {"calculations": [{"op": "P95", "column": "duration_ms"}],
     "havings": [{"calculate_op": "P95", "column": "duration_ms", "op": ">", "value": 100}]},
    {"calculations": [{"op": "COUNT"}], "havings": [{"calculate_op": "COUNT", "op": ">", "value": 10}]},
]


def failed(query, input=INPUT) -> dict[str, str]:
    """{failure mode: detail} of the assertions ``query`` (a dict or JSON text) fails."""
    text = query if isinstance(query, str) else json.dumps(query)
    return {r.check_name: r.detail for r in check(input, text) if r.passed is False}


def fails_only(query, mode, *detail_parts, input=INPUT):
    result = failed(query, input)
    assert set(result) == {mode}, result
    for part in detail_parts:
        assert part in result[mode], result[mode]


def test_every_check_is_named_once_and_in_order():
    assert CHECK_NAMES[0] == "invalid_json" and tuple(QUERY_CHECKS) == CHECK_NAMES[1:]
    assert len(set(CHECK_NAMES)) == len(CHECK_NAMES)


@pytest.mark.parametrize("query", DOCS_EXAMPLES + ASSISTANT_EXAMPLES + HAVING_EXAMPLES)
def test_every_published_example_passes_every_assertion(query):
    results = check(INPUT, query if isinstance(query, str) else json.dumps(query))
    assert [r.check_name for r in results] == list(CHECK_NAMES)
    assert {r.check_name: r.detail for r in results if r.passed is not True} == {}


# --- every top-level key is optional -----------------------------------------------------------------

@pytest.mark.parametrize("query", [{}, {"calculations": []}, {"calculations": None, "filters": None,
                                                            "breakdowns": None, "orders": None, "havings": None,
                                                            "filter_combination": None, "granularity": None}])
def test_a_query_without_calculations_is_valid(query):
    assert failed(query) == {}


def test_no_calculations_means_count_so_orders_and_havings_may_use_count():
    assert failed({"breakdowns": ["name"], "orders": [{"op": "COUNT", "order": "descending"}],
                   "havings": [{"calculate_op": "COUNT", "op": ">", "value": 5}]}) == {}
    fails_only({"orders": [{"op": "P95", "column": "duration_ms"}]}, "order_not_in_calculations")
    assert normalise("{}") == normalise('{"calculations": [{"op": "COUNT"}]}')


def test_unknown_top_level_keys_still_fail_the_shape_check():
    fails_only({"group_by": ["name"]}, "invalid_shape", "unknown key 'group_by'")
    fails_only({"calculations": {"op": "COUNT"}}, "invalid_shape", "calculations must be a list of objects")


# --- filter_combination ------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["AND", "OR"])
def test_filter_combination_and_or_pass(value):
    assert failed({"filters": [{"column": "error", "op": "exists"}], "filter_combination": value}) == {}


@pytest.mark.parametrize("value", ["and", "XOR", "ANY", "", 1])
def test_filter_combination_other_than_and_or_fails(value):
    fails_only({"filters": [{"column": "error", "op": "exists"}], "filter_combination": value}, "invalid_shape",
               "filter_combination must be AND or OR")


# --- filter values: exists takes none, in takes a list, the others a value ----------------------------

@pytest.mark.parametrize("filt", [
    {"column": "error", "op": "exists"}, {"column": "error", "op": "does-not-exist", "value": None},
    {"column": "kafka_partition", "op": "in", "value": [3, 6]}, {"column": "name", "op": "not-in", "value": ["a"]},
    {"column": "error", "op": "=", "value": False}, {"column": "duration_ms", "op": ">=", "value": 0.5},
    {"column": "name", "op": "contains", "value": "checkout"},
])
def test_filter_values_the_spec_allows_pass(filt):
    assert failed({"filters": [filt]}) == {}


@pytest.mark.parametrize("filt,detail", [
    ({"column": "error", "op": "exists", "value": True}, "exists takes no value"),
    ({"column": "error", "op": "does-not-exist", "value": ""}, "does-not-exist takes no value"),
    ({"column": "kafka_partition", "op": "in", "value": 3}, "in takes a list"),
    ({"column": "name", "op": "not-in", "value": "a,b"}, "not-in takes a list"),
    ({"column": "name", "op": "in"}, "in takes a list"),
    ({"column": "name", "op": "in", "value": [["a"]]}, "in takes a list"),
    ({"column": "name", "op": "="}, "= needs a value"),
    ({"column": "name", "op": "starts-with", "value": None}, "starts-with needs a value"),
    ({"column": "name", "op": "contains", "value": ["a", "b"]}, "contains needs a value"),
    ({"column": "duration_ms", "op": ">", "value": {"ms": 5}}, "> needs a value"),
])
def test_filter_values_the_spec_rules_out_fail_invalid_filter_value(filt, detail):
    fails_only({"filters": [filt]}, "invalid_filter_value", detail)


def test_an_unknown_filter_op_is_not_also_a_value_problem():
    fails_only({"filters": [{"column": "name", "op": "like", "value": ["a"]}]}, "unknown_filter_op")


# --- filters and havings need columns ---------------------------------------------------------------

@pytest.mark.parametrize("filt", [{"op": "exists"}, {"column": None, "op": "=", "value": 1}])
def test_a_filter_without_a_column_fails_missing_column(filt):
    fails_only({"filters": [filt]}, "missing_column", "needs a column")


def test_a_non_count_having_without_a_column_fails_missing_column_only():
    fails_only({"calculations": [{"op": "P95", "column": "duration_ms"}],
                "havings": [{"calculate_op": "P95", "op": ">", "value": 100}]}, "missing_column",
               "having on P95 needs a column")


@pytest.mark.parametrize("op", ["COUNT", "CONCURRENCY"])
def test_a_count_having_needs_no_column(op):
    assert failed({"calculations": [{"op": op}], "havings": [{"calculate_op": op, "op": ">=", "value": 1}]}) == {}


# --- havings need an op and a numeric value; HEATMAP is not allowed -----------------------------------

@pytest.mark.parametrize("having,detail", [
    ({"calculate_op": "COUNT", "value": 10}, "having needs an op"),
    ({"calculate_op": "COUNT", "op": None, "value": 10}, "having needs an op"),
    ({"calculate_op": "COUNT", "op": ">"}, "having needs a numeric value but got None"),
    ({"calculate_op": "COUNT", "op": ">", "value": "10"}, "having needs a numeric value but got '10'"),
    ({"calculate_op": "COUNT", "op": ">", "value": True}, "numeric value"),
    ({"op": ">", "value": 10}, "having needs a calculate_op"),
])
def test_an_incomplete_having_fails_invalid_having_only(having, detail):
    fails_only({"calculations": [{"op": "COUNT"}], "havings": [having]}, "invalid_having", detail)


def test_a_having_with_an_op_that_is_not_a_comparison_is_still_an_unknown_op():
    fails_only({"calculations": [{"op": "COUNT"}], "havings": [{"calculate_op": "COUNT", "op": "=>", "value": 1}]},
               "unknown_filter_op", "unknown having op '=>'")


def test_a_having_on_heatmap_fails_heatmap_not_allowed():
    fails_only({"calculations": [{"op": "HEATMAP", "column": "duration_ms"}],
                "havings": [{"calculate_op": "HEATMAP", "column": "duration_ms", "op": ">", "value": 1}]},
               "heatmap_not_allowed", "having on HEATMAP")


def test_an_order_by_heatmap_fails_heatmap_not_allowed():
    fails_only({"calculations": [{"op": "HEATMAP", "column": "duration_ms"}],
                "orders": [{"op": "HEATMAP", "column": "duration_ms", "order": "descending"}]},
               "heatmap_not_allowed", "order by HEATMAP")


# --- start_time, end_time, time_range ---------------------------------------------------------------

@pytest.mark.parametrize("query", [{"start_time": 1525125600, "time_range": 3600}, {"end_time": 1525132800},
                                   {"start_time": 1525125600}, {"start_time": 1525125600, "end_time": 1525125600}])
def test_time_windows_the_spec_allows_pass(query):
    assert failed(query) == {}


@pytest.mark.parametrize("query,detail", [
    ({"start_time": 1525125600, "end_time": 1525132800, "time_range": 3600},
     "time_range cannot be combined with both start_time and end_time"),
    ({"start_time": "2018-04-30T22:00:00Z"}, "start_time '2018-04-30T22:00:00Z' is not an integer"),
    ({"end_time": 1525132800.5}, "end_time 1525132800.5 is not an integer"),
    ({"end_time": True}, "end_time True is not an integer"),
    ({"start_time": 1525132800, "end_time": 1525125600}, "start_time 1525132800 is after end_time 1525125600"),
])
def test_time_windows_the_spec_rules_out_fail_invalid_time_window(query, detail):
    fails_only(query, "invalid_time_window", detail)


# --- granularity: time range /1000 to /10, 0 for none ------------------------------------------------

@pytest.mark.parametrize("query", [
    {"time_range": 7200, "granularity": 0}, {"granularity": 0},
    {"time_range": 7200, "granularity": 720}, {"time_range": 7200, "granularity": 8},
    {"granularity": 60},                                                   # two hours by default
    {"start_time": 1525125600, "end_time": 1525132800, "granularity": 720},
    {"end_time": 1525132800, "time_range": 86400, "granularity": 8640},
])
def test_granularity_within_the_time_range_passes(query):
    assert failed(query) == {}


@pytest.mark.parametrize("query,detail", [
    ({"time_range": 7200, "granularity": 721}, "outside 7200/1000 .. 7200/10"),
    ({"time_range": 7200, "granularity": 7}, "outside 7200/1000"),
    ({"granularity": 3600}, "7200 s time range"),
    ({"start_time": 1525125600, "end_time": 1525129200, "granularity": 361}, "3600 s time range"),
    ({"time_range": 7200, "granularity": "60"}, "granularity '60' is not a non-negative integer"),
    ({"time_range": 7200, "granularity": 60.0}, "granularity 60.0"),
    ({"time_range": 7200, "granularity": -60}, "granularity -60"),
    ({"time_range": 7200, "granularity": False}, "granularity False"),
])
def test_granularity_outside_the_time_range_fails_invalid_granularity(query, detail):
    fails_only(query, "invalid_granularity", detail)


def test_granularity_is_not_also_judged_against_an_invalid_time_range():
    fails_only({"time_range": "2h", "granularity": 60}, "time_range_not_integer")


# --- inputs as they come ---------------------------------------------------------------------------

ODD_NAMES = ["http.request.header.user agent", "app.🔥.score", "tab\tseparated", "x" * 120, "ünïcödé", " lead"]


def test_empty_column_names_are_accepted_counted_and_left_out():
    given = {"question": "count by name", "columns": ["", "name", "", "duration_ms"]}
    assert validate_input(given) is None
    assert empty_column_count(given) == 2
    assert prompt(given)[1]["content"].startswith("Columns: name, duration_ms\n")
    assert failed({"breakdowns": ["name"]}, given) == {}
    # an empty name is not a column a query may use, even when the input lists one
    fails_only({"breakdowns": [""]}, "unknown_column", "column '' is not", input=given)


@pytest.mark.parametrize("columns", [[""], ["", ""], []])
def test_an_input_with_no_non_empty_column_name_is_rejected(columns):
    assert "at least one column" in validate_input({"question": "count", "columns": columns})


def test_long_lists_and_odd_names_are_accepted_and_usable():
    columns = [f"attr.{i}" for i in range(100)] + ODD_NAMES
    given = {"question": "count by odd names", "columns": columns}
    assert validate_input(given) is None and empty_column_count(given) == 0
    assert prompt(given)[1]["content"] == f"Columns: {', '.join(columns)}\nQuestion: count by odd names"
    assert failed({"breakdowns": ODD_NAMES, "filters": [{"column": "attr.88", "op": "exists"}]}, given) == {}
    fails_only({"breakdowns": ["app.🔥.scores"]}, "unknown_column", input=given)


@pytest.mark.parametrize("columns", [["a", 3], ["a", None], "a, b", [["a"]]])
def test_non_string_column_names_are_rejected(columns):
    assert "input.columns" in validate_input({"question": "count", "columns": columns})
