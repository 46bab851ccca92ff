"""The deployment's DuckLake settings as deploy/ writes them: every container that opens the lake
(the compose services, the run containers Docker launches, the Helm user code with its runs and
init container, the maintenance job) names the same catalog and data path, mounts that path
from one shared volume, takes the catalog's password from the secret that holds Dagster's storage
password, waits for the lake to be prepared, and the run queue takes several runs at once."""

import re
from pathlib import Path

import psycopg2.extensions
import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE = yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())
INSTANCE = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
HELM = {name: yaml.safe_load((DEPLOY / path).read_text())
        for name, path in (("values", "helm/values.yaml"), ("training", "k8s/training-values.yaml"))}
K8S_LAKE = {o["kind"]: o for o in yaml.safe_load_all((DEPLOY / "k8s/lake.yaml").read_text())}
LAKE_VARIABLES = ("FLYWHEEL_DUCKDB", "FLYWHEEL_DUCKLAKE_DATA_PATH", "PGPASSWORD")
#: The compose services that run Flywheel's code and so may open the lake.
FLYWHEEL_SERVICES = ("lake_admin", "user_code", "webserver", "daemon", "annotate")
REFERENCE = re.compile(r"^\$\{(\w+)(?::?[-?]([^}]*))?\}$")


def catalog(setting: str) -> dict[str, str]:
    """The libpq parameters of a ``ducklake:postgres:`` setting."""
    prefix = "ducklake:postgres:"
    assert setting.startswith(prefix), setting
    return psycopg2.extensions.parse_dsn(setting[len(prefix):])


def compose_default(value: str) -> str:
    """The value compose gives ``${NAME:-default}`` when NAME is unset (a plain value as it is)."""
    match = REFERENCE.match(value)
    return match.group(2) if match else value


def services() -> dict[str, dict]:
    return COMPOSE["services"]


def test_every_compose_service_opens_one_lake_on_one_volume():
    lake = {name: services()[name] for name in FLYWHEEL_SERVICES}
    assert all(s["image"] == "flywheel:latest" for s in lake.values())
    assert {n for n, s in services().items() if s.get("image") == "flywheel:latest"} == set(FLYWHEEL_SERVICES)
    settings = {name: {v: s["environment"][v] for v in LAKE_VARIABLES} for name, s in lake.items()}
    assert len({tuple(s.items()) for s in settings.values()}) == 1, settings
    setting = settings["user_code"]
    params = catalog(setting["FLYWHEEL_DUCKDB"])
    postgres = services()["postgres"]
    assert params == {"dbname": "flywheel_lake", "host": "postgres", "port": "5432",
                      "user": postgres["environment"]["POSTGRES_USER"]}
    assert params["dbname"] != postgres["environment"]["POSTGRES_DB"]  # not Dagster's own database
    data_path = setting["FLYWHEEL_DUCKLAKE_DATA_PATH"]
    assert data_path.startswith("/") and data_path.endswith("/")
    [mount] = [m for m in lake["user_code"]["volumes"] if m.split(":")[1] == data_path.rstrip("/")]
    volume = mount.split(":")[0]
    # named without compose's project prefix, so Docker's run containers mount the same volume
    assert COMPOSE["volumes"][volume] == {"name": volume}
    for name, service in lake.items():
        assert mount in service["volumes"], name


def test_docker_run_containers_get_the_same_lake():
    launcher = INSTANCE["run_launcher"]["config"]
    assert set(LAKE_VARIABLES) <= set(launcher["env_vars"])
    daemon = services()["daemon"]  # the daemon dequeues and launches the runs: its env is passed on
    assert set(launcher["env_vars"]) <= set(daemon["environment"])
    data_path = daemon["environment"]["FLYWHEEL_DUCKLAKE_DATA_PATH"].rstrip("/")
    [mount] = [m for m in daemon["volumes"] if m.endswith(f":{data_path}")]
    assert mount in launcher["container_kwargs"]["volumes"]
    assert launcher["network"] == COMPOSE["networks"]["flywheel"]["name"]
    assert all("flywheel" in s["networks"] for s in services().values())


def test_the_catalog_password_is_the_storage_secret_by_reference_only():
    password = services()["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert REFERENCE.match(password).group(1) == "DAGSTER_PG_PASSWORD"
    for name in FLYWHEEL_SERVICES:
        environment = services()[name]["environment"]
        assert environment["PGPASSWORD"] == environment["DAGSTER_PG_PASSWORD"] == password, name
    for name, service in services().items():
        for key, value in service.get("environment", {}).items():
            if "PASSWORD" in key:
                assert REFERENCE.match(value), f"{name}: {key} is written in the file"
    for path in (*DEPLOY.glob("*.yaml"), *DEPLOY.glob("*/*.yaml")):
        for line in path.read_text().splitlines():
            if "ducklake:" in line:
                assert "password" not in line.lower(), f"{path.name}: {line.strip()}"


def test_compose_prepares_the_lake_before_anything_opens_it():
    admin = services()["lake_admin"]
    assert admin["entrypoint"] + admin["command"] == ["python", "deploy/lake_admin.py", "prepare"]
    assert admin["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services()["postgres"]["healthcheck"]["test"]
    for name in FLYWHEEL_SERVICES[1:]:
        assert services()[name]["depends_on"]["lake_admin"] == {"condition": "service_completed_successfully"}, name
    assert "COPY deploy/lake_admin.py deploy/lake_admin.py" in (DEPLOY / "Dockerfile").read_text()


def test_the_run_queue_takes_several_runs():
    assert INSTANCE["run_coordinator"]["config"]["max_concurrent_runs"] == {"env": "DAGSTER_MAX_CONCURRENT_RUNS"}
    for name in FLYWHEEL_SERVICES:
        assert int(compose_default(services()[name]["environment"]["DAGSTER_MAX_CONCURRENT_RUNS"])) > 1, name
    coordinator = HELM["values"]["dagsterDaemon"]["runCoordinator"]
    assert coordinator["type"] == "QueuedRunCoordinator"
    assert coordinator["config"]["queuedRunCoordinator"]["maxConcurrentRuns"] > 1


def user_code(values: dict) -> dict:
    [deployment] = values["dagster-user-deployments"]["deployments"]
    return deployment


def lake_env(env: list[dict]) -> dict[str, dict]:
    """The lake's variables of a Kubernetes env list, by name (each entry without its name)."""
    return {e["name"]: {k: v for k, v in e.items() if k != "name"} for e in env if e["name"] in LAKE_VARIABLES}


@pytest.mark.parametrize("values", sorted(HELM))
def test_helm_user_code_its_runs_and_its_init_container_open_the_lake(values):
    deployment, postgresql = user_code(HELM[values]), HELM["values"]["postgresql"]
    env = lake_env(deployment["env"])
    assert set(env) == set(LAKE_VARIABLES)
    assert catalog(env["FLYWHEEL_DUCKDB"]["value"]) == {
        "dbname": "flywheel_lake", "host": postgresql["postgresqlHost"], "port": str(postgresql["service"]["port"]),
        "user": postgresql["postgresqlUsername"]}
    # the chart's secret for Dagster's storage password (generatePostgresqlPasswordSecret: false)
    assert HELM["values"]["generatePostgresqlPasswordSecret"] is False
    assert env["PGPASSWORD"] == {"valueFrom": {"secretKeyRef": {"name": "dagster-postgresql-secret",
                                                                "key": "postgresql-password"}}}
    # launched runs get the deployment's env and volumes
    assert deployment.get("includeConfigInLaunchedRuns", {"enabled": True})["enabled"] is True
    data_path = env["FLYWHEEL_DUCKLAKE_DATA_PATH"]["value"].rstrip("/")
    [mount] = [m for m in deployment["volumeMounts"] if m["mountPath"] == data_path]
    [volume] = [v for v in deployment["volumes"] if v["name"] == mount["name"]]
    claim = K8S_LAKE["PersistentVolumeClaim"]
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    [prepare] = deployment["initContainers"]
    assert prepare["command"] == ["python", "deploy/lake_admin.py", "prepare"]
    assert prepare["image"] == f"{deployment['image']['repository']}:{deployment['image']['tag']}"
    assert lake_env(prepare["env"]) == env and mount in prepare["volumeMounts"]


def test_the_training_values_keep_the_lake_of_the_values():
    assert lake_env(user_code(HELM["training"])["env"]) == lake_env(user_code(HELM["values"])["env"])


def test_the_maintenance_job_opens_the_same_lake():
    job = K8S_LAKE["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    [container] = job["containers"]
    assert container["command"] == ["python", "deploy/lake_admin.py", "maintain"]
    deployment = user_code(HELM["values"])
    assert lake_env(container["env"]) == lake_env(deployment["env"])
    assert container["image"] == f"{deployment['image']['repository']}:{deployment['image']['tag']}"
    [mount] = container["volumeMounts"]
    assert mount["mountPath"] == lake_env(deployment["env"])["FLYWHEEL_DUCKLAKE_DATA_PATH"]["value"].rstrip("/")
    [volume] = [v for v in job["volumes"] if v["name"] == mount["name"]]
    assert volume["persistentVolumeClaim"]["claimName"] == K8S_LAKE["PersistentVolumeClaim"]["metadata"]["name"]
