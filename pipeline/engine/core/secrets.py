"""Secrets kept out of error messages: the keys a client holds, and anything shaped like a key.

Every client that holds a key (OpenAI chat, hosted fine-tuning, LangSmith) passes the messages
of the errors it raises through :func:`redact`, before they reach a log line, metadata or a row.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: Key-like strings: OpenAI keys (sk-...), LangSmith keys (lsv2_..., and the older ls__...), bearer tokens.
KEY_LIKE = re.compile(r"\b(sk-[A-Za-z0-9_*\-]{3,}|lsv2_[A-Za-z0-9_]{3,}|ls__[A-Za-z0-9_]{3,}|Bearer\s+\S+)")


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with each of ``secrets`` (empty ones skipped) and anything key-like replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return KEY_LIKE.sub("***", text)
