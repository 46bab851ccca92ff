"""The promotion gate and the promotion policy.

The candidates compete on the same test examples (:mod:`pipeline.engine.evaluate.comparison`
measures them). A candidate qualifies when it is significantly better than its base (today's
rule, under ``alpha`` and ``min_regression``) and non-inferior, on every gated headline metric,
to each reference it is held to: the incumbent when one is registered, and the promoted model
(the model in use) unless it is the promoted model. Non-inferior within ``margin``: the lower
bound of the one-sided 95% paired bootstrap interval of candidate minus reference is above
``-margin``. Of those that qualify, the cheapest per call wins; costs within :data:`COST_TIE` of
the cheapest tie, a tie going to the better mean of the gated rates, then to the candidate listed
first (few-shot, then fine-tuned newest first, then the promoted model). A winner that is not the
promoted model is promoted: every change is a row in model_promotions, whose newest row is the
model in use. The decision is one sentence, and each other candidate gets one sentence saying
why it lost.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NamedTuple

from pipeline.engine.evaluate.scoring import JUDGE_METRIC, REFERENCE_METRICS, regressions, verdict

#: Costs per call within this share of the cheapest count as the same cost.
COST_TIE = 0.10


class NothingToPromote(ValueError):
    """There is no eval report to decide a promotion on yet."""


@dataclass(frozen=True)
class Thresholds:
    """A metric is significantly worse (better) when the paired McNemar p-value is below
    ``alpha`` and the change is at least ``min_regression`` (a share: 0.02 = 2 points);
    ``judge_gates`` lets an aligned judge's pass rate gate too; ``margin`` (a share) is how far
    below a reference a candidate may be, at the one-sided 95% lower bound, and still be non-inferior."""

    alpha: float = 0.05
    min_regression: float = 0.0
    judge_gates: bool = True
    margin: float = 0.02

    def __post_init__(self):
        if not 0.0 <= self.margin < 1.0:
            raise ValueError(f"the non-inferiority margin is a share of examples (0.02 = 2 points), got {self.margin}")


def skipped_metrics(judge: dict[str, Any], judge_gates: bool) -> tuple[str, ...]:
    """Metrics left out of the gate: the judge's, unless it is on, aligned with people and
    ``judge_gates`` allows it (``judge`` is the judge's status)."""
    aligned = judge["status"] == "on" and not judge["alignment"]["flagged"]
    return () if aligned and judge_gates else (JUDGE_METRIC,)


def gate_against(comparison: dict[str, dict[str, Any]], baseline_id: str, thresholds: Thresholds,
                 skip: tuple[str, ...]) -> tuple[str, list[str]]:
    """The verdict against ``baseline_id`` on the gated metrics, and the metrics significantly worse."""
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


def usd(value: float | None) -> str:
    """A cost per call in dollars to two significant digits ("$0.000012"); "n/a" when unknown."""
    if value is None:
        return "n/a"
    if value <= 0:
        return "$0"
    return f"${value:.{max(2, 1 - math.floor(math.log10(value)))}f}"


def verdict_details(comparison: dict[str, dict[str, Any]], decision: str, thresholds: Thresholds,
                    skip: tuple[str, ...]) -> list[str]:
    """What a verdict rests on, each as :func:`change_text`: the gated metrics significantly worse
    (``decision`` 'worse') or better ('better'), else every gated metric."""
    gated = {m: c for m, c in comparison.items() if m not in (*skip, *REFERENCE_METRICS)}
    if decision in ("worse", "better"):
        gated = {m: c for m, c in gated.items()
                 if verdict({m: c}, thresholds.alpha, thresholds.min_regression) == decision}
    return [change_text(m, c) for m, c in gated.items()]


@dataclass(frozen=True)
class Contender:
    """A candidate for promotion as the policy sees it: its ``label``, cost per call (None:
    unknown), ``quality`` (the mean of its gated rates, for ties), its verdict against its base
    (None: not compared) with what it rests on, and per reference it is held to ("the
    incumbent", "the promoted model") each gated metric's ``difference`` and ``lower_one_sided``
    (the one-sided 95% lower bound of candidate minus reference)."""

    model_id: str
    label: str
    cost: float | None
    quality: float | None
    vs_base: str | None
    base_details: tuple[str, ...] = ()
    references: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """The policy's outcome: the ``winner`` (None: none qualifies), the decision in one
    ``sentence``, why every other contender lost (``lost``: model id -> a clause), whether the
    winner is promoted (it is not the model in use already), and the contenders' ``labels``."""

    winner: str | None
    sentence: str
    lost: dict[str, str]
    promote: bool
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def reasons(self) -> list[str]:
        """Why each other contender lost, one sentence each, its label first:
        "few-shot k=3: exact match 8.0 pts below the incumbent (lower bound -11.2 < -2)"."""
        return [f"{self.labels.get(m, m)}: {why}" for m, why in self.lost.items()]


def _points(share: float) -> str:
    return f"{100 * share:g} pts"


def inferiority(contender: Contender, margin: float) -> list[str]:
    """One clause per reference and gated metric on which ``contender`` is not non-inferior
    within ``margin``: "exact match 8.0 pts below the incumbent (lower bound -11.2 < -2)"."""
    out = []
    for reference, metrics in contender.references.items():
        for metric, change in metrics.items():
            low, difference = change["lower_one_sided"], change["difference"]
            if low > -margin:
                continue
            name, bound = METRIC_NAMES.get(metric, metric), f"lower bound {100 * low:+.1f} < {-100 * margin:g}"
            out.append(f"{name} {-100 * difference:.1f} pts below {reference} ({bound})" if difference < 0 else
                       f"{name} {100 * difference:+.1f} pts against {reference}, too uncertain to rule out a larger "
                       f"drop ({bound})")
    return out


def base_failure(contender: Contender) -> str | None:
    """Why ``contender`` does not meet today's rule against its base (significantly better, not
    significantly worse on any gated metric), or None when it does."""
    details = contender.base_details
    if contender.vs_base is None:
        return "not compared with its base"
    if contender.vs_base == "worse":
        return f"significantly worse than its base on {' and '.join(details)}"
    if contender.vs_base != "better":
        return "not significantly better than its base" + (f" ({'; '.join(details)})" if details else "")
    return None


def _cheapest(qualified: list[Contender]) -> tuple[Contender, list[Contender]]:
    """The winner among contenders that qualify, and those that tie with it on cost."""
    known = [c for c in qualified if c.cost is not None]
    if known:
        floor = min(c.cost for c in known)
        tied = [c for c in known if c.cost <= floor * (1 + COST_TIE)]
    else:
        tied = qualified
    return max(tied, key=lambda c: c.quality or 0.0), tied


def _lost_to(contender: Contender, winner: Contender, tied: list[Contender]) -> str:
    """Why a contender that qualifies lost to ``winner``."""
    if contender.cost is None and winner.cost is not None:
        return "qualifies, but its cost per call is unknown"
    if contender in tied:
        if (contender.quality or 0.0) < (winner.quality or 0.0):
            return (f"qualifies and costs about the same as {winner.label} (within {COST_TIE:.0%}), which scores "
                    "higher on the gated metrics")
        return (f"qualifies and ties with {winner.label} on cost (within {COST_TIE:.0%}) and quality; the tie goes to "
                "the candidate listed first")
    return f"qualifies, but costs {usd(contender.cost)} per call against {usd(winner.cost)} for {winner.label}"


def pick_winner(contenders: list[Contender], margin: float, promoted_id: str | None) -> Decision:
    """The policy (see the module docstring) over ``contenders`` in their listed order;
    ``promoted_id`` is the model in use."""
    labels = {c.model_id: c.label for c in contenders}
    failures = {c.model_id: [f for f in (base_failure(c),) if f] + inferiority(c, margin) for c in contenders}
    lost = {c.model_id: "; ".join(failures[c.model_id]) for c in contenders if failures[c.model_id]}
    qualified = [c for c in contenders if not failures[c.model_id]]
    def held_by(*chosen: Contender) -> str:
        references = list(dict.fromkeys(r for c in chosen for r in c.references))
        return (f" and non-inferior to {' and '.join(references)} within {_points(margin)} on every gated metric"
                if references else "")

    held = held_by(*contenders)
    if not qualified:
        stays = "; the promoted model stays in use" if promoted_id else ""
        return Decision(None, f"Not promoted: no candidate is significantly better than its base{held}{stays}", lost,
                        False, labels)
    winner, tied = _cheapest(qualified)
    lost.update({c.model_id: _lost_to(c, winner, tied) for c in qualified if c is not winner})
    if winner.model_id == promoted_id:
        return Decision(winner.model_id, "Not promoted: the model in use stays, the cheapest candidate significantly "
                                         f"better than its base{held_by(winner)}", lost, False, labels)
    on = f" on {' and '.join(winner.base_details)}" if winner.base_details else ""
    return Decision(winner.model_id, f"Promoted: {winner.label} is the cheapest candidate significantly better than "
                                     f"its base{on}{held_by(winner)}", lost, True, labels)


@dataclass(frozen=True)
class PromotionDecision:
    """What the policy decided on the newest eval report (``candidate_id``: the winner, else the
    newest fine-tuned model), and the model in use after it (None: none yet)."""

    candidate_id: str
    in_use: str | None
    decision: str
    promoted: bool


def promote_latest(conn, now: datetime | None = None) -> PromotionDecision:
    """Record the newest eval report's winner as the model in use, when it is not already and the
    model in use is still the one the report held it to; raises :class:`NothingToPromote` when
    there is no eval report yet."""
    row = conn.execute("""SELECT model_id, metrics::VARCHAR FROM eval_reports
        WHERE created_at = (SELECT max(created_at) FROM eval_reports) ORDER BY model_id LIMIT 1""").fetchone()
    if row is None:
        raise NothingToPromote("no eval report yet; materialize eval_report first")
    metrics = json.loads(row[1])
    winner, decision = metrics.get("winner"), metrics.get("decision") or "Not promoted: the report has no decision"
    current = current_promoted(conn)
    current_id = current.model_id if current else None
    if winner is None:
        return PromotionDecision(metrics.get("primary_id") or row[0], current_id, decision, False)
    if winner == current_id:
        said = f"Already promoted: {winner} is the model in use" if metrics.get("promote") else decision
        return PromotionDecision(winner, current_id, said, False)
    if metrics.get("promoted") != current_id:
        return PromotionDecision(winner, current_id, f"Not promoted: the model in use changed since the eval report "
                                                     f"(now {current_id}); materialize eval_report again", False)
    record_promotion(conn, winner, current_id, decision, now)
    return PromotionDecision(winner, winner, decision, True)
