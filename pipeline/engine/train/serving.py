"""The model behind a fine_tuned_models row, behind one inference interface
(:class:`pipeline.engine.providers.models.ModelProvider`): a local model folder, or a hosted
model answering the task's prompt through chat completions."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from pipeline.engine.providers import ChatProvider
from pipeline.engine.providers.models import ChatModelProvider, ModelProvider
from pipeline.engine.tasks import Task
from pipeline.engine.train.local.inference import LocalModelProvider


def model_provider(backend: str, model_id: str, artifact_path: str | None, task: Task, *,
                   chat_for: Callable[[str, str], ChatProvider], concurrency: int = 4,
                   seed: int | None = 0) -> ModelProvider:
    """The registered model ``model_id``: its folder ``artifact_path`` when ``backend`` is 'local',
    else the chat provider ``chat_for(backend, model_id)`` gives, ``concurrency`` calls at a time."""
    if backend == "local":
        return LocalModelProvider(Path(artifact_path), task)
    return ChatModelProvider(chat_for(backend, model_id), task, concurrency=concurrency, seed=seed)
