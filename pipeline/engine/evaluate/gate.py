"""The promotion gate and the promotion policy.

The gate compares a candidate with each baseline on the gated metrics (the judge's only when it
is on, aligned with people and allowed to gate): a verdict per baseline, and the regressions
that block promotion. The policy promotes the newest candidate when it is significantly better
than its base and not significantly worse than any baseline (the promoted model); every change
is a row in model_promotions, whose newest row is the model in use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NamedTuple

from pipeline.engine.core import store
from pipeline.engine.evaluate.scoring import JUDGE_METRIC, REFERENCE_METRICS, regressions, verdict


class NothingToPromote(ValueError):
    """There is no eval report to decide a promotion on yet."""


@dataclass(frozen=True)
class Thresholds:
    """A metric is significantly worse when the paired McNemar p-value is below ``alpha`` and the
    drop is at least ``min_regression`` (a share: 0.02 = 2 points); ``judge_gates`` lets an
    aligned judge's pass rate gate too."""

    alpha: float = 0.05
    min_regression: float = 0.0
    judge_gates: bool = True


def skipped_metrics(judge: dict[str, Any], judge_gates: bool) -> tuple[str, ...]:
    """Metrics left out of the gate: the judge's, unless it is on, aligned with people and
    ``judge_gates`` allows it (``judge`` is the judge's status)."""
    aligned = judge["status"] == "on" and not judge["alignment"]["flagged"]
    return () if aligned and judge_gates else (JUDGE_METRIC,)


def gate_against(comparison: dict[str, dict[str, Any]], baseline_id: str, thresholds: Thresholds,
                 skip: tuple[str, ...]) -> tuple[str, list[str]]:
    """The verdict against ``baseline_id`` on the gated metrics, and the regressions that block promotion."""
    gated = {metric: change for metric, change in comparison.items() if metric not in skip}
    return (verdict(gated, thresholds.alpha, thresholds.min_regression),
            regressions(comparison, baseline_id, thresholds.alpha, thresholds.min_regression, skip))


class Promotion(NamedTuple):
    """A row of model_promotions: the model promoted, and why."""

    model_id: str
    reason: str


def current_promoted(conn) -> Promotion | None:
    """The model in use: the newest promotion, or None before the first."""
    row = conn.execute("SELECT model_id, reason FROM model_promotions ORDER BY promoted_at DESC LIMIT 1").fetchone()
    return Promotion(*row) if row else None


def record_promotion(conn, model_id: str, previous_id: str | None, reason: str, now: datetime | None = None) -> None:
    """Make ``model_id`` the model in use (a new row in model_promotions)."""
    conn.execute("INSERT INTO model_promotions (model_id, previous_model_id, reason, promoted_at) VALUES (?, ?, ?, ?)",
                 [model_id, previous_id, reason, now or datetime.now(timezone.utc)])


#: What the gate's sentences call each gated metric.
METRIC_NAMES = {"passed_checks": "passes all assertions", "exact_match": "exact match", JUDGE_METRIC: "judge pass"}


def change_text(metric: str, change: dict[str, Any]) -> str:
    """A metric's change as people read it: "exact match (-4.1 pts, p=0.012)"."""
    return f"{METRIC_NAMES.get(metric, metric)} ({100 * change['difference']:+.1f} pts, p={change['p_value']:.2g})"


def verdict_details(comparison: dict[str, dict[str, Any]], decision: str, thresholds: Thresholds,
                    skip: tuple[str, ...]) -> list[str]:
    """What a verdict rests on, each as :func:`change_text`: the gated metrics significantly worse
    (``decision`` 'worse') or better ('better'), else every gated metric."""
    gated = {m: c for m, c in comparison.items() if m not in (*skip, *REFERENCE_METRICS)}
    if decision in ("worse", "better"):
        gated = {m: c for m, c in gated.items()
                 if verdict({m: c}, thresholds.alpha, thresholds.min_regression) == decision}
    return [change_text(m, c) for m, c in gated.items()]


def decide_promotion(candidate_id: str, base_id: str | None, verdicts: dict[str, str], current_id: str | None,
                     details: dict[str, list[str]] | None = None) -> tuple[str, bool]:
    """The policy: the decision in one sentence, and whether ``candidate_id`` is promoted.
    ``verdicts`` holds the candidate's verdict against each baseline, ``details`` (optional) what
    each verdict rests on (:func:`verdict_details`); ``current_id`` is the model in use."""
    details = details or {}

    def name(baseline: str) -> str:
        return "its base" if baseline == base_id else "the promoted model" if baseline == current_id else baseline

    def on(baseline: str) -> str:
        return f" on {' and '.join(details[baseline])}" if details.get(baseline) else ""

    worse = [baseline for baseline, decision in verdicts.items() if decision == "worse"]
    if candidate_id == current_id:
        return "Already promoted: the fine-tuned model is the model in use", False
    if worse:
        against = " and than ".join(name(b) + on(b) for b in worse)
        return f"Not promoted: the fine-tuned model is significantly worse than {against}", False
    if base_id not in verdicts:
        return "Not promoted: the fine-tuned model was not compared with its base", False
    if verdicts[base_id] != "better":
        shown = f" ({'; '.join(details[base_id])})" if details.get(base_id) else ""
        return f"Not promoted: the fine-tuned model is not significantly better than its base{shown}", False
    rest = "".join(f", and not significantly worse than {name(b)}" for b in verdicts if b != base_id)
    return f"Promoted: the fine-tuned model is significantly better than its base{on(base_id)}{rest}", True


def stored_details(metrics: str | None, decision: str) -> list[str]:
    """:func:`verdict_details` of an eval_reports row (its ``metrics`` JSON: the comparison and the
    thresholds it was gated under); none for a row without them."""
    stored = json.loads(metrics or "{}")
    limits = stored.get("thresholds", {})
    thresholds = Thresholds(limits.get("alpha", Thresholds.alpha), limits.get("min_regression", Thresholds.min_regression))
    skip = () if limits.get("judge_gates") else (JUDGE_METRIC,)
    return verdict_details(stored.get("comparison", {}), decision, thresholds, skip)


@dataclass(frozen=True)
class PromotionDecision:
    """What the policy decided for the newest candidate, and the model in use after it (None: none yet)."""

    candidate_id: str
    in_use: str | None
    decision: str
    promoted: bool


def promote_latest(conn, now: datetime | None = None) -> PromotionDecision:
    """Apply the policy to the newest eval report's verdicts and record a promotion; raises
    :class:`NothingToPromote` when there is no eval report yet."""
    reports = store.read(conn, """SELECT r.model_id, r.baseline_model_id, r.verdict, r.metrics::VARCHAR AS metrics,
               m.base_model FROM eval_reports r JOIN fine_tuned_models m USING (model_id)
        WHERE r.created_at = (SELECT max(created_at) FROM eval_reports)""")
    current = current_promoted(conn)
    current_id = current.model_id if current else None
    if reports.is_empty():
        raise NothingToPromote("no eval report yet; materialize eval_report first")
    candidate_id = reports["model_id"][0]
    rows = list(zip(reports["baseline_model_id"], reports["verdict"], reports["metrics"]))
    decision, promote = decide_promotion(candidate_id, reports["base_model"][0], {b: v for b, v, _ in rows}, current_id,
                                         {b: stored_details(m, v) for b, v, m in rows})
    if promote:
        record_promotion(conn, candidate_id, current_id, decision, now)
    return PromotionDecision(candidate_id, candidate_id if promote else current_id, decision, promote)
