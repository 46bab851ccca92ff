"""The promotion gate and the promotion policy.

The gate compares a candidate with each baseline on the gated metrics (the judge's only when it
is on, aligned with people and allowed to gate): a verdict per baseline, and the regressions
that block promotion. The policy promotes the newest candidate when it is significantly better
than its base and not significantly worse than any baseline (the promoted model); every change
is a row in model_promotions, whose newest row is the model in use.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NamedTuple

from pipeline.engine.core import store
from pipeline.engine.evaluate.scoring import JUDGE_METRIC, regressions, verdict


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


def decide_promotion(candidate_id: str, base_id: str | None, verdicts: dict[str, str],
                     current_id: str | None) -> tuple[str, bool]:
    """The policy: the decision in words, and whether ``candidate_id`` is promoted. ``verdicts``
    holds the candidate's verdict against each baseline; ``current_id`` is the model in use."""
    worse = [baseline for baseline, decision in verdicts.items() if decision == "worse"]
    vs_base = [verdicts[base_id]] if base_id in verdicts else []
    if candidate_id == current_id:
        return f"{candidate_id} is already the promoted model", False
    if worse:
        return f"not promoted: significantly worse than {', '.join(worse)}", False
    if vs_base != ["better"]:
        return f"not promoted: not significantly better than its base ({', '.join(vs_base) or 'no report'})", False
    return "promoted: significantly better than its base and not worse than the promoted model", True


@dataclass(frozen=True)
class PromotionDecision:
    """What the policy decided for the newest candidate, and the model in use after it (None: none yet)."""

    candidate_id: str
    in_use: str | None
    decision: str


def promote_latest(conn, now: datetime | None = None) -> PromotionDecision:
    """Apply the policy to the newest eval report's verdicts and record a promotion; raises
    :class:`NothingToPromote` when there is no eval report yet."""
    reports = store.read(conn, """SELECT r.model_id, r.baseline_model_id, r.verdict, m.base_model
        FROM eval_reports r JOIN fine_tuned_models m USING (model_id)
        WHERE r.created_at = (SELECT max(created_at) FROM eval_reports)""")
    current = current_promoted(conn)
    current_id = current.model_id if current else None
    if reports.is_empty():
        raise NothingToPromote("no eval report yet; materialize eval_report first")
    candidate_id = reports["model_id"][0]
    decision, promote = decide_promotion(candidate_id, reports["base_model"][0],
                                         dict(zip(reports["baseline_model_id"], reports["verdict"])), current_id)
    if promote:
        record_promotion(conn, candidate_id, current_id, decision, now)
    return PromotionDecision(candidate_id, candidate_id if promote else current_id, decision)
