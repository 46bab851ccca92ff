"""The candidates compared on the same test examples: summaries (with the judge's corrected pass
rate when it is on, latency per call as the median and 95th percentile of each item's generation
time, cost per call), each candidate against each of its references (paired comparisons with the
one-sided lower bound of every gated metric's difference, verdicts, examples won and lost), the
policy's decision (:func:`pipeline.engine.evaluate.gate.pick_winner`), the side-by-side table, the
report (markdown and HTML) and the eval_reports rows: one per candidate and reference.

Exact match split by reference (verified by a person or not) is summarised and compared, but
does not gate: :func:`pipeline.engine.evaluate.scoring.verdict` decides on exact match over all
references, as before."""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import polars as pl

from pipeline.engine.evaluate.candidates import Candidates
from pipeline.engine.evaluate.gate import (Contender, Decision, Thresholds, gate_against, pick_winner, skipped_metrics,
                                           verdict_details)
from pipeline.engine.evaluate.pricing import Pricing, cost_per_call
from pipeline.engine.evaluate.report import render, render_models
from pipeline.engine.evaluate.report_html import render_html
from pipeline.engine.evaluate.scoring import (HEADLINE, JUDGE_METRIC, UNVERIFIED_METRIC, VERIFIED_METRIC, compare,
                                              examples_won_and_lost, mark_references, paired_bootstrap_ci, summarize)
from pipeline.engine.label.alignment import corrected_pass_rate
from pipeline.engine.tasks import Task
from pipeline.engine.train.registry import under_trained

REPORT_SCHEMA = {
    "model_id": pl.String, "baseline_model_id": pl.String, "test_set_version": pl.String,
    "n_examples": pl.Int64, "metrics": pl.String, "verdict": pl.String, "report_markdown": pl.String,
    "created_at": pl.Datetime("us", "UTC"),
}
REPORT_KEY = ["model_id", "baseline_model_id", "test_set_version"]
#: What the side-by-side table keeps of each model's summary.
BOARD_KEYS = ("passed_checks", "passed_checks_ci", "exact_match", "exact_match_ci", "latency_ms_p50", "latency_ms_p95",
              "cost_usd_per_call", "pricing")
#: The confidence of the one-sided interval non-inferiority reads.
NON_INFERIORITY_CONFIDENCE = 0.95


@dataclass(frozen=True)
class Evaluation:
    """One evaluation. ``competition`` maps each candidate to each of its references to
    ``{"comparison", "lower_one_sided", "verdict", "regressions", "details", "examples"}``;
    ``comparisons`` is the newest fine-tuned model's; ``board`` is the side-by-side table (one
    row per model, in the report's order); ``policy`` is the decision with why each other candidate lost; ``gate``
    lists what blocks promotion (empty when a candidate is promoted); ``decision`` is the
    policy's sentence and ``promote`` whether it promotes, under ``thresholds``; ``judge_gates``
    says whether the judge's pass rate was gated on; ``rows`` are eval_reports rows."""

    candidates: Candidates
    judge: dict[str, Any]
    summaries: dict[str, dict[str, Any]]
    competition: dict[str, dict[str, dict[str, Any]]]
    board: list[dict[str, Any]]
    policy: Decision
    gate: list[str]
    judge_gates: bool
    markdown: str
    rows: pl.DataFrame
    thresholds: Thresholds

    @property
    def comparisons(self) -> dict[str, dict[str, Any]]:
        """The newest fine-tuned model against each of its references."""
        return self.competition.get(self.candidates.candidate_id, {})

    @property
    def decision(self) -> str:
        return self.policy.sentence

    @property
    def promote(self) -> bool:
        return self.policy.promote

    def verified_headline(self) -> dict[str, Any]:
        """How many test references a person verified, and both models' exact match on them and
        their agreement on the others, in percent (None where there are none)."""
        c = self.candidates
        base, candidate = self.summaries[c.base_id], self.summaries[c.candidate_id]
        return {"n_verified_references": candidate["n_verified"], "n_unverified_references": candidate["n_unverified"],
                "base_exact_match_verified_pct": _percent(base[VERIFIED_METRIC]),
                "candidate_exact_match_verified_pct": _percent(candidate[VERIFIED_METRIC]),
                "base_agreement_unverified_pct": _percent(base[UNVERIFIED_METRIC]),
                "candidate_agreement_unverified_pct": _percent(candidate[UNVERIFIED_METRIC])}

    @property
    def html_name(self) -> str:
        """The HTML report's file name: the newest fine-tuned model (as a safe name) and the test set version."""
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", self.candidates.candidate_id).strip("._") or "model"
        return f"{safe}.{self.candidates.version}.html"

    def html(self) -> str:
        """The whole report as one self-contained HTML document."""
        c, t = self.candidates, self.thresholds
        return render_html(c.candidate_id, self.summaries, c.roles, self.judge, self.comparisons, self.policy.reasons,
                           c.version, c.training, self.decision, t.alpha, t.min_regression, board=self.board,
                           competition=self.competition, margin=t.margin)

    @property
    def verdict_vs_promoted(self) -> str:
        """The newest fine-tuned model's verdict against the promoted model, or why there is none."""
        c = self.candidates
        if c.promoted_id is None:
            return "n/a (no promoted model yet)"
        if c.promoted_id == c.candidate_id:
            return "n/a (the candidate is the promoted model)"
        return self.comparisons[c.promoted_id]["verdict"]

    def headline(self) -> dict[str, Any]:
        """The figures a person looks at first: the decision and its winner, the models, the
        newest fine-tuned model's verdicts against the base and the promoted model and both
        models' headline rates in percent (one decimal), whether the judge was on, the models
        trained less than planned, and the non-inferiority margin in points."""
        c = self.candidates
        vs_base = self.comparisons[c.base_id]["comparison"]
        winner = self.policy.winner
        return {"decision": self.decision, "winner": c.roles.get(winner, winner) if winner else "none",
                "winner_id": winner or "none", "candidate": c.candidate_id, "base": c.base_id,
                "promoted": c.promoted_id or "none", "incumbent": c.incumbent_id or "none",
                "few_shot": ", ".join(c.few_shot) or "none", "test_set_version": c.version,
                "n_examples": c.test.height,
                "verdict_vs_base": self.comparisons[c.base_id]["verdict"],
                "verdict_vs_promoted": self.verdict_vs_promoted,
                "base_passed_checks_pct": _percent(vs_base["passed_checks"]["baseline"]),
                "candidate_passed_checks_pct": _percent(vs_base["passed_checks"]["candidate"]),
                "base_exact_match_pct": _percent(vs_base["exact_match"]["baseline"]),
                "candidate_exact_match_pct": _percent(vs_base["exact_match"]["candidate"]),
                **self.verified_headline(),
                "judge": self.judge["status"], "margin_pts": round(100 * self.thresholds.margin, 2),
                "under_trained": "; ".join(f"{m}: {r}" for m, r in under_trained(c.training).items()) or "none"}


def _percent(share: float | None) -> float | None:
    """A share as a percentage rounded to one decimal, as people read it."""
    return None if share is None else round(100 * share, 1)


def _figure(results: pl.DataFrame, key: str, dtype: pl.DataType) -> pl.Series:
    """Each result's ``key`` from its metrics JSON (null where absent)."""
    return results["metrics"].str.json_path_match(f"$.{key}").cast(dtype)


def call_figures(results: pl.DataFrame, pricing: Pricing | None) -> dict[str, Any]:
    """Latency per call (median and 95th percentile of each item's ``latency_ms``) and the mean
    cost per call: each item's at ``pricing`` (its tokens, or its seconds at the hourly price;
    unknown when any item's is), else the ``cost_usd`` the results carry (the incumbent's
    captured calls); with where the price comes from."""
    latency = _figure(results, "latency_ms", pl.Float64)
    known = latency.drop_nulls()
    figures: dict[str, Any] = {"latency_ms_p50": float(known.quantile(0.5, "linear")) if known.len() else None,
                               "latency_ms_p95": float(known.quantile(0.95, "linear")) if known.len() else None}
    if pricing is None:
        stored = _figure(results, "cost_usd", pl.Float64).drop_nulls()
        return {**figures, "cost_usd_per_call": stored.mean() if stored.len() else None,
                "pricing": "as captured" if stored.len() else None}
    costs = [cost_per_call(pricing, p, c, None if s is None else s / 1000) for p, c, s in
             zip(_figure(results, "prompt_tokens", pl.Int64), _figure(results, "completion_tokens", pl.Int64), latency)]
    return {**figures, "cost_usd_per_call": sum(costs) / len(costs) if costs and None not in costs else None,
            "pricing": pricing.source}


def summaries_of(results: dict[str, pl.DataFrame], test: pl.DataFrame, judge: dict[str, Any], task: Task,
                 pricing: dict[str, Pricing | None] | None = None) -> dict[str, dict[str, Any]]:
    """Each model's summary on the test set (per the task's report slices), with its latency and
    cost per call (:func:`call_figures`, at ``pricing`` per model) and the judge's pass rate
    corrected for its error rates when the judge is on."""
    pricing = pricing or {}
    summaries = {m: {**summarize(r, test, task), **call_figures(r, pricing.get(m))} for m, r in results.items()}
    if judge["status"] == "on":
        for m, r in results.items():
            passes = r[JUDGE_METRIC].drop_nulls()
            summaries[m]["judge"] = corrected_pass_rate(int(passes.sum()), passes.len(), judge["alignment"])
    return summaries


def lower_bounds(candidate: pl.DataFrame, reference: pl.DataFrame, metrics: Collection[str],
                 confidence: float = NON_INFERIORITY_CONFIDENCE) -> dict[str, float]:
    """Per metric of ``metrics`` both frames have: the lower bound of the one-sided
    ``confidence`` paired bootstrap interval of candidate minus reference (pairs with a null left out)."""
    paired = candidate.join(reference, on="example_id", suffix="_reference")
    out = {}
    for metric in metrics:
        if metric not in candidate.columns or metric not in reference.columns:
            continue
        both = paired.select(metric, f"{metric}_reference").drop_nulls()
        out[metric], _ = paired_bootstrap_ci(both[metric].to_list(), both[f"{metric}_reference"].to_list(),
                                             confidence=2 * confidence - 1)
    return out


def _pair(results: dict[str, pl.DataFrame], candidate: str, reference: str, test: pl.DataFrame, task: Task,
          thresholds: Thresholds, skip: tuple[str, ...], gated: list[str]) -> dict[str, Any]:
    """``candidate`` against ``reference``: the comparison with each gated metric's one-sided
    lower bound, the verdict and what it rests on, the regressions, and the examples each wins."""
    comparison = compare(results[candidate], results[reference])
    decision, found = gate_against(comparison, reference, thresholds, skip)
    return {"comparison": comparison, "lower_one_sided": lower_bounds(results[candidate], results[reference], gated),
            "verdict": decision, "regressions": found,
            "details": verdict_details(comparison, decision, thresholds, skip),
            "examples": examples_won_and_lost(results[candidate], results[reference], test, task)}


def reference_name(candidates: Candidates, model_id: str) -> str | None:
    """How the policy names a reference a candidate must be non-inferior to; None for a base."""
    return {candidates.incumbent_id: "the incumbent", candidates.promoted_id: "the promoted model"}.get(model_id)


def contender(candidates: Candidates, model_id: str, summaries: dict[str, dict[str, Any]],
              pairs: dict[str, dict[str, Any]], gated: list[str]) -> Contender:
    """``model_id`` as the policy sees it: its cost and quality, its verdict against its base, and
    each gated metric's difference and one-sided lower bound against the incumbent and the promoted model."""
    summary, base = summaries[model_id], candidates.bases.get(model_id)
    rates = [summary.get(m) if m != JUDGE_METRIC else (summary.get("judge") or {}).get("observed") for m in gated]
    known = [r for r in rates if r is not None]
    references = {reference_name(candidates, r): {m: {"difference": item["comparison"][m]["difference"],
                                                      "lower_one_sided": low}
                                                  for m, low in item["lower_one_sided"].items()}
                  for r, item in pairs.items() if reference_name(candidates, r)}
    vs_base = pairs.get(base)
    return Contender(model_id, candidates.roles[model_id], summary.get("cost_usd_per_call"),
                     sum(known) / len(known) if known else None, vs_base["verdict"] if vs_base else None,
                     tuple(vs_base["details"]) if vs_base else (), references)


def board_rows(candidates: Candidates, summaries: dict[str, dict[str, Any]], policy: Decision) -> list[dict[str, Any]]:
    """The side-by-side table: per model in the report's order its label, quality (rates with
    their intervals, the judge's corrected rate), latency (median, p95), cost per call, and verdict."""
    labels, rows = candidates.roles, []
    for m in candidates.order:
        s = summaries[m]
        if m == policy.winner:
            verdict = "won: promoted" if policy.promote else "won: stays in use"
        elif m in policy.lost:
            verdict = f"lost: {policy.lost[m]}"
        elif m == candidates.incumbent_id:
            verdict = "reference: the model in production"
        else:
            verdict = "reference: a base as prompted today"
        judge = s.get("judge") or {}
        rows.append({"model_id": m, "label": labels[m], "n": s["n_examples"],
                     **{key: s.get(key) for key in BOARD_KEYS},
                     "judge_corrected": judge.get("corrected"), "judge_ci": [judge.get("ci_low"), judge.get("ci_high")],
                     "verdict": verdict})
    return rows


def evaluate_candidates(candidates: Candidates, results: dict[str, pl.DataFrame], judge: dict[str, Any],
                        thresholds: Thresholds, task: Task, now: datetime | None = None,
                        verified: Collection[str] = (), pricing: dict[str, Pricing | None] | None = None) -> Evaluation:
    """Compare every candidate's ``results`` with each of its references' (model id ->
    eval_results, with a judge_pass column when the judge ran; ``judge`` is its status) under
    ``thresholds`` and decide; ``task`` says how the report slices the test set and shows an
    example; ``verified`` holds the test examples whose reference a person verified
    (:func:`pipeline.engine.curate.reads.verified_test_references`); ``pricing`` prices each
    model's calls (:meth:`Candidates.pricing`; absent: the costs the results carry)."""
    c = candidates
    skip = skipped_metrics(judge, thresholds.judge_gates)
    gated = [m for m in (*HEADLINE, JUDGE_METRIC) if m not in skip]
    test = c.test.with_columns(reference_verified=pl.col("example_id").is_in(sorted(verified)))
    results = {m: mark_references(results[m], test) for m in c.order}
    summaries = summaries_of(results, test, judge, task, pricing)
    now = now or datetime.now(timezone.utc)
    competition = {m: {r: _pair(results, m, r, test, task, thresholds, skip, gated) for r in c.references(m)}
                   for m in c.contenders}
    policy = pick_winner([contender(c, m, summaries, competition[m], gated) for m in c.contenders], thresholds.margin,
                         c.promoted_id)
    board, labels = board_rows(c, summaries, policy), c.roles
    gate = [] if policy.promote else policy.reasons
    overview = render_models(summaries, labels, judge, c.version, c.training, policy.sentence, policy.reasons,
                             thresholds.alpha, thresholds.min_regression, board=board, margin=thresholds.margin)
    limits = {"alpha": thresholds.alpha, "min_regression": thresholds.min_regression,
              "judge_gates": JUDGE_METRIC not in skip, "margin": thresholds.margin}
    shared = {"judge": judge, "decision": policy.sentence, "winner": policy.winner, "promote": policy.promote,
              "lost": policy.lost, "promoted": c.promoted_id,
              "incumbent": c.incumbent_id, "primary_id": c.candidate_id, "board": board, "thresholds": limits}
    rows, markdown = [], overview
    for m, pairs in competition.items():
        for r, item in pairs.items():
            report = render(m, r, summaries, item["comparison"], item["verdict"], item["examples"], c.version, labels)
            markdown += "\n" + report
            rows.append({"model_id": m, "baseline_model_id": r, "test_set_version": c.version,
                         "n_examples": c.test.height, "verdict": item["verdict"],
                         "report_markdown": overview + "\n" + report, "created_at": now,
                         "metrics": json.dumps({"candidate": summaries[m], "baseline": summaries[r],
                                                "comparison": item["comparison"],
                                                "lower_one_sided": item["lower_one_sided"],
                                                "regressions": item["regressions"],
                                                "primary": m == c.candidate_id, "candidate_label": labels[m],
                                                "baseline_label": labels[r], **shared})})
    rows.sort(key=lambda row: row["model_id"] != c.candidate_id)  # the newest fine-tuned model's rows first
    return Evaluation(c, judge, summaries, competition, board, policy, gate, JUDGE_METRIC not in skip, markdown,
                      pl.DataFrame(rows, schema=REPORT_SCHEMA), thresholds)
