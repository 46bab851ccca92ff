"""Automation over real runs: every asset reports a data version derived from what it stored, so
curating new data requests training, and a run that stored nothing new requests nothing."""

import json

import dagster as dg

from assets import incumbent, langsmith, sources
from pipeline.definitions import ASSET_MODULES
from tests.automation.conftest import Graph

CHAIN = ["raw_traces", "annotations", "trace_evaluations", "trace_judgements", "labelled_failures",
         "synthetic_examples", "training_examples", "training_files", "incumbent_outputs"]
MODULES = [*ASSET_MODULES, langsmith, incumbent]
ASSETS = [*dg.load_assets_from_modules(MODULES), *sources.SOURCES, *dg.load_asset_checks_from_modules(MODULES)]


def run(graph: Graph, *keys: str) -> dict[str, str]:
    """Materialize ``keys`` for real; the data version each reported."""
    result = dg.materialize(ASSETS, selection=dg.AssetSelection.assets(*keys), resources=graph.resources,
                            instance=graph.instance)
    assert result.success
    return {key: graph.version(key) for key in keys}


def test_training_follows_the_data_version_of_real_curation_runs(tmp_path, tiny_demo):
    with dg.instance_for_test() as instance:
        graph = Graph(tmp_path, tiny_demo, instance)
        graph.observe()
        graph.tick()
        first = run(graph, *CHAIN, "base_model")
        files = instance.get_latest_materialization_event(dg.AssetKey("training_files")).asset_materialization
        assert first["training_files"] == files.metadata["training_data_version"].value  # the content hash
        assert graph.tick() == {"fine_tuned_model", "eval_report", "promoted_model"}
        assert run(graph, *CHAIN) == {key: first[key] for key in CHAIN}  # the same data: the same versions
        assert graph.tick() == set()


def test_a_finished_flywheel_run_leaves_automation_nothing_to_run(tmp_path, tiny_demo):
    with dg.instance_for_test() as instance:
        graph = Graph(tmp_path, tiny_demo, instance)
        graph.tick()  # the daemon runs while the demo does (make dev, then make demo)
        assert graph.defs.resolve_job_def("flywheel").execute_in_process(instance=instance).success
        assert graph.version("trace_files_source") and graph.version("annotations_source")  # observed by the run
        assert graph.observe() == []  # nothing arrived since the run read the sources
        assert graph.tick() == set()
        graph.cursor = None  # a daemon that starts over the finished demo (make demo, then make dev)
        assert graph.tick() == set()
        assert graph.observe() == []
        assert graph.tick() == set() and graph.tick() == set()
        assert instance.get_runs_count() == 1  # the flywheel run: automation started none

        # raw_traces again, for real: nothing new to ingest, the version it had, nothing downstream
        finished = {key: graph.version(key) for key in CHAIN}
        assert run(graph, "raw_traces") == {"raw_traces": finished["raw_traces"]}
        assert graph.tick() == set()
        # the whole cheap chain again: every asset stores what it had, so training is not requested
        assert run(graph, *CHAIN) == finished
        assert graph.tick() == set()

        # a new trace: raw_traces alone, then what reads it once its data version changed
        (tmp_path / "incoming").mkdir(exist_ok=True)
        record = {"trace_id": "tr_real_1", "ts": "2026-11-20T10:00:00Z", "model": "prod", "output": "{}",
                  "input": {"question": "count of requests", "columns": ["duration_ms"], "dataset": "x"}}
        (tmp_path / "incoming" / "new.jsonl").write_text(json.dumps(record) + "\n")
        assert graph.observe() == ["trace_files_source"]
        assert graph.tick() == {"raw_traces"}
        assert run(graph, "raw_traces")["raw_traces"] != finished["raw_traces"]
        assert {"trace_evaluations", "trace_judgements", "annotations"} <= graph.tick()
