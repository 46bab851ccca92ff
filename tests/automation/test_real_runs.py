"""Automation over real runs: the curation chain reports the training data's content hash as its
data version, so curating new data requests training and re-curating the same data does not."""

import dagster as dg

from assets import langsmith, sources
from pipeline.definitions import ASSET_MODULES
from tests.automation.conftest import Graph

CHAIN = ["raw_traces", "annotations", "trace_evaluations", "trace_judgements", "labelled_failures",
         "synthetic_examples", "training_examples", "training_files"]


def test_training_follows_the_data_version_of_real_curation_runs(tmp_path, tiny_demo):
    modules = [*ASSET_MODULES, langsmith]
    assets = [*dg.load_assets_from_modules(modules), *sources.SOURCES, *dg.load_asset_checks_from_modules(modules)]
    with dg.instance_for_test() as instance:
        graph = Graph(tmp_path, tiny_demo, instance)
        graph.observe()
        graph.tick()

        def run(*keys):
            selection = dg.AssetSelection.assets(*keys)
            result = dg.materialize(assets, selection=selection, resources=graph.resources, instance=instance)
            assert result.success
            return instance.get_latest_data_version_record(dg.AssetKey("training_files")).event_log_entry.tags

        first = run(*CHAIN, "base_model")
        files = instance.get_latest_materialization_event(dg.AssetKey("training_files")).asset_materialization
        assert first["dagster/data_version"] == files.metadata["training_data_version"].value  # the content hash
        assert graph.tick() == {"fine_tuned_model", "eval_report", "promoted_model"}
        again = run(*CHAIN)
        assert again["dagster/data_version"] == first["dagster/data_version"]
        assert graph.tick() == set()
