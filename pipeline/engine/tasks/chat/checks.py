"""The chat task's assertions on a reply, and its canonical form.

Each assertion looks at the reply (and, for ``repeats_prompt``, at the conversation it answers)
and is named after the failure mode it detects:

- ``empty_reply``: the reply is empty or only white space. It gates the others: an empty reply
  has nothing to refuse, truncate or repeat, so they are skipped (``passed`` None).
- ``refusal``: the reply opens by declining ("I'm sorry, but I can't help with that", "As an AI
  language model"): one of :data:`REFUSAL_PHRASES` (or the phrases a :class:`ReplyChecks` is built
  with) within its first :data:`REFUSAL_WINDOW` characters, case and apostrophe style ignored.
- ``truncated``: the reply stops mid-way: an odd number of code fences (a code block left open),
  or a last word or mark that cannot end a sentence (a comma, colon, open bracket, or a word
  such as "and", "the", "to"). A reply ending in a plain word without a full stop is *not*
  flagged: many good replies end that way.
- ``too_long``: the reply is over ``max_chars`` characters (:data:`MAX_REPLY_CHARS` by default).
- ``repeats_prompt``: the reply copies the prompt: a run of :data:`SYSTEM_ECHO_WORDS`
  consecutive words of a system message (a leaked instruction; quoting one policy sentence
  stays under it), or the whole last user message when it has at least
  :data:`USER_ECHO_WORDS` words (an echo).

This module is the check code ``check_version`` hashes; it holds no prompt text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pipeline.engine.tasks.base import CheckResult

CHECK_NAMES: tuple[str, ...] = ("empty_reply", "refusal", "truncated", "too_long", "repeats_prompt")

#: Phrases that, near the start of a reply, mean the assistant declined (lower case, straight apostrophes).
REFUSAL_PHRASES: tuple[str, ...] = (
    "i'm sorry, but i can't", "i'm sorry, but i cannot", "i am sorry, but i cannot", "sorry, i can't help",
    "i can't help with that", "i cannot help with that", "i can't assist with", "i cannot assist with",
    "i'm unable to help", "i am unable to help", "i'm unable to assist", "i am unable to assist",
    "i'm not able to help", "i am not able to help", "i won't be able to help", "as an ai language model",
    "as an ai, i can't", "as an ai, i cannot",
)
#: How far into a reply a refusal phrase counts (a refusal comes first; later "I can't" is content).
REFUSAL_WINDOW = 200
MAX_REPLY_CHARS = 4000
#: Words in a row copied from a system message that count as leaking it.
SYSTEM_ECHO_WORDS = 20
#: The fewest words a last user message must have for repeating it whole to count.
USER_ECHO_WORDS = 8

#: Words a finished sentence does not end on.
DANGLING_WORDS = frozenset({
    "a", "an", "the", "and", "or", "but", "to", "of", "for", "with", "in", "on", "at", "by", "from",
    "your", "my", "our", "their", "is", "are", "was", "be", "that", "which", "because", "if", "then",
})
#: Marks a finished reply does not end on.
DANGLING_MARKS = frozenset(",;:([{-–—/\\")

_SKIPPED = "skipped: the reply is empty"
_WORDS = re.compile(r"[\w']+")
_LAST_WORD = re.compile(r"[^\W\d_]+$")


def _fold(text: str) -> str:
    """Lower case, curly apostrophes straightened, white space runs as one space."""
    return " ".join(text.replace("\u2019", "'").replace("\u2018", "'").lower().split())


def _words(text: str) -> list[str]:
    return _WORDS.findall(_fold(text))


def _texts(input: dict[str, Any], role: str) -> list[str]:
    messages = input.get("messages") if isinstance(input, dict) else None
    return [m["content"] for m in messages or [] if isinstance(m, dict) and m.get("role") == role
            and isinstance(m.get("content"), str)]


@dataclass(frozen=True)
class ReplyChecks:
    """The chat assertions with their settings: refusal phrases (lower case) and the longest reply."""

    refusal_phrases: tuple[str, ...] = REFUSAL_PHRASES
    max_chars: int = MAX_REPLY_CHARS

    def refusal(self, reply: str) -> str | None:
        """Why the reply is a refusal (the phrase found), or None."""
        opening = _fold(reply[: REFUSAL_WINDOW * 2])[:REFUSAL_WINDOW]
        found = next((p for p in self.refusal_phrases if _fold(p) in opening), None)
        return None if found is None else f"the reply declines: {found!r}"

    def too_long(self, reply: str) -> str | None:
        """Why the reply is too long, or None."""
        return None if len(reply) <= self.max_chars else f"{len(reply):,} characters, over the {self.max_chars:,} allowed"

    def values(self, input: dict[str, Any], output: str) -> tuple[tuple[bool | None, ...], tuple[str, ...]]:
        """Every assertion's (passed, detail) as two tuples in CHECK_NAMES order."""
        if not isinstance(output, str) or not output.strip():
            return (False,) + (None,) * 4, ("the reply is empty",) + (_SKIPPED,) * 4
        problems = (self.refusal(output), truncated(output), self.too_long(output), repeats_prompt(input, output))
        return (True, *(p is None for p in problems)), ("", *(p or "" for p in problems))

    def check(self, input: dict[str, Any], output: str) -> list[CheckResult]:
        """Run every chat assertion on ``output``; one result per CHECK_NAMES."""
        passed, details = self.values(input, output)
        return [CheckResult(name, ok, why) for name, ok, why in zip(CHECK_NAMES, passed, details)]


def truncated(reply: str) -> str | None:
    """Why the reply looks cut off (an open code block, a dangling last word or mark), or None."""
    fences = sum(1 for line in reply.splitlines() if line.lstrip().startswith("```"))
    if fences % 2:
        return "a code block is left open (odd number of ``` fences)"
    end = reply.rstrip()
    if end[-1] in DANGLING_MARKS:
        return f"the reply ends on {end[-1]!r}"
    last = _LAST_WORD.search(end)
    if last and last.group(0) in DANGLING_WORDS:  # lower case as written: "Plan A" is a name, not "a"
        return f"the reply ends mid-sentence on {last.group(0)!r}"
    return None


def repeats_prompt(input: dict[str, Any], reply: str) -> str | None:
    """Why the reply copies the prompt (a system message's words, or the whole last user
    message), or None."""
    said = " " + " ".join(_words(reply)) + " "
    for system in _texts(input, "system"):
        words = _words(system)
        for start in range(0, max(0, len(words) - SYSTEM_ECHO_WORDS + 1)):
            run = " ".join(words[start:start + SYSTEM_ECHO_WORDS])
            if f" {run} " in said:
                return f"the reply repeats the system prompt: {run!r}"
    users = _texts(input, "user")
    last = _words(users[-1]) if users else []
    if len(last) >= USER_ECHO_WORDS and f" {' '.join(last)} " in said:
        return "the reply repeats the user's last message"
    return None


def normalise(output: str) -> str | None:
    """The reply with white space runs collapsed to one space; None when it is empty."""
    text = " ".join(output.split()) if isinstance(output, str) else ""
    return text or None


DEFAULT_CHECKS = ReplyChecks()
