"""A code location with the tiny configuration, a test instance, and helpers that stand in for runs."""

import warnings

import dagster as dg
import pytest

from pipeline.automation import SOURCES
from pipeline.definitions import build_defs, default_resources
from tests.assets.tiny import tiny_resources

DATA_VERSION_TAG = "dagster/data_version"


class Graph:
    """The real definitions over a temporary folder, evaluated tick by tick against ``instance``."""

    def __init__(self, folder, demo, instance):
        self.folder, self.instance, self.cursor = folder, instance, None
        self.resources = {**default_resources(), **tiny_resources(folder, demo)}
        self.defs = build_defs(self.resources)
        self.graph = self.defs.resolve_asset_graph()
        observe = dg.define_asset_job("observe_sources", selection=dg.AssetSelection.assets(*SOURCES))
        self._observe = dg.Definitions.merge(self.defs, dg.Definitions(jobs=[observe])).resolve_job_def("observe_sources")

    def observe(self):
        """Run the sources' observation functions (what the sensor does on its cron)."""
        assert self._observe.execute_in_process(instance=self.instance).success

    def materialized(self, *keys: str, data_version: str | None = None, checks_pass: bool = True):
        """Record what a run that materialized ``keys`` leaves behind, checks included."""
        for key in keys:
            tags = {DATA_VERSION_TAG: data_version} if data_version else None
            self.instance.report_runless_asset_event(dg.AssetMaterialization(key, tags=tags))
            for check in self.graph.get(dg.AssetKey(key)).check_keys:
                self.instance.report_runless_asset_event(dg.AssetCheckEvaluation(
                    asset_key=check.asset_key, check_name=check.name, passed=checks_pass))

    def tick(self, at=None, sources: bool = False) -> set[str]:
        """One evaluation of every automation condition (now, or ``at``): the assets it requests;
        the sources only if asked for (their cron may pass during a test)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = dg.evaluate_automation_conditions(defs=self.defs, instance=self.instance, cursor=self.cursor,
                                                       evaluation_time=at)
        self.cursor = result.cursor
        keys = {r.key.to_user_string() for r in result.results if r.true_subset.size}
        return keys if sources else keys - set(SOURCES)

    def seed(self):
        """Everything materialized once (as the first flywheel run does), then a first tick."""
        self.observe()
        self.tick()
        keys = [k.to_user_string() for k in self.graph.materializable_asset_keys
                if k.to_user_string() not in ("langsmith_traces", "training_files")]
        self.materialized(*keys)
        self.materialized("training_files", data_version="v1")
        self.tick()


@pytest.fixture
def graph(tmp_path, tiny_demo):
    with dg.instance_for_test() as instance:
        g = Graph(tmp_path, tiny_demo, instance)
        g.seed()
        yield g
