"""Human-style review decisions on demo traces, as the annotation app would record them.

About 60% of the reviewed traces are ones whose output is wrong (reviewers go looking where
assertions or thumbs-down point), the rest a uniform sample of the remaining traces, so mostly
good ones. A bad label carries the corrected query (the gold, canonical) and a failure mode:
the assertion's name for assertion-visible failures, a human mode for semantic errors.

The traces the annotation app routes to two annotators (``needs_second_opinion``, about 10%)
get a second, different annotator's decision: the same label about 85% of the time and, when
both call it bad, the same failure mode about 80% of the time (a false alarm or a missed error
carries no correction). The lead settles most of the disagreements she is not part of with an
adjudication (``role: adjudication``, the right decision); the rest wait in the queue.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from pipeline.demo import assistant
from pipeline.demo.traces import PROVIDER_ERROR, GeneratedTrace, iso, parse_ts
from pipeline.engine.label.agreement import ADJUDICATION, SECOND_OPINION_SHARE, needs_second_opinion
from pipeline.engine.tasks import nl2query

N_ANNOTATIONS = 400
FAILING_SHARE = 0.6
ANNOTATORS = ("Maya", "Tomas", "Priya", "Jonah", "Ines")
_ANNOTATOR_WEIGHTS = (35, 25, 20, 12, 8)
LEAD = "Maya"
UNSPECIFIED = "unspecified"
#: A second annotator: the chance of the same label, and of the same failure mode when both say bad.
SAME_LABEL = 0.85
SAME_MODE = 0.8
#: The share of disagreements (not involving the lead) the lead has adjudicated.
ADJUDICATED = 0.6

_GOOD = ("Looks right.", "Correct query, matches the question.", "LGTM.", "Right columns, right time range.",
         "Matches what the user asked for.", "Good answer.", "Checked the breakdown and filters, all fine.",
         "Correct.")
_GOOD_FENCED = ("Correct, the code fence is harmless.", "Right query, just wrapped in ```json.")
_CRITIQUES: dict[str, tuple[str, ...]] = {
    "invalid_json": ("Not valid JSON, the app can't parse this.", "Output is broken JSON: {detail}.",
                     "Model added prose or cut off mid-object; unparseable.", "Can't parse it."),
    "invalid_shape": ("Query has the wrong structure: {detail}.", "Shape is off ({detail}).",
                      "Not our query schema."),
    "unknown_calculation_op": ("{detail}; we don't support that op.", "Made-up calculation op.",
                               "Wrong op name: {detail}."),
    "unknown_filter_op": ("{detail}.", "Filter operator isn't one of ours.", "Used a SQL-style operator: {detail}."),
    "unknown_column": ("Hallucinated column: {detail}.", "Made up a column that doesn't exist here.",
                       "Wrong column ({detail}).", "Invented a column name."),
    "count_with_column": ("COUNT shouldn't take a column.", "{detail}.", "Count with a column, should be plain COUNT or COUNT_DISTINCT."),
    "missing_column": ("{detail}.", "Percentile/aggregate without a column.", "Calculation is missing its column."),
    "order_not_in_calculations": ("Orders by something it doesn't calculate.", "{detail}.",
                                  "Sort refers to a calculation that isn't in the query."),
    "having_not_in_calculations": ("{detail}.", "Having clause on a calculation we don't compute."),
    "time_range_not_integer": ("time_range must be seconds as an integer: {detail}.", "Time range is a string, not seconds.",
                               "{detail}."),
    "limit_not_integer": ("Limit should be an integer.", "{detail}."),
    "invalid_filter_value": ("Filter value doesn't fit its operator: {detail}.", "{detail}.",
                             "exists/does-not-exist take no value and in takes a list; this filter gets it wrong."),
    "invalid_having": ("Having clause is incomplete: {detail}.", "{detail}.",
                       "A having needs a calculate_op, an op and a numeric value."),
    "heatmap_not_allowed": ("Can't order or filter groups by a HEATMAP.", "{detail}.",
                            "HEATMAP isn't allowed in orders or havings."),
    "invalid_time_window": ("Time window is broken: {detail}.", "{detail}.",
                            "start_time/end_time don't make a valid window."),
    "invalid_granularity": ("Granularity doesn't fit the time range: {detail}.", "{detail}.",
                            "Bucket size is wrong for this window."),
    "wrong_breakdown": ("Grouped by the wrong field.", "User asked for a different breakdown.",
                        "Breakdown doesn't match the question.", "Wrong group by."),
    "wrong_time_range": ("Wrong time range.", "Time window doesn't match what was asked.",
                         "Asked for a different period; time_range is off.", "Time range is wrong."),
    "wrong_calculation": ("Wrong aggregate, question asks for something else.", "Used the wrong calculation.",
                          "Calculation op doesn't match the question.", "Should be a different percentile/aggregate."),
    "missing_filter": ("Dropped one of the filters.", "Missing a filter from the question.",
                       "Filter from the question isn't applied.", "Forgot the filter."),
    UNSPECIFIED: ("Wrong output.", "This isn't right.", "Not what we want here."),
}


def _failure_detail(trace: GeneratedTrace, mode: str) -> str:
    for result in nl2query.check(trace.record["input"], trace.record["output"]):
        if result.check_name == mode and result.passed is False:
            return result.detail
    return ""


def _critique(trace: GeneratedTrace, mode: str, rng: random.Random) -> str:
    template = rng.choice(_CRITIQUES[mode])
    detail = _failure_detail(trace, mode)
    if "{detail}" in template and not detail:
        template = _CRITIQUES[mode][0] if "{detail}" not in _CRITIQUES[mode][0] else "Wrong output."
    critique = template.format(detail=detail)
    return critique[0].upper() + critique[1:]


def _correction(trace: GeneratedTrace) -> str:
    correction = nl2query.dump(trace.gold)
    failed = [r for r in nl2query.check(trace.record["input"], correction) if r.passed is not True]
    assert not failed, f"correction fails checks: {failed}"
    return correction


def _is_good(trace: GeneratedTrace) -> bool:
    return trace.mode in (assistant.CORRECT, assistant.FENCED)


def annotate(trace: GeneratedTrace, rng: random.Random) -> dict[str, Any]:
    """One reviewer's decision on ``trace``."""
    mode = trace.mode
    ts = trace.ts + timedelta(minutes=rng.uniform(20, 4 * 24 * 60))
    base = {"trace_id": trace.record["trace_id"], "annotator": rng.choices(ANNOTATORS, _ANNOTATOR_WEIGHTS)[0]}
    if _is_good(trace):
        critique = rng.choice(_GOOD_FENCED if mode == assistant.FENCED and rng.random() < 0.5 else _GOOD)
        return {**base, "label": "good", "failure_mode": None, "correction": None, "critique": critique,
                "annotated_at": iso(ts)}
    critique = _critique(trace, mode, rng)
    return {**base, "label": "bad", "failure_mode": mode, "correction": _correction(trace),
            "critique": critique, "annotated_at": iso(ts)}


def second_opinion(trace: GeneratedTrace, first: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Another annotator's decision on ``trace``, after ``first`` (the right one): the same label
    with probability SAME_LABEL, and when both say bad the same failure mode with SAME_MODE."""
    others = [(a, w) for a, w in zip(ANNOTATORS, _ANNOTATOR_WEIGHTS) if a != first["annotator"]]
    annotator = rng.choices([a for a, _ in others], [w for _, w in others])[0]
    ts = parse_ts(first["annotated_at"]) + timedelta(minutes=rng.uniform(30, 3 * 24 * 60))
    base = {"trace_id": trace.record["trace_id"], "annotator": annotator}
    same_label = rng.random() < SAME_LABEL
    if _is_good(trace) == same_label:  # a right output seen as right, or a wrong one missed
        return {**base, "label": "good", "failure_mode": None, "correction": None, "critique": rng.choice(_GOOD),
                "annotated_at": iso(ts)}
    if not _is_good(trace) and rng.random() < SAME_MODE:
        mode = trace.mode
    else:  # another failure the output shows; else, for a semantic error, another one; else none named
        shown = [r.check_name for r in nl2query.check(trace.record["input"], trace.record["output"])
                 if r.passed is False and r.check_name != trace.mode]
        semantic = [m for m in assistant.SEMANTIC_MODES if m != trace.mode]
        mode = rng.choice(shown or (semantic if trace.mode in assistant.SEMANTIC_MODES or _is_good(trace)
                                    else [UNSPECIFIED]))
    correction = None if _is_good(trace) else _correction(trace)
    return {**base, "label": "bad", "failure_mode": mode, "correction": correction,
            "critique": _critique(trace, mode, rng), "annotated_at": iso(ts)}


def adjudicate(first: dict[str, Any], second: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """The lead's settled decision on a disagreement: the right decision (``first``), with role
    'adjudication'."""
    ts = parse_ts(max(first["annotated_at"], second["annotated_at"])) + timedelta(minutes=rng.uniform(60, 2 * 24 * 60))
    return {**first, "annotator": LEAD, "critique": f"Adjudicated: {first['critique']}", "annotated_at": iso(ts),
            "role": ADJUDICATION}


def _disagree(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (a["label"], a["failure_mode"]) != (b["label"], b["failure_mode"])


def sample_annotations(traces: list[GeneratedTrace], seed: int, n: int = N_ANNOTATIONS) -> list[dict[str, Any]]:
    """About ``n`` traces decided: 60% wrong outputs, 40% uniform over the rest; the routed ones
    decided twice, some disagreements adjudicated; by annotated_at."""
    rng = random.Random(f"{seed}:annotations")
    wrong = [t for t in traces if t.mode not in (assistant.CORRECT, assistant.FENCED, PROVIDER_ERROR)]
    chosen = rng.sample(wrong, min(len(wrong), round(n * FAILING_SHARE)))
    ids = {t.record["trace_id"] for t in chosen}
    rest = [t for t in traces if t.mode != PROVIDER_ERROR and t.record["trace_id"] not in ids]
    chosen += rng.sample(rest, n - len(chosen))
    rows = [annotate(t, rng) for t in chosen]
    again = random.Random(f"{seed}:second_opinions")
    for trace, first in zip(chosen, list(rows)):
        if not needs_second_opinion(trace.record["trace_id"], SECOND_OPINION_SHARE):
            continue
        second = second_opinion(trace, first, again)
        rows.append(second)
        if (_disagree(first, second) and LEAD not in (first["annotator"], second["annotator"])
                and again.random() < ADJUDICATED):
            rows.append(adjudicate(first, second, again))
    return sorted(rows, key=lambda r: (r["annotated_at"], r["trace_id"]))
