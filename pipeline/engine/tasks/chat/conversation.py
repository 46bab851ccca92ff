"""The chat task's input: the conversation before the reply, as a team logged it.

An input is ``{"messages": [{"role", "content"}, ...]}``: system, user and assistant messages
with text content, ending with the user message the reply answers. The prompt is the
conversation itself, so training and inference see exactly what the team's assistant saw.
Editing this module does not change the check version.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pipeline.engine.tasks.hooks import canonical_json, collapse

#: The roles a conversation may hold (those a fine-tuning file accepts).
ROLES = ("system", "user", "assistant")
#: Roles written under another name in some logs, and the role they are.
ROLE_ALIASES = {"developer": "system"}


def prompt(input: dict[str, Any]) -> list[dict[str, str]]:
    """The conversation's messages, as they are."""
    return [{"role": m["role"], "content": m["content"]} for m in input["messages"]]


def validate_input(input: Any) -> str | None:
    """None for a well-formed conversation, else the first thing wrong with it."""
    if not isinstance(input, dict):
        return f"input must be an object, got {type(input).__name__}"
    extra = sorted(set(input) - {"messages"})
    if extra:
        return f"input has keys other than messages: {', '.join(map(repr, extra))}"
    messages = input.get("messages")
    if not isinstance(messages, list) or not messages:
        return "input.messages must be a non-empty list of messages"
    for n, message in enumerate(messages):
        where = f"input.messages[{n}]"
        if not isinstance(message, dict):
            return f"{where} must be an object, got {type(message).__name__}"
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            return f"{where}.role must be one of {', '.join(ROLES)}, got {role!r}"
        if not isinstance(content, str):
            return (f"{where}.content must be text, got {type(content).__name__}"
                    + (" (content parts other than text, or a tool call, are not kept)" if content is None
                       or isinstance(content, list) else ""))
        if not content.strip():
            return f"{where}.content is empty"
        extra = sorted(set(message) - {"role", "content"})
        if extra:
            return f"{where} has keys other than role and content: {', '.join(map(repr, extra))}"
    if messages[-1]["role"] != "user":
        return f"the conversation must end with the user message the reply answers, not a {messages[-1]['role']} message"
    return None


def _text(content: Any) -> Any:
    """Content parts that are all text as one string; anything else unchanged (for validation to name)."""
    if isinstance(content, list) and content and all(
            isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content):
        return "".join(p["text"] for p in content)
    return content


def input_from_messages(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The input behind a logged conversation: its messages as {role, content}, text content
    parts joined, ``developer`` read as ``system``; other keys (names, tool calls) are not kept."""
    return {"messages": [
        {"role": ROLE_ALIASES.get(m.get("role"), m.get("role")), "content": _text(m.get("content"))}
        if isinstance(m, dict) else m for m in messages]}


def _contents(input: dict[str, Any], role: str) -> list[str]:
    return [m["content"] for m in input.get("messages") or []
            if isinstance(m, dict) and m.get("role") == role and isinstance(m.get("content"), str)]


def system_prompt(input: dict[str, Any]) -> str:
    """The system messages of a conversation, one per line ("" when it has none)."""
    return "\n".join(_contents(input, "system"))


def last_user_message(input: dict[str, Any]) -> str:
    """The user message the reply answers ("" when there is none)."""
    users = _contents(input, "user")
    return users[-1] if users else ""


def group_key(input: dict[str, Any]) -> str:
    """What must never straddle splits: the conversation, known by its first user message.

    Every later turn of a conversation repeats its opening (and earlier replies), so turns of
    one conversation share this key and land in one split: a test turn never holds a training
    turn's reply. The system prompt is left out, so a conversation logged under two prompt
    versions is still one group. Conversations that open alike ("hi") share a group too.
    """
    users = _contents(input, "user")
    return collapse(users[0]) if users else canonical_json(input)


def dedup_text(input: dict[str, Any]) -> tuple[str, str]:
    """(scope, text) for near-duplicates: the same system prompt (a hash of it), the last user message."""
    scope = hashlib.sha256(system_prompt(input).encode()).hexdigest()[:16]
    return scope, last_user_message(input)


def display_text(input: dict[str, Any]) -> str:
    """The last user message: what the reply answers."""
    return last_user_message(input)
