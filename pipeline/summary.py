"""Print where to look after a run: an under-trained model first, table sizes, the latest eval
report's figures (the gate's decision in one sentence; the candidates side by side: base,
few-shot, fine-tuned, promoted, incumbent, each with its rates and 95% intervals, latency per call
(median, p95), cost per call and verdict; the newest fine-tuned model against the base, and
against the promoted model and the incumbent when there are: each rate, the difference with its
interval and the McNemar p; exact match on the test references a person verified apart from
agreement with the unverified ones, with their counts) and how its models trained (planned vs
actual), the promoted model. Percentages have one decimal, p-values two significant digits.
``python -m pipeline.summary [database]``; opens the database read-only."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pipeline.engine.core import store
from pipeline.engine.core.store import CONTRACT_TABLES
from pipeline.engine.evaluate.gate import current_promoted
from pipeline.engine.evaluate.report import board_cells, p_text, pct, points
from pipeline.engine.evaluate.scoring import LABELS, UNVERIFIED_METRIC, VERIFIED_METRIC
from pipeline.engine.train.registry import trainings, under_trained


LABEL_WIDTH = 58


def reference_lines(figures: dict[str, Any], n: int) -> list[str]:
    """How many test references a person verified (none printed for a report made before they were counted)."""
    verified = figures.get("candidate", {}).get("n_verified")
    if verified is None:
        return []
    return [f"  test references verified by a person: {verified} of {n} (the others are production outputs "
            "that passed the assertions)"]


def metric_rows(figures: dict[str, Any]) -> list[tuple[str, dict[str, Any] | None]]:
    """(label, comparison or None when there is nothing to compare) of the rows printed: passes
    all assertions, exact match on verified references, agreement on unverified ones, and exact
    match over all references (what the gate reads) when there are both kinds; a report made
    before references were counted shows exact match over all of them only."""
    comparison, candidate = figures["comparison"], figures.get("candidate", {})
    if "n_verified" not in candidate:
        return [("passes all assertions", comparison["passed_checks"]), ("exact match", comparison["exact_match"])]
    verified, unverified = candidate["n_verified"], candidate["n_unverified"]
    return [(f"passes all assertions (n={verified + unverified})", comparison["passed_checks"]),
            (f"{LABELS[VERIFIED_METRIC]} (n={verified})", comparison.get(VERIFIED_METRIC)),
            (f"{LABELS[UNVERIFIED_METRIC]} (n={unverified})", comparison.get(UNVERIFIED_METRIC)),
            *[(f"exact match, all references (n={verified + unverified})", comparison["exact_match"])]
            * bool(verified and unverified)]


def metric_line(label: str, c: dict[str, Any] | None) -> str:
    """One printed row: the label, the baseline's and the fine-tuned model's rate, the difference
    with its 95% interval (when the report has it) and the McNemar p."""
    if c is None:
        return f"  {label:<{LABEL_WIDTH}}{'n/a':>10}{'n/a':>12}"
    difference = ("" if "ci_low" not in c else f"{points(c['difference'])} ({100 * c['ci_low']:+.1f} to "
                  f"{100 * c['ci_high']:+.1f})")
    return (f"  {label:<{LABEL_WIDTH}}{pct(c['baseline']):>10}{pct(c['candidate']):>12}  {difference:<30}"
            f"{p_text(c['p_value']):>10}")


def comparison_block(name: str, figures: dict[str, Any]) -> list[str]:
    """The fine-tuned model against one baseline (``name``: "base", "promoted", "incumbent"): a
    header and one row per metric."""
    header = f"  {'fine-tuned vs ' + name:<{LABEL_WIDTH}}{name:>10}{'fine-tuned':>12}  {'difference (95% CI)':<30}"
    return [header + f"{'McNemar p':>10}", *(metric_line(label, c) for label, c in metric_rows(figures))]


BOARD_WIDTHS = (24, 26, 26, 26, 14)


def board_lines(figures: dict[str, Any], n: int) -> list[str]:
    """The candidates side by side (none for a report made before they competed): label, the
    rates with their intervals, latency (median, p95), cost per call, verdict."""
    board = figures.get("board")
    if not board:
        return []
    names = ("candidate", "passes all assertions", "exact match", "latency (median, p95)", "cost per call")
    header = "".join(f"{name:<{width}}" for name, width in zip(names, BOARD_WIDTHS)) + "verdict"
    lines = ["", f"  Candidates side by side (the same {n} test traces):", "    " + header]
    for row in board:
        label, _, *cells, verdict = board_cells(row, judged=False)
        lines.append("    " + "".join(f"{cell:<{width}}" for cell, width in zip([label, *cells], BOARD_WIDTHS))
                     + verdict)
    return lines


def latest_reports(conn) -> list[tuple[Any, ...]]:
    """The rows of the newest eval report in which the newest fine-tuned model is compared with
    each of its references, the comparison with its base first: (model_id, baseline_model_id,
    is the base, n_examples, metrics, verdict, test_set_version)."""
    return conn.execute("""SELECT model_id, baseline_model_id, r.baseline_model_id = m.base_model AS vs_base,
            n_examples, r.metrics, verdict, test_set_version
        FROM eval_reports r JOIN fine_tuned_models m USING (model_id)
        WHERE r.created_at = (SELECT max(r.created_at) FROM eval_reports r JOIN fine_tuned_models m USING (model_id)
                              WHERE r.baseline_model_id = m.base_model)
          AND coalesce((r.metrics->>'$.primary')::BOOLEAN, true)
        ORDER BY vs_base DESC, baseline_model_id""").fetchall()


def report_lines(database: str, reports: list[tuple[Any, ...]], training: dict[str, Any]) -> list[str]:
    """The latest eval report's lines: the gate's decision in one sentence, the verified
    references, the comparison with the base (and with the promoted model when there is one), the
    models and how they trained, where the full report is."""
    model_id, baseline_id, _, n, metrics, verdict, test_set = reports[0]
    figures = json.loads(metrics)
    others = [(json.loads(row[4]).get("baseline_label", "promoted"), row) for row in reports[1:]]
    lines = ["", f"Latest eval report (n={n} real test traces never seen in training):",
             *([f"  Promotion gate: {figures['decision']}."] if figures.get("decision") else []),
             *board_lines(figures, n), "", *reference_lines(figures, n), *comparison_block("base", figures)]
    for name, row in others:
        lines += ["", *comparison_block(name, json.loads(row[4]))]
    lines += ["", f"  base {baseline_id}", f"  fine-tuned {model_id}: {verdict.replace('_', ' ')}",
              *(f"  {name} {row[1]}; fine-tuned against it: {row[5].replace('_', ' ')}" for name, row in others),
              "  training (trained of planned):",
              *(f"    {role}: {t.figures}, data {t.data_version or 'n/a'}; {t.state}"
                for role, t in (("base", training.get(baseline_id)), ("fine-tuned", training.get(model_id)))
                if t is not None),
              "  full report: SELECT report_markdown FROM eval_reports ORDER BY created_at DESC LIMIT 1"]
    html = sorted((Path(database).parent / "reports").glob(f"*.{test_set}.html"), key=lambda p: p.stat().st_mtime)
    return lines + ([f"  HTML report with chart: {html[-1]}"] if html else [])


def summary(database: str) -> str:
    """A plain-text summary of the database's tables and latest evaluation."""
    with store.connect(database, read_only=True) as conn:
        reports = latest_reports(conn)
        training = trainings(conn, [reports[0][0], reports[0][1]]) if reports else {}
        lines = [f"Flywheel database: {database}",
                 *(f"Under-trained: {m}: {reason}" for m, reason in under_trained(training).items()),
                 "", "Tables (query them with duckdb or any DuckDB client):"]
        for table in CONTRACT_TABLES:
            count = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            lines.append(f"  {table:<20} {count:>8,} rows")
        if reports:
            lines += report_lines(database, reports, training)
        promoted = current_promoted(conn)
        lines += ["", f"Promoted model (in use): {promoted.model_id}" if promoted else "Promoted model: none yet"]
    lines += ["", "Explore the asset graph, runs and reports in the Dagster UI: make dev  (http://127.0.0.1:3000)"]
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary(sys.argv[1] if len(sys.argv) > 1 else "data/flywheel.duckdb"))
