"""Assertions over traces: one row per trace and check, in process and in worker processes."""

import importlib
import inspect
import json
import types
from datetime import datetime, timezone

import polars as pl
import pytest

from pipeline.engine.label import assertions as checks
from pipeline.engine.label.assertions import EVALUATION_SCHEMA, check_version, evaluate_rows, evaluate_traces, failing_traces
from pipeline.engine.tasks import load_task, nl2query
from pipeline.engine.tasks.nl2query import CHECK_NAMES

TASK = load_task("nl2query")
NOW = datetime(2026, 10, 20, tzinfo=timezone.utc)
INPUT = json.dumps({"question": "p95 latency", "columns": ["duration_ms", "service.name"]})
GOOD = json.dumps({"calculations": [{"op": "P95", "column": "duration_ms"}], "breakdowns": ["service.name"]})
BAD_COLUMN = json.dumps({"calculations": [{"op": "P95", "column": "latency"}], "time_range": "2h"})


def traces(rows):
    return pl.DataFrame(rows, schema={"trace_id": pl.String, "input": pl.String, "output": pl.String,
                                      "error": pl.String}, orient="row")


def test_one_row_per_trace_and_check_matching_the_task():
    frame = evaluate_traces(traces([("a", INPUT, GOOD, None), ("b", INPUT, BAD_COLUMN, None)]), TASK, now=NOW)
    assert frame.schema == pl.Schema(EVALUATION_SCHEMA)
    assert frame.height == 2 * len(CHECK_NAMES)
    for trace_id, output in (("a", GOOD), ("b", BAD_COLUMN)):
        expected = {r.check_name: (r.passed, r.detail) for r in TASK.check(json.loads(INPUT), output)}
        got = {n: (p, d) for _, n, p, d in frame.filter(pl.col("trace_id") == trace_id)
               .select("trace_id", "check_name", "passed", "detail").iter_rows()}
        assert got == expected
    assert set(frame["task_version"]) == {check_version(TASK)} and set(frame["evaluated_at"]) == {NOW}
    assert failing_traces(frame).sort("failure_mode")["failure_mode"].to_list() == [
        "time_range_not_integer", "unknown_column"]


def test_failed_calls_and_bad_inputs_are_skipped_with_the_reason():
    frame = evaluate_traces(traces([("err", INPUT, None, "timeout after 30 s"), ("bad", "{not json", GOOD, None),
                                    ("ok", INPUT, GOOD, None)]), TASK, now=NOW)
    by_trace = {t: f for (t,), f in frame.group_by("trace_id")}
    assert by_trace["err"]["passed"].null_count() == len(CHECK_NAMES)
    assert set(by_trace["err"]["detail"]) == {"skipped: call failed: timeout after 30 s"}
    assert by_trace["bad"]["passed"].null_count() == len(CHECK_NAMES)
    assert by_trace["bad"]["detail"][0].startswith("skipped: could not check: JSONDecodeError")
    assert by_trace["ok"]["passed"].all()


def test_a_task_returning_checks_out_of_order_is_caught_per_trace():
    wrong = types.SimpleNamespace(version="1", check_names=CHECK_NAMES,
                                  check=lambda i, o: list(reversed(TASK.check(i, o))))
    frame = evaluate_rows(wrong, ["a"], [INPUT], [GOOD], [None])
    assert frame["passed"].null_count() == len(CHECK_NAMES)
    assert "expected" in frame["detail"][0]


def test_worker_processes_give_the_same_rows_as_in_process(monkeypatch):
    rows = [(f"t{n:03d}", INPUT, [GOOD, BAD_COLUMN, "nope", None][n % 4], "boom" if n % 4 == 3 else None)
            for n in range(60)]
    serial = evaluate_traces(traces(rows), TASK, now=NOW, workers=1)
    monkeypatch.setattr(checks, "PARALLEL_MIN_TRACES", 10)
    monkeypatch.setattr(checks, "CHUNK_TRACES", 7)
    parallel = evaluate_traces(traces(rows), TASK, now=NOW, workers=2)
    assert parallel.sort("trace_id", "check_name").equals(serial.sort("trace_id", "check_name"))


def test_check_version_follows_the_check_code():
    version = check_version(TASK)
    assert version.startswith(TASK.version + "+")
    other = types.ModuleType("other_task")
    exec("def check(i, o):\n    return []\n", other.__dict__)
    assert check_version(types.SimpleNamespace(version=TASK.version, check=other.check)) != version


def _nl2query_from(root, package, checks_source, prompting_source):
    """A task named and versioned like nl2query, its check and prompt from modules written to root/package."""
    (root / package).mkdir()
    (root / package / "__init__.py").write_text("")
    (root / package / "checks.py").write_text(checks_source)
    (root / package / "prompting.py").write_text(prompting_source)
    checks_module = importlib.import_module(f"{package}.checks")
    prompting_module = importlib.import_module(f"{package}.prompting")
    task = types.SimpleNamespace(name=TASK.name, version=TASK.version, check=checks_module.check,
                                 prompt=prompting_module.prompt)
    return task, prompting_module


def test_check_version_ignores_the_prompt_and_follows_the_check_code(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    checks_source, prompting_source = inspect.getsource(nl2query.checks), inspect.getsource(nl2query.prompting)
    reworded = prompting_source.replace("You translate a question", "You turn a question")
    reworded_task, reworded_module = _nl2query_from(tmp_path, "reworded_prompt", checks_source, reworded)
    task_input = json.loads(INPUT)
    assert reworded_task.prompt(task_input)[0] != TASK.prompt(task_input)[0]
    assert check_version(reworded_task) == check_version(TASK)

    edited = checks_source.replace("is not a positive integer\"]", "must be a positive integer\"]")
    assert edited != checks_source
    edited_task, _ = _nl2query_from(tmp_path, "edited_check", edited, prompting_source)
    assert check_version(edited_task) != check_version(TASK)
    # a module the task lists in check_modules is check code too
    listed = types.SimpleNamespace(**vars(reworded_task), check_modules=(reworded_module,))
    assert check_version(listed) != check_version(reworded_task)


def test_empty_batch():
    assert evaluate_traces(traces([]), TASK).is_empty()


@pytest.mark.parametrize("error,output", [("rate limited", ""), ("rate limited", None)])
def test_error_without_output_is_not_judged(error, output):
    frame = evaluate_traces(traces([("x", INPUT, output, error)]), TASK)
    assert frame["passed"].null_count() == frame.height


def test_malformed_breakdowns_fail_the_shape_check_instead_of_crashing():
    output = json.dumps({"calculations": [{"op": "COUNT"}], "breakdowns": 5,
                         "orders": [{"column": "service.name", "order": "descending"}]})
    results = {r.check_name: r for r in TASK.check(json.loads(INPUT), output)}
    assert results["invalid_shape"].passed is False and "breakdowns must be a list" in results["invalid_shape"].detail
    assert results["order_not_in_calculations"].passed is False


def test_fast_form_matches_the_result_objects():
    for output in (GOOD, BAD_COLUMN, "nope", "```json\n{\"calculations\": [}\n```"):
        passed, details = TASK.check_values(json.loads(INPUT), output)
        assert [(r.passed, r.detail) for r in TASK.check(json.loads(INPUT), output)] == list(zip(passed, details))
