"""Inference with a hosted model behind the interface a local model has: ``complete(inputs)``."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from pipeline.engine.providers import ChatProvider
from pipeline.engine.tasks import Task


class ModelProvider(Protocol):
    """A model under evaluation, local or hosted: one output per task input."""

    def complete(self, inputs: list[dict[str, Any]]) -> list[str]:
        ...


class ChatModelProvider:
    """A chat model answering the task's prompt (the same messages the training files hold)."""

    def __init__(self, chat: ChatProvider, task: Task, concurrency: int = 4, seed: int | None = 0):
        self.chat = chat
        self.task = task
        self.concurrency = max(1, concurrency)
        self.seed = seed

    def complete(self, inputs: list[dict[str, Any]]) -> list[str]:
        """One output per input, in order; raises the provider's error after its retries."""
        def one(input: dict[str, Any]) -> str:
            return self.chat.complete(self.task.prompt(input), temperature=0.0, seed=self.seed).text

        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(one, inputs))
