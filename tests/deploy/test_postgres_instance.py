"""deploy/dagster.yaml against a real PostgreSQL server started here: the instance loads with its
credentials from the environment, a run of a real asset is stored, and both read back.

The Docker run launcher is validated as configuration but not instantiated (dagster-docker is a
deployment dependency, not a test one); the storage and run queue are the real ones."""

import shutil
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.instance.config import dagster_instance_config

from assets.ingest import raw_traces
from tests.assets.tiny import tiny_resources
from tests.postgres import throwaway_postgres

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@pytest.fixture
def postgres():
    """A throwaway PostgreSQL server with the database flywheel_dagster; its port."""
    with throwaway_postgres(("flywheel_dagster",), user="dagster") as server:
        yield server.port


def test_deploy_instance_stores_runs_and_events_in_postgres(postgres, tmp_path, tiny_demo, monkeypatch):
    for name, value in {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(postgres),
                        "DAGSTER_PG_USERNAME": "dagster", "DAGSTER_PG_PASSWORD": "unused-with-trust-auth",
                        "DAGSTER_PG_DB": "flywheel_dagster", "DAGSTER_MAX_CONCURRENT_RUNS": "1"}.items():
        monkeypatch.setenv(name, value)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    config, _ = dagster_instance_config(str(home))  # the whole file, run launcher included, is valid
    assert config["run_launcher"]["class"] == "DockerRunLauncher"
    deployed = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    del deployed["run_launcher"]
    (home / "dagster.yaml").write_text(yaml.safe_dump(deployed))

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        result = dg.materialize([raw_traces], resources=tiny_resources(tmp_path, tiny_demo), instance=instance)
        assert result.success
    with dg.DagsterInstance.from_config(str(home)) as again:  # a fresh process would see the same
        run = again.get_run_by_id(result.run_id)
        assert run is not None and run.is_success
        event = again.get_latest_materialization_event(dg.AssetKey("raw_traces"))
        assert event.run_id == result.run_id and event.asset_materialization.metadata["dagster/row_count"].value > 0
