"""Evaluate group: base, fine-tuned and promoted models on the same real test split; promotion."""

from functools import partial

import dagster as dg

from assets.curate import training_examples
from assets.label import trace_judgements
from assets.train import fine_tuned_model
from pipeline.engine.core import store
from pipeline.engine.curate.reads import verified_test_references
from pipeline.engine.evaluate.candidates import NothingToEvaluate, model_results, select_candidates
from pipeline.engine.evaluate.comparison import REPORT_KEY, evaluate_candidates
from pipeline.engine.evaluate.gate import NothingToPromote, Thresholds, promote_latest
from pipeline.engine.evaluate.report_html import write_html
from pipeline.engine.label.judge_session import judge_outputs
from pipeline.engine.train.serving import model_provider
from pipeline.resources import EvalServing, FineTuning, FlywheelDuckDB, FlywheelPaths, JudgeResource, TaskResource


class EvalSettings(dg.Config):
    """Promotion gate thresholds: a candidate is significantly worse on a metric when the paired
    McNemar p-value is below ``alpha`` and the drop is at least ``min_regression`` (a share:
    0.02 = 2 points). ``judge_gates`` lets an aligned judge's pass rate gate too."""

    alpha: float = 0.05
    min_regression: float = 0.0
    judge_gates: bool = True


@dg.asset(
    group_name="evaluate",
    kinds={"duckdb", "polars", "pytorch", "openai"},
    deps=[fine_tuned_model, training_examples, trace_judgements],
    description="The newest fine-tuned model, its base and the promoted model run through the same "
                "inference code on the test split (real traces never seen in training): share "
                "passing all assertions, exact match of the normalised output on references a person verified "
                "and agreement with production on the others (with their counts), failure modes, rates per "
                "report slice when the task has slices (nl2query: per dataset), the "
                "judge's pass rate corrected for its error (when a judge is configured), latency and "
                "cost per call, with paired bootstrap intervals and McNemar tests. Local models run here; "
                "hosted ones answer the task's prompt through chat completions. Rows in "
                "eval_results and eval_reports; a self-contained HTML report under data/reports/.",
    check_specs=[dg.AssetCheckSpec("no_regression", asset="eval_report", blocking=True,
                                   description="Blocks promotion when the candidate is significantly worse than "
                                               "the base or the promoted model on a headline metric (assertions, "
                                               "exact match, and the judge when it is aligned with people); "
                                               "thresholds in the asset's config (alpha, min_regression). A "
                                               "blocked candidate is an expected outcome: the check fails with "
                                               "WARN severity and says why, the run goes on.")],
)
def eval_report(context: dg.AssetExecutionContext, config: EvalSettings, duckdb: FlywheelDuckDB,
                task: TaskResource, judge: JudgeResource, paths: FlywheelPaths,
                fine_tuning: FineTuning, eval_serving: EvalServing) -> dg.MaterializeResult:
    the_task = task.load()
    try:
        with duckdb.get_connection() as conn:
            candidates = select_candidates(conn)
            verified = verified_test_references(conn)
    except NothingToEvaluate as exc:
        raise dg.Failure(str(exc)) from None
    serve = partial(model_provider, task=the_task, concurrency=fine_tuning.inference_concurrency, seed=fine_tuning.seed,
                    chat_for=lambda backend, model: fine_tuning.api(backend).chat_provider(model),
                    served=eval_serving.provider if eval_serving.enabled else None)
    results = model_results(duckdb.get_connection, candidates, the_task, serve, context.log.info)
    judge_info, results = judge_outputs(duckdb.get_connection, judge.settings(), task.name, results, candidates.test,
                                        context.log.info)
    evaluation = evaluate_candidates(candidates, results, judge_info,
                                     Thresholds(config.alpha, config.min_regression, config.judge_gates), the_task,
                                     verified=verified)
    with duckdb.get_connection() as conn:
        store.upsert(conn, "eval_reports", evaluation.rows, REPORT_KEY)
    html_path = write_html(paths.reports_dir / evaluation.html_name, evaluation.html())
    (context.log.info if evaluation.promote else context.log.warning)(f"Promotion gate: {evaluation.decision}")
    return dg.MaterializeResult(
        metadata={**evaluation.headline(), "report_html": dg.MetadataValue.path(str(html_path)),
                  "report": dg.MetadataValue.md(evaluation.markdown)},
        check_results=[gate_result(evaluation.gate, evaluation.decision, evaluation.judge_gates, config)],
    )


def gate_result(regressions: list[str], decision: str, judge_gates: bool, config: EvalSettings) -> dg.AssetCheckResult:
    """The no_regression check: failed with WARN severity when regressions block promotion (an
    expected outcome, not an error: the run goes on and automation does not promote), the
    regressions and the decision in words, the thresholds as JSON (constant settings, not a series to plot)."""
    return dg.AssetCheckResult(
        check_name="no_regression", passed=not regressions,
        severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(regressions) or "no significant regression on a headline metric",
        metadata={"regressions": len(regressions), "decision": decision, "judge_gates": judge_gates,
                  "thresholds": dg.MetadataValue.json({"alpha": config.alpha, "min_regression": config.min_regression,
                                                       "judge_gates": config.judge_gates})})


@dg.asset(
    group_name="evaluate",
    kinds={"duckdb"},
    deps=[eval_report],
    description="The model in use. The newest candidate is promoted when it is significantly better "
                "than its base and not significantly worse than the promoted model; every change is a "
                "row in model_promotions. A candidate not promoted is an orderly outcome: the run log and "
                "the metadata say why in one sentence.",
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
