"""Evaluation: scoring, summaries, the paired McNemar test, comparisons, verdicts, and the report."""

import json
import re
from datetime import datetime, timezone
from math import comb

import polars as pl
import pytest

from pipeline.engine.evaluate import report
from pipeline.engine.evaluate import report_html
from pipeline.engine.evaluate.scoring import (
    RESULT_SCHEMA, compare, examples_won_and_lost, mcnemar_exact, paired_bootstrap_ci, proportion_ci,
    regressions, score, summarize, verdict,
)
from pipeline.engine.evaluate.scoring import test_set_version as set_version
from pipeline.engine.tasks import load_task

TASK = load_task("nl2query")


class Unsliced(type(TASK)):
    """nl2query without report slices."""

    slice_name = None


class ByDatabase(type(TASK)):
    """nl2query sliced under another name, and showing an example by its dataset."""

    slice_name = "database"

    @staticmethod
    def display_text(input):
        return f"on {input['dataset']}"


NOW = datetime(2026, 10, 20, 12, 0, tzinfo=timezone.utc)
COLUMNS = ["duration_ms", "service.name", "http.status_code"]
REF_P95 = json.dumps({"calculations": [{"op": "P95", "column": "duration_ms"}], "breakdowns": ["service.name"],
                      "time_range": 7200})
REF_COUNT = json.dumps({"calculations": [{"op": "COUNT"}],
                        "filters": [{"column": "http.status_code", "op": ">=", "value": 500},
                                    {"column": "service.name", "op": "=", "value": "checkout"}]})


def make_test(rows):
    return pl.DataFrame([{"example_id": e, "input": json.dumps({"question": q, "columns": COLUMNS, "dataset": d}),
                          "output": o} for e, q, d, o in rows])


TEST = make_test([
    ("trace:a", "p95 duration_ms by service.name last 2 hours", "checkout-api", REF_P95),
    ("trace:b", "count of 5xx for checkout", "checkout-api", REF_COUNT),
    ("trace:c", "p95 duration_ms by service.name last 2 hours", "payments-worker", REF_P95),
    ("trace:d", "count of 5xx for checkout", "payments-worker", REF_COUNT),
])


# --- score ---------------------------------------------------------------------------------------------

def test_score_exact_match_is_on_normalised_output_and_pass_is_all_assertions():
    reordered = json.dumps({"time_range": 7200, "breakdowns": ["service.name"],
                            "calculations": [{"column": "duration_ms", "op": "P95"}]}, indent=2)
    swapped_filters = json.dumps({"calculations": [{"op": "COUNT"}],
                                  "filters": list(reversed(json.loads(REF_COUNT)["filters"]))})
    outputs = [
        "```json\n" + reordered + "\n```",                           # same query, other spelling: pass + exact
        swapped_filters.replace("500", "400"),                        # valid but different: pass, not exact
        json.dumps({**json.loads(REF_P95), "time_range": "2h"}),     # fails an assertion
        "I cannot answer that",                                       # not JSON
    ]
    results = score(TEST, outputs, TASK, "ft-1", latencies_ms=[10.0, 20.0, 30.0, 40.0], now=NOW)
    assert results.schema == pl.Schema(RESULT_SCHEMA)
    assert results["example_id"].to_list() == ["trace:a", "trace:b", "trace:c", "trace:d"]
    assert results["passed_checks"].to_list() == [True, True, False, False]
    assert results["exact_match"].to_list() == [True, False, False, False]
    assert results["failed_checks"].to_list() == [[], [], ["time_range_not_integer"], ["invalid_json"]]
    assert set(results["model_id"]) == {"ft-1"} and set(results["test_set_version"]) == {set_version(TEST)}
    metrics = [json.loads(m) for m in results["metrics"]]
    assert metrics[0]["latency_ms"] == 10.0 and metrics[3]["normalised_output"] is None
    assert metrics[0]["normalised_output"] == TASK.normalise(REF_P95)
    assert results["output"][3] == "I cannot answer that"


def test_score_swapped_filters_are_an_exact_match():
    swapped = json.dumps({"calculations": [{"op": "COUNT"}], "filters": list(reversed(json.loads(REF_COUNT)["filters"]))})
    results = score(TEST, [REF_P95, swapped, REF_P95, REF_COUNT], TASK, "m", now=NOW)
    assert results["exact_match"].all() and results["passed_checks"].all()
    assert "latency_ms" not in json.loads(results["metrics"][0])


def test_score_unparseable_reference_never_matches():
    test = make_test([("trace:x", "count", "d", "not json")])
    assert score(test, ["not json"], TASK, "m", now=NOW)["exact_match"].to_list() == [False]


def test_score_refuses_wrong_number_of_outputs():
    with pytest.raises(ValueError, match="3 outputs for 4 test examples"):
        score(TEST, [REF_P95] * 3, TASK, "m")


def test_test_set_version_depends_on_content_not_order():
    v = set_version(TEST)
    assert set_version(TEST.reverse()) == v
    changed = TEST.with_columns(output=pl.when(pl.col("example_id") == "trace:a").then(pl.lit(REF_COUNT))
                                .otherwise(pl.col("output")))
    assert set_version(changed) != v
    assert set_version(TEST.head(3)) != v


# --- summarize ----------------------------------------------------------------------------------------

def test_summarize_rates_failure_modes_and_slices():
    outputs = [REF_P95, json.dumps({"calculations": [{"op": "COUNT", "column": "duration_ms"}], "time_range": "1h"}),
               REF_P95.replace("7200", "3600"), "nope"]
    results = score(TEST, outputs, TASK, "m", now=NOW)
    summary = summarize(results, TEST, TASK)
    assert summary["n_examples"] == 4
    assert summary["passed_checks"] == pytest.approx(0.5)
    assert summary["exact_match"] == pytest.approx(0.25)
    assert summary["failure_rates"] == {"count_with_column": 0.25, "invalid_json": 0.25, "time_range_not_integer": 0.25}
    assert summary["slices"] == {"name": "dataset", "values": {
        "checkout-api": {"n": 2, "passed_checks": 0.5, "exact_match": 0.5},
        "payments-worker": {"n": 2, "passed_checks": 0.5, "exact_match": 0.0},
    }}
    assert "slices" not in summarize(results)
    assert "slices" not in summarize(results, TEST)
    assert "slices" not in summarize(results, TEST, Unsliced())
    unsliced = summarize(results, TEST, Unsliced())
    assert {k: v for k, v in summary.items() if k != "slices"} == unsliced


def test_summarize_empty_results():
    empty = pl.DataFrame(schema=RESULT_SCHEMA)
    assert summarize(empty, TEST.head(0)) == {
        "n_examples": 0, "passed_checks": None, "passed_checks_ci": None, "exact_match": None,
        "exact_match_ci": None, "exact_match_verified": None, "exact_match_verified_ci": None, "n_verified": 0,
        "exact_match_unverified": None, "exact_match_unverified_ci": None, "n_unverified": 0,
        "latency_ms_per_call": None, "cost_usd_per_call": None, "failure_rates": {}}


# --- McNemar ---------------------------------------------------------------------------------------------

def test_mcnemar_ten_wins_no_losses():
    result = mcnemar_exact([True] * 10, [False] * 10)
    assert result == {"wins": 10, "losses": 0, "p_value": pytest.approx(2 / 1024)}


def test_mcnemar_is_symmetric_and_ignores_concordant_pairs():
    cand = [True] * 7 + [False] * 2 + [True] * 30 + [False] * 11
    base = [False] * 7 + [True] * 2 + [True] * 30 + [False] * 11
    a, b = mcnemar_exact(cand, base), mcnemar_exact(base, cand)
    assert (a["wins"], a["losses"]) == (7, 2) and (b["wins"], b["losses"]) == (2, 7)
    expected = 2 * sum(comb(9, k) for k in range(3)) / 2 ** 9  # 2 * (1 + 9 + 36) / 512
    assert a["p_value"] == pytest.approx(expected) == pytest.approx(92 / 512)
    assert b["p_value"] == a["p_value"]
    assert mcnemar_exact(cand[:9], base[:9])["p_value"] == a["p_value"]


def test_mcnemar_edge_cases():
    assert mcnemar_exact([True, False, True], [True, False, True]) == {"wins": 0, "losses": 0, "p_value": 1.0}
    assert mcnemar_exact([], []) == {"wins": 0, "losses": 0, "p_value": 1.0}
    assert mcnemar_exact([True, False], [False, True])["p_value"] == 1.0  # 1 win, 1 loss: capped at 1
    assert mcnemar_exact([True], [False])["p_value"] == 1.0              # 2 * 1/2
    assert mcnemar_exact([True] * 5, [False] * 5)["p_value"] == pytest.approx(2 / 32)
    assert mcnemar_exact([True] * 6, [False] * 6)["p_value"] == pytest.approx(2 / 64)


# --- compare / verdict ------------------------------------------------------------------------------------

def results_frame(model, passed, exact, ids=None):
    ids = ids or [f"ex{i}" for i in range(len(passed))]
    return pl.DataFrame({"model_id": model, "example_id": ids, "output": ["{}"] * len(ids),
                         "passed_checks": passed, "exact_match": exact})


def test_compare_rates_differences_and_tests():
    cand = results_frame("ft", [True] * 10 + [True] * 10, [True] * 12 + [False] * 8)
    base = results_frame("base", [False] * 10 + [True] * 10, [True] * 10 + [False] * 10)
    out = compare(cand, base)
    assert set(out) == {"passed_checks", "exact_match", "exact_match_unverified"}
    assert out["exact_match_unverified"] == out["exact_match"]  # no reference marked verified: all are unverified
    assert out["passed_checks"]["candidate"] == 1.0 and out["passed_checks"]["baseline"] == 0.5
    assert out["passed_checks"]["difference"] == pytest.approx(0.5)
    assert out["passed_checks"]["wins"] == 10 and out["passed_checks"]["losses"] == 0
    assert out["passed_checks"]["p_value"] == pytest.approx(2 / 1024)
    assert out["exact_match"]["difference"] == pytest.approx(0.1)
    assert (out["exact_match"]["wins"], out["exact_match"]["losses"]) == (2, 0)
    assert out["exact_match"]["p_value"] == pytest.approx(0.5)
    assert verdict(out) == "better"


def test_compare_pairs_by_example_id_not_row_order():
    cand = results_frame("ft", [True, False, True], [True, False, True], ids=["a", "b", "c"])
    base = results_frame("base", [True, True, False], [True, True, False], ids=["a", "c", "b"]).reverse()
    out = compare(cand, base)
    assert out["passed_checks"]["wins"] == 0 and out["passed_checks"]["losses"] == 0


@pytest.mark.parametrize("base_ids", [["a", "b"], ["a", "b", "c", "d"], ["a", "b", "x"]])
def test_compare_refuses_mismatched_example_sets(base_ids):
    cand = results_frame("ft", [True] * 3, [True] * 3, ids=["a", "b", "c"])
    base = results_frame("base", [True] * len(base_ids), [True] * len(base_ids), ids=base_ids)
    with pytest.raises(ValueError, match="same examples"):
        compare(cand, base)


def _cmp(difference, p):
    return {"candidate": 0.5 + difference, "baseline": 0.5, "difference": difference, "wins": 0, "losses": 0,
            "p_value": p}


@pytest.mark.parametrize("passed,exact,expected", [
    (_cmp(0.2, 0.001), _cmp(0.1, 0.2), "better"),
    (_cmp(0.2, 0.001), _cmp(-0.1, 0.01), "worse"),        # any significant regression wins over a gain
    (_cmp(0.0, 1.0), _cmp(-0.3, 0.049), "worse"),
    (_cmp(0.3, 0.05), _cmp(-0.3, 0.05), "no_significant_difference"),  # p must be below alpha
    (_cmp(-0.4, 0.3), _cmp(0.4, 0.06), "no_significant_difference"),
])
def test_verdict(passed, exact, expected):
    assert verdict({"passed_checks": passed, "exact_match": exact}) == expected


def test_verdict_respects_alpha():
    comparison = {"passed_checks": _cmp(0.2, 0.03), "exact_match": _cmp(0.0, 1.0)}
    assert verdict(comparison, alpha=0.05) == "better"
    assert verdict(comparison, alpha=0.01) == "no_significant_difference"


def test_end_to_end_worse_model_is_worse():
    good = [REF_P95, REF_COUNT] * 2
    test = pl.concat([TEST] * 4).with_columns(example_id=pl.Series([f"e{i}" for i in range(16)]))
    base = score(test, good * 4, TASK, "base", now=NOW)
    cand = score(test, ["oops"] * 16, TASK, "ft", now=NOW)
    comparison = compare(cand, base)
    assert comparison["passed_checks"]["losses"] == 16
    assert verdict(comparison) == "worse"
    assert verdict(compare(base, cand)) == "better"
    assert verdict(compare(base, base)) == "no_significant_difference"


# --- report ------------------------------------------------------------------------------------------------

EVIL = 'p95 <script>alert("x")</script> by `service.name` | ** [link](http://evil) <img src=x onerror=y>'


LABELS = {"ft-1": "fine-tuned", "base": "base"}


def _render(question=EVIL, dataset="checkout-api", output="{\"a\": \"`|`\"}\nnext", task=TASK):
    test = make_test([("e1", question, dataset, REF_P95), ("e2", "count", dataset, REF_COUNT)])
    cand = score(test, [REF_P95, "nope"], task, "ft-1", now=NOW)
    base = score(test, [output, REF_COUNT], task, "base", now=NOW)
    summaries = {"ft-1": summarize(cand, test, task), "base": summarize(base, test, task)}
    comparison = compare(cand, base)
    examples = examples_won_and_lost(cand, base, test, task)
    return report.render("ft-1", "base", summaries, comparison, verdict(comparison), examples,
                         set_version(test), LABELS)


def markdown_lines(text):
    return re.split(r"\r\n|\r|\n", text)


def test_report_has_the_headline_table_and_sections():
    text = _render(question="p95 duration_ms by service.name")
    assert text.startswith("# Eval report: fine-tuned vs base: no significant difference")
    assert "fine-tuned `ft-1`; base `base`; test set" in text  # the ids once, for lookup
    assert "**Verdict: no significant difference.**" in text
    assert "| metric | n | base | fine-tuned | difference |" in text
    interval = r"\d+\.\d to \d+\.\d%"  # every rate with its n and 95% interval
    assert re.search(rf"\| passes all assertions \| 2 \| 50\.0% \({interval}\) \| 50\.0% \({interval}\) \| \+0\.0 pts \| "
                     r"-?\d+\.\d pts to \+\d+\.\d pts \| 1 / 1 \| 1 \|", text)
    assert "## By dataset" in text and "| checkout\\-api | 2 | 50.0% (9.5 to 90.5%) |" in text
    assert "| base: passes all assertions | base: exact match | fine-tuned: passes all assertions |" in text
    assert "## Failure modes (share of test examples, n=2)" in text
    assert "| invalid\\_json | 50.0% (9.5 to 90.5%) | 50.0% (9.5 to 90.5%) |" in text
    assert "## Examples fine-tuned wins (1 shown)" in text
    assert "## Examples fine-tuned loses (1 shown)" in text
    assert "- **p95 duration\\_ms by service.name**" in text and "- **count**" in text  # each by its question


def test_report_slices_and_examples_are_as_the_task_says():
    text = _render(question="p95 duration_ms by service.name", task=ByDatabase())
    assert "## By database" in text and "| database | n |" in text and "| checkout\\-api | 2 |" in text
    assert "## By dataset" not in text
    assert "- **on checkout\\-api**" in text and "duration\\_ms" not in text.split("## Examples")[1]
    unsliced = _render(question="p95 duration_ms by service.name", task=Unsliced())
    assert "## By" not in unsliced
    assert "## Failure modes" in unsliced and "- **p95 duration\\_ms by service.name**" in unsliced


def test_report_escapes_untrusted_question_and_outputs():
    text = _render()
    for tag in ("<script", "</script", "<img"):
        assert tag not in text.replace("\\<", "")
    assert all(text[i - 1] == "\\" for i in range(len(text)) if text[i] == "<")
    question_line = next(line for line in markdown_lines(text) if line.startswith("- **"))
    assert question_line.endswith("**")
    assert "\\|" in question_line and "|" not in question_line.replace("\\|", "")
    assert "`" not in question_line.replace("\\`", "")
    assert "[link](http" not in question_line
    # outputs are code spans on one line that backticks and newlines cannot break out of
    baseline_line = next(line for line in markdown_lines(text) if line.startswith("  - base:"))
    assert baseline_line.count("`") == 2 and baseline_line.endswith("`")
    assert "next" in baseline_line


def test_report_escapes_untrusted_dataset_in_the_table():
    text = _render(question="count", dataset="evil | <b>x</b> | `y`")
    rows = [line for line in markdown_lines(text) if line.startswith("| evil")]
    assert len(rows) == 1
    row = rows[0]
    assert "<b>" not in row
    # the row still has exactly the table's six cells (slice, n, two rates per model)
    assert len(re.findall(r"(?<!\\)\|", row)) == 7


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_report_keeps_multi_line_untrusted_text_on_one_line(newline):
    question = f"p95 duration_ms{newline}# Injected heading{newline}| a | b |"
    text = _render(question=question, dataset=f"checkout{newline}## fake", output=f"{{}}{newline}# out")
    lines = [line.lstrip() for line in markdown_lines(text)]
    assert not any(line.startswith("# Injected") or line.startswith("| a |") for line in lines)
    assert not any(line.startswith("## fake") or line.startswith("# out") for line in lines)
    assert not any(line.startswith("# ") for line in lines[1:])


# --- intervals, judge metric, regressions ----------------------------------------------------------------

def test_summarize_latency_cost_and_intervals():
    results = score(TEST, [REF_P95, REF_COUNT, "x", "y"], TASK, "m", latencies_ms=[10.0, 20.0, 30.0, 40.0], now=NOW)
    summary = summarize(results)
    assert summary["latency_ms_per_call"] == pytest.approx(25.0) and summary["cost_usd_per_call"] is None
    low, high = summary["passed_checks_ci"]
    assert low < 0.5 < high and (low, high) == pytest.approx(proportion_ci(2, 4))


def test_wilson_interval():
    low, high = proportion_ci(50, 100)
    assert (low, high) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    assert proportion_ci(0, 10)[0] == pytest.approx(0.0) and proportion_ci(10, 10)[1] == pytest.approx(1.0)
    assert proportion_ci(0, 0) == (0.0, 1.0)


def test_paired_bootstrap_interval_covers_the_difference_and_narrows_with_n():
    small = paired_bootstrap_ci([True] * 6 + [False] * 4, [False] * 3 + [True] * 7)
    big = paired_bootstrap_ci(([True] * 6 + [False] * 4) * 50, ([False] * 3 + [True] * 7) * 50)
    assert small[0] < 0.3 - 0.7 + 0.6 < small[1]  # observed difference 0.6 - 0.7 = -0.1
    assert big[1] - big[0] < small[1] - small[0]
    assert paired_bootstrap_ci([True] * 5, [True] * 5) == (0.0, 0.0)
    assert paired_bootstrap_ci([], []) == (0.0, 0.0)


def test_compare_includes_the_judge_on_pairs_it_judged():
    cand = results_frame("ft", [True] * 4, [True] * 4).with_columns(judge_pass=pl.Series([True, True, None, False]))
    base = results_frame("base", [True] * 4, [True] * 4).with_columns(judge_pass=pl.Series([False, True, True, None]))
    out = compare(cand, base)
    assert out["judge_pass"]["n"] == 2 and out["judge_pass"]["wins"] == 1
    assert out["passed_checks"]["n"] == 4 and "ci_low" in out["passed_checks"]
    assert "judge_pass" not in compare(results_frame("ft", [True], [True]), results_frame("b", [True], [True]))


def test_regressions_name_the_metric_and_the_drop():
    cand = results_frame("ft", [False] * 12 + [True] * 8, [True] * 20)
    base = results_frame("old", [True] * 20, [True] * 20)
    comparison = compare(cand, base)
    found = regressions(comparison, "old")
    assert len(found) == 1
    assert found[0].startswith("passes all assertions vs old: 100.0% -> 40.0% (-60.0 pts, 95% CI ")
    assert "12 losses / 0 wins" in found[0]
    assert regressions(comparison, "old", min_effect=0.7) == []
    assert regressions(comparison, "old", skip=("passed_checks",)) == []
    assert regressions(compare(base, cand), "ft") == []
    assert verdict(comparison, min_effect=0.7) == "no_significant_difference"


def test_overview_lists_every_model_and_says_when_the_judge_was_off():
    results = score(TEST, [REF_P95, REF_COUNT, "x", "y"], TASK, "ft", latencies_ms=[1.0] * 4, now=NOW)
    summaries = {"ft": summarize(results), "base": summarize(results)}
    decision = "Not promoted: the fine-tuned model is significantly worse than the promoted model on exact match " \
               "(-4.1 pts, p=0.012)"
    text = report.render_models(summaries, {"ft": "fine-tuned", "base": "base"}, {"status": "off", "reason": "no model"},
                                "v1", decision=decision, lost=["few-shot k=3: exact match 8.0 pts below the incumbent "
                                                               "(lower bound -11.2 < -2)"], alpha=0.05)
    lines = text.splitlines()
    assert lines[0] == "# Eval report, test set `v1` (n=4 real examples never seen in training)"
    assert lines[2] == ("**Not promoted: the fine-tuned model is significantly worse than the promoted model on "
                        "exact match (-4.1 pts, p=0.012).**")  # the decision first, as written
    assert lines[4:6] == ["Why the other candidates lost:",
                          "- few-shot k=3: exact match 8.0 pts below the incumbent (lower bound -11.2 \\< -2)"]
    assert "| fine-tuned | `ft` | n/a |" in text and "| base | `base` | n/a |" in text  # each id once, for lookup
    assert "| model | passes all assertions (n=4) | exact match, verified references (n=0) |" in text
    assert ("| fine-tuned | 50.0% (15.0 to 85.0%) | n/a | 50.0% (15.0 to 85.0%) | n/a | n/a | 1.0 ms | "
            "n/a (price unknown) |") in text
    assert "_The judge was off: no model._" in text
    assert "## Definitions" in text and "- **significant**: McNemar p below 0.05 and a change of at least 0.0 pts" in text
    summaries["ft"]["judge"] = {"n": 4, "observed": 0.5, "corrected": 0.6, "ci_low": 0.4, "ci_high": 0.8}
    align = {"agreement": 0.7, "n_labelled": 20, "tpr": 0.8, "tnr": 0.6, "flagged": True, "flag_reason": "too low"}
    text = report.render_models(summaries, {}, {"status": "on", "version": "j1", "alignment": align}, "v1")
    assert "| `ft` | 50.0% (15.0 to 85.0%) | n/a | 50.0% (15.0 to 85.0%) | 50.0% (15.0 to 85.0%), n=4 | 60.0% (40.0 to 80.0%) |" in text
    assert "agreement with people 70.0% on 20 labelled traces" in text and "not aligned with people: too low" in text


def test_html_report_escapes_untrusted_text_and_embeds_the_chart(tmp_path):
    test = make_test([("e1", EVIL, "d", REF_P95), ("e2", "count", "d", REF_COUNT)])
    cand = score(test, [REF_P95, "<script>x</script>"], TASK, "ft<b>", now=NOW)
    base = score(test, ["nope", REF_COUNT], TASK, "base", now=NOW)
    summaries = {"ft<b>": summarize(cand), "base": summarize(base)}
    comparison = compare(cand, base)
    document = report_html.render_html(
        "ft<b>", summaries, {"ft<b>": "fine-tuned"}, {"status": "off", "reason": "no model"},
        {"base": {"comparison": comparison, "verdict": verdict(comparison),
                  "examples": examples_won_and_lost(cand, base, test, TASK)}}, ["exact match vs base: <i>"], "v1")
    assert "<script" not in document and "<img src=x" not in document and "ft<b>" not in document
    assert "&lt;script&gt;" in document and "ft&lt;b&gt;" in document and "data:image/png;base64," in document
    assert ("Promotion gate: blocked.</p>\n<p>Why the other candidates lost:</p><ul><li>exact match vs base: &lt;i&gt;"
            "</li>") in document
    path = report_html.write_html(tmp_path / "r" / "report.html", document)
    assert path.read_text(encoding="utf-8") == document and [p.name for p in path.parent.iterdir()] == ["report.html"]


def test_html_report_states_n_intervals_slices_definitions_and_names_models_by_label():
    test = make_test([("e1", "p95", "checkout-api", REF_P95), ("e2", "count", "payments", REF_COUNT)])
    cand = score(test, [REF_P95, REF_COUNT], TASK, "ft-7f3a", now=NOW)
    base = score(test, ["nope", REF_COUNT], TASK, "base-91c2", now=NOW)
    summaries = {"ft-7f3a": summarize(cand, test, TASK), "base-91c2": summarize(base, test, TASK)}
    comparison = compare(cand, base)
    decision = "Not promoted: the fine-tuned model is not significantly better than its base"
    document = report_html.render_html(
        "ft-7f3a", summaries, {"ft-7f3a": "fine-tuned", "base-91c2": "base"}, {"status": "off"},
        {"base-91c2": {"comparison": comparison, "verdict": verdict(comparison),
                       "examples": examples_won_and_lost(cand, base, test, TASK)}}, [], "v1", decision=decision,
        alpha=0.05, min_regression=0.02)
    top = document.index("<h2>Models</h2>")
    assert f"<p class='bad'>Promotion gate: {decision}.</p>" in document[:top]  # the decision before anything else
    assert "<p>Test set <code>v1</code>: n=2 real examples never seen in training.</p>" in document
    assert "<tr><td>fine-tuned</td><td><code>ft-7f3a</code></td>" in document  # the id once, beside its label
    assert document.count("ft-7f3a") == 3  # title, heading, models table: elsewhere the label
    assert "<th>passes all assertions (n=2)</th>" in document
    assert "<tr><td>base</td><td>50.0% (9.5 to 90.5%)</td>" in document
    assert "<h2>fine-tuned vs base: no significant difference</h2>" in document
    assert "<tr><td>passes all assertions</td><td>2</td><td>50.0% (9.5 to 90.5%)</td><td>100.0% (34.2 to 100.0%)</td>" \
           "<td>+50.0 pts</td>" in document
    assert "<h2>By dataset</h2>" in document and "<th>base: passes all assertions</th>" in document
    assert ("<tr><td>checkout-api</td><td>1</td><td>100.0% (20.7 to 100.0%)</td><td>100.0% (20.7 to 100.0%)</td>"
            "<td>0.0% (0.0 to 79.3%)</td>") in document
    assert "<h2>Definitions</h2>" in document and "McNemar p below 0.05 and a change of at least 2.0 pts" in document
    assert "<h2>Training" not in document and "<th>data version</th>" in document
