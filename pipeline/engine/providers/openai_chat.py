"""Chat completions through the openai client: OpenAI, Azure OpenAI or any OpenAI-compatible
server (vLLM, Ollama) reached through ``base_url`` / OPENAI_BASE_URL.

The API key comes from the argument or the environment (OPENAI_API_KEY; AZURE_OPENAI_API_KEY
for Azure) and is never part of an error message, a repr or a log line written here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any

import openai

from pipeline.engine.providers import Completion, ProviderAuthError, ProviderError
from pipeline.engine.core.scrub import DEFAULT_PATTERNS, Pattern, scrub_text
from pipeline.engine.core.secrets import redact


def json_schema_format(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """A ``response_format`` asking for JSON that follows ``schema`` (structured output)."""
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


class OpenAIChatProvider:
    """:class:`~pipeline.engine.providers.ChatProvider` over the openai client.

    ``max_retries`` applies to 408/409/429/5xx and connection errors, with exponential backoff
    (honouring the server's Retry-After). ``azure`` holds AzureOpenAI arguments
    (``azure_endpoint``, ``api_version``, ``azure_deployment``); then ``base_url`` is unused.
    ``strict_validation`` makes the client reject responses that do not match the API's types
    (used in tests against the fake API).
    """

    def __init__(self, model: str, *, api_key: str | None = None, base_url: str | None = None,
                 http_client: Any = None, max_retries: int = 3, timeout: float = 60.0,
                 azure: dict[str, Any] | None = None, strict_validation: bool = False,
                 scrub_patterns: Iterable[Pattern] | None = DEFAULT_PATTERNS):
        if not model:
            raise ValueError("model must name the model to call")
        self.model = model
        #: PII patterns scrubbed from every message before it leaves the machine (None: send as is).
        self.scrub_patterns = tuple(scrub_patterns) if scrub_patterns is not None else None
        key = api_key or os.environ.get("AZURE_OPENAI_API_KEY" if azure else "OPENAI_API_KEY")
        if not key:
            variable = "AZURE_OPENAI_API_KEY" if azure else "OPENAI_API_KEY"
            raise ProviderAuthError(
                f"no API key for model {model!r}: set {variable} (or pass api_key); a local "
                "OpenAI-compatible server without authentication accepts any non-empty value")
        self._secrets = [key]
        common = dict(api_key=key, http_client=http_client, max_retries=max_retries, timeout=timeout,
                      _strict_response_validation=strict_validation)
        if azure:
            self.base_url = str(azure.get("azure_endpoint", ""))
            self._client = openai.AzureOpenAI(**azure, **common)
        else:
            self._client = openai.OpenAI(base_url=base_url or os.environ.get("OPENAI_BASE_URL") or None, **common)
            self.base_url = str(self._client.base_url)

    def __repr__(self) -> str:
        return f"OpenAIChatProvider(model={self.model!r}, base_url={self.base_url!r})"

    def redact(self, text: str) -> str:
        """``text`` with this provider's key and anything key-like replaced by ``***``."""
        return redact(text, self._secrets)

    def complete(self, messages: list[dict[str, str]], *, temperature: float = 0.0,
                 response_format: dict[str, Any] | None = None, seed: int | None = None) -> Completion:
        """The assistant's reply; raises ProviderAuthError or ProviderError after retries."""
        extra: dict[str, Any] = {}
        if response_format is not None:
            extra["response_format"] = response_format
        if seed is not None:
            extra["seed"] = seed
        if self.scrub_patterns is not None:
            messages = [{**m, "content": scrub_text(m["content"], self.scrub_patterns).text} for m in messages]
        started = time.perf_counter()
        try:
            response = self._client.chat.completions.create(
                model=self.model, messages=messages, temperature=temperature, **extra)
        except openai.AuthenticationError as exc:
            raise ProviderAuthError(self._describe("rejected the API key", exc)) from None
        except openai.APIStatusError as exc:
            raise ProviderError(self._describe(f"answered HTTP {exc.status_code}", exc)) from None
        except openai.APIConnectionError as exc:
            raise ProviderError(self._describe("could not be reached", exc)) from None
        except openai.OpenAIError as exc:
            raise ProviderError(self._describe("failed", exc)) from None
        latency_ms = 1000 * (time.perf_counter() - started)
        if not response.choices:
            raise ProviderError(f"{self._where()} returned no choices")
        choice = response.choices[0]
        if choice.message.content is None:
            reason = choice.message.refusal or f"no content (finish_reason={choice.finish_reason})"
            raise ProviderError(f"{self._where()} returned no text: {self.redact(reason)}")
        usage = response.usage
        return Completion(text=choice.message.content, model=response.model or self.model,
                          prompt_tokens=usage.prompt_tokens if usage else None,
                          completion_tokens=usage.completion_tokens if usage else None,
                          latency_ms=latency_ms, finish_reason=choice.finish_reason)

    def _where(self) -> str:
        return f"model {self.model!r} at {self.base_url}"

    def _describe(self, what: str, exc: Exception) -> str:
        message = getattr(exc, "message", None) or str(exc)
        return self.redact(f"{self._where()} {what}: {type(exc).__name__}: {message}")
