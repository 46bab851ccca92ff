"""The candidate compared with each baseline on the same test examples: summaries (with the
judge's corrected pass rate when it is on), paired comparisons, verdicts and the regressions
that gate promotion, the report (markdown and HTML) and the eval_reports rows.

Exact match split by reference (verified by a person or not) is summarised and compared, but
does not gate: :func:`pipeline.engine.evaluate.scoring.verdict` decides on exact match over all
references, as before."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from collections.abc import Collection
from datetime import datetime, timezone
from typing import Any

import polars as pl

from pipeline.engine.evaluate.candidates import Candidates
from pipeline.engine.evaluate.gate import Thresholds, decide_promotion, gate_against, skipped_metrics, verdict_details
from pipeline.engine.evaluate.report import render, render_models
from pipeline.engine.evaluate.report_html import render_html
from pipeline.engine.evaluate.scoring import (JUDGE_METRIC, UNVERIFIED_METRIC, VERIFIED_METRIC,
                                              compare, examples_won_and_lost, mark_references, summarize)
from pipeline.engine.label.alignment import corrected_pass_rate
from pipeline.engine.tasks import Task
from pipeline.engine.train.registry import under_trained

REPORT_SCHEMA = {
    "model_id": pl.String, "baseline_model_id": pl.String, "test_set_version": pl.String,
    "n_examples": pl.Int64, "metrics": pl.String, "verdict": pl.String, "report_markdown": pl.String,
    "created_at": pl.Datetime("us", "UTC"),
}
REPORT_KEY = ["model_id", "baseline_model_id", "test_set_version"]


@dataclass(frozen=True)
class Evaluation:
    """One evaluation of the candidate. ``comparisons`` maps each baseline id to
    ``{"comparison", "verdict", "regressions", "examples"}``; ``gate`` lists the regressions that
    block promotion; ``decision`` is the policy's decision in one sentence and ``promote`` whether
    it promotes the candidate (against the model in use when evaluated), under ``thresholds``;
    ``judge_gates`` says whether the judge's pass rate was gated on; ``rows`` are eval_reports rows."""

    candidates: Candidates
    judge: dict[str, Any]
    summaries: dict[str, dict[str, Any]]
    comparisons: dict[str, dict[str, Any]]
    gate: list[str]
    judge_gates: bool
    markdown: str
    rows: pl.DataFrame
    decision: str
    promote: bool
    thresholds: Thresholds

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
        """The HTML report's file name: the candidate (as a safe name) and the test set version."""
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", self.candidates.candidate_id).strip("._") or "model"
        return f"{safe}.{self.candidates.version}.html"

    def html(self) -> str:
        """The whole report as one self-contained HTML document."""
        c = self.candidates
        return render_html(c.candidate_id, self.summaries, c.roles, self.judge, self.comparisons, self.gate, c.version,
                           c.training, self.decision, self.thresholds.alpha, self.thresholds.min_regression)

    @property
    def verdict_vs_promoted(self) -> str:
        """The verdict against the promoted model, or why there is none."""
        c = self.candidates
        if c.promoted_id is None:
            return "n/a (no promoted model yet)"
        if c.promoted_id == c.candidate_id:
            return "n/a (the candidate is the promoted model)"
        return self.comparisons[c.promoted_id]["verdict"]

    def headline(self) -> dict[str, Any]:
        """The figures a person looks at first: the gate's decision, the models, the verdicts
        against the base and the promoted model, both models' headline rates in percent (one
        decimal), whether the judge was on, and the models trained less than planned."""
        c = self.candidates
        vs_base = self.comparisons[c.base_id]["comparison"]
        return {"decision": self.decision, "candidate": c.candidate_id, "base": c.base_id,
                "promoted": c.promoted_id or "none", "test_set_version": c.version, "n_examples": c.test.height,
                "verdict_vs_base": self.comparisons[c.base_id]["verdict"], "verdict_vs_promoted": self.verdict_vs_promoted,
                "base_passed_checks_pct": _percent(vs_base["passed_checks"]["baseline"]),
                "candidate_passed_checks_pct": _percent(vs_base["passed_checks"]["candidate"]),
                "base_exact_match_pct": _percent(vs_base["exact_match"]["baseline"]),
                "candidate_exact_match_pct": _percent(vs_base["exact_match"]["candidate"]),
                **self.verified_headline(),
                "judge": self.judge["status"],
                "under_trained": "; ".join(f"{m}: {r}" for m, r in under_trained(c.training).items()) or "none"}


def _percent(share: float | None) -> float | None:
    """A share as a percentage rounded to one decimal, as people read it."""
    return None if share is None else round(100 * share, 1)


def summaries_of(results: dict[str, pl.DataFrame], test: pl.DataFrame, judge: dict[str, Any],
                 task: Task) -> dict[str, dict[str, Any]]:
    """Each model's summary on the test set (per the task's report slices), with the judge's pass
    rate corrected for its error rates when the judge is on."""
    summaries = {m: summarize(r, test, task) for m, r in results.items()}
    if judge["status"] == "on":
        for m, r in results.items():
            passes = r[JUDGE_METRIC].drop_nulls()
            summaries[m]["judge"] = corrected_pass_rate(int(passes.sum()), passes.len(), judge["alignment"])
    return summaries


def evaluate_candidates(candidates: Candidates, results: dict[str, pl.DataFrame], judge: dict[str, Any],
                        thresholds: Thresholds, task: Task, now: datetime | None = None,
                        verified: Collection[str] = ()) -> Evaluation:
    """Compare the candidate's ``results`` with each baseline's (model id -> eval_results, with a
    judge_pass column when the judge ran; ``judge`` is its status) under ``thresholds``; ``task``
    says how the report slices the test set and shows an example; ``verified`` holds the test
    examples whose reference a person verified
    (:func:`pipeline.engine.curate.reads.verified_test_references`)."""
    c, candidate_id = candidates, candidates.candidate_id
    skip = skipped_metrics(judge, thresholds.judge_gates)
    test = c.test.with_columns(reference_verified=pl.col("example_id").is_in(sorted(verified)))
    results = {m: mark_references(r, test) for m, r in results.items()}
    summaries = summaries_of(results, test, judge, task)
    now = now or datetime.now(timezone.utc)
    comparisons, gate, details = {}, [], {}
    for baseline_id in c.baselines:
        comparison = compare(results[candidate_id], results[baseline_id])
        decision, found = gate_against(comparison, baseline_id, thresholds, skip)
        gate += found
        details[baseline_id] = verdict_details(comparison, decision, thresholds, skip)
        comparisons[baseline_id] = {"comparison": comparison, "verdict": decision, "regressions": found,
                                    "examples": examples_won_and_lost(results[candidate_id], results[baseline_id],
                                                                      test, task)}
    sentence, promote = decide_promotion(candidate_id, c.base_id, {b: i["verdict"] for b, i in comparisons.items()},
                                         c.promoted_id, details)
    overview = render_models(summaries, c.roles, judge, c.version, c.training, sentence, gate, thresholds.alpha,
                             thresholds.min_regression)
    rows, markdown = [], overview
    for baseline_id, item in comparisons.items():
        report = render(candidate_id, baseline_id, summaries, item["comparison"], item["verdict"], item["examples"],
                        c.version, c.roles)
        markdown += "\n" + report
        rows.append({"model_id": candidate_id, "baseline_model_id": baseline_id, "test_set_version": c.version,
                     "n_examples": c.test.height, "verdict": item["verdict"],
                     "report_markdown": overview + "\n" + report, "created_at": now,
                     "metrics": json.dumps({"candidate": summaries[candidate_id], "baseline": summaries[baseline_id],
                                            "comparison": item["comparison"], "judge": judge,
                                            "regressions": item["regressions"], "decision": sentence,
                                            "thresholds": {"alpha": thresholds.alpha,
                                                           "min_regression": thresholds.min_regression,
                                                           "judge_gates": JUDGE_METRIC not in skip}})})
    return Evaluation(candidates, judge, summaries, comparisons, gate, JUDGE_METRIC not in skip, markdown,
                      pl.DataFrame(rows, schema=REPORT_SCHEMA), sentence, promote, thresholds)
