"""Evaluation of a local model through an OpenAI-compatible server: model_provider's served branch
against the fake OpenAI API (the real openai client, strict validation)."""

from pipeline.engine.providers.openai_chat import OpenAIChatProvider
from pipeline.engine.tasks import load_task
from pipeline.engine.train.serving import model_provider
from pipeline.resources import EvalServing
from tests.fakes import FakeOpenAI

KEY = "sk-serving-0123456789abcdef"
INPUTS = [{"question": "p95 duration_ms by service.name last 2 hours", "dataset": "checkout-api",
           "columns": ["service.name", "duration_ms", "http.route", "status_code", "Deployment Env"]},
          {"question": "count of errors by http.route", "columns": ["http.route", "error", "k8s.pod.name"]}]


def unused_chat_for(backend, model_id):
    raise AssertionError(f"a local model asked for a hosted chat provider ({backend}, {model_id})")


def answers(fake: FakeOpenAI) -> None:
    fake.chat_responder = lambda request: f'{{"model": "{request["model"]}", "n": {len(request["messages"])}}}'


def test_a_served_local_model_answers_the_task_prompt_under_its_model_id():
    task, fake = load_task("nl2query"), FakeOpenAI(api_key=KEY)
    answers(fake)
    served = lambda model_id: OpenAIChatProvider(model_id, api_key=KEY, http_client=fake.http_client(),  # noqa: E731
                                                 strict_validation=True)
    provider = model_provider("local", "local-ft-0123abcd-5678", "data/models/not-read", task,
                              chat_for=unused_chat_for, concurrency=1, seed=3, served=served)
    outputs = provider.complete(INPUTS)
    assert [r["model"] for r in fake.requests] == ["local-ft-0123abcd-5678"] * 2
    assert [r["messages"] for r in fake.requests] == [task.prompt(i) for i in INPUTS]
    assert {(r["temperature"], r["seed"]) for r in fake.requests} == {(0.0, 3)}
    assert outputs == [f'{{"model": "local-ft-0123abcd-5678", "n": {len(task.prompt(i))}}}' for i in INPUTS]


def test_eval_serving_reaches_the_server_at_its_base_url_with_its_key():
    task, fake = load_task("nl2query"), FakeOpenAI(api_key=KEY)
    answers(fake)
    with fake.serve() as base_url:
        serving = EvalServing(base_url=base_url, api_key=KEY)
        assert serving.enabled and KEY not in repr(serving)
        provider = model_provider("local", "local-base-9f8e7d6c-1234", None, task, chat_for=unused_chat_for,
                                  concurrency=2, served=serving.provider)
        assert len(provider.complete(INPUTS)) == 2
    assert sorted(r["messages"][-1]["content"] for r in fake.requests) == \
        sorted(task.prompt(i)[-1]["content"] for i in INPUTS)
    assert {r["model"] for r in fake.requests} == {"local-base-9f8e7d6c-1234"}
    assert not EvalServing().enabled
