"""Inference with a local model folder (built-in or transformers) through the task's prompt (and,
for the built-in model, the task's literal masking, as at training), behind
:class:`pipeline.engine.providers.models.ModelProvider`.

Few-shot examples (``shots``) go before each request within the source length the model trained
with: whole examples are dropped, first ones first (the least similar, in a retrieval's prompt
order), until the request fits; a request too long alone is cut as without examples. A
transformers model reads them as chat turns
(:func:`pipeline.engine.providers.models.few_shot_messages`); the built-in model reads each
example's source and target, then the request's source, separated by a blank line, every part's
literals masked on its own so the request's placeholders are the ones it would have alone.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipeline.engine.providers.models import Shot, few_shot_messages
from pipeline.engine.tasks import Task, hooks
from pipeline.engine.train.local import LocalSeq2Seq
from pipeline.engine.train.local.devices import resolve_device
from pipeline.engine.train.local.pretrained import PretrainedModel
from pipeline.engine.train.local.runs import is_pretrained, model_source
from pipeline.engine.train.local.seq2seq import mask_pairs
from pipeline.engine.train.local.tokenizer import encode

#: What separates the examples and the request in the built-in model's source.
SHOT_SEPARATOR = "\n\n"


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
        self.masker = None if self.pretrained else hooks.literal_masker(task)

    @property
    def max_source_tokens(self) -> int:
        """The longest source (prompt) the model reads, in tokens."""
        return self.model.codec.max_source_tokens if self.pretrained else self.model.max_source_tokens

    def source_tokens(self, input: dict[str, Any], shots: Sequence[Shot] = ()) -> int:
        """Tokens of the source the model would read for ``input`` with ``shots``, uncut."""
        if self.pretrained:
            return len(self.model.codec.whole_prompt_ids(few_shot_messages(self.task, input, shots)))
        return len(encode(self.model.tokenizer, [self._source(input, shots)[0]], sys.maxsize)[0])

    def fit_shots(self, inputs: list[dict[str, Any]], shots: Sequence[Sequence[Shot]]) -> list[list[Shot]]:
        """Of each input's ``shots``, the last ones that fit before it in :attr:`max_source_tokens`."""
        return [_fit(list(examples), lambda kept: self.source_tokens(input, kept) <= self.max_source_tokens)
                for input, examples in zip(inputs, shots, strict=True)]

    def complete(self, inputs: list[dict[str, Any]], shots: Sequence[Sequence[Shot]] | None = None) -> list[str]:
        """One output per input, batched greedy decoding; ``shots`` (per input) are fitted first."""
        if self.pretrained:
            fitted = self.fit_shots(inputs, shots) if shots else [()] * len(inputs)
            return self.model.generate([few_shot_messages(self.task, i, s) for i, s in zip(inputs, fitted)],
                                       batch_size=self.batch_size)
        if not shots:
            return self.model.generate([model_source(self.task, i) for i in inputs], batch_size=self.batch_size,
                                       masker=self.masker)
        sources = [self._source(i, s) for i, s in zip(inputs, self.fit_shots(inputs, shots))]
        outputs = self.model.generate([text for text, _ in sources], batch_size=self.batch_size)
        if self.masker is None:
            return outputs
        return [self.masker.unmask(out, literals) for out, (_, literals) in zip(outputs, sources)]

    def _source(self, input: dict[str, Any], shots: Sequence[Shot]) -> tuple[str, Sequence[Any]]:
        """The built-in model's source for ``input`` after ``shots`` (masked when the task masks
        literals), and the request's literals."""
        request = model_source(self.task, input)
        literals: Sequence[Any] = ()
        if self.masker is not None:
            masked = self.masker.mask_source(request)
            request, literals = masked.text, masked.literals
        sources, targets = mask_pairs(self.masker, [model_source(self.task, i) for i, _ in shots],
                                      [output for _, output in shots])
        return SHOT_SEPARATOR.join([*(f"{s}\n{t}" for s, t in zip(sources, targets)), request]), literals


def _fit(shots: list[Shot], fits: Callable[[list[Shot]], bool]) -> list[Shot]:
    """The longest tail of ``shots`` that ``fits`` (none when even the request alone does not)."""
    for start in range(len(shots)):
        if fits(shots[start:]):
            return shots[start:]
    return []
