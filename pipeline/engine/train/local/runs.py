"""Training runs with the local backend: model ids keyed by data and config, idempotent runs,
the same prompt at training and inference (:func:`model_source`), and for the built-in model the
task's literal masking (:func:`model_pairs`; the training job holds the masked texts).

The base model is either the built-in one (``ModelConfig``: trained here from the base corpus)
or a pretrained transformers model (``PretrainedSpec``: registered into the base directory
without training); fine-tuning and inference follow whichever the base directory holds. A run
trains in ``TrainConfig.processes`` data-parallel processes (:mod:`.launch`).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import polars as pl

from pipeline.engine.core.versions import config_hash, file_hash
from pipeline.engine.train.local import ModelConfig, TrainConfig, launch, pretrained
from pipeline.engine.train.local.folders import META_FILE, read_meta
from pipeline.engine.train.local.pretrained import PretrainedSpec
from pipeline.engine.tasks import Task, hooks
from pipeline.engine.train.local.config import TrainResult
from pipeline.engine.train.local.seq2seq import mask_pairs

#: What trains a job: (job, processes, log) -> its result; launch.train_in_processes or one on other compute.
TrainJob = Callable[[launch.Job, int, Callable[[str], None]], TrainResult]


def base_model_id(corpus: Path | None, architecture: ModelConfig | PretrainedSpec, train_config: TrainConfig,
                  max_examples: int | None, task: Task | None = None) -> str:
    """Id of the base model that this corpus and configuration produce (and the ``task``'s literal
    masking, which the built-in model's tokenizer and data go through)."""
    parts = (architecture, train_config, max_examples)
    masking = masking_id(task) if task is not None and isinstance(architecture, ModelConfig) else None
    if masking is not None:
        parts += (masking,)
    return f"local-base-{file_hash(corpus)[:8] if corpus else 'nocorpus'}-{config_hash(*parts)}"


def corpus_file(path: str | None, required: bool = True) -> Path | None:
    """The base corpus at ``path`` (None when none is set and none is ``required``: a pretrained
    base needs none); a ValueError saying how to name one when it is missing."""
    if not path and not required:
        return None
    if not path or not Path(path).is_file():
        where = f"{path!r} is not a file" if path else "none is set"
        raise ValueError(f"the built-in base model needs a base corpus of input/output JSONL lines, and {where}: "
                         "set FLYWHEEL_BASE_CORPUS or LocalTrainer.base_corpus, or fine-tune a pretrained model "
                         "(LocalTrainer.model_name_or_path)")
    return Path(path)


def corpus_version(path: str | None) -> str:
    """The base corpus's content hash (its data version in the registry); "none" without one."""
    corpus = corpus_file(path, required=False)
    return file_hash(corpus) if corpus else "none"


def masking_id(task: Task) -> str | None:
    """What names the task's literal masking in model ids: its class and ``version``; None without one."""
    masker = hooks.literal_masker(task)
    if masker is None:
        return None
    kind = type(masker)
    return f"{kind.__module__}.{kind.__qualname__}:{getattr(masker, 'version', '')}"


def fine_tuned_model_id(data_version: str, base_id: str, train_config: TrainConfig, replay_examples: int) -> str:
    """Id of the model fine-tuned from ``base_id`` on the training data of ``data_version``."""
    return f"local-ft-{data_version[:10]}-{config_hash(base_id, train_config, replay_examples)}"


def model_source(task: Task, input: dict[str, Any]) -> str:
    """What the local model reads: the task prompt's user message (same at training and inference)."""
    return task.prompt(input)[-1]["content"]


def pairs(examples: pl.DataFrame, task: Task) -> tuple[list[str], list[str]]:
    """(sources, targets) for examples with JSON ``input`` and normalised ``output`` columns."""
    inputs = [json.loads(i) for i in examples["input"]]
    sources = [model_source(task, i) for i in inputs]
    targets = [hooks.normalise(task, o, i) or o for i, o in zip(inputs, examples["output"])]
    return sources, targets


def model_pairs(examples: pl.DataFrame, task: Task) -> tuple[list[str], list[str]]:
    """(sources, targets) as the built-in model reads them: :func:`pairs` with the task's literals masked."""
    return mask_pairs(hooks.literal_masker(task), *pairs(examples, task))


def chat_pairs(examples: pl.DataFrame, task: Task) -> tuple[list[list[dict[str, str]]], list[str]]:
    """(chat prompts, targets) for a pretrained model: the task's whole prompt, the normalised output."""
    inputs = [json.loads(i) for i in examples["input"]]
    targets = [hooks.normalise(task, o, i) or o for i, o in zip(inputs, examples["output"])]
    return [task.prompt(i) for i in inputs], targets


def read_corpus(path: Path | None, max_examples: int | None = None) -> pl.DataFrame:
    """A JSONL corpus of {"input", "output"} lines as a frame with JSON ``input``; no rows without one."""
    if path is None:
        return pl.DataFrame(schema={"input": pl.String, "output": pl.String})
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                record = json.loads(line)
                rows.append({"input": json.dumps(record["input"]), "output": record["output"]})
            if max_examples is not None and len(rows) >= max_examples:
                break
    if not rows:
        raise ValueError(f"base corpus {path} has no examples")
    return pl.DataFrame(rows)


def is_complete(model_dir: Path) -> bool:
    """True when ``model_dir`` holds a finished model (models are saved atomically, metadata included)."""
    return (model_dir / META_FILE).is_file()


def reused(model_dir: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """The training result saved in a finished model folder, marked as reused."""
    log(f"model already trained at {model_dir}; reusing it")
    saved = json.loads((model_dir / META_FILE).read_text()).get("result") or {}
    return {**saved, "reused": True}


def is_pretrained(model_dir: Path) -> bool:
    """True when ``model_dir`` holds a transformers model (registered or fine-tuned from one)."""
    return read_meta(model_dir).get("backend") == "transformers"


def train_base_model(model_dir: Path, corpus: pl.DataFrame, task: Task, model_config: ModelConfig | PretrainedSpec,
                     train_config: TrainConfig, log: Callable[[str], None],
                     train_job: TrainJob = launch.train_in_processes) -> dict[str, Any]:
    """Train the base model unless ``model_dir`` already holds it; returns its training metrics.

    A pretrained model is not trained: it is saved into ``model_dir`` with its tokenizer. The job
    runs through ``train_job`` (here, in ``train_config.processes`` processes, by default).
    """
    if is_complete(model_dir):
        return reused(model_dir, log)
    if isinstance(model_config, PretrainedSpec):
        return {"reused": False, **pretrained.register(model_config, model_dir, log)}
    with tempfile.TemporaryDirectory(prefix="flywheel-data-") as folder:
        job = launch.write_job(Path(folder), launch.BASE, model_dir, model_pairs(corpus, task), None, train_config,
                               model_config=model_config)
        result = train_job(job, train_config.processes, log)
    return {"reused": False, **asdict(result)}


def fine_tune_model(base_dir: Path, model_dir: Path, train: pl.DataFrame, validation: pl.DataFrame,
                    task: Task, train_config: TrainConfig, log: Callable[[str], None],
                    replay: pl.DataFrame | None = None,
                    train_job: TrainJob = launch.train_in_processes) -> dict[str, Any]:
    """Warm-start from ``base_dir`` and fine-tune on ``train`` unless already done.

    ``replay`` (examples from the base's own corpus) is mixed into the training set so that
    learning the team's data does not make the model forget what it knew (rehearsal). The job
    runs through ``train_job``, as in :func:`train_base_model`.
    """
    if is_complete(model_dir):
        return reused(model_dir, log)
    to_pairs = chat_pairs if is_pretrained(base_dir) else model_pairs
    sources, targets = to_pairs(train, task)
    if replay is not None and replay.height:
        replay_sources, replay_targets = to_pairs(replay, task)
        sources, targets = sources + replay_sources, targets + replay_targets
    valid = to_pairs(validation, task) if validation.height else None
    function = launch.PRETRAINED_FINE_TUNE if is_pretrained(base_dir) else launch.FINE_TUNE
    with tempfile.TemporaryDirectory(prefix="flywheel-data-") as folder:
        job = launch.write_job(Path(folder), function, model_dir, (sources, targets), valid, train_config,
                               base_dir=base_dir)
        result = train_job(job, train_config.processes, log)
    return {"reused": False, "replay_examples": 0 if replay is None else replay.height, **asdict(result)}
