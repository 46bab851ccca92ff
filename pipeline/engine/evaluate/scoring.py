"""Model evaluation on the test split: score outputs, summarise (per report slice when the task
has slices: :func:`pipeline.engine.tasks.hooks.slice_of`), compare two models on the same
examples with paired tests (exact McNemar and a paired bootstrap interval of the difference),
decide a verdict, and name the regressions that block promotion.

Exact match is also split by the reference (:func:`mark_references`): on references a person
verified (a correction, or an output a person marked good) it measures correctness; on the
others (production outputs that passed the assertions, some of them valid but wrong) it measures
agreement with the production model. Which references are verified comes from training_examples
when the report is made, not from eval_results: it is a fact about the reference, so stored
results stay reusable when a person verifies one later."""

from __future__ import annotations

import hashlib
import json
import math
from datetime import datetime, timezone
from statistics import NormalDist
from typing import Any

import numpy as np
import polars as pl

from pipeline.engine.tasks import Task, hooks

RESULT_SCHEMA = {
    "model_id": pl.String, "example_id": pl.String, "test_set_version": pl.String,
    "output": pl.String, "passed_checks": pl.Boolean, "failed_checks": pl.List(pl.String),
    "exact_match": pl.Boolean, "metrics": pl.String, "evaluated_at": pl.Datetime("us", "UTC"),
}
#: Metrics that gate promotion; each is a per-example boolean in eval_results.
HEADLINE = ("passed_checks", "exact_match")
#: The judge's per-example outcome, compared like a headline metric when the judge is on.
JUDGE_METRIC = "judge_pass"
#: Exact match on the references a person verified, and on the others (null on the rest of the examples).
VERIFIED_METRIC, UNVERIFIED_METRIC = "exact_match_verified", "exact_match_unverified"
REFERENCE_METRICS = (VERIFIED_METRIC, UNVERIFIED_METRIC)
LABELS = {"passed_checks": "passes all assertions", "exact_match": "exact match (normalised)",
          VERIFIED_METRIC: "exact match, verified references",
          UNVERIFIED_METRIC: "agreement with production, unverified references", JUDGE_METRIC: "judge pass"}
#: The slice of an example whose task gives it none.
NO_SLICE = "(none)"


def test_set_version(test: pl.DataFrame) -> str:
    """Content hash of the test examples: results are comparable only within one version."""
    digest = hashlib.sha256()
    for row in test.select("example_id", "input", "output").sort("example_id").iter_rows():
        digest.update("\x1f".join(row).encode() + b"\x1e")
    return digest.hexdigest()[:16]


def score(test: pl.DataFrame, outputs: list[str], task: Task, model_id: str,
          latencies_ms: list[float] | None = None, now: datetime | None = None) -> pl.DataFrame:
    """eval_results rows for ``outputs`` (one per test example, same order)."""
    if len(outputs) != test.height:
        raise ValueError(f"{len(outputs)} outputs for {test.height} test examples")
    now = now or datetime.now(timezone.utc)
    version = test_set_version(test)
    rows = []
    for n, (example_id, input_json, reference, output) in enumerate(
            zip(test["example_id"], test["input"], test["output"], outputs)):
        input = json.loads(input_json)
        failed = [r.check_name for r in task.check(input, output) if r.passed is False]
        normalised = hooks.normalise(task, output, input)
        metrics: dict[str, Any] = {"normalised_output": normalised}
        if latencies_ms is not None:
            metrics["latency_ms"] = latencies_ms[n]
        rows.append({"model_id": model_id, "example_id": example_id, "test_set_version": version,
                     "output": output, "passed_checks": not failed, "failed_checks": failed,
                     "exact_match": _matches(task, output, reference, input),
                     "metrics": json.dumps(metrics), "evaluated_at": now})
    return pl.DataFrame(rows, schema=RESULT_SCHEMA)


def _matches(task: Task, output: str, reference: str, input: dict[str, Any]) -> bool:
    """Whether ``output`` matches ``reference`` on what the task's exact match compares."""
    key = hooks.match_key(task, output, input)
    return key is not None and key == hooks.match_key(task, reference, input)


def mark_references(results: pl.DataFrame, test: pl.DataFrame | None = None) -> pl.DataFrame:
    """``results`` with ``exact_match_verified`` (exact match where the test reference was
    verified by a person, null elsewhere) and ``exact_match_unverified`` (the reverse), from
    ``test``'s ``reference_verified`` column; without it (or without ``test``) no reference is verified."""
    if test is not None and "reference_verified" in test.columns:
        verified = test.filter(pl.col("reference_verified").fill_null(False))["example_id"].to_list()
    else:
        verified = []
    checked = pl.col("example_id").is_in(verified)
    return results.with_columns(pl.when(checked).then(pl.col("exact_match")).alias(VERIFIED_METRIC),
                                pl.when(~checked).then(pl.col("exact_match")).alias(UNVERIFIED_METRIC))


def summarize(results: pl.DataFrame, test: pl.DataFrame | None = None, task: Task | None = None) -> dict[str, Any]:
    """Headline rates, exact match by reference (``exact_match_verified`` with ``n_verified``,
    ``exact_match_unverified`` with ``n_unverified``, each with its interval: the results'
    columns when :func:`mark_references` marked them, else marked from ``test``), the failure
    rate per failure mode, and, given ``test`` and a ``task`` with report slices, ``slices``:
    ``{"name": the task's slice_name, "values": slice -> n and rates}``."""
    n = results.height
    summary: dict[str, Any] = {"n_examples": n}
    for metric in HEADLINE:
        summary[metric] = results[metric].mean() if n else None
        summary[f"{metric}_ci"] = list(proportion_ci(int(results[metric].sum()), n)) if n else None
    marked = results if set(REFERENCE_METRICS) <= set(results.columns) else mark_references(results, test)
    for metric, count in ((VERIFIED_METRIC, "n_verified"), (UNVERIFIED_METRIC, "n_unverified")):
        values = marked[metric].drop_nulls()
        summary[metric] = values.mean() if values.len() else None
        summary[f"{metric}_ci"] = list(proportion_ci(int(values.sum()), values.len())) if values.len() else None
        summary[count] = values.len()
    for key in ("latency_ms", "cost_usd"):
        values = (results["metrics"].str.json_path_match(f"$.{key}").cast(pl.Float64).drop_nulls()
                  if n and "metrics" in results.columns else pl.Series([], dtype=pl.Float64))
        summary[f"{key}_per_call"] = values.mean() if values.len() else None
    modes = results.select(pl.col("failed_checks").explode()).drop_nulls().group_by("failed_checks").len()
    summary["failure_rates"] = {mode: count / n for mode, count in sorted(modes.iter_rows())}
    name = hooks.slice_name(task) if task is not None else None
    if test is not None and n and name:
        slice_of = test.select("example_id", pl.col("input").map_elements(
            lambda i: _slice(task, i), return_dtype=pl.String).alias("slice"))
        summary["slices"] = {"name": name, "values": {
            s: {"n": k, "passed_checks": p, "exact_match": e}
            for s, k, p, e in results.join(slice_of, on="example_id").group_by("slice").agg(
                pl.len(), pl.col("passed_checks").mean(), pl.col("exact_match").mean()).sort("slice").iter_rows()}}
    return summary


def _slice(task: Task, input_json: str) -> str:
    value = hooks.slice_of(task, json.loads(input_json))
    return NO_SLICE if value is None else value


def proportion_ci(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion."""
    if n == 0:
        return (0.0, 1.0)
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def paired_bootstrap_ci(candidate: list[bool], baseline: list[bool], n_boot: int = 4000,
                        confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of rate(candidate) - rate(baseline), resampling examples.

    Only the counts of wins, losses and ties matter, so each resample is one multinomial draw.
    """
    n = len(candidate)
    if n == 0:
        return (0.0, 0.0)
    wins = sum(1 for c, b in zip(candidate, baseline) if c and not b)
    losses = sum(1 for c, b in zip(candidate, baseline) if b and not c)
    draws = np.random.default_rng(seed).multinomial(n, [wins / n, losses / n, (n - wins - losses) / n], n_boot)
    differences = (draws[:, 0] - draws[:, 1]) / n
    tail = (1 - confidence) / 2
    low, high = np.quantile(differences, [tail, 1 - tail])
    return (float(low), float(high))


def mcnemar_exact(candidate: list[bool], baseline: list[bool]) -> dict[str, Any]:
    """Exact two-sided McNemar test on paired booleans: wins, losses and the p-value."""
    wins = sum(1 for c, b in zip(candidate, baseline) if c and not b)
    losses = sum(1 for c, b in zip(candidate, baseline) if b and not c)
    discordant = wins + losses
    if discordant == 0:
        return {"wins": 0, "losses": 0, "p_value": 1.0}
    tail = sum(math.comb(discordant, k) for k in range(min(wins, losses) + 1)) / 2 ** discordant
    return {"wins": wins, "losses": losses, "p_value": min(1.0, 2 * tail)}


def compare(candidate: pl.DataFrame, baseline: pl.DataFrame) -> dict[str, dict[str, Any]]:
    """Per headline metric, exact match by reference (as :func:`mark_references` marked the
    frames; unmarked: no reference verified) and ``judge_pass`` when both frames have it: both
    rates, the difference with its paired bootstrap interval, and the exact McNemar test.

    Examples where a metric is null on either side (the judge could not judge; a reference of the
    other kind) are left out of that metric's comparison; ``n`` says how many pairs remain, and a
    metric beyond the headline with none is left out.
    """
    candidate, baseline = (f if set(REFERENCE_METRICS) <= set(f.columns) else mark_references(f)
                           for f in (candidate, baseline))
    paired = candidate.join(baseline, on="example_id", suffix="_baseline")
    if paired.height != candidate.height or paired.height != baseline.height:
        raise ValueError("candidate and baseline were not evaluated on the same examples")
    judged = JUDGE_METRIC in candidate.columns and JUDGE_METRIC in baseline.columns
    optional = [*REFERENCE_METRICS, *[JUDGE_METRIC] * judged]
    out = {}
    for metric in [*HEADLINE, *optional]:
        both = paired.select(metric, f"{metric}_baseline").drop_nulls()
        if metric in optional and both.is_empty():
            continue
        c, b = both[metric].to_list(), both[f"{metric}_baseline"].to_list()
        rate_c, rate_b = (sum(c) / len(c), sum(b) / len(b)) if c else (0.0, 0.0)
        low, high = paired_bootstrap_ci(c, b)
        out[metric] = {"candidate": rate_c, "baseline": rate_b, "difference": rate_c - rate_b, "n": len(c),
                       "ci_low": low, "ci_high": high, **mcnemar_exact(c, b)}
    return out


def _significant(change: dict[str, Any], alpha: float, min_effect: float) -> bool:
    return change["p_value"] < alpha and abs(change["difference"]) >= min_effect


def verdict(comparison: dict[str, dict[str, Any]], alpha: float = 0.05, min_effect: float = 0.0) -> str:
    """'worse' if any compared metric is significantly worse, 'better' if one is significantly
    better and none worse, else 'no_significant_difference'. Significant: McNemar p below
    ``alpha`` and a difference of at least ``min_effect`` (a share, 0.02 = 2 points). Exact match
    by reference is reported, not decided on: ``exact_match``, which it splits, is."""
    significant = {m: v for m, v in comparison.items()
                   if m not in REFERENCE_METRICS and _significant(v, alpha, min_effect)}
    if any(v["difference"] < 0 for v in significant.values()):
        return "worse"
    if any(v["difference"] > 0 for v in significant.values()):
        return "better"
    return "no_significant_difference"


def regressions(comparison: dict[str, dict[str, Any]], baseline_id: str, alpha: float = 0.05,
                min_effect: float = 0.0, skip: tuple[str, ...] = ()) -> list[str]:
    """One message per metric on which the candidate is significantly worse than ``baseline_id``
    (exact match by reference aside, as in :func:`verdict`): the metric, both rates, the drop in
    points with its interval, and the p-value."""
    out = []
    for metric, c in comparison.items():
        if metric in (*skip, *REFERENCE_METRICS) or c["difference"] >= 0 or not _significant(c, alpha, min_effect):
            continue
        out.append(f"{LABELS.get(metric, metric)} vs {baseline_id}: {100 * c['baseline']:.1f}% -> "
                   f"{100 * c['candidate']:.1f}% ({100 * c['difference']:+.1f} pts, 95% CI "
                   f"{100 * c['ci_low']:+.1f} to {100 * c['ci_high']:+.1f}; McNemar p={c['p_value']:.2g}, "
                   f"{c['losses']} losses / {c['wins']} wins)")
    return out


def examples_won_and_lost(candidate: pl.DataFrame, baseline: pl.DataFrame, test: pl.DataFrame, task: Task,
                          metric: str = "exact_match", n: int = 5) -> dict[str, pl.DataFrame]:
    """A few examples the candidate gets right and the baseline wrong (won), and the reverse; each
    with ``text``, what a person reads first of its input (:func:`pipeline.engine.tasks.hooks.display_text`),
    and whether a person verified its reference (``test``'s ``reference_verified``; absent: not)."""
    verified = (pl.col("reference_verified").fill_null(False) if "reference_verified" in test.columns
                else pl.lit(False)).alias("reference_verified")
    paired = (candidate.select("example_id", "output", metric)
              .join(baseline.select("example_id", "output", metric), on="example_id", suffix="_baseline")
              .join(test.select("example_id", "input", pl.col("output").alias("reference"), verified), on="example_id"))
    won = paired.filter(pl.col(metric) & ~pl.col(f"{metric}_baseline")).head(n)
    lost = paired.filter(~pl.col(metric) & pl.col(f"{metric}_baseline")).head(n)
    text = pl.col("input").map_elements(lambda i: hooks.display_text(task, json.loads(i)), return_dtype=pl.String)
    return {"won": won.with_columns(text.alias("text")), "lost": lost.with_columns(text.alias("text"))}
