"""The Hugging Face trainer set up for a flywheel run, whichever trainer class the model needs.

``arguments`` turns a TrainConfig into training arguments (AdamW with weight decay 0.01,
gradient clipping at 1.0, linear warmup then cosine to a tenth, batches of similar length,
checkpoints under the model folder's ``checkpoints/``); ``fit`` runs the trainer, resuming from
the newest checkpoint when it was made with the same data and settings (its fingerprint), and
reads the TrainResult back from the trainer's state. We add a callback (progress lines in the
run's log, the wall-clock limit, the loss of the last step, the fingerprint in each checkpoint)
and a batch order drawn from the seed and the epoch (:class:`SeededBatches`), so that a run
resumed mid-epoch sees the batches an uninterrupted one does.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from contextlib import suppress
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from transformers import PrinterCallback, Seq2SeqTrainer, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import TrainerState
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint
from trl import SFTTrainer

from pipeline.engine.core.versions import hashed_fields
from pipeline.engine.train.local.config import TrainConfig, TrainResult
from pipeline.engine.train.local.devices import resolve_device, set_threads
from pipeline.engine.train.local.folders import CHECKPOINTS, prepare

FINGERPRINT_FILE = "flywheel-fingerprint.txt"


class SeededBatches:
    """Trainer mixin: batches of similar length in an order drawn from ``data_seed`` and the epoch.

    The trainer's length-grouped sampler draws from the global RNG, so after a resume mid-epoch
    the epoch's order differs; this one is the same after a resume and on every process.
    """

    def _get_train_sampler(self, train_dataset=None):
        sampler = super()._get_train_sampler(train_dataset)
        if isinstance(sampler, LengthGroupedSampler):
            return _EpochSeededSampler(sampler.batch_size, lengths=sampler.lengths, seed=self.args.data_seed)
        return sampler


class SeededSeq2SeqTrainer(SeededBatches, Seq2SeqTrainer):
    """transformers' Seq2SeqTrainer with the seeded batch order."""


class SeededSFTTrainer(SeededBatches, SFTTrainer):
    """TRL's SFTTrainer with the seeded batch order, and the model's own loss.

    The loss is the model's cross-entropy on the completion's tokens (the collator's labels), as
    in :class:`transformers.Trainer`: SFTTrainer's own loss runs a tiled LM head that also
    computes an entropy and a top-1 accuracy on every step, gathered across processes, which
    made a small model with LoRA train 1.75x slower than a bare loop on the same batches
    (1.08x without; ``benchmarks/train.py``).
    """

    compute_loss = Trainer.compute_loss


def arguments(arguments_class: type[TrainingArguments], config: TrainConfig, model_dir: Path, examples: int,
              **extra: Any) -> TrainingArguments:
    """``arguments_class`` (TrainingArguments or a trainer's subclass of it) for ``config`` on
    ``examples`` training examples; ``extra`` adds what that class needs."""
    device = resolve_device(config.device)
    bf16 = config.mixed_precision == "bf16" or (
        config.mixed_precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported())
    every = config.checkpoint_every_steps
    return arguments_class(
        output_dir=str(Path(model_dir) / CHECKPOINTS),
        per_device_train_batch_size=config.batch_size, per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        activation_checkpointing=config.gradient_checkpointing,
        max_steps=config.planned_steps(examples, world_size()),
        learning_rate=config.learning_rate, weight_decay=0.01, max_grad_norm=1.0,
        warmup_steps=config.warmup_steps, lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr_rate": 0.1},
        seed=config.seed, data_seed=config.seed, train_sampling_strategy="group_by_length",
        logging_strategy="steps", logging_steps=config.logging_steps,
        save_strategy="steps" if every else "no", save_steps=every or 1, save_total_limit=1,
        eval_strategy="no", prediction_loss_only=True, include_num_input_tokens_seen="non_padding",
        bf16=bf16, fp16=config.mixed_precision == "fp16", use_cpu=device.type == "cpu",
        ddp_backend="gloo" if device.type == "cpu" and world_size() > 1 else None,
        dataloader_pin_memory=device.type == "cuda", report_to="none", disable_tqdm=True, **extra)


def world_size() -> int:
    """The number of data-parallel processes this run is one of (torchrun or accelerate sets WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", 1))


def is_main_process() -> bool:
    """True in the process that writes the model folder and logs (rank 0, or the only one)."""
    return int(os.environ.get("RANK", 0)) == 0


def prepare_folder(args: TrainingArguments, model_dir: Path, write_first: Callable[[Path], object]) -> None:
    """Make ``model_dir`` ready for the run and ``write_first`` into it (the tokenizer, say), in
    the main process only, while the others wait."""
    with args.main_process_first(local=False, desc="model folder"):
        if is_main_process():
            prepare(Path(model_dir))
            write_first(Path(model_dir))


def fingerprint(examples: Iterable[Any], config: TrainConfig) -> str:
    """What a checkpoint must match to be resumed: the examples and the identity-bearing settings."""
    digest = hashlib.sha256(json.dumps(hashed_fields(config), sort_keys=True).encode())
    for example in examples:
        digest.update(json.dumps(example, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def fit(trainer: Trainer, config: TrainConfig, data_fingerprint: str, log: Callable[[str], None]) -> TrainResult:
    """Run ``trainer`` (from its resumable checkpoint), evaluate its eval dataset; the result."""
    set_threads()
    args, checkpoints = trainer.args, Path(trainer.args.output_dir)
    with args.main_process_first(local=False, desc="checkpoint"):
        checkpoint = resumable_checkpoint(checkpoints, data_fingerprint, log)
    resumed = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json")) if checkpoint else None
    progress = _Progress(config.max_seconds, data_fingerprint, log)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(progress)
    seconds = trainer.train(resume_from_checkpoint=checkpoint).metrics["train_runtime"]
    validation_loss = trainer.evaluate()["eval_loss"] if trainer.eval_dataset is not None else None
    if validation_loss is not None:
        log(f"validation loss {validation_loss:.4f}")
    # every process is past the trainer's own end of training (which lists the checkpoints
    # folder) before the main one removes that folder
    trainer.accelerator.wait_for_everyone()
    if is_main_process():
        with suppress(OSError):
            checkpoints.rmdir()  # made by the trainer, left empty when no checkpoint was due
    state = trainer.state
    history = [(entry["step"], entry["loss"]) for entry in state.log_history if "loss" in entry]
    tokens = state.num_input_tokens_seen
    session_tokens = tokens - (resumed.num_input_tokens_seen if resumed else 0)
    return TrainResult(
        steps=state.global_step, epochs=state.epoch or 0.0, seconds=seconds,
        train_loss=history[-1][1] if history else float("nan"), validation_loss=validation_loss,
        tokens_per_second=session_tokens / seconds if seconds else 0.0, loss_history=history,
        resumed_from_step=resumed.global_step if resumed else 0,
        trainable_parameters=sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        planned_steps=state.max_steps,
        planned_epochs=config.epochs,
        tokens=tokens, stopped_early=progress.stopped_early, processes=args.world_size)


def resumable_checkpoint(checkpoints: Path, data_fingerprint: str, log: Callable[[str], None]) -> str | None:
    """The newest checkpoint when it was made with this fingerprint; otherwise None, and the
    checkpoints (of other data or settings) removed."""
    newest = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    if newest is None:
        return None
    mark = Path(newest) / FINGERPRINT_FILE
    name = Path(newest).name
    if mark.is_file() and mark.read_text() == data_fingerprint:
        step = TrainerState.load_from_json(str(Path(newest) / "trainer_state.json")).global_step
        log(f"resuming from checkpoint {name} (step {step})")
        return newest
    log(f"ignoring checkpoint {name}: it was made with other data or settings")
    shutil.rmtree(checkpoints)
    return None


class _Progress(TrainerCallback):
    """Progress lines in the run's log (main process), the wall-clock limit (``max_seconds``),
    the loss logged at the last step, and the data fingerprint written into each checkpoint."""

    def __init__(self, max_seconds: float | None, data_fingerprint: str, log: Callable[[str], None]):
        self.max_seconds, self.fingerprint, self.log = max_seconds, data_fingerprint, log
        self.started = 0.0
        self.stopped_early = False

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        if (self.max_seconds is not None and state.global_step < state.max_steps
                and _same_on_every_process(time.monotonic() - self.started >= self.max_seconds)):
            control.should_training_stop = self.stopped_early = True
        if control.should_training_stop:  # the last step: its loss logged, a checkpoint only when one is due
            control.should_log = True
            control.should_save = args.save_strategy == "steps" and state.global_step % args.save_steps == 0

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs and "loss" in logs:
            self.log(f"step {state.global_step}/{state.max_steps} loss {logs['loss']:.4f} "
                     f"lr {logs.get('learning_rate', 0.0):.2e} elapsed {time.monotonic() - self.started:.0f}s")

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            (folder / FINGERPRINT_FILE).write_text(self.fingerprint)
            self.log(f"checkpoint at step {state.global_step}")


class _EpochSeededSampler(LengthGroupedSampler):
    """Length-grouped indices from a generator seeded with ``seed`` + the epoch (the trainer sets it)."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        super().__init__(batch_size, lengths=lengths)
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.generator = torch.Generator().manual_seed(self.seed + epoch)


def _same_on_every_process(flag: bool) -> bool:
    """The main process's ``flag`` on every process, so that all stop at the same step."""
    if not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return flag
    box = [flag]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]
