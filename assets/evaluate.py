"""Evaluate group: the candidates (base, few-shot, fine-tuned, promoted) and the incumbent on the
same real test split; promotion by margin."""

import os
from functools import partial

import dagster as dg

from assets.curate import training_examples
from assets.incumbent import incumbent_outputs
from assets.label import trace_judgements
from assets.train import fine_tuned_model
from pipeline.engine.core import store
from pipeline.engine.curate.reads import verified_test_references
from pipeline.engine.evaluate.candidates import NothingToEvaluate, model_results, select_candidates
from pipeline.engine.evaluate.comparison import REPORT_KEY, evaluate_candidates
from pipeline.engine.evaluate.gate import NothingToPromote, Thresholds, promote_latest
from pipeline.engine.evaluate.report import board_markdown
from pipeline.engine.evaluate.report_html import write_html
from pipeline.engine.label.judge_session import judge_outputs
from pipeline.engine.train.serving import model_provider
from pipeline.resources import EvalServing, FineTuning, FlywheelDuckDB, FlywheelPaths, JudgeResource, TaskResource
from pipeline.resources.incumbent import IncumbentResource


def _env_number(variable: str, default: float, kind: type = float):
    """``variable`` from the environment as ``kind`` (unset or empty: ``default``); a clear error otherwise."""
    raw = (os.environ.get(variable) or "").strip()
    try:
        return kind(raw) if raw else default
    except ValueError:
        raise ValueError(f"{variable}={raw!r}: expected a {kind.__name__}") from None


class EvalSettings(dg.Config):
    """Promotion gate: a candidate is significantly worse (better) on a metric when the paired
    McNemar p-value is below ``alpha`` and the change is at least ``min_regression`` (a share:
    0.02 = 2 points); ``judge_gates`` lets an aligned judge's pass rate gate too; ``margin`` (a
    share; FLYWHEEL_PROMOTION_MARGIN) is how far below the incumbent and the promoted model a
    candidate may be at the one-sided 95% lower bound and still be non-inferior. ``few_shot_k``
    (FLYWHEEL_FEW_SHOT_K; 0: no few-shot candidate) is the examples per prompt of the few-shot
    candidate; ``local_price_per_hour`` (FLYWHEEL_LOCAL_PRICE_PER_HOUR, USD) prices a local
    model's time per call."""

    alpha: float = 0.05
    min_regression: float = 0.0
    judge_gates: bool = True
    margin: float = _env_number("FLYWHEEL_PROMOTION_MARGIN", 0.02)
    few_shot_k: int = _env_number("FLYWHEEL_FEW_SHOT_K", 3, int)
    local_price_per_hour: float = _env_number("FLYWHEEL_LOCAL_PRICE_PER_HOUR", 1.0)

    def thresholds(self) -> Thresholds:
        return Thresholds(self.alpha, self.min_regression, self.judge_gates, self.margin)


@dg.asset(
    group_name="evaluate",
    kinds={"duckdb", "polars", "pytorch", "openai"},
    deps=[fine_tuned_model, training_examples, trace_judgements, incumbent_outputs],
    description="The candidates compete on the test split (real traces never seen in training), through the "
                "same inference code: the base as prompted today, the few-shot candidate (the base with k "
                "examples retrieved from the train split before each request), the fine-tuned models trained "
                "on the newest data, the promoted model, and the incumbent (the model in production, from its "
                "captured outputs) when one is registered. Each with its share passing all assertions, exact "
                "match of the normalised output on references a person verified and agreement with production "
                "on the others (with their counts), failure modes, rates per report slice when the task has "
                "slices (nl2query: per dataset), the judge's pass rate corrected for its error (when a judge is "
                "configured), latency per call (median, p95) and cost per call, with paired bootstrap "
                "intervals and McNemar tests. The gate picks the cheapest candidate significantly better than "
                "its base and non-inferior to the incumbent and the promoted model within a margin, and says "
                "why each other candidate lost. Rows in eval_results and eval_reports; a self-contained HTML "
                "report under data/reports/.",
    check_specs=[dg.AssetCheckSpec("no_regression", asset="eval_report", blocking=True,
                                   description="Passes when the gate promotes a candidate: the cheapest one "
                                               "significantly better than its base and non-inferior to the "
                                               "incumbent and the promoted model within the margin on every "
                                               "gated metric (assertions, exact match, and the judge when it is "
                                               "aligned with people); thresholds in the asset's config (alpha, "
                                               "min_regression, margin). No promotion is an expected outcome: "
                                               "the check fails with WARN severity and says why each candidate "
                                               "lost, the run goes on.")],
)
def eval_report(context: dg.AssetExecutionContext, config: EvalSettings, duckdb: FlywheelDuckDB,
                task: TaskResource, judge: JudgeResource, paths: FlywheelPaths, fine_tuning: FineTuning,
                eval_serving: EvalServing, incumbent: IncumbentResource) -> dg.MaterializeResult:
    the_task = task.load()
    try:
        with duckdb.get_connection() as conn:
            candidates = select_candidates(conn, the_task, config.few_shot_k, incumbent.settings().model)
            verified = verified_test_references(conn)
    except NothingToEvaluate as exc:
        raise dg.Failure(str(exc)) from None
    serve = partial(model_provider, task=the_task, concurrency=fine_tuning.inference_concurrency, seed=fine_tuning.seed,
                    chat_for=lambda backend, model: fine_tuning.api(backend).chat_provider(model),
                    served=eval_serving.provider if eval_serving.enabled else None)
    results = model_results(duckdb.get_connection, candidates, the_task, serve, context.log.info)
    judge_info, results = judge_outputs(duckdb.get_connection, judge.settings(), task.name, results, candidates.test,
                                        context.log.info)
    evaluation = evaluate_candidates(candidates, results, judge_info, config.thresholds(), the_task, verified=verified,
                                     pricing=candidates.pricing(config.local_price_per_hour))
    with duckdb.get_connection() as conn:
        store.upsert(conn, "eval_reports", evaluation.rows, REPORT_KEY)
    html_path = write_html(paths.reports_dir / evaluation.html_name, evaluation.html())
    (context.log.info if evaluation.promote else context.log.warning)(f"Promotion gate: {evaluation.decision}")
    for reason in evaluation.policy.reasons:
        context.log.info(f"Lost: {reason}")
    return dg.MaterializeResult(
        metadata={**evaluation.headline(), "report_html": dg.MetadataValue.path(str(html_path)),
                  "candidates": dg.MetadataValue.md(board_markdown(evaluation.board)),
                  "report": dg.MetadataValue.md(evaluation.markdown)},
        check_results=[gate_result(evaluation.gate, evaluation.decision, evaluation.judge_gates, config)],
    )


def gate_result(blocking: list[str], decision: str, judge_gates: bool, config: EvalSettings) -> dg.AssetCheckResult:
    """The no_regression check: failed with WARN severity when no candidate is promoted (an
    expected outcome, not an error: the run goes on and automation does not promote), why each
    candidate lost and the decision in words, the thresholds as JSON (constant settings, not a
    series to plot)."""
    return dg.AssetCheckResult(
        check_name="no_regression", passed=not blocking,
        severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(blocking) or decision,
        metadata={"blocking": len(blocking), "decision": decision, "judge_gates": judge_gates,
                  "thresholds": dg.MetadataValue.json({"alpha": config.alpha, "min_regression": config.min_regression,
                                                       "judge_gates": config.judge_gates, "margin": config.margin})})


@dg.asset(
    group_name="evaluate",
    kinds={"duckdb"},
    deps=[eval_report],
    description="The model in use: the newest eval report's winner (the cheapest candidate significantly "
                "better than its base and non-inferior to the incumbent and the promoted model within the "
                "margin) is promoted unless it is in use already; every change is a row in model_promotions. "
                "No promotion is an orderly outcome: the run log and the metadata say why in one sentence.",
)
def promoted_model(context: dg.AssetExecutionContext, duckdb: FlywheelDuckDB) -> dg.MaterializeResult:
    try:
        with duckdb.get_connection() as conn:
            outcome = promote_latest(conn)
    except NothingToPromote as exc:
        raise dg.Failure(str(exc)) from None
    (context.log.info if outcome.promoted else context.log.warning)(outcome.decision)
    return dg.MaterializeResult(metadata={"promoted_model": outcome.in_use or "none", "candidate": outcome.candidate_id,
                                          "promoted_now": outcome.promoted, "decision": outcome.decision})
