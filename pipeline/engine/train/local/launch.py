"""Training in one process or several: a run written down as a job file, and what runs it.

``python -m pipeline.engine.train.local.launch job.json`` runs the job (:class:`Job`). Under
torchrun (``python -m torch.distributed.run --nproc_per_node N -m pipeline.engine.train.local.launch
job.json``, on one node or several) or ``accelerate launch -m ...`` every process runs it and the
trainer makes them data-parallel: gloo on the CPU, NCCL on GPUs. Only rank 0 logs and writes the
model folder. :func:`train_in_processes` runs a job in this process, or through torchrun for more.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from torch.distributed.elastic.multiprocessing.errors import record

from pipeline.engine.train.local import pretrained, seq2seq
from pipeline.engine.train.local.config import TrainConfig, TrainResult
from pipeline.engine.train.local.folders import read_meta
from pipeline.engine.train.local.trainer import is_main_process

BASE, FINE_TUNE, PRETRAINED_FINE_TUNE = "base", "fine-tune", "pretrained-fine-tune"
MODULE = "pipeline.engine.train.local.launch"
#: Lines of a failed multi-process run's output that its error shows.
TAIL_LINES = 40


@dataclass(frozen=True)
class Job:
    """One training run: the function that trains (``BASE``: the built-in model from scratch,
    ``FINE_TUNE``: the built-in model from ``base_dir``, ``PRETRAINED_FINE_TUNE``: a transformers
    model from ``base_dir``), its examples as JSONL files (``train``, ``validation``: {"source",
    "target"} pairs for the built-in model, chat records {"messages": [...]} as exported for a
    pretrained one), its configs (as ``dataclasses.asdict`` makes them) and the model folder."""

    function: str
    model_dir: str
    train: str
    train_config: dict[str, Any]
    validation: str | None = None
    model_config: dict[str, Any] | None = None
    base_dir: str | None = None

    def save(self, path: Path) -> Path:
        path.write_text(json.dumps(asdict(self), indent=2))
        return path

    @classmethod
    def load(cls, path: Path) -> "Job":
        return cls(**json.loads(Path(path).read_text()))


def write_job(folder: Path, function: str, model_dir: Path, train: tuple[list, list[str]],
              validation: tuple[list, list[str]] | None, train_config: TrainConfig,
              model_config: seq2seq.ModelConfig | None = None, base_dir: Path | None = None) -> Job:
    """A job whose (source or prompt, target) examples are written into ``folder``."""
    write = _write_chat if function == PRETRAINED_FINE_TUNE else _write_pairs
    return Job(function=function, model_dir=str(model_dir), train=write(folder / "train.jsonl", *train),
               train_config=asdict(train_config),
               validation=write(folder / "validation.jsonl", *validation) if validation else None,
               model_config=asdict(model_config) if model_config else None,
               base_dir=str(base_dir) if base_dir else None)


def run(job: Job, log: Callable[[str], None]) -> TrainResult:
    """Train as ``job`` says, in this process (one of several under torchrun)."""
    config = TrainConfig.from_dict(job.train_config)
    if job.function == BASE:
        return seq2seq.train_base(Path(job.model_dir), *_read_pairs(job.train),
                                  seq2seq.ModelConfig(**job.model_config), config, log)
    if job.function == FINE_TUNE:
        validation = _read_pairs(job.validation) if job.validation else None
        return seq2seq.fine_tune(Path(job.base_dir), Path(job.model_dir), *_read_pairs(job.train), config,
                                 validation=validation, log=log)
    if job.function == PRETRAINED_FINE_TUNE:
        validation = pretrained.chat_records(job.validation) if job.validation else None
        return pretrained.fine_tune_records(Path(job.base_dir), Path(job.model_dir),
                                            pretrained.chat_records(job.train), config, validation, log)
    raise ValueError(f"unknown training function {job.function!r}: {BASE}, {FINE_TUNE} or {PRETRAINED_FINE_TUNE}")


def train_in_processes(job: Job, processes: int, log: Callable[[str], None]) -> TrainResult:
    """Run ``job`` in this process (``processes`` 1) or in that many data-parallel processes
    through torchrun, their output streamed to ``log``; the result is the model folder's."""
    if processes <= 1:
        return run(job, log)
    with tempfile.TemporaryDirectory(prefix="flywheel-job-") as folder:
        path = job.save(Path(folder) / "job.json")
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                   "-m", MODULE, str(path)]
        _stream(command, processes, log)
    return TrainResult.from_dict(read_meta(Path(job.model_dir))["result"])


@record  # under torchrun, a process's error (its traceback) ends up in torchrun's summary
def main(argv: list[str] | None = None) -> None:
    [path] = sys.argv[1:] if argv is None else argv
    run(Job.load(Path(path)), _print if is_main_process() else _quiet)


def _stream(command: list[str], processes: int, log: Callable[[str], None]) -> None:
    """Run ``command``, each line of its output to ``log``; an error with the last lines if it fails."""
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        for line in process.stdout:
            tail.append(line.rstrip())
            log(tail[-1])
        code = process.wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if code != 0:
        raise RuntimeError(f"training in {processes} processes failed (exit status {code}); its last lines:\n"
                           + "\n".join(tail))


def _write_pairs(path: Path, sources: list[str], targets: list[str]) -> str:
    with open(path, "w", encoding="utf-8") as handle:
        for source, target in zip(sources, targets, strict=True):
            handle.write(json.dumps({"source": source, "target": target}) + "\n")
    return str(path)


def _read_pairs(path: str) -> tuple[list[str], list[str]]:
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r["source"] for r in rows], [r["target"] for r in rows]


def _write_chat(path: Path, prompts: list[pretrained.Messages], targets: list[str]) -> str:
    """The examples as exported chat records: the prompt's messages, then the assistant's."""
    with open(path, "w", encoding="utf-8") as handle:
        for prompt, target in zip(prompts, targets, strict=True):
            record = pretrained.chat_record(prompt, target)
            handle.write(json.dumps({"messages": record["prompt"] + record["completion"]}) + "\n")
    return str(path)


def _print(line: str) -> None:
    print(line, flush=True)


def _quiet(line: str) -> None:
    pass


if __name__ == "__main__":
    main()
