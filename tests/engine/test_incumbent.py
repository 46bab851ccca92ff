"""The incumbent captured against the fake OpenAI API (the real openai client, strict validation):
what is sent (scrubbed), cached, resumed after a run killed mid-batch, retried, costed, and read
back as eval results; its registration from the environment; list prices and local cost."""

import json
from datetime import datetime, timedelta, timezone

import polars as pl
import pytest

from pipeline.engine.core import store
from pipeline.engine.evaluate.incumbent import (
    IncumbentNotCaptured, IncumbentSettings, capture_incumbent, incumbent_results,
)
from pipeline.engine.evaluate.pricing import LIST_PRICES, Pricing, cost_per_call, list_price, price_key, pricing_for
from pipeline.engine.evaluate.scoring import RESULT_SCHEMA, summarize
from pipeline.engine.providers import ProviderAuthError
from pipeline.engine.providers.openai_chat import OpenAIChatProvider
from pipeline.engine.tasks import load_task
from pipeline.resources.incumbent import IncumbentResource, incumbent_from_env
from tests.fakes import FakeOpenAI

TASK = load_task("nl2query")
KEY = "sk-incumbent-0123456789abcdefSECRET"
MODEL = "ft:gpt-4o-mini-2024-07-18:acme:prod:AbC12xyz"
T0 = datetime(2026, 11, 20, tzinfo=timezone.utc)
GOOD = '{"calculations":[{"op":"COUNT"}],"time_range":7200}'
COLUMNS = ["duration_ms", "service.name", "http.route", "user.email", "Deployment Env", "k8s.pod.name"]
EMAIL, PHONE = "jane.doe@example.com", "+1 415 555 0100"
QUIET = lambda _: None  # noqa: E731


def question(i: int) -> str:
    return f"count of requests by http.route for tenant {i}"


def examples(n: int) -> pl.DataFrame:
    return pl.DataFrame({"example_id": [f"trace:e{i:03d}" for i in range(n)], "source": "trace",
                         "group_id": [f"g{i}" for i in range(n)], "split": "test",
                         "input": [json.dumps({"question": question(i), "columns": COLUMNS, "dataset": "checkout-api"})
                                   for i in range(n)],
                         "output": GOOD, "created_at": T0})


def trace_rows(ages_days: list[float]) -> pl.DataFrame:
    """Traces of nl2query, trace i ``ages_days[i]`` days before T0."""
    n = len(ages_days)
    return pl.DataFrame({
        "trace_id": [f"tr_{i:03d}" for i in range(n)], "source": "chat_logs", "task": "nl2query",
        "ts": [T0 - timedelta(days=a) for a in ages_days],
        "input": [json.dumps({"question": f"p95 duration_ms of trace {i}", "columns": COLUMNS}) for i in range(n)],
        "output": GOOD, "model": MODEL, "content_hash": [f"h{i}" for i in range(n)], "ingested_at": T0})


@pytest.fixture
def db(tmp_path):
    """A database file with 7 test examples, and a factory of short-lived connections to it."""
    path = str(tmp_path / "flywheel.duckdb")
    with store.connect(path) as conn:
        store.upsert(conn, "training_examples", examples(7), ["example_id"])
    return lambda: store.connect(path)


@pytest.fixture
def fake():
    fake = FakeOpenAI(api_key=KEY)
    fake.chat_responder = lambda request: GOOD
    return fake


def chat(fake, **kwargs) -> OpenAIChatProvider:
    return OpenAIChatProvider(MODEL, api_key=KEY, http_client=fake.http_client(), strict_validation=True, **kwargs)


def settings(**kwargs) -> IncumbentSettings:
    return IncumbentSettings(**{"model": MODEL, "batch_size": 3, "concurrency": 2, "max_retries": 0, **kwargs})


def stored(connect) -> pl.DataFrame:
    with connect() as conn:
        return store.read(conn, "SELECT * FROM incumbent_outputs ORDER BY scope, item_id")


def asked(fake) -> list[str]:
    """The last user message of every chat request the fake received, in order."""
    return [r["messages"][-1]["content"] for r in fake.requests]


# --- capture ---------------------------------------------------------------------------------------------

def test_the_test_split_and_the_recent_traces_are_captured_with_tokens_latency_and_cost(db, fake):
    with db() as conn:  # 5 traces in the 14 days before the newest, 2 older ones
        store.upsert(conn, "raw_traces", trace_rows([0, 1, 3, 13.5, 2, 20, 15]), ["trace_id"])
    summary = capture_incumbent(db, settings(max_traces=4), TASK, QUIET, chat=chat(fake))
    rows = stored(db)
    assert rows.group_by("scope").len().sort("scope").rows() == [("test", 7), ("traces", 4)]
    assert rows.filter(pl.col("scope") == "traces")["item_id"].to_list() == ["tr_000", "tr_001", "tr_002", "tr_004"]
    assert rows["output"].to_list() == [GOOD] * 11 and rows["error"].null_count() == 11
    assert (rows["attempts"] == 1).all() and (rows["latency_ms"] > 0).all()
    # usage as the server reported it, priced at the fine-tuned model's list price (not its base's)
    assert (rows["completion_tokens"] == 1).all() and (rows["prompt_tokens"] > 10).all()
    expected = (rows["prompt_tokens"] * 0.30 + rows["completion_tokens"] * 1.20) / 1e6
    assert rows["cost_usd"].to_list() == pytest.approx(expected.to_list())
    assert len(fake.requests) == 11 and {r["model"] for r in fake.requests} == {MODEL}
    assert {(r["temperature"], r["seed"]) for r in fake.requests} == {(0.0, 0)}
    sent = [r["messages"] for r in fake.requests]
    assert all(TASK.prompt(json.loads(i)) in sent for i in examples(7)["input"])  # the task's prompt, as trained
    meta = summary.metadata()
    assert (meta["captured_now"], meta["cached"], meta["failed"]) == (11, 0, 0)
    assert meta["cost_usd_so_far"] == round(sum(expected), 4) and meta["pricing"].startswith("OpenAI list price")
    assert meta["scopes"]["traces"]["items"] == 4


def test_a_second_run_sends_nothing_and_only_a_changed_input_is_sent_again(db, fake):
    capture_incumbent(db, settings(), TASK, QUIET, chat=chat(fake))
    first = stored(db)
    again = capture_incumbent(db, settings(), TASK, QUIET, chat=chat(fake))
    assert len(fake.requests) == 7 and again.total("captured_now") == 0 and again.total("cached") == 7
    assert again.cost_usd_now == 0 and again.cost_usd_total == pytest.approx(first["cost_usd"].sum())
    assert stored(db).equals(first)
    changed = examples(7).with_columns(pl.when(pl.col("example_id") == "trace:e002")
                                        .then(pl.lit(json.dumps({"question": "count of errors", "columns": COLUMNS})))
                                        .otherwise(pl.col("input")).alias("input"))
    # the same content with its keys in another order is the same input; e002's question changed
    reordered = changed.with_columns(pl.col("input").map_elements(
        lambda i: json.dumps(dict(reversed(list(json.loads(i).items())))), return_dtype=pl.String))
    with db() as conn:
        store.upsert(conn, "training_examples", reordered, ["example_id"])
    capture_incumbent(db, settings(), TASK, QUIET, chat=chat(fake))
    assert len(fake.requests) == 8 and asked(fake)[-1].endswith("count of errors")
    assert stored(db).filter(pl.col("item_id") == "trace:e002")["attempts"].to_list() == [1]


def test_a_run_killed_mid_batch_continues_where_it_stopped(db, fake):
    calls = []

    def killed_at_the_fifth_call(request):
        calls.append(request["messages"][-1]["content"])
        if len(calls) == 5:
            raise KeyboardInterrupt  # the process is stopped while the second batch is being asked
        return GOOD

    fake.chat_responder = killed_at_the_fifth_call
    with pytest.raises(KeyboardInterrupt):
        capture_incumbent(db, settings(concurrency=1), TASK, QUIET, chat=chat(fake))
    kept = stored(db)
    assert kept["item_id"].to_list() == ["trace:e000", "trace:e001", "trace:e002"]  # the first batch, stored
    fake.chat_responder = lambda request: GOOD
    fake.requests.clear()
    resumed = capture_incumbent(db, settings(concurrency=1), TASK, QUIET, chat=chat(fake))
    assert (resumed.total("captured_now"), resumed.total("cached")) == (4, 3)
    assert [a.splitlines()[-1] for a in asked(fake)] == [f"Question: {question(i)}" for i in range(3, 7)]
    rows = stored(db)
    assert rows.height == 7 and rows["item_id"].n_unique() == 7 and (rows["attempts"] == 1).all()
    assert rows.filter(pl.col("item_id").is_in(kept["item_id"].to_list()))["captured_at"].equals(kept["captured_at"])


def test_failed_items_are_retried_on_later_runs_up_to_the_limit_their_error_kept_without_secrets(db, fake):
    def refuses_tenant_4(request):
        if request["messages"][-1]["content"].endswith(question(4)):
            return {"status": 400, "message": f"bad request from key {KEY}, org token sk-proj-AAAABBBBCCCCDDDD",
                    "code": "invalid_value"}
        return GOOD

    fake.chat_responder = refuses_tenant_4
    fake.fail_next(500, path="/chat/completions")  # a transient failure of the first call (no client retries)
    first = capture_incumbent(db, settings(max_attempts=2, concurrency=1), TASK, QUIET, chat=chat(fake, max_retries=0))
    assert (first.total("captured_now"), first.total("failed"), first.total("gave_up")) == (5, 2, 0)
    second = capture_incumbent(db, settings(max_attempts=2, concurrency=1), TASK, QUIET, chat=chat(fake))
    assert (second.total("captured_now"), second.total("failed"), second.total("gave_up")) == (1, 1, 1)
    rows = stored(db)
    e000, e004 = (rows.filter(pl.col("item_id") == i).row(0, named=True) for i in ("trace:e000", "trace:e004"))
    assert e000["output"] == GOOD and e000["error"] is None and e000["attempts"] == 2
    assert e004["output"] is None and e004["attempts"] == 2 and e004["cost_usd"] is None
    assert "HTTP 400" in e004["error"] and "bad request from key" in e004["error"]
    assert KEY not in e004["error"] and "AAAABBBBCCCCDDDD" not in e004["error"]
    sent = len(fake.calls)
    third = capture_incumbent(db, settings(max_attempts=2), TASK, QUIET, chat=chat(fake))
    assert len(fake.calls) == sent and third.total("gave_up") == 1  # no attempts left: not sent again
    assert KEY not in json.dumps(third.metadata()) and KEY not in stored(db).write_csv()


def test_a_rejected_key_stops_the_run_without_the_key_in_the_message_and_nothing_stored(db, fake):
    wrong = "sk-wrong-key-ABCDEFGHIJKLMNOPQRST"
    provider = OpenAIChatProvider(MODEL, api_key=wrong, http_client=fake.http_client(), strict_validation=True)
    with pytest.raises(ProviderAuthError, match="rejected the API key") as info:
        capture_incumbent(db, settings(), TASK, QUIET, chat=provider)
    assert "MNOPQRST" not in str(info.value) and stored(db).is_empty()


def test_pii_never_reaches_the_server_and_an_unscrubbing_provider_is_refused(db, fake, monkeypatch):
    personal = {"question": f"errors for {EMAIL} or {PHONE} by http.route", "columns": COLUMNS}
    with db() as conn:
        store.upsert(conn, "raw_traces", trace_rows([0]).with_columns(pl.lit(json.dumps(personal)).alias("input")),
                     ["trace_id"])
    with pytest.raises(ValueError, match="refusing to send .* unscrubbed"):
        capture_incumbent(db, settings(), TASK, QUIET, chat=chat(fake, scrub_patterns=None))
    assert fake.requests == []
    monkeypatch.setenv("INCUMBENT_KEY", KEY)
    with fake.serve() as base_url:  # over a real socket, through the provider the settings build
        registered = settings(provider="openai_compatible", base_url=base_url, api_key_env="INCUMBENT_KEY")
        capture_incumbent(db, registered, TASK, QUIET)
    sent = json.dumps(fake.requests)
    assert len(fake.requests) == 8 and EMAIL not in sent and "555 0100" not in sent
    assert "[EMAIL]" in sent and "[PHONE]" in sent


def test_an_azure_incumbent_is_asked_through_its_deployment(db, fake, monkeypatch):
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
    with fake.serve() as base_url:
        registered = settings(provider="azure", azure_endpoint=base_url.removesuffix("/v1"), api_version="2024-10-21",
                              azure_deployment="ft-mini-prod", recent_days=0)
        summary = capture_incumbent(db, registered, TASK, QUIET)
    assert summary.total("captured_now") == 7 and "traces" not in summary.scopes
    assert {path for _, path, _ in fake.calls} == {"/openai/deployments/ft-mini-prod/chat/completions"}


# --- the incumbent as a candidate ----------------------------------------------------------------------------

def test_captured_test_outputs_are_eval_results_with_latency_and_cost_and_a_failure_counts_as_empty(db, fake):
    fake.chat_responder = lambda r: ({"status": 400, "message": "content filter"}
                                     if r["messages"][-1]["content"].endswith(question(6)) else GOOD)
    capture_incumbent(db, settings(max_attempts=1), TASK, QUIET, chat=chat(fake))
    with db() as conn:
        test = store.read(conn, "SELECT example_id, input::VARCHAR AS input, output FROM training_examples "
                                "WHERE split = 'test' ORDER BY example_id")
        results = incumbent_results(conn, MODEL, test, TASK)
    assert dict(results.schema) == RESULT_SCHEMA
    assert results["example_id"].to_list() == test["example_id"].to_list() and set(results["model_id"]) == {MODEL}
    assert results["exact_match"].to_list() == [True] * 6 + [False]
    failed = results.row(6, named=True)
    assert failed["output"] == "" and failed["passed_checks"] is False
    assert "content filter" in json.loads(failed["metrics"])["incumbent_error"]
    metrics = [json.loads(m) for m in results["metrics"]]
    assert all(m["latency_ms"] > 0 and m["cost_usd"] > 0 for m in metrics[:6])
    summary = summarize(results)
    assert summary["cost_usd_per_call"] == pytest.approx(sum(m["cost_usd"] for m in metrics[:6]) / 6)
    assert summary["latency_ms_per_call"] > 0


def test_a_test_example_without_a_capture_for_its_input_is_a_clear_error(db, fake):
    capture_incumbent(db, settings(), TASK, QUIET, chat=chat(fake))
    grown = pl.concat([examples(7), examples(9).tail(2)]).select("example_id", "input", "output")
    with db() as conn, pytest.raises(IncumbentNotCaptured, match=r"2 of 9 test examples .* trace:e007, trace:e008"):
        incumbent_results(conn, MODEL, grown, TASK)


# --- registration ----------------------------------------------------------------------------------------------

def test_registration_from_the_environment():
    resource = incumbent_from_env({"FLYWHEEL_INCUMBENT_MODEL": MODEL, "FLYWHEEL_INCUMBENT_PROVIDER": "azure",
                                   "FLYWHEEL_INCUMBENT_API_KEY_ENV": "PROD_AZURE_KEY",
                                   "FLYWHEEL_INCUMBENT_AZURE_DEPLOYMENT": "ft-mini-prod",
                                   "FLYWHEEL_INCUMBENT_PRICE_PER_HOUR": "1.7", "FLYWHEEL_INCUMBENT_RECENT_DAYS": "30",
                                   "FLYWHEEL_INCUMBENT_MAX_TRACES": " ", "FLYWHEEL_INCUMBENT_SEED": "11"})
    registered = resource.settings()
    assert isinstance(resource, IncumbentResource) and resource.enabled
    assert (registered.provider, registered.key_variable, registered.azure_deployment) == \
        ("azure", "PROD_AZURE_KEY", "ft-mini-prod")
    assert (registered.recent_days, registered.max_traces, registered.seed) == (30, 500, 11)
    assert registered.pricing() == Pricing(per_hour=1.7, source="configured per hour")
    assert not incumbent_from_env({}).enabled and incumbent_from_env({}).settings().key_variable == "OPENAI_API_KEY"
    with pytest.raises(ValueError, match="FLYWHEEL_INCUMBENT_RECENT_DAYS='two weeks': expected int"):
        incumbent_from_env({"FLYWHEEL_INCUMBENT_MODEL": MODEL, "FLYWHEEL_INCUMBENT_RECENT_DAYS": "two weeks"})


def test_registration_mistakes_are_clear_and_never_echo_a_key(monkeypatch):
    with pytest.raises(ValueError, match="must name the environment variable") as info:
        IncumbentSettings(model=MODEL, api_key_env=KEY)
    assert KEY not in str(info.value)
    with pytest.raises(ValueError, match="expected one of openai, azure, openai_compatible"):
        IncumbentSettings(model=MODEL, provider="bedrock")
    with pytest.raises(ValueError, match="needs base_url"):
        IncumbentSettings(model="my-model", provider="openai_compatible")
    monkeypatch.delenv("PROD_KEY", raising=False)
    with pytest.raises(ProviderAuthError, match="set PROD_KEY"):
        IncumbentSettings(model=MODEL, api_key_env="PROD_KEY").chat()
    with pytest.raises(ValueError, match="no incumbent registered"):
        capture_incumbent(lambda: None, IncumbentSettings(), TASK, QUIET)


# --- prices ----------------------------------------------------------------------------------------------------

def test_list_prices_know_fine_tuned_models_apart_from_their_base():
    assert price_key(MODEL) == "ft:gpt-4o-mini" and price_key("gpt-4o-mini-2024-07-18") == "gpt-4o-mini"
    assert price_key("ft:gpt-4.1-mini-2025-04-14:acme::x1") == "ft:gpt-4.1-mini"
    tuned, base = list_price(MODEL), list_price("gpt-4o-mini")
    assert (tuned.input_per_1m, tuned.output_per_1m) == (0.30, 1.20)
    assert (base.input_per_1m, base.output_per_1m) == (0.15, 0.60)
    assert {"gpt-4o-mini", "ft:gpt-4o-mini", "gpt-4.1-mini", "gpt-4o"} <= set(LIST_PRICES)
    assert list_price("gpt-4o").input_per_1m > list_price("gpt-4o-mini").input_per_1m
    assert list_price("my-vllm-model") is None and pricing_for("my-vllm-model") is None
    assert cost_per_call(tuned, 1_000, 100) == pytest.approx((1_000 * 0.30 + 100 * 1.20) / 1e6)
    assert cost_per_call(tuned, None, 100) is None and cost_per_call(None, 1, 1) is None


def test_configured_prices_override_the_list_and_local_cost_is_hourly_price_times_seconds():
    override = pricing_for(MODEL, input_per_1m=0.5, output_per_1m=2.0)
    assert cost_per_call(override, 2_000_000, 1_000_000) == pytest.approx(3.0)
    gpu = pricing_for("local-ft-0123", per_hour=3.6)
    assert cost_per_call(gpu, seconds=0.25) == pytest.approx(0.00025)
    assert cost_per_call(gpu, 100, 10) is None  # priced by time: the seconds are needed
    with pytest.raises(ValueError, match="both the input and the output price"):
        pricing_for(MODEL, input_per_1m=0.5)
    with pytest.raises(ValueError, match="cannot be negative"):
        Pricing(per_hour=-1.0)
