"""Print where to look after a run: an under-trained model first, table sizes, the latest eval
report's figures (exact match on the test references a person verified apart from agreement
with the unverified ones, with their counts) and how its models trained (planned vs actual), the
promoted model.
``python -m pipeline.summary [database]``; opens the database read-only."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import duckdb

from pipeline.engine.core.store import CONTRACT_TABLES
from pipeline.engine.evaluate.gate import current_promoted
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
    return [("passes all assertions", comparison["passed_checks"]),
            (f"{LABELS[VERIFIED_METRIC]} (n={verified})", comparison.get(VERIFIED_METRIC)),
            (f"{LABELS[UNVERIFIED_METRIC]} (n={unverified})", comparison.get(UNVERIFIED_METRIC)),
            *[(f"exact match, all references (n={verified + unverified})", comparison["exact_match"])]
            * bool(verified and unverified)]


def summary(database: str) -> str:
    """A plain-text summary of the database's tables and latest evaluation."""
    with duckdb.connect(database, read_only=True) as conn:
        report = conn.execute("""SELECT model_id, baseline_model_id, n_examples, r.metrics, verdict, test_set_version
            FROM eval_reports r
            JOIN fine_tuned_models m USING (model_id) WHERE r.baseline_model_id = m.base_model
            ORDER BY r.created_at DESC LIMIT 1""").fetchone()
        training = trainings(conn, list(report[:2])) if report else {}
        lines = [f"Flywheel database: {database}",
                 *(f"Under-trained: {m}: {reason}" for m, reason in under_trained(training).items()),
                 "", "Tables (query them with duckdb or any DuckDB client):"]
        for table in CONTRACT_TABLES:
            count = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            lines.append(f"  {table:<20} {count:>8,} rows")
        if report:
            model_id, baseline_id, n, metrics, verdict, test_set = report
            figures = json.loads(metrics)
            lines += ["", f"Latest eval report ({n} real test traces never seen in training):",
                      *reference_lines(figures, n),
                      f"  {'':<{LABEL_WIDTH}}{'base':>10}{'fine-tuned':>12}{'McNemar p':>11}"]
            for label, c in metric_rows(figures):
                lines.append(f"  {label:<{LABEL_WIDTH}}" + (f"{'n/a':>10}{'n/a':>12}" if c is None else
                             f"{100 * c['baseline']:>9.1f}%{100 * c['candidate']:>11.1f}%{c['p_value']:>11.2g}"))
            lines += [f"  base {baseline_id}", f"  fine-tuned {model_id}: {verdict.replace('_', ' ')}",
                      "  training (trained of planned):",
                      *(f"    {role}: {t.figures}, data {t.data_version}; {t.state}"
                        for role, t in (("base", training.get(baseline_id)), ("fine-tuned", training.get(model_id)))
                        if t is not None),
                      "  full report: SELECT report_markdown FROM eval_reports ORDER BY created_at DESC LIMIT 1"]
            reports = sorted((Path(database).parent / "reports").glob(f"*.{test_set}.html"), key=lambda p: p.stat().st_mtime)
            if reports:
                lines.append(f"  HTML report with chart: {reports[-1]}")
        promoted = current_promoted(conn)
        lines += ["", f"Promoted model: {promoted.model_id} ({promoted.reason})" if promoted else "Promoted model: none yet"]
    lines += ["", "Explore the asset graph, runs and reports in the Dagster UI: make dev  (http://127.0.0.1:3000)"]
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary(sys.argv[1] if len(sys.argv) > 1 else "data/flywheel.duckdb"))
