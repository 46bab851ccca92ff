"""The provider interface: chat completions for judges, synthetic generators and hosted models.

Implementations live beside this module (for example an OpenAI-compatible client reached
through OPENAI_BASE_URL). Engine code depends only on :class:`ChatProvider`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Completion:
    """One chat completion: the text and what it cost."""

    text: str
    model: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_ms: float | None = None
    #: Why generation stopped ("stop", "length", ...) when the provider says.
    finish_reason: str | None = None


class ProviderError(RuntimeError):
    """A provider call failed (after retries); the message names the provider and the cause."""


class ProviderAuthError(ProviderError):
    """The provider rejected the credentials or none were configured."""


@runtime_checkable
class ChatProvider(Protocol):
    """Something that answers chat messages; ``model`` names what answers (for caches and provenance)."""

    model: str

    def complete(self, messages: list[dict[str, str]], *, temperature: float = 0.0,
                 response_format: dict[str, Any] | None = None, seed: int | None = None) -> Completion:
        """The assistant's reply to ``messages``; raises on a provider error after retries."""
        ...
