"""Label group, evaluation of production traces: assertions on every trace, the LLM judge, and
labelled failures."""

import dagster as dg
import polars as pl

from assets.ingest import annotations, raw_traces
from assets.metadata import preview, share
from pipeline.automation import table_version
from pipeline.engine.core import store
from pipeline.engine.label.assertions import check_version, evaluate_traces
from pipeline.engine.label.failures import FAILURE_KEY, stored_failures
from pipeline.engine.label.judge_session import JUDGE_OFF, judge_traces, pass_rate
from pipeline.engine.label.trace_checks import check_summary, unchecked_traces
from pipeline.resources import FlywheelDuckDB, JudgeResource, TaskResource


@dg.asset(
    group_name="label",
    kinds={"duckdb", "polars"},
    # by key: importing the partitioned LangSmith asset here would load it with this module
    deps=[raw_traces, dg.AssetKey("langsmith_traces")],
    description="The task's assertions on every trace: one row per trace and check, named after "
                "the failure mode it detects. Only traces not yet evaluated with the current checks "
                "(task version and check code) are evaluated, in parallel worker processes.",
)
def trace_evaluations(context: dg.AssetExecutionContext, duckdb: FlywheelDuckDB, task: TaskResource) -> dg.MaterializeResult:
    the_task = task.load()
    version = check_version(the_task)
    with duckdb.get_connection() as conn:
        pending = unchecked_traces(conn, version)
        store.upsert(conn, "trace_evaluations", evaluate_traces(pending, the_task), ["trace_id"])
        summary = check_summary(conn)
        stored = table_version(conn, "trace_evaluations")
    context.log.info(f"evaluated {pending.height} new traces with checks {version}")
    return dg.MaterializeResult(data_version=stored, metadata={
        "dagster/row_count": summary.rows, "traces_evaluated_now": pending.height, "check_version": version,
        "share_passing_all": share(summary.share_passing_all), "failures_by_check": preview(summary.failures_by_check, n=50)})


def judgements_version(duckdb: FlywheelDuckDB) -> dg.DataVersion:
    """The stored verdicts' data version: unchanged while the judge is off or judged nothing new."""
    with duckdb.get_connection() as conn:
        return table_version(conn, "trace_judgements")


@dg.asset(
    group_name="label",
    kinds={"duckdb", "openai"},
    deps=[raw_traces, annotations],
    description="The LLM judge's critique and good/bad outcome per trace (people's labelled traces "
                "first, up to a budget per run), cached by judge version and trace. Reports agreement "
                "with people and the pass rate corrected for judge error. Does nothing while no judge "
                "model is configured.",
    check_specs=[dg.AssetCheckSpec("judge_aligned", asset="trace_judgements",
                                   description="The judge agrees with people's labels at least as often as "
                                               "configured (JudgeResource.min_agreement).")],
)
def trace_judgements(context: dg.AssetExecutionContext, duckdb: FlywheelDuckDB, task: TaskResource,
                     judge: JudgeResource) -> dg.MaterializeResult:
    if not judge.enabled:
        context.log.info(f"judge off: {JUDGE_OFF}")
        return dg.MaterializeResult(
            data_version=judgements_version(duckdb), metadata={"judge": "off", "reason": JUDGE_OFF},
            check_results=[dg.AssetCheckResult(check_name="judge_aligned", passed=True,
                                               description=f"judge off: {JUDGE_OFF}")])
    new, status, outcomes = judge_traces(duckdb.get_connection, judge.settings(), task.name, context.log.info)
    align = status["alignment"]
    rate = pass_rate(outcomes, align)
    errors = new.filter(pl.col("error").is_not_null())
    return dg.MaterializeResult(
        data_version=judgements_version(duckdb),
        metadata={"judge": "on", "judge_version": status["version"], "judged_now": new.height,
                  "errors_now": errors.height, "judged_total": rate["n"],
                  "agreement": share(align["agreement"]), "true_positive_rate": share(align["tpr"]),
                  "true_negative_rate": share(align["tnr"]), "labelled_traces": align["n_labelled"],
                  "flagged": align["flagged"], "pass_rate_observed": share(rate["observed"]),
                  "pass_rate_corrected": share(rate["corrected"]), "pass_rate_ci_low": share(rate["ci_low"]),
                  "pass_rate_ci_high": share(rate["ci_high"]),
                  "prompt_tokens_now": int(new["prompt_tokens"].sum() or 0),
                  "completion_tokens_now": int(new["completion_tokens"].sum() or 0),
                  "errors": preview(errors.select("trace_id", "error"))},
        check_results=[dg.AssetCheckResult(
            check_name="judge_aligned", passed=not align["flagged"], severity=dg.AssetCheckSeverity.WARN,
            description=align["flag_reason"] or (f"agreement {align['agreement']:.1%} on {align['n_labelled']} "
                                                 f"traces (at least {judge.min_agreement:.0%} required)"),
            metadata={"agreement": share(align["agreement"]),
                      "labelled_traces": align["n_labelled"]})])


@dg.asset(
    group_name="label",
    kinds={"duckdb", "polars"},
    deps=[trace_evaluations, trace_judgements, annotations],
    description="Failing traces: assertion failures, the judge's 'bad' outcomes and people's 'bad' "
                "decisions, with the failure mode, where the label came from and any correction.",
)
def labelled_failures(duckdb: FlywheelDuckDB) -> dg.MaterializeResult:
    with duckdb.get_connection() as conn:
        failures = stored_failures(conn)
        store.sync(conn, "labelled_failures", failures, FAILURE_KEY, compare=["detail", "correction"])
        version = table_version(conn, "labelled_failures")
    by_mode = failures.group_by("failure_mode", "label_source").len("traces").sort("traces", descending=True)
    return dg.MaterializeResult(data_version=version, metadata={
        "dagster/row_count": failures.height, "failing_traces": failures["trace_id"].n_unique(),
        "with_correction": failures.filter(pl.col("correction").is_not_null())["trace_id"].n_unique(),
        "by_failure_mode": preview(by_mode, n=50)})
