"""A code location with the tiny configuration, a test instance, and helpers that stand in for runs."""

import itertools
import warnings

import dagster as dg
import pytest

from assets.sources import observe_sources
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
        self._versions = itertools.count(1)

    def observe(self) -> list[str]:
        """One tick of the observe_sources sensor, its observations recorded as the sensor daemon
        records them (runless events): the sources whose data version changed."""
        context = dg.build_sensor_context(instance=self.instance, resources=self.resources, definitions=self.defs)
        result = observe_sources(context)
        if isinstance(result, dg.SkipReason):
            return []
        assert isinstance(result, dg.SensorResult) and not result.run_requests
        for event in result.asset_events:
            self.instance.report_runless_asset_event(event)
        return sorted(e.asset_key.to_user_string() for e in result.asset_events)

    def version(self, key: str) -> str | None:
        """The data version of ``key``'s latest materialization (or observation, for a source)."""
        record = self.instance.get_latest_data_version_record(dg.AssetKey(key))
        return record.event_log_entry.tags.get(DATA_VERSION_TAG) if record else None

    def materialized(self, *keys: str, changed: bool = True, checks_pass: bool = True):
        """Record what a run that materialized ``keys`` leaves behind, checks included: a new data
        version for each if ``changed``, else the one it had (a run that stored nothing new)."""
        for key in keys:
            version = f"v{next(self._versions)}" if changed else self.version(key)
            self.instance.report_runless_asset_event(dg.AssetMaterialization(key, tags={DATA_VERSION_TAG: version}))
            for check in self.graph.get(dg.AssetKey(key)).check_keys:
                self.instance.report_runless_asset_event(dg.AssetCheckEvaluation(
                    asset_key=check.asset_key, check_name=check.name, passed=checks_pass))

    def tick(self, at=None, sources: bool = False) -> set[str]:
        """One evaluation of every automation condition (now, or ``at``): the assets it requests
        (the sources too if asked for: they never are)."""
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
        self.materialized(*(k.to_user_string() for k in self.graph.materializable_asset_keys
                            if k.to_user_string() != "langsmith_traces"))
        self.tick()


@pytest.fixture
def graph(tmp_path, tiny_demo):
    with dg.instance_for_test() as instance:
        g = Graph(tmp_path, tiny_demo, instance)
        g.seed()
        yield g
