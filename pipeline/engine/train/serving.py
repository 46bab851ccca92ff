"""The model behind a fine_tuned_models row, behind one inference interface
(:class:`pipeline.engine.providers.models.ModelProvider`): a local model folder, or a model
answering the task's prompt through chat completions (hosted, or a local model served by an
OpenAI-compatible server such as vLLM)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from pipeline.engine.providers import ChatProvider
from pipeline.engine.providers.models import ChatModelProvider, ModelProvider
from pipeline.engine.tasks import Task
from pipeline.engine.train.local.inference import LocalModelProvider


def model_provider(backend: str, model_id: str, artifact_path: str | None, task: Task, *,
                   chat_for: Callable[[str, str], ChatProvider], concurrency: int = 4,
                   seed: int | None = 0, served: Callable[[str], ChatProvider] | None = None) -> ModelProvider:
    """The registered model ``model_id``, answering ``concurrency`` calls at a time when it is a chat
    model: when ``backend`` is 'local', its folder ``artifact_path`` run here, or with ``served``
    the chat provider ``served(model_id)`` gives (the folder served under its model id); else
    the chat provider ``chat_for(backend, model_id)`` gives."""
    if backend != "local":
        return ChatModelProvider(chat_for(backend, model_id), task, concurrency=concurrency, seed=seed)
    if served is not None:
        return ChatModelProvider(served(model_id), task, concurrency=concurrency, seed=seed)
    return LocalModelProvider(Path(artifact_path), task)
