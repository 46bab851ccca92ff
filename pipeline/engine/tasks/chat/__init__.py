"""chat: a team's chat assistant; the conversation so far in, the assistant's reply out.

The input is the conversation as logged (``{"messages": [...]}``, ending with the user message
the reply answers); the prompt is that conversation unchanged. The task's parts:

- :mod:`~pipeline.engine.tasks.chat.checks`: the assertions on a reply (empty, refusal,
  truncated, too long, repeats the prompt) and its canonical form (the check code
  ``check_version`` hashes);
- :mod:`~pipeline.engine.tasks.chat.conversation`: the prompt, input validation, the input
  recovered from chat logs, and what splits, near-duplicate detection and people see;
- ``prompts/``: the judge prompt and the LLM synthetic-data prompts and dimensions.

There is no offline synthetic generator: a reply is only known good for the conversation it
answered, and no rule-based change to a conversation (rewording the last message, dropping or
varying the system prompt, cutting earlier turns) keeps that reply known good. Synthetic chat
data comes from the LLM generators (``prompts/synth/``), whose candidates are checked like any.

Build a variant with other settings with ``ChatTask(ReplyChecks(refusal_phrases=..., max_chars=...))``
in a module of your own exposing it as ``TASK``.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from pipeline.engine.tasks.base import Example, SyntheticExample
from pipeline.engine.tasks.chat import checks as checks_module
from pipeline.engine.tasks.chat.checks import (
    CHECK_NAMES, DEFAULT_CHECKS, MAX_REPLY_CHARS, REFUSAL_PHRASES, ReplyChecks, normalise,
)
from pipeline.engine.tasks.chat.conversation import (
    dedup_text, display_text, group_key, input_from_messages, last_user_message, prompt, system_prompt,
    validate_input,
)
from pipeline.engine.tasks.hooks import DemoData

NAME = "chat"
VERSION = "1"
DEMO_DIR = Path(__file__).resolve().parents[4] / "data" / "demo" / "chat"


def synthesize(examples: list[Example], n: int, rng: random.Random) -> list[SyntheticExample]:
    """No offline generator keeps a reply known good (see the package docstring): always empty."""
    return []


class ChatTask:
    """The chat task as a Task object, its reply assertions set by ``checks``.

    The check version covers the check module and, through ``version``, settings other than
    the defaults (``1-<hash of the settings>``), so changing them re-evaluates stored traces.
    """

    name = NAME
    check_names = CHECK_NAMES
    check_modules = (checks_module,)
    slice_name = None

    prompt = staticmethod(prompt)
    validate_input = staticmethod(validate_input)
    input_from_messages = staticmethod(input_from_messages)
    normalise = staticmethod(normalise)
    synthesize = staticmethod(synthesize)
    group_key = staticmethod(group_key)
    dedup_text = staticmethod(dedup_text)
    display_text = staticmethod(display_text)
    demo_data = DemoData(traces=str(DEMO_DIR / "traces.jsonl"), annotations=str(DEMO_DIR / "annotations.jsonl"),
                         base_corpus=str(DEMO_DIR / "base_corpus.jsonl"))

    def __init__(self, checks: ReplyChecks = DEFAULT_CHECKS):
        self.checks = checks
        self.version = VERSION if checks == DEFAULT_CHECKS else (
            f"{VERSION}-{hashlib.sha256(repr(checks).encode()).hexdigest()[:8]}")

    def check(self, input, output):
        """Run every chat assertion on ``output`` (see :mod:`~pipeline.engine.tasks.chat.checks`)."""
        return self.checks.check(input, output)

    def check_values(self, input, output):
        """The assertions' (passed, detail) tuples in CHECK_NAMES order (the fast form of ``check``)."""
        return self.checks.values(input, output)


TASK = ChatTask()

__all__ = [
    "CHECK_NAMES", "ChatTask", "MAX_REPLY_CHARS", "NAME", "REFUSAL_PHRASES", "ReplyChecks", "TASK", "VERSION",
    "dedup_text", "display_text", "group_key", "input_from_messages", "last_user_message", "normalise", "prompt",
    "synthesize", "system_prompt", "validate_input",
]
