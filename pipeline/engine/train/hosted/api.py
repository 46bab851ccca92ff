"""The fine-tuning client: OpenAI or Azure OpenAI chosen by configuration, errors in plain words.

The API key comes from the argument or the environment (OPENAI_API_KEY; AZURE_OPENAI_API_KEY
for Azure) and never appears in a message, a repr or a log line written here.
OPENAI_BASE_URL (or ``base_url``) points the same code at any OpenAI-compatible server.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import openai

from pipeline.engine.core.secrets import redact
from pipeline.engine.providers import ProviderAuthError, ProviderError
from pipeline.engine.providers.openai_chat import OpenAIChatProvider

BACKENDS = ("openai", "azure")
KEY_VARIABLES = {"openai": "OPENAI_API_KEY", "azure": "AZURE_OPENAI_API_KEY"}
# What providers say when an account may not fine-tune (any 403 counts as a refusal too).
_UNAVAILABLE = re.compile(
    r"fine.?tun.{0,120}(not (available|supported|enabled|allowed|permitted)|no longer|unavailable|disabled|"
    r"wound down|winding down|discontinued|deprecated)|"
    r"(not (available|supported|enabled|allowed|permitted)|no longer|unavailable|disabled|do(es)? not have access)"
    r".{0,120}fine.?tun", re.IGNORECASE | re.DOTALL)
REFUSAL_ADVICE = ("OpenAI accepts no new self-serve fine-tuning jobs after 2027-01-06: set the fine-tuning "
                  "backend to 'azure' (Azure OpenAI serves the same API) or 'local' (open models trained here)")


class FineTuneError(ProviderError):
    """A fine-tuning call or job failed; the message carries the provider's own words."""


class FineTuningRefused(FineTuneError):
    """The provider does not allow fine-tuning for this account or model."""


class FineTuningAPI:
    """The openai client for files and fine-tuning jobs, with errors translated and keys redacted.

    ``backend`` is ``openai`` (``base_url`` or OPENAI_BASE_URL selects the server) or ``azure``
    (``azure_endpoint`` / AZURE_OPENAI_ENDPOINT and ``api_version`` / OPENAI_API_VERSION).
    429, 5xx and connection errors are retried ``max_retries`` times with exponential backoff
    (honouring Retry-After) by the client.
    """

    def __init__(self, backend: str = "openai", *, api_key: str | None = None, base_url: str | None = None,
                 azure_endpoint: str | None = None, api_version: str | None = None, max_retries: int = 5,
                 timeout: float = 60.0, http_client: Any = None, strict_validation: bool = False):
        if backend not in BACKENDS:
            raise ValueError(f"unknown hosted backend {backend!r}; expected one of {', '.join(BACKENDS)}")
        self.backend = backend
        self.key_variable = KEY_VARIABLES[backend]
        key = api_key or os.environ.get(self.key_variable)
        if not key:
            raise ProviderAuthError(f"no API key for {backend} fine-tuning: set {self.key_variable}")
        self._key = key
        self.max_retries = max_retries
        common = dict(api_key=key, max_retries=max_retries, timeout=timeout, http_client=http_client,
                      _strict_response_validation=strict_validation)
        if backend == "azure":
            self.azure = {"azure_endpoint": azure_endpoint or os.environ.get("AZURE_OPENAI_ENDPOINT"),
                          "api_version": api_version or os.environ.get("OPENAI_API_VERSION")}
            if not self.azure["azure_endpoint"] or not self.azure["api_version"]:
                raise ValueError("azure fine-tuning needs azure_endpoint (or AZURE_OPENAI_ENDPOINT) and "
                                 "api_version (or OPENAI_API_VERSION)")
            self.client = openai.AzureOpenAI(**self.azure, **common)
            self.where = f"Azure OpenAI at {self.azure['azure_endpoint']}"
        else:
            self.azure = None
            self.client = openai.OpenAI(base_url=base_url or os.environ.get("OPENAI_BASE_URL") or None, **common)
            self.where = f"OpenAI API at {self.client.base_url}"
        self._chat = dict(api_key=key, base_url=None if self.azure else str(self.client.base_url),
                          http_client=http_client, max_retries=max_retries, timeout=timeout,
                          azure=self.azure, strict_validation=strict_validation)

    def __repr__(self) -> str:
        return f"FineTuningAPI(backend={self.backend!r}, where={self.where!r})"

    def redact(self, text: str) -> str:
        """``text`` with the key and anything key-like replaced by ``***``."""
        return redact(text, [self._key])

    def chat_provider(self, model: str) -> OpenAIChatProvider:
        """Chat completions with ``model`` (on Azure: the name of its deployment) on the same server."""
        return OpenAIChatProvider(model, **self._chat)

    @contextmanager
    def errors(self, action: str) -> Iterator[None]:
        """Translate the client's exceptions raised while doing ``action`` into plain messages."""
        try:
            yield
        except openai.AuthenticationError as exc:
            raise ProviderAuthError(self.redact(
                f"{self.where} rejected the API key while {action} (HTTP 401): check {self.key_variable}. "
                f"The provider said: {_said(exc)}")) from None
        except openai.APIStatusError as exc:
            said = self.redact(_said(exc))
            if exc.status_code == 403 or _UNAVAILABLE.search(said):
                raise FineTuningRefused(f"{self.where} refused fine-tuning for this account while {action} "
                                        f"(HTTP {exc.status_code}): {said}. {REFUSAL_ADVICE}") from None
            retried = f" after {self.max_retries} retries with backoff" if exc.status_code == 429 or \
                exc.status_code >= 500 else ""
            raise FineTuneError(f"{self.where} answered HTTP {exc.status_code}{retried} while {action}: {said}"
                                ) from None
        except openai.APIConnectionError as exc:
            raise FineTuneError(self.redact(f"{self.where} could not be reached while {action} "
                                            f"after {self.max_retries} retries: {_said(exc)}")) from None


def _said(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    return getattr(exc, "message", None) or str(exc)
