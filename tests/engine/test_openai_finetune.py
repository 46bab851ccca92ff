"""Hosted fine-tuning against the fake OpenAI API (the real openai client, strict validation):
life cycle, idempotency, bounded following, errors in plain words, Azure and OPENAI_BASE_URL."""

import json
from contextlib import contextmanager

import pytest

from pipeline.engine.core import store
from pipeline.engine.train.hosted.api import FineTuneError, FineTuningAPI, FineTuningRefused
from pipeline.engine.train.hosted.events import job_events, loss_history, loss_markdown
from pipeline.engine.train.hosted.jobs import JobSpec, failure, find_or_create, follow
from pipeline.engine.train.hosted.run import run_hosted
from pipeline.engine.providers import ProviderAuthError
from tests.fakes import FakeOpenAI

KEY = "sk-finetune-0123456789SECRETabcdef"
SPEC = JobSpec(backend="openai", base_model="gpt-4o-mini-2024-07-18", data_version="abc123", suffix="flywheel",
               seed=7, hyperparameters=(("n_epochs", 2),))


@pytest.fixture
def fake():
    return FakeOpenAI(api_key=KEY)


def client(fake, key=KEY, **kwargs):
    return FineTuningAPI("openai", api_key=key, base_url="http://fake.test/v1", http_client=fake.http_client(),
                         strict_validation=True, max_retries=kwargs.pop("max_retries", 3), **kwargs)


@pytest.fixture
def files(tmp_path):
    record = {"messages": [{"role": "system", "content": "Write a query."}, {"role": "user", "content": "count"},
                           {"role": "assistant", "content": '{"calculations":[{"op":"COUNT"}]}'}]}
    train, validation = tmp_path / "train.jsonl", tmp_path / "validation.jsonl"
    train.write_text("".join(json.dumps(record) + "\n" for _ in range(12)))
    validation.write_text(json.dumps(record) + "\n")
    return train, validation


def posts(fake, path):
    return [c for c in fake.calls if c[0] == "POST" and c[1] == path and c[2] == 200]


def test_life_cycle_upload_create_follow_succeeded_with_events_and_metrics(fake, files):
    api, log = client(fake), []
    job, created = find_or_create(api, SPEC, *files, known_job_id=None, log=log.append)
    assert created and job.status == "validating_files"
    sent = fake.requests[-1]
    assert sent["model"] == SPEC.base_model and sent["suffix"] == "flywheel" and sent["seed"] == 7
    assert sent["metadata"] == {"flywheel_data_version": "abc123", "flywheel_config": SPEC.config_hash}
    assert sent["method"] == {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}}
    uploaded = {f["id"]: f for f in fake.fine_tuning.files.values()}
    assert {sent["training_file"], sent["validation_file"]} == set(uploaded)
    assert uploaded[sent["training_file"]]["filename"] == f"flywheel-abc123-{SPEC.config_hash}-train.jsonl"
    assert fake.fine_tuning.contents[sent["training_file"]] == files[0].read_bytes()

    done = follow(api, job.id, max_wait_s=60, poll_interval_s=0, log=log.append)
    assert done.status == "succeeded" and done.fine_tuned_model.startswith("ft:gpt-4o-mini-2024-07-18:")
    assert done.trained_tokens > 0 and failure(done) is None
    assert [m for m in log if "ftjob" in m and ": " in m][-1].endswith("succeeded")
    events = job_events(api, job.id)
    assert events["message"][0].startswith("Created fine-tuning job")  # oldest first
    messages = events.filter(events["type"] == "message")["message"].to_list()
    assert messages[-2:] == [f"New fine-tuned model created: {done.fine_tuned_model}",
                             "The job has successfully completed"]
    history = loss_history(events)
    assert history["step"].to_list() == list(range(1, 7))
    assert history["train_loss"][0] == 2.0 and history["valid_loss"][-1] == pytest.approx(2.2 / 6, abs=1e-3)
    checkpoint = events.filter(events["type"] == "checkpoint")
    assert checkpoint.height == 1 and checkpoint["step"][0] == 6 and "ckpt-step-6" in checkpoint["message"][0]
    assert "| 6 | 0.3333 | 0.3667 |" in loss_markdown(events)


def test_a_job_found_at_the_provider_by_metadata_is_resumed_without_uploading(fake, files):
    api = client(fake)
    first, _ = find_or_create(api, SPEC, *files, known_job_id=None, log=print)
    calls = len(fake.calls)
    again, created = find_or_create(api, SPEC, *files, known_job_id=None, log=print)
    assert again.id == first.id and not created
    assert [c[:2] for c in fake.calls[calls:]] == [("GET", "/fine_tuning/jobs")]
    other = JobSpec(**{**SPEC.__dict__, "data_version": "other"})
    _, created = find_or_create(api, other, *files, known_job_id=None, log=print)
    assert created and len(posts(fake, "/fine_tuning/jobs")) == 2


def test_a_failed_job_is_not_resumed_and_an_upload_is_reused(fake, files):
    api = client(fake)
    fake.fine_tuning.outcome, fake.fine_tuning.running_polls = "failed", 1
    job, _ = find_or_create(api, SPEC, *files, known_job_id=None, log=print)
    job = follow(api, job.id, 60, 0, print)
    assert job.status == "failed"
    assert failure(job) == (f"fine-tuning job {job.id} failed: invalid_training_file: The job failed due to an "
                            "invalid training file. Expected file to have JSONL format. (param training_file)")
    again, created = find_or_create(api, SPEC, *files, known_job_id=None, log=print)
    assert created and again.id != job.id
    assert len(posts(fake, "/files")) == 2  # train and validation once each, reused by the second job


def test_following_is_bounded_and_returns_the_running_job(fake, files):
    api = client(fake)
    fake.fine_tuning.running_polls = 1000
    job, _ = find_or_create(api, SPEC, *files, known_job_id=None, log=print)
    now, sleeps = [0.0], []

    def sleep(seconds):
        sleeps.append(seconds)
        now[0] += seconds

    last = follow(api, job.id, max_wait_s=100, poll_interval_s=30, log=print, sleep=sleep, clock=lambda: now[0])
    assert last.status == "running" and sleeps == [30, 30, 30, 10]


def test_cancelled_job_says_so(fake, files):
    api = client(fake)
    job, _ = find_or_create(api, SPEC, *files, known_job_id=None, log=print)
    api.client.fine_tuning.jobs.cancel(job.id)
    job = follow(api, job.id, 60, 0, print)
    assert job.status == "cancelled" and failure(job) == f"fine-tuning job {job.id} was cancelled"


def test_rate_limits_and_server_errors_are_retried(fake, files):
    fake.fail_next(429, path="/fine_tuning/jobs")
    fake.fail_next(503, path="/fine_tuning/jobs")
    job, created = find_or_create(client(fake), SPEC, *files, known_job_id=None, log=print)
    assert created and job.status == "validating_files"
    assert [s for m, p, s in fake.calls if p == "/fine_tuning/jobs"] == [429, 503, 200, 200]


def test_gives_up_after_retries_with_the_status(fake, files):
    fake.fail_next(429, times=10, path="/fine_tuning/jobs")
    with pytest.raises(FineTuneError, match=r"HTTP 429 after 2 retries with backoff while looking for"):
        find_or_create(client(fake, max_retries=2), SPEC, *files, known_job_id=None, log=print)


def test_a_bad_key_says_so_plainly_without_the_key(fake, files):
    wrong = "sk-wrong-key-9876543210zyxwvu"
    with pytest.raises(ProviderAuthError) as caught:
        find_or_create(client(fake, key=wrong), SPEC, *files, known_job_id=None, log=print)
    message = str(caught.value)
    assert "rejected the API key" in message and "OPENAI_API_KEY" in message
    assert wrong not in message and KEY not in message and "9876" not in message


def test_no_key_at_all(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ProviderAuthError, match="set OPENAI_API_KEY"):
        FineTuningAPI("openai")


@pytest.mark.parametrize("status, said", [
    (403, "You are not allowed to create fine-tuning jobs for this organization."),
    (400, "Fine-tuning is no longer available for new jobs on this account."),
])
def test_a_refusal_names_the_provider_text_and_the_alternatives(fake, files, status, said):
    fake.fine_tuning.refusal = (status, said)
    with pytest.raises(FineTuningRefused) as caught:
        find_or_create(client(fake), SPEC, *files, known_job_id=None, log=print)
    message = str(caught.value)
    assert said in message and f"HTTP {status}" in message
    assert "'azure'" in message and "'local'" in message


def test_other_client_errors_are_not_mistaken_for_a_refusal(fake, files):
    with pytest.raises(FineTuneError) as caught:
        find_or_create(client(fake), JobSpec(**{**SPEC.__dict__, "suffix": "x" * 70}), *files,
                       known_job_id=None, log=print)
    assert not isinstance(caught.value, FineTuningRefused) and "suffix: at most 64" in str(caught.value)


def test_azure_client_reaches_the_azure_paths_with_its_key_header(fake, files):
    api = FineTuningAPI("azure", api_key=KEY, azure_endpoint="http://fake.test", api_version="2025-04-01-preview",
                        http_client=fake.http_client(), strict_validation=True)
    assert "Azure OpenAI at http://fake.test" in repr(api) and KEY not in repr(api)
    job, _ = find_or_create(api, SPEC, *files, known_job_id=None, log=print)
    assert follow(api, job.id, 60, 0, print).status == "succeeded"
    assert {p for _, p, _ in fake.calls} >= {"/openai/files", "/openai/fine_tuning/jobs",
                                             f"/openai/fine_tuning/jobs/{job.id}"}
    reply = api.chat_provider("my-ft-deployment").complete([{"role": "user", "content": "hi"}])
    assert reply.text == "ok" and fake.calls[-1][1] == "/openai/deployments/my-ft-deployment/chat/completions"


def test_azure_needs_an_endpoint_and_version(monkeypatch):
    for name in ("AZURE_OPENAI_ENDPOINT", "OPENAI_API_VERSION"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="azure_endpoint"):
        FineTuningAPI("azure", api_key=KEY)


def test_openai_base_url_drives_the_same_code_against_any_server(fake, files, monkeypatch):
    with fake.serve() as url:
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        api = FineTuningAPI("openai", strict_validation=True)
        assert url in api.where
        job, _ = find_or_create(api, SPEC, *files, known_job_id=None, log=print)
        assert follow(api, job.id, 60, 0, print).status == "succeeded"


# --- a whole run with the registry ---------------------------------------------------------------------

@pytest.fixture
def database(tmp_path):
    """A connect() factory over a DuckDB file that counts the connections open at any time."""
    path, state = str(tmp_path / "flywheel.duckdb"), {"open": 0}

    @contextmanager
    def connect():
        conn = store.connect(path)
        state["open"] += 1
        try:
            yield conn
        finally:
            state["open"] -= 1
            conn.close()

    connect.state = state
    return connect


def test_run_records_the_job_and_never_holds_the_database_while_waiting(fake, files, database):
    api, open_while_sleeping = client(fake), []
    run = run_hosted(api, SPEC, *files, database, print, max_wait_s=60, poll_interval_s=0.01,
                     price_per_1m_tokens=3.0, sleep=lambda s: open_while_sleeping.append(database.state["open"]))
    assert run.error is None and run.created and open_while_sleeping and set(open_while_sleeping) == {0}
    with database() as conn:
        rows = conn.execute("SELECT model_id, job_id, status, training_data_version, config_hash, trained_tokens, "
                            "cost_estimate_usd, finished_at IS NOT NULL, metrics FROM fine_tuned_models").fetchall()
        events = conn.execute("SELECT count(*), count(train_loss) FROM fine_tune_events WHERE job_id = ?",
                              [run.job.id]).fetchone()
    (model_id, job_id, status, version, config, tokens, estimate, finished, metrics), = rows
    assert (model_id, job_id, status, version, config) == (run.job.fine_tuned_model, run.job.id, "succeeded",
                                                           "abc123", SPEC.config_hash)
    assert tokens == run.job.trained_tokens and estimate > 0 and finished
    metrics = json.loads(metrics)
    assert metrics["steps"] == 6 and metrics["cost_usd"] == pytest.approx(tokens * 3.0 / 1e6, abs=1e-4)
    assert "2 epochs" in metrics["cost_estimate_basis"]
    assert events[0] == run.events.height and events[1] == 7  # 6 metrics steps and the checkpoint


def test_a_run_that_ran_out_of_time_is_resumed_from_the_registry(fake, files, database):
    api = client(fake)
    fake.fine_tuning.running_polls = 1000
    first = run_hosted(api, SPEC, *files, database, print, max_wait_s=0, poll_interval_s=0, price_per_1m_tokens=3.0)
    assert first.error == (f"fine-tuning job {first.job.id} still {first.job.status} after waiting 0 s; "
                           "re-materialize to resume (no new job is created)")
    with database() as conn:
        assert conn.execute("SELECT model_id, status FROM fine_tuned_models").fetchall() == [(first.job.id, "running")]
    fake.fine_tuning.finish(first.job.id)
    calls = len(fake.calls)
    second = run_hosted(api, SPEC, *files, database, print, max_wait_s=60, poll_interval_s=0, price_per_1m_tokens=3.0)
    assert second.error is None and second.job.id == first.job.id and not second.created
    assert ("GET", "/fine_tuning/jobs", 200) not in fake.calls[calls:]  # the registry named the job
    assert len(posts(fake, "/fine_tuning/jobs")) == 1
    with database() as conn:
        assert conn.execute("SELECT model_id, status FROM fine_tuned_models").fetchall() == [
            (second.job.fine_tuned_model, "succeeded")]


def test_a_failed_run_is_recorded_with_the_provider_error(fake, files, database):
    fake.fine_tuning.outcome = "failed"
    fake.fine_tuning.error = {"code": "quota_exceeded", "message": "Training quota exhausted.", "param": None}
    run = run_hosted(client(fake), SPEC, *files, database, print, max_wait_s=60, poll_interval_s=0,
                     price_per_1m_tokens=3.0)
    assert run.error == f"fine-tuning job {run.job.id} failed: quota_exceeded: Training quota exhausted."
    with database() as conn:
        row = conn.execute("SELECT model_id, status, error FROM fine_tuned_models").fetchone()
        levels = [r[0] for r in conn.execute("SELECT level FROM fine_tune_events").fetchall()]
    assert row == (run.job.id, "failed", run.error) and "error" in levels


def test_a_hosted_model_answers_the_task_prompt_in_input_order(fake):
    from pipeline.engine.providers.models import ChatModelProvider
    from pipeline.engine.tasks import load_task

    task = load_task("nl2query")
    fake.chat_responder = lambda request: request["messages"][-1]["content"][-12:]
    inputs = [{"question": f"count rows {i:02d}", "columns": ["duration_ms"]} for i in range(20)]
    model = ChatModelProvider(client(fake).chat_provider("ft:gpt-4o-mini:org::abc"), task, concurrency=4)
    assert model.complete(inputs) == [task.prompt(i)[-1]["content"][-12:] for i in inputs]
    assert {r["model"] for r in fake.requests} == {"ft:gpt-4o-mini:org::abc"}
    assert fake.requests[0]["messages"][:-1] == task.prompt(inputs[0])[:-1]
