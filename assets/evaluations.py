"""Curate group, evaluation of production traces: assertions on every trace, the LLM judge, and
labelled failures."""

from dataclasses import dataclass

import dagster as dg
import polars as pl

from assets.ingest import annotations, raw_traces
from assets.metadata import preview
from pipeline.engine.core import store
from pipeline.engine.label.alignment import alignment, corrected_pass_rate
from pipeline.engine.label.annotations import labelled_failures as derive_failures
from pipeline.engine.label.assertions import check_version, evaluate_traces
from pipeline.engine.label.judge import (
    JudgePrompt, few_shot_examples, judge_failures, judge_items, judge_version, load_prompt, select_pending,
)
from pipeline.engine.providers import ChatProvider
from pipeline.resources import FlywheelDuckDB, JudgeResource, TaskResource

JUDGE_OFF = "no judge model configured (set FLYWHEEL_JUDGE_MODEL or JudgeResource(model=...))"


@dg.asset(
    group_name="curate",
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
        pending = store.read(conn, """
            SELECT t.trace_id, t.input::VARCHAR AS input, t.output, t.error FROM raw_traces t
            WHERE NOT EXISTS (SELECT 1 FROM trace_evaluations e WHERE e.trace_id = t.trace_id AND e.task_version = ?)
            ORDER BY t.trace_id""", [version])
        results = evaluate_traces(pending, the_task)
        store.upsert(conn, "trace_evaluations", results, ["trace_id"])
        rates = store.read(conn, """
            SELECT check_name, count(*) FILTER (WHERE passed = false) AS failed,
                   round(100.0 * count(*) FILTER (WHERE passed = false) / count(*), 2) AS failed_pct
            FROM trace_evaluations GROUP BY check_name ORDER BY failed DESC""")
        all_pass = conn.execute("""SELECT avg(ok::INT) FROM (SELECT trace_id, bool_and(coalesce(passed, true)) AS ok
            FROM trace_evaluations GROUP BY trace_id)""").fetchone()[0]
        total = conn.execute("SELECT count(*) FROM trace_evaluations").fetchone()[0]
    context.log.info(f"evaluated {pending.height} new traces with checks {version}")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": total, "traces_evaluated_now": pending.height, "check_version": version,
        "share_passing_all": float(all_pass or 0.0), "failures_by_check": preview(rates, n=50)})


@dataclass(frozen=True)
class JudgeSetup:
    """What the judge sees and the version that names it (its cache key)."""

    provider: ChatProvider
    prompt: JudgePrompt
    few_shot: pl.DataFrame
    version: str
    people: pl.DataFrame


def judge_setup(conn, judge: JudgeResource, task_name: str) -> JudgeSetup:
    """The judge's provider, prompt, few-shot examples from people's critiques, and version."""
    provider = judge.provider()
    prompt = load_prompt(task_name, judge.prompt_version, judge.prompt_path)
    people = store.read(conn, "SELECT * FROM annotations")
    critiqued = store.read(conn, """SELECT trace_id, input::VARCHAR AS input, output FROM raw_traces
        WHERE trace_id IN (SELECT trace_id FROM annotations WHERE critique IS NOT NULL)""")
    shots = few_shot_examples(people, critiqued, judge.few_shot)
    return JudgeSetup(provider, prompt, shots, judge_version(prompt, provider.model, shots), people)


def judged(conn, setup: JudgeSetup, subject: str) -> pl.DataFrame:
    """trace_id and outcome of what this judge version has judged (with an outcome) for ``subject``."""
    return store.read(conn, "SELECT trace_id, outcome FROM trace_judgements WHERE judge_version = ? AND subject = ? "
                            "AND outcome IS NOT NULL", [setup.version, subject])


def judge_and_store(duckdb: FlywheelDuckDB, judge: JudgeResource, setup: JudgeSetup, pending: pl.DataFrame,
                    subject: str) -> tuple[pl.DataFrame, dict, pl.DataFrame]:
    """Judge ``pending`` (trace_id, input, output) with the database closed, store the verdicts
    under ``subject``, then return them, the judge's status and everything :func:`judged` now."""
    new = judge_items(setup.provider, setup.prompt, setup.few_shot, pending, setup.version, subject=subject,
                      concurrency=judge.concurrency)
    with duckdb.get_connection() as conn:
        store.upsert(conn, "trace_judgements", new, ["judge_version", "trace_id"])
        return new, judge_status(conn, judge, setup), judged(conn, setup, subject)


def judge_status(conn, judge: JudgeResource, setup: JudgeSetup | None) -> dict:
    """'off' with the reason, or 'on' with the version and its alignment with people."""
    if setup is None:
        return {"status": "off", "reason": JUDGE_OFF}
    align = alignment(judged(conn, setup, "trace"), setup.people, exclude=set(setup.few_shot["trace_id"]),
                      min_agreement=judge.min_agreement)
    return {"status": "on", "version": setup.version, "model": setup.provider.model, "alignment": align}


@dg.asset(
    group_name="curate",
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
            metadata={"judge": "off", "reason": JUDGE_OFF},
            check_results=[dg.AssetCheckResult(check_name="judge_aligned", passed=True,
                                               description=f"judge off: {JUDGE_OFF}")])
    with duckdb.get_connection() as conn:
        setup = judge_setup(conn, judge, task.name)
        traces = store.read(conn, "SELECT trace_id, input::VARCHAR AS input, output FROM raw_traces "
                                  "WHERE output IS NOT NULL AND output <> ''")
        done = judged(conn, setup, "trace")["trace_id"]
    pending = select_pending(traces, done, setup.people["trace_id"], setup.few_shot["trace_id"],
                             judge.max_traces_per_run)
    context.log.info(f"judge {setup.version}: judging {pending.height} traces")
    new, status, outcomes = judge_and_store(duckdb, judge, setup, pending, "trace")
    counts = dict(outcomes.group_by("outcome").len().iter_rows())
    align = status["alignment"]
    rate = corrected_pass_rate(counts.get("good", 0), sum(counts.values()), align)
    errors = new.filter(pl.col("error").is_not_null())
    return dg.MaterializeResult(
        metadata={"judge": "on", "judge_version": setup.version, "judged_now": new.height,
                  "errors_now": errors.height, "judged_total": sum(counts.values()),
                  "agreement": align["agreement"], "true_positive_rate": align["tpr"],
                  "true_negative_rate": align["tnr"], "labelled_traces": align["n_labelled"],
                  "flagged": align["flagged"], "pass_rate_observed": rate["observed"],
                  "pass_rate_corrected": rate["corrected"], "pass_rate_ci_low": rate["ci_low"],
                  "pass_rate_ci_high": rate["ci_high"],
                  "prompt_tokens_now": int(new["prompt_tokens"].sum() or 0),
                  "completion_tokens_now": int(new["completion_tokens"].sum() or 0),
                  "errors": preview(errors.select("trace_id", "error"))},
        check_results=[dg.AssetCheckResult(
            check_name="judge_aligned", passed=not align["flagged"], severity=dg.AssetCheckSeverity.WARN,
            description=align["flag_reason"] or f"agreement {align['agreement']:.1%} on {align['n_labelled']} traces",
            metadata={"agreement": align["agreement"], "min_agreement": judge.min_agreement})])


@dg.asset(
    group_name="curate",
    kinds={"duckdb", "polars"},
    deps=[trace_evaluations, trace_judgements, annotations],
    description="Failing traces: assertion failures, the judge's 'bad' outcomes and people's 'bad' "
                "decisions, with the failure mode, where the label came from and any correction.",
)
def labelled_failures(duckdb: FlywheelDuckDB) -> dg.MaterializeResult:
    with duckdb.get_connection() as conn:
        evaluations = store.read(conn, "SELECT trace_id, check_name, passed, detail FROM trace_evaluations")
        people = store.read(conn, "SELECT * FROM annotations")
        judged = store.read(conn, "SELECT * FROM trace_judgements WHERE subject = 'trace' AND outcome IS NOT NULL")
        failures = derive_failures(evaluations, people)
        by_judge = (judge_failures(judged).join(failures.select("trace_id", "correction").unique("trace_id"),
                                                on="trace_id", how="left", suffix="_person")
                    .with_columns(correction=pl.col("correction_person")).drop("correction_person"))
        failures = pl.concat([failures, by_judge.cast(failures.schema)]).sort("trace_id", "label_source", "failure_mode")
        store.sync(conn, "labelled_failures", failures, ["trace_id", "failure_mode", "label_source"],
                   compare=["detail", "correction"])
    by_mode = failures.group_by("failure_mode", "label_source").len().sort("len", descending=True)
    return dg.MaterializeResult(metadata={
        "dagster/row_count": failures.height, "failing_traces": failures["trace_id"].n_unique(),
        "with_correction": failures.filter(pl.col("correction").is_not_null())["trace_id"].n_unique(),
        "by_failure_mode": preview(by_mode, n=50)})
