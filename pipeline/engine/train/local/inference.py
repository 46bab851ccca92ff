"""Inference with a local model folder (built-in or transformers) through the task's prompt (and,
for the built-in model, the task's literal masking, as at training), behind
:class:`pipeline.engine.providers.models.ModelProvider`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.engine.tasks import Task, hooks
from pipeline.engine.train.local import LocalSeq2Seq
from pipeline.engine.train.local.devices import resolve_device
from pipeline.engine.train.local.pretrained import PretrainedModel
from pipeline.engine.train.local.runs import is_pretrained, model_source


class LocalModelProvider:
    """Inference with a local model directory (built-in or transformers), through the task's prompt."""

    def __init__(self, model_dir: Path, task: Task, batch_size: int = 64, device: str = "auto"):
        self.pretrained = is_pretrained(model_dir)
        if self.pretrained:
            self.model = PretrainedModel(model_dir, device)
        else:
            self.model = LocalSeq2Seq.load(model_dir)
            self.model.model.to(resolve_device(device))
        self.task = task
        self.batch_size = batch_size

    def complete(self, inputs: list[dict[str, Any]]) -> list[str]:
        """One output per input, batched greedy decoding."""
        if self.pretrained:
            return self.model.generate([self.task.prompt(i) for i in inputs], batch_size=self.batch_size)
        return self.model.generate([model_source(self.task, i) for i in inputs], batch_size=self.batch_size,
                                   masker=hooks.literal_masker(self.task))
