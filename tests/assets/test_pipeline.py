"""The whole graph, materialized with dg.materialize on a tiny configuration in a temporary folder."""

import json

import dagster as dg
import duckdb
import pytest

from assets.ingest import raw_traces
from pipeline.definitions import ASSET_MODULES, flywheel_job
from pipeline.engine.core.store import CONTRACT_TABLES
from tests.assets.tiny import materialize as materialize_with
from tests.assets.tiny import tiny_resources

# Columns analysts rely on (docs/architecture.md, "DuckDB tables (contract)").
CONTRACT = {
    "raw_traces": {"trace_id", "source", "task", "ts", "input", "output", "model", "latency_ms",
                   "prompt_tokens", "completion_tokens", "error", "metadata", "ingested_at"},
    "rejected_traces": {"source", "location", "reason", "raw"},
    "trace_evaluations": {"trace_id", "check_name", "passed", "detail", "evaluated_at"},
    "annotations": {"trace_id", "label", "failure_mode", "correction", "critique", "annotator", "annotated_at"},
    "labelled_failures": {"trace_id", "failure_mode", "label_source", "detail", "correction"},
    "synthetic_examples": {"example_id", "parent_id", "generator", "input", "output", "created_at"},
    "training_examples": {"example_id", "source", "group_id", "split", "input", "output"},
    "fine_tuned_models": {"model_id", "backend", "base_model", "job_id", "status", "training_data_version",
                          "hyperparameters", "created_at", "finished_at", "error"},
    "eval_results": {"model_id", "example_id", "output", "passed_checks", "metrics"},
    "eval_reports": {"model_id", "baseline_model_id", "n_examples", "metrics", "verdict", "created_at"},
}


def materialize(folder, demo):
    assets = dg.load_assets_from_modules(ASSET_MODULES)
    checks = dg.load_asset_checks_from_modules(ASSET_MODULES)
    return materialize_with([*assets, *checks], tiny_resources(folder, demo))


def table_counts(db):
    with duckdb.connect(str(db), read_only=True) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in (*CONTRACT_TABLES, "model_promotions")}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, tiny_demo):
    folder = tmp_path_factory.mktemp("flywheel")
    result, events = materialize(folder, tiny_demo)
    return folder, result, events


def test_whole_graph_materializes(first_run):
    folder, result, events = first_run
    assert result.success
    assert set(events) == {"raw_traces", "annotations", "trace_evaluations", "trace_judgements", "labelled_failures",
                           "synthetic_examples", "training_examples", "training_files", "base_model",
                           "fine_tuned_model", "eval_report", "promoted_model", "incumbent_outputs"}
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["no_group_in_two_splits"] and checks["test_split_is_real"] and checks["openai_format"]


def test_every_contract_table_has_its_columns_and_rows(first_run):
    folder, _, _ = first_run
    with duckdb.connect(str(folder / "flywheel.duckdb"), read_only=True) as conn:
        for table, columns in CONTRACT.items():
            present = {r[0] for r in conn.execute(f"DESCRIBE {table}").fetchall()}
            assert columns <= present, f"{table} lacks {columns - present}"
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] > 0, f"{table} is empty"


def test_tables_hold_what_the_stages_promise(first_run):
    folder, _, _ = first_run
    with duckdb.connect(str(folder / "flywheel.duckdb"), read_only=True) as conn:
        q = lambda sql: conn.execute(sql).fetchall()  # noqa: E731
        # bad lines of the demo file are quarantined with file:line and a reason
        assert all(":" in loc and reason for loc, reason in q("SELECT location, reason FROM rejected_traces"))
        # every trace is evaluated by every check
        assert q("SELECT count(DISTINCT trace_id) FROM trace_evaluations") == q("SELECT count(*) FROM raw_traces")
        # failures come from assertions and from people
        assert {r[0] for r in q("SELECT DISTINCT label_source FROM labelled_failures")} == {"assertion", "human"}
        # test examples are real traces never seen in training: no test group elsewhere, no synthetic in test
        assert q("SELECT count(*) FROM training_examples WHERE split = 'test' AND source = 'synthetic'") == [(0,)]
        assert q("""SELECT count(*) FROM training_examples a JOIN training_examples b USING (group_id)
                    WHERE a.split = 'test' AND b.split <> 'test'""") == [(0,)]
        assert {r[0] for r in q("SELECT DISTINCT split FROM training_examples")} == {"train", "validation", "test"}
        # the base and the fine-tuned model are registered, warm start recorded
        models = q("SELECT model_id, base_model, status FROM fine_tuned_models ORDER BY created_at")
        assert [m[2] for m in models] == ["succeeded", "succeeded"]
        assert models[1][1] == models[0][0]
        # base, few-shot and fine-tuned evaluated on the same test examples; the report holds their numbers
        per_model = dict(q("SELECT model_id, count(*) FROM eval_results GROUP BY model_id"))
        n_test = q("SELECT count(*) FROM training_examples WHERE split = 'test'")[0][0]
        assert set(per_model) == {models[0][0], models[1][0], f"{models[0][0]}+3-shot"}
        assert set(per_model.values()) == {n_test}
        model_id, baseline, n, metrics, verdict = q(
            "SELECT model_id, baseline_model_id, n_examples, metrics, verdict FROM eval_reports "
            "ORDER BY created_at DESC")[0]
        metrics = json.loads(metrics)
        assert (model_id, baseline, n) == (models[1][0], models[0][0], n_test)
        assert {"passed_checks", "exact_match"} <= set(metrics["candidate"]) & set(metrics["baseline"])
        assert verdict in {"better", "worse", "no_significant_difference"}
        # test references a person verified (corrections, traces marked good) are counted and scored apart
        n_verified = q("SELECT count(*) FROM training_examples WHERE split = 'test' AND reference_verified")[0][0]
        assert q("SELECT count(*) FROM training_examples WHERE reference_verified IS NULL") == [(0,)]
        assert q("SELECT count(*) FROM training_examples WHERE source = 'correction' AND NOT reference_verified") == [(0,)]
        assert q("SELECT count(*) FROM training_examples WHERE source = 'synthetic' AND reference_verified") == [(0,)]
        assert 0 < n_verified < n_test
        assert (metrics["candidate"]["n_verified"], metrics["candidate"]["n_unverified"]) == (n_verified,
                                                                                            n_test - n_verified)
        assert metrics["comparison"]["exact_match_verified"]["n"] == n_verified


def test_materializing_twice_duplicates_nothing_and_retrains_nothing(first_run, tiny_demo):
    folder, _, _ = first_run
    before = table_counts(folder / "flywheel.duckdb")
    result, events = materialize(folder, tiny_demo)
    assert result.success
    assert table_counts(folder / "flywheel.duckdb") == before
    assert events["base_model"].metadata["reused"].value is True
    assert events["fine_tuned_model"].metadata["reused"].value is True
    assert events["raw_traces"].metadata["new_traces"].value == 0


def test_new_trace_file_is_ingested_once(first_run, tiny_demo):
    folder, _, _ = first_run
    incoming = folder / "incoming"
    incoming.mkdir(exist_ok=True)
    record = {"trace_id": "tr_new_1", "ts": "2026-11-20T10:00:00Z", "model": "prod-assistant-v3",
              "input": {"question": "count of requests last 2 hours", "columns": ["duration_ms"], "dataset": "x"},
              "output": '{"calculations":[{"op":"COUNT"}],"time_range":7200}'}
    (incoming / "batch.jsonl").write_text(json.dumps(record) + "\n{not json\n")
    (incoming / ".batch2.jsonl.part").write_text(json.dumps({**record, "trace_id": "tr_half"}) + "\n")
    with dg.instance_for_test() as instance:
        for _ in range(2):
            assert dg.materialize([raw_traces], resources=tiny_resources(folder, tiny_demo), instance=instance).success
    with duckdb.connect(str(folder / "flywheel.duckdb"), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM raw_traces WHERE trace_id = 'tr_new_1'").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM raw_traces WHERE trace_id = 'tr_half'").fetchone()[0] == 0
        rejected = conn.execute("SELECT reason FROM rejected_traces WHERE location LIKE '%batch.jsonl:2'").fetchall()
        assert len(rejected) == 1 and "malformed JSON" in rejected[0][0]


def test_definitions_load_with_the_main_job():
    from pipeline.definitions import defs

    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_job_def("flywheel").name == flywheel_job.name
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.group_name in {"ingest", "label", "curate", "train", "evaluate"}, key
        assert node.description and node.kinds, key
