"""OpenAIChatProvider against the fake OpenAI API (the real openai client, strict validation)."""

import json
import logging
import os
import subprocess
import sys

import pytest

from pipeline.engine.providers import ChatProvider, ProviderAuthError, ProviderError
from pipeline.engine.providers.openai_chat import OpenAIChatProvider, json_schema_format
from tests.fakes import FakeOpenAI

KEY = "sk-test-0123456789abcdefSECRET"


@pytest.fixture
def fake():
    return FakeOpenAI(api_key=KEY)


def provider(fake, **kwargs):
    return OpenAIChatProvider("gpt-test", api_key=KEY, http_client=fake.http_client(),
                              strict_validation=True, **kwargs)


def test_completion_text_usage_and_request(fake):
    fake.chat_responder = lambda request: "answer to " + request["messages"][-1]["content"]
    chat = provider(fake)
    assert isinstance(chat, ChatProvider)
    result = chat.complete([{"role": "user", "content": "two words"}], temperature=0.3, seed=7)
    assert result.text == "answer to two words"
    assert result.model == "gpt-test"
    assert (result.prompt_tokens, result.completion_tokens) == (2, 4)
    assert result.finish_reason == "stop" and result.latency_ms >= 0
    sent = fake.requests[-1]
    assert sent["temperature"] == 0.3 and sent["seed"] == 7 and "response_format" not in sent


def test_structured_output_is_requested_with_the_schema(fake):
    schema = {"type": "object", "properties": {"outcome": {"type": "string"}}, "required": ["outcome"],
              "additionalProperties": False}
    fake.chat_responder = lambda request: json.dumps({"outcome": request["response_format"]["json_schema"]["name"]})
    result = provider(fake).complete([{"role": "user", "content": "x"}],
                                     response_format=json_schema_format("verdict", schema))
    assert json.loads(result.text) == {"outcome": "verdict"}
    assert fake.requests[-1]["response_format"]["json_schema"]["schema"] == schema


def test_rate_limits_and_server_errors_are_retried(fake):
    fake.fail_next(429)
    fake.fail_next(500)
    result = provider(fake, max_retries=3).complete([{"role": "user", "content": "hi"}])
    assert result.text == "ok"
    assert [status for _, _, status in fake.calls] == [429, 500, 200]


def test_gives_up_after_max_retries_with_the_status(fake):
    fake.fail_next(503, times=5)
    with pytest.raises(ProviderError, match="HTTP 503"):
        provider(fake, max_retries=2).complete([{"role": "user", "content": "hi"}])
    assert len(fake.calls) == 3


def test_client_errors_are_not_retried(fake):
    fake.chat_responder = lambda request: {"status": 400, "message": "context too long"}
    with pytest.raises(ProviderError, match="context too long"):
        provider(fake).complete([{"role": "user", "content": "hi"}])
    assert len(fake.calls) == 1


def test_bad_key_is_a_clear_error_without_the_key(fake, caplog):
    wrong = "sk-wrong-key-ABCDEFGHIJKLMNOP"
    chat = OpenAIChatProvider("gpt-test", api_key=wrong, http_client=fake.http_client(), strict_validation=True)
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(ProviderAuthError, match="rejected the API key") as info:
            chat.complete([{"role": "user", "content": "hi"}])
    assert "ABCDEFGHIJKLMNOP"[-6:] not in str(info.value) and wrong not in repr(chat)
    assert wrong not in caplog.text and "MNOP" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_missing_key_names_the_variable(fake, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ProviderAuthError, match="OPENAI_API_KEY"):
        OpenAIChatProvider("gpt-test", http_client=fake.http_client())


def test_key_and_base_url_come_from_the_environment(fake, monkeypatch, caplog):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with fake.serve() as base_url:
        monkeypatch.setenv("OPENAI_BASE_URL", base_url)
        chat = OpenAIChatProvider("gpt-test", strict_validation=True)
        with caplog.at_level(logging.DEBUG):
            assert chat.complete([{"role": "user", "content": "hi"}]).text == "ok"
    assert chat.base_url.startswith("http://127.0.0.1:") and KEY not in repr(chat)
    assert KEY not in caplog.text
    assert all(KEY not in json.dumps(body) for body in fake.requests)


def test_served_fake_reaches_a_subprocess(fake):
    fake.chat_responder = lambda request: "from the socket"
    code = ("from pipeline.engine.providers.openai_chat import OpenAIChatProvider as P; "
            "print(P('gpt-test', strict_validation=True).complete([{'role': 'user', 'content': 'x'}]).text)")
    with fake.serve() as base_url:
        env = {**os.environ, "OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": KEY}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "from the socket", out.stderr


def test_refusal_is_an_error(fake):
    fake.chat_responder = lambda request: {"refusal": "I cannot help with that"}
    with pytest.raises(ProviderError, match="no text: I cannot help with that"):
        provider(fake).complete([{"role": "user", "content": "hi"}])


def test_fake_rejects_malformed_requests(fake):
    client = fake.http_client()
    headers = {"Authorization": f"Bearer {KEY}"}
    assert client.post("http://x/v1/chat/completions", json={"model": "m"}, headers=headers).status_code == 400
    assert client.get("http://x/v1/nothing", headers=headers).status_code == 404
    assert client.post("http://x/v1/chat/completions", json={"model": "m", "messages": []}).status_code == 401


def test_azure_deployment_with_its_own_key_variable(fake, monkeypatch):
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    fake.chat_responder = lambda request: "from azure"
    chat = OpenAIChatProvider("gpt-4o", http_client=fake.http_client(), strict_validation=True,
                              azure={"azure_endpoint": "https://example.openai.azure.com",
                                     "api_version": "2024-10-21", "azure_deployment": "judge"})
    assert chat.complete([{"role": "user", "content": "hi"}]).text == "from azure"
    assert fake.calls[-1][1] == "/openai/deployments/judge/chat/completions"


def test_pii_is_scrubbed_from_messages_before_they_leave_the_machine(fake):
    fake.chat_responder = lambda request: "ok"
    provider(fake).complete([{"role": "user", "content": "count where user.email is 'ana@example.com' "
                                                          "from 198.51.100.23"}])
    sent = fake.requests[-1]["messages"][0]["content"]
    assert "ana@example.com" not in sent and "198.51.100.23" not in sent
    assert sent.startswith("count where user.email is ")


def test_scrubbing_can_be_turned_off_for_a_trusted_server(fake):
    fake.chat_responder = lambda request: "ok"
    provider(fake, scrub_patterns=None).complete([{"role": "user", "content": "ana@example.com"}])
    assert fake.requests[-1]["messages"][0]["content"] == "ana@example.com"
