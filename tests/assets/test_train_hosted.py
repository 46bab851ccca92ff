"""The hosted fine-tuning backend through Dagster: the fake OpenAI API served on 127.0.0.1 and
reached by base URL, from upload to promotion; failures, resume, duplicates, errors and the key."""

import json
import shutil

import dagster as dg
import duckdb
import openai
import pytest

from assets.curate import synthetic_examples, training_examples, training_files
from assets.evaluate import eval_report, promoted_model
from assets.label import labelled_failures, trace_evaluations
from assets.ingest import annotations, raw_traces
from assets.train import base_model, fine_tuned_model, hosted_fine_tuning_job
from pipeline.resources import FineTuning
from tests.assets.tiny import materialize, tiny_resources
from tests.fakes import FakeOpenAI

KEY = "sk-hosted-finetune-KEY-0123456789abcdef"
GOOD = '{"calculations":[{"op":"COUNT"}],"time_range":7200}'
TRAIN = [base_model, fine_tuned_model, eval_report, promoted_model]
REGISTERED_JOBS = "SELECT model_id, status FROM fine_tuned_models WHERE job_id IS NOT NULL"


@pytest.fixture(scope="module")
def curated(tmp_path_factory, tiny_demo):
    """Training data and files of the tiny demo, made once and copied by each test."""
    folder = tmp_path_factory.mktemp("hosted-curated")
    result, events = materialize([raw_traces, annotations, trace_evaluations, labelled_failures, synthetic_examples,
                                  training_examples, training_files], tiny_resources(folder, tiny_demo))
    assert result.success
    return folder, events["training_files"].metadata["training_data_version"].value


@pytest.fixture
def setup(curated, tiny_demo, tmp_path, monkeypatch):
    """(folder, version, fake, url): a copy of the curated folder and the fake API being served."""
    source, version = curated
    folder = tmp_path / "run"
    shutil.copytree(source, folder)
    fake = FakeOpenAI(api_key=KEY)
    fake.chat_responder = lambda request: GOOD if request["model"].startswith("ft:") else "nope"
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with fake.serve() as url:
        yield folder, version, fake, url


def hosted_resources(setup, tiny_demo, **settings):
    """Every resource, with the openai backend at the fake (settings override)."""
    folder, _, _, url = setup
    fine_tuning = FineTuning(**{"backend": "openai", "base_url": url, "api_key": dg.EnvVar("OPENAI_API_KEY"),
                                "poll_interval_s": 0.0, "max_wait_s": 30.0, "max_retries": 3, **settings})
    return {**tiny_resources(folder, tiny_demo), "fine_tuning": fine_tuning}


def run(setup, tiny_demo, assets=TRAIN, **settings):
    """Materialize ``assets`` with the openai backend at the fake: the result and the run's log text."""
    resources = hosted_resources(setup, tiny_demo, **settings)
    with dg.instance_for_test() as instance:
        result = dg.materialize(assets, resources=resources, instance=instance, raise_on_error=False)
        logs = "\n".join(str(e.dagster_event or e.user_message) + e.user_message
                         for e in instance.all_logs(result.run_id))
    return result, logs


def query(setup, sql):
    with duckdb.connect(str(setup[0] / "flywheel.duckdb"), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def failure(result, step="fine_tuned_model"):
    return next(e.step_failure_data.error.message for e in result.get_step_failure_events() if e.step_key == step)


def job_posts(fake):
    return [c for c in fake.calls if c[:2] == ("POST", "/fine_tuning/jobs")]


def metadata(result, asset):
    return next(e.event_specific_data.materialization.metadata for e in result.get_asset_materialization_events()
                if e.asset_key.to_user_string() == asset)


def test_life_cycle_from_upload_to_promotion_and_the_key_never_leaks(setup, tiny_demo, capfd):
    folder, version, fake, _ = setup
    result, logs = run(setup, tiny_demo)
    assert result.success
    (model_id, job_id, status, data_version, tokens, estimate, error), = query(setup, """
        SELECT model_id, job_id, status, training_data_version, trained_tokens, cost_estimate_usd, error
        FROM fine_tuned_models WHERE base_model IS NOT NULL""")
    job = fake.fine_tuning.jobs[job_id]
    assert model_id == job["fine_tuned_model"] and status == "succeeded" and data_version == version and not error
    assert tokens == job["trained_tokens"] and estimate > 0
    assert job["metadata"]["flywheel_data_version"] == version
    exported = folder / "exports" / version / "train.jsonl"
    assert fake.fine_tuning.contents[job["training_file"]] == exported.read_bytes()
    assert query(setup, "SELECT backend, status FROM fine_tuned_models WHERE model_id = 'gpt-4o-mini-2024-07-18'") == [
        ("openai", "succeeded")]
    steps = query(setup, f"SELECT step, train_loss FROM fine_tune_events WHERE job_id = '{job_id}' "
                         "AND type = 'metrics' ORDER BY step")
    assert [s for s, _ in steps] == list(range(1, 7)) and steps[0][1] == 2.0
    # the provider trained every planned epoch: complete, with the steps its events reported
    assert query(setup, "SELECT trained_steps, complete, incomplete_reason FROM fine_tuned_models "
                        f"WHERE job_id = '{job_id}'") == [(6, True, None)]
    checks = {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}
    assert checks["fine_tuned_model", "fully_trained"].passed
    assert checks["fine_tuned_model", "fully_trained"].description.startswith("trained as planned: 6 steps")
    assert checks["base_model", "fully_trained"].passed
    trained = metadata(result, "fine_tuned_model")
    assert trained["model_id"].value == model_id and trained["new_job"].value is True
    assert "| 6 | 0.3333 | 0.3667 |" in trained["loss_curve"].value
    # evaluation through chat completions with both hosted models, then the gate promotes the better one
    asked = {r["model"] for r in fake.requests if "messages" in r}
    assert asked == {model_id, "gpt-4o-mini-2024-07-18"}
    assert query(setup, f"SELECT bool_and(passed_checks) FROM eval_results WHERE model_id = '{model_id}'") == [(True,)]
    assert metadata(result, "eval_report")["candidate"].value == model_id
    assert metadata(result, "promoted_model")["promoted_model"].value == model_id
    # the key is nowhere: tables, logs, metadata, console
    with duckdb.connect(str(folder / "flywheel.duckdb"), read_only=True) as conn:
        for (table,) in conn.execute("SELECT table_name FROM information_schema.tables").fetchall():
            assert KEY not in json.dumps(conn.execute(f"SELECT * FROM {table}").fetchall(), default=str), table
    assert KEY not in logs
    assert all(KEY not in str(m.value) for asset in ("fine_tuned_model", "eval_report") for m in
               metadata(result, asset).values())
    out, err = capfd.readouterr()
    assert KEY not in out + err


def test_a_second_materialization_reuses_the_finished_job(setup, tiny_demo):
    _, _, fake, _ = setup
    assert run(setup, tiny_demo, [base_model, fine_tuned_model])[0].success
    result, _ = run(setup, tiny_demo, [base_model, fine_tuned_model])
    assert result.success and metadata(result, "fine_tuned_model")["new_job"].value is False
    assert len(job_posts(fake)) == 1 and len([c for c in fake.calls if c[:2] == ("POST", "/files")]) == 2


@pytest.mark.parametrize("outcome, said", [
    ("failed", "failed: invalid_training_file: The job failed due to an invalid training file"),
    ("cancelled", "was cancelled"),
])
def test_a_failed_or_cancelled_job_fails_the_asset_with_the_provider_message(setup, tiny_demo, outcome, said):
    _, _, fake, _ = setup
    fake.fine_tuning.outcome = outcome
    result, _ = run(setup, tiny_demo, [base_model, fine_tuned_model])
    assert not result.success
    job_id = next(iter(fake.fine_tuning.jobs))
    assert f"fine-tuning job {job_id} {said}" in failure(result)
    assert query(setup, REGISTERED_JOBS) == [(job_id, outcome)]


def test_a_run_that_dies_mid_poll_is_resumed_without_a_new_job(setup, tiny_demo):
    _, _, fake, _ = setup
    fake.fine_tuning.running_polls = 10_000
    first, _ = run(setup, tiny_demo, [base_model, fine_tuned_model], max_wait_s=0.3, poll_interval_s=0.05)
    assert not first.success
    job_id = next(iter(fake.fine_tuning.jobs))
    assert f"fine-tuning job {job_id} still running after waiting 0.3 s; re-materialize to resume " \
           "(no new job is created)" in failure(first)
    assert query(setup, REGISTERED_JOBS) == [(job_id, "running")]
    fake.fine_tuning.finish(job_id)
    second, logs = run(setup, tiny_demo, [base_model, fine_tuned_model])
    assert second.success and f"resuming fine-tuning job {job_id} from the registry" in logs
    assert len(job_posts(fake)) == 1
    assert query(setup, "SELECT status FROM fine_tuned_models WHERE job_id IS NOT NULL") == [("succeeded",)]


def test_the_sensor_asks_for_the_run_that_records_a_job_once_it_ended(setup, tiny_demo):
    _, _, fake, _ = setup

    def tick():
        with dg.instance_for_test() as instance:
            context = dg.build_sensor_context(instance=instance, resources=hosted_resources(setup, tiny_demo))
            return hosted_fine_tuning_job(context)

    assert "no hosted fine-tuning job is waiting" in tick().skip_message
    fake.fine_tuning.running_polls = 10_000
    assert not run(setup, tiny_demo, [base_model, fine_tuned_model], max_wait_s=0)[0].success
    job_id = next(iter(fake.fine_tuning.jobs))
    assert tick().skip_message == f"fine-tuning job {job_id} is still running"
    fake.fine_tuning.finish(job_id)
    request = tick()
    assert isinstance(request, dg.RunRequest) and request.run_key == f"{job_id}:succeeded"
    assert run(setup, tiny_demo, [base_model, fine_tuned_model])[0].success and len(job_posts(fake)) == 1
    assert "no hosted fine-tuning job is waiting" in tick().skip_message


def test_the_sensor_does_nothing_with_the_local_backend(setup, tiny_demo):
    resources = {**hosted_resources(setup, tiny_demo), "fine_tuning": FineTuning()}
    with dg.instance_for_test() as instance:
        result = hosted_fine_tuning_job(dg.build_sensor_context(instance=instance, resources=resources))
    assert result.skip_message == "the fine-tuning backend is local" and setup[2].calls == []


def test_a_job_made_before_a_crash_is_found_at_the_provider_by_its_metadata(setup, tiny_demo):
    folder, version, fake, url = setup
    spec = FineTuning(backend="openai").spec(version)
    client = openai.OpenAI(api_key=KEY, base_url=url, _strict_response_validation=True)
    uploaded = client.files.create(file=("t.jsonl", (folder / "exports" / version / "train.jsonl").read_bytes()),
                                   purpose="fine-tune")
    orphan = client.fine_tuning.jobs.create(model=spec.base_model, training_file=uploaded.id, metadata=spec.metadata)
    assert query(setup, "SELECT count(*) FROM fine_tuned_models") == [(0,)]  # the crash left no registry row
    result, logs = run(setup, tiny_demo, [base_model, fine_tuned_model])
    assert result.success and f"found fine-tuning job {orphan.id}" in logs
    assert len(job_posts(fake)) == 1 and len([c for c in fake.calls if c[:2] == ("POST", "/files")]) == 1
    assert query(setup, "SELECT job_id FROM fine_tuned_models WHERE job_id IS NOT NULL") == [(orphan.id,)]


def test_rate_limits_are_retried_with_backoff(setup, tiny_demo):
    _, _, fake, _ = setup
    fake.fail_next(429, times=2, path="/fine_tuning/jobs")
    fake.fail_next(500, path="/files")
    result, _ = run(setup, tiny_demo, [base_model, fine_tuned_model])
    assert result.success
    statuses = [s for _, p, s in fake.calls if p in ("/fine_tuning/jobs", "/files")]
    assert statuses.count(429) == 2 and statuses.count(500) == 1
    assert job_posts(fake) == [("POST", "/fine_tuning/jobs", 200)]


def test_a_bad_key_says_so_plainly_and_never_shows_the_key(setup, tiny_demo, monkeypatch):
    wrong = "sk-wrong-key-ABCDEFGHIJ0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", wrong)
    result, logs = run(setup, tiny_demo, [base_model, fine_tuned_model])
    assert not result.success
    message = failure(result)
    assert "rejected the API key" in message and "check OPENAI_API_KEY" in message
    assert wrong not in message and wrong not in logs and KEY not in logs


def test_a_refusal_says_what_the_provider_said_and_what_to_use_instead(setup, tiny_demo):
    _, _, fake, _ = setup
    fake.fine_tuning.refusal = (403, "Fine-tuning is not available for new jobs on this organization.")
    result, _ = run(setup, tiny_demo, [base_model, fine_tuned_model])
    message = failure(result)
    assert "refused fine-tuning for this account" in message and "not available for new jobs" in message
    assert "'azure'" in message and "'local'" in message


def test_azure_backend_trains_and_evaluates_through_deployments(setup, tiny_demo, monkeypatch):
    _, _, fake, url = setup
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
    result, _ = run(setup, tiny_demo, backend="azure", base_url=None, api_key=dg.EnvVar("AZURE_OPENAI_API_KEY"),
                    azure_endpoint=url.removesuffix("/v1"), api_version="2025-04-01-preview")
    assert result.success
    model_id = metadata(result, "fine_tuned_model")["model_id"].value
    paths = {p for _, p, _ in fake.calls}
    assert "/openai/fine_tuning/jobs" in paths and "/openai/files" in paths
    assert any(p.startswith("/openai/deployments/ft:") and p.endswith("/chat/completions") for p in paths)
    assert query(setup, f"SELECT backend FROM fine_tuned_models WHERE model_id = '{model_id}'") == [("azure",)]


def test_the_resource_never_shows_the_key():
    resource = FineTuning(backend="openai", api_key=KEY)
    assert KEY not in repr(resource) and KEY not in str(resource) and "api_key='***'" in repr(resource)
    assert KEY not in repr(resource.api())
