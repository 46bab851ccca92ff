"""Evaluate group: base, fine-tuned and promoted models on the same real test split; promotion."""

import json
import re
import time
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import polars as pl

from assets.curate import training_examples
from assets.evaluations import JUDGE_OFF, judge_and_store, judge_setup, judged, trace_judgements
from assets.train import fine_tuned_model
from pipeline.engine.core import store
from pipeline.engine.label.alignment import corrected_pass_rate
from pipeline.engine.evaluate.scoring import (
    JUDGE_METRIC, compare, examples_won_and_lost, regressions, score, summarize, test_set_version, verdict,
)
from pipeline.engine.providers.models import ChatModelProvider, ModelProvider
from pipeline.engine.label.judge import output_items, select_pending, with_judge_pass
from pipeline.engine.evaluate.report import render, render_models
from pipeline.engine.evaluate.report_html import render_html, write_html
from pipeline.engine.train.local.inference import LocalModelProvider
from pipeline.resources import FineTuning, FlywheelDuckDB, FlywheelPaths, JudgeResource, TaskResource

REPORT_SCHEMA = {
    "model_id": pl.String, "baseline_model_id": pl.String, "test_set_version": pl.String,
    "n_examples": pl.Int64, "metrics": pl.String, "verdict": pl.String, "report_markdown": pl.String,
    "created_at": pl.Datetime("us", "UTC"),
}


class EvalSettings(dg.Config):
    """Promotion gate thresholds: a candidate is significantly worse on a metric when the paired
    McNemar p-value is below ``alpha`` and the drop is at least ``min_regression`` (a share:
    0.02 = 2 points). ``judge_gates`` lets an aligned judge's pass rate gate too."""

    alpha: float = 0.05
    min_regression: float = 0.0
    judge_gates: bool = True


def _inference(fine_tuning: FineTuning, backend: str, model_id: str, artifact: str | None, task) -> ModelProvider:
    """The model behind one interface: a local model folder, or chat completions with a hosted model."""
    if backend == "local":
        return LocalModelProvider(Path(artifact), task)
    chat = fine_tuning.api(backend).chat_provider(model_id)
    return ChatModelProvider(chat, task, concurrency=fine_tuning.inference_concurrency, seed=fine_tuning.seed)


def _generate(context, provider: ModelProvider, model_id: str, test: pl.DataFrame, task) -> pl.DataFrame:
    """eval_results of a model on the test set, generated now (no database connection held)."""
    started = time.perf_counter()
    outputs = provider.complete([json.loads(i) for i in test["input"]])
    per_call = 1000 * (time.perf_counter() - started) / max(1, test.height)
    context.log.info(f"{model_id}: generated {test.height} outputs, {per_call:.1f} ms per example")
    return score(test, outputs, task, model_id, latencies_ms=[per_call] * test.height)


def _judge_results(context, duckdb: FlywheelDuckDB, judge: JudgeResource, task_name: str,
                   results: dict[str, pl.DataFrame], test: pl.DataFrame) -> tuple[dict, dict[str, pl.DataFrame]]:
    """The judge's status, and ``results`` with a judge_pass column (null where not judged).

    Each distinct (input, output) is judged once per judge version, whichever model wrote it,
    and cached in trace_judgements (subject 'eval_output'), so a re-run pays nothing.
    """
    if not judge.enabled:
        return {"status": "off", "reason": JUDGE_OFF}, results
    items = {m: output_items(r, test) for m, r in results.items()}
    every = pl.concat([i.select("trace_id", "input", "output") for i in items.values()]).unique("trace_id")
    with duckdb.get_connection() as conn:
        setup = judge_setup(conn, judge, task_name)
        done = judged(conn, setup, "eval_output")["trace_id"]
    pending = select_pending(every, done)
    context.log.info(f"judge {setup.version}: judging {pending.height} model outputs ({every.height - pending.height} cached)")
    _, status, outcomes = judge_and_store(duckdb, judge, setup, pending, "eval_output")
    return status, {m: with_judge_pass(r, items[m], outcomes) for m, r in results.items()}


@dg.asset(
    group_name="evaluate",
    kinds={"duckdb", "polars", "pytorch", "openai"},
    deps=[fine_tuned_model, training_examples, trace_judgements],
    description="The newest fine-tuned model, its base and the promoted model run through the same "
                "inference code on the test split (real traces never seen in training): share "
                "passing all assertions, exact match of the normalised query, failure modes, the "
                "judge's pass rate corrected for its error (when a judge is configured), latency and "
                "cost per call, with paired bootstrap intervals and McNemar tests. Local models run here; "
                "hosted ones answer the task's prompt through chat completions. Rows in "
                "eval_results and eval_reports; a self-contained HTML report under data/reports/.",
    check_specs=[dg.AssetCheckSpec("no_regression", asset="eval_report", blocking=True,
                                   description="Blocks promotion when the candidate is significantly worse than "
                                               "the base or the promoted model on a headline metric (assertions, "
                                               "exact match, and the judge when it is aligned with people); "
                                               "thresholds in the asset's config (alpha, min_regression).")],
)
def eval_report(context: dg.AssetExecutionContext, config: EvalSettings, duckdb: FlywheelDuckDB,
                task: TaskResource, judge: JudgeResource, paths: FlywheelPaths,
                fine_tuning: FineTuning) -> dg.MaterializeResult:
    the_task = task.load()
    with duckdb.get_connection() as conn:
        candidate = conn.execute("""SELECT model_id, base_model FROM fine_tuned_models
            WHERE status = 'succeeded' AND base_model IS NOT NULL ORDER BY finished_at DESC LIMIT 1""").fetchone()
        if candidate is None:
            raise dg.Failure("no fine-tuned model has finished yet; materialize fine_tuned_model first")
        candidate_id, base_id = candidate
        promoted = conn.execute("SELECT model_id FROM model_promotions ORDER BY promoted_at DESC LIMIT 1").fetchone()
        wanted = list(dict.fromkeys([candidate_id, base_id, *(promoted or [])]))
        registered = {m: (backend, path) for m, backend, path in conn.execute(
            "SELECT model_id, backend, artifact_path FROM fine_tuned_models WHERE list_contains(?, model_id)",
            [wanted]).fetchall()}
        promoted = promoted if promoted and promoted[0] in registered else None
        if base_id not in registered:
            raise dg.Failure(f"base model {base_id} of {candidate_id} is not registered; materialize base_model first")
        models = {m: registered[m] for m in wanted if m in registered}
        test = store.read(conn, "SELECT example_id, input::VARCHAR AS input, output FROM training_examples "
                                "WHERE split = 'test' ORDER BY example_id")
        if test.is_empty():
            raise dg.Failure("the test split is empty: there is nothing to evaluate on")
        version = test_set_version(test)
        stored = {m: store.read(conn, "SELECT * EXCLUDE (metrics), metrics::VARCHAR AS metrics FROM eval_results "
                                      "WHERE model_id = ? AND test_set_version = ?", [m, version]) for m in models}
    results = {}
    for m, (backend, path) in models.items():
        if stored[m].height == test.height:
            context.log.info(f"{m}: reusing {stored[m].height} stored results for test set {version}")
            results[m] = stored[m]
            continue
        results[m] = _generate(context, _inference(fine_tuning, backend, m, path, the_task), m, test, the_task)
        with duckdb.get_connection() as conn:
            store.upsert(conn, "eval_results", results[m], ["model_id"])
    judge_info, results = _judge_results(context, duckdb, judge, task.name, results, test)
    aligned = judge_info["status"] == "on" and not judge_info["alignment"]["flagged"]
    skip = () if aligned and config.judge_gates else (JUDGE_METRIC,)
    summaries = {m: summarize(r, test) for m, r in results.items()}
    if judge_info["status"] == "on":
        for m, r in results.items():
            judged = r[JUDGE_METRIC].drop_nulls()
            summaries[m]["judge"] = corrected_pass_rate(int(judged.sum()), judged.len(), judge_info["alignment"])
    roles = {candidate_id: "candidate (fine-tuned)", base_id: "base"}
    if promoted and promoted[0] in roles:
        roles[promoted[0]] += ", promoted"
    elif promoted:
        roles[promoted[0]] = "promoted"
    overview = render_models(summaries, roles, judge_info, version)
    now = datetime.now(timezone.utc)
    rows, comparisons, gate, markdown = [], {}, [], overview
    for baseline_id in [m for m in models if m != candidate_id]:
        comparison = compare(results[candidate_id], results[baseline_id])
        gated = {k: v for k, v in comparison.items() if k not in skip}
        decision = verdict(gated, config.alpha, config.min_regression)
        examples = examples_won_and_lost(results[candidate_id], results[baseline_id], test)
        found = regressions(comparison, baseline_id, config.alpha, config.min_regression, skip)
        gate += found
        report = render(candidate_id, baseline_id, summaries, comparison, decision, examples, version)
        markdown += "\n" + report
        comparisons[baseline_id] = {"comparison": comparison, "verdict": decision, "examples": examples}
        rows.append({"model_id": candidate_id, "baseline_model_id": baseline_id, "test_set_version": version,
                     "n_examples": test.height, "verdict": decision, "report_markdown": overview + "\n" + report,
                     "created_at": now,
                     "metrics": json.dumps({"candidate": summaries[candidate_id], "baseline": summaries[baseline_id],
                                            "comparison": comparison, "judge": judge_info, "regressions": found,
                                            "thresholds": {"alpha": config.alpha, "min_regression": config.min_regression,
                                                           "judge_gates": JUDGE_METRIC not in skip}})})
    with duckdb.get_connection() as conn:
        store.upsert(conn, "eval_reports", pl.DataFrame(rows, schema=REPORT_SCHEMA),
                     ["model_id", "baseline_model_id", "test_set_version"])
    html_path = write_html(paths.reports_dir / f"{_file_name(candidate_id)}.{version}.html",
                           render_html(candidate_id, summaries, roles, judge_info, comparisons, gate, version))
    base_cmp = comparisons[base_id]["comparison"]
    return dg.MaterializeResult(
        metadata={"candidate": candidate_id, "base": base_id, "promoted": promoted[0] if promoted else "none",
                  "test_set_version": version, "n_examples": test.height,
                  "verdict_vs_base": comparisons[base_id]["verdict"],
                  "base_passed_checks": base_cmp["passed_checks"]["baseline"],
                  "candidate_passed_checks": base_cmp["passed_checks"]["candidate"],
                  "base_exact_match": base_cmp["exact_match"]["baseline"],
                  "candidate_exact_match": base_cmp["exact_match"]["candidate"],
                  "judge": judge_info["status"],
                  "report_html": dg.MetadataValue.path(str(html_path)),
                  "report": dg.MetadataValue.md(markdown)},
        check_results=[dg.AssetCheckResult(
            check_name="no_regression", passed=not gate,
            description="; ".join(gate) or "no significant regression on a headline metric",
            metadata={"regressions": len(gate), "alpha": config.alpha, "min_regression": config.min_regression,
                      "judge_gates": JUDGE_METRIC not in skip})],
    )


def _file_name(model_id: str) -> str:
    """A model id as a safe file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model_id).strip("._") or "model"


@dg.asset(
    group_name="evaluate",
    kinds={"duckdb"},
    deps=[eval_report],
    description="The model in use. The newest candidate is promoted when it is significantly better "
                "than its base and not significantly worse than the promoted model; every change is a "
                "row in model_promotions.",
)
def promoted_model(context: dg.AssetExecutionContext, duckdb: FlywheelDuckDB) -> dg.MaterializeResult:
    with duckdb.get_connection() as conn:
        reports = store.read(conn, """SELECT r.model_id, r.baseline_model_id, r.verdict, m.base_model
            FROM eval_reports r JOIN fine_tuned_models m USING (model_id)
            WHERE r.created_at = (SELECT max(created_at) FROM eval_reports)""")
        current = conn.execute("SELECT model_id FROM model_promotions ORDER BY promoted_at DESC LIMIT 1").fetchone()
        current_id = current[0] if current else None
        if reports.is_empty():
            raise dg.Failure("no eval report yet; materialize eval_report first")
        candidate_id = reports["model_id"][0]
        vs_base = reports.filter(pl.col("baseline_model_id") == pl.col("base_model"))["verdict"].to_list()
        worse = reports.filter(pl.col("verdict") == "worse")["baseline_model_id"].to_list()
        if candidate_id == current_id:
            decision = f"{candidate_id} is already the promoted model"
        elif worse:
            decision = f"not promoted: significantly worse than {', '.join(worse)}"
        elif vs_base != ["better"]:
            decision = f"not promoted: not significantly better than its base ({', '.join(vs_base) or 'no report'})"
        else:
            decision = "promoted: significantly better than its base and not worse than the promoted model"
            conn.execute("INSERT INTO model_promotions (model_id, previous_model_id, reason, promoted_at) VALUES (?, ?, ?, ?)",
                         [candidate_id, current_id, decision, datetime.now(timezone.utc)])
            current_id = candidate_id
    context.log.info(decision)
    return dg.MaterializeResult(metadata={"promoted_model": current_id or "none", "candidate": candidate_id,
                                          "decision": decision})
