"""Inference with a hosted model behind the interface a local model has: ``complete(inputs)``,
optionally with few-shot examples per input (``shots``) placed before each request."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from pipeline.engine.providers import ChatProvider, Completion
from pipeline.engine.tasks import Task

#: A few-shot example: an input of the task and the output it should get.
Shot = tuple[dict[str, Any], str]


class ModelProvider(Protocol):
    """A model under evaluation, local or hosted: one output per task input; ``shots`` (one
    sequence per input, in prompt order) puts worked examples before each request."""

    def complete(self, inputs: list[dict[str, Any]], shots: Sequence[Sequence[Shot]] | None = None) -> list[str]:
        ...


def few_shot_messages(task: Task, input: dict[str, Any], shots: Sequence[Shot] = ()) -> list[dict[str, str]]:
    """The task's prompt for ``input`` with each shot, in order, as a user/assistant exchange
    after the prompt's leading system messages: the shot's own prompt without its system
    messages, then its output as the assistant's reply."""
    messages = task.prompt(input)
    if not shots:
        return messages
    lead = next((n for n, m in enumerate(messages) if m["role"] != "system"), len(messages))
    turns = [turn for shot_input, output in shots
             for turn in (*(m for m in task.prompt(shot_input) if m["role"] != "system"),
                          {"role": "assistant", "content": output})]
    return messages[:lead] + turns + messages[lead:]


class ChatModelProvider:
    """A chat model answering the task's prompt (the same messages the training files hold)."""

    def __init__(self, chat: ChatProvider, task: Task, concurrency: int = 4, seed: int | None = 0):
        self.chat = chat
        self.task = task
        self.concurrency = max(1, concurrency)
        self.seed = seed

    def completions(self, inputs: list[dict[str, Any]],
                    shots: Sequence[Sequence[Shot]] | None = None) -> list[Completion]:
        """One completion per input, in order, with its latency and tokens (see :func:`few_shot_messages`
        for ``shots``); raises the provider's error after its retries."""
        def one(pair: tuple[dict[str, Any], Sequence[Shot]]) -> Completion:
            return self.chat.complete(few_shot_messages(self.task, *pair), temperature=0.0, seed=self.seed)

        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(one, zip(inputs, shots or [()] * len(inputs), strict=True)))

    def complete(self, inputs: list[dict[str, Any]], shots: Sequence[Sequence[Shot]] | None = None) -> list[str]:
        """One output per input, in order; raises the provider's error after its retries."""
        return [c.text for c in self.completions(inputs, shots)]
