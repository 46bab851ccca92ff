"""The training loop shared by the built-in model and pretrained transformers models.

Plain PyTorch: AdamW, linear warmup then cosine decay, gradient clipping, batches of similar
length. Progress and loss go to ``log``; the model, optimizer, step, RNG states and position in
the data order are checkpointed under ``checkpoint_dir`` every so often, and a run that finds a
checkpoint of the same data and configuration there continues from it instead of restarting.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from pipeline.engine.core.versions import HASHED_IF_SET, NOT_HASHED, hashed_fields
from pipeline.engine.train.local import checkpoint

LOG_EVERY_STEPS = 50
LOG_EVERY_SECONDS = 15.0

#: (source ids, target ids); a causal LM's are (prompt ids, completion ids).
Pairs = list[tuple[list[int], list[int]]]
#: Tensors of a batch for ``model(**batch)`` (labels included) and the tokens it holds.
Collate = Callable[[Pairs], tuple[dict[str, torch.Tensor], int]]


@dataclass(frozen=True)
class LoraSettings:
    """LoRA adapters (peft): rank, scaling, dropout and the modules adapted (None: peft's default
    for the architecture, e.g. q and v of attention; ("all-linear",): every linear layer)."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] | None = None


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; the defaults are the demo's base training.

    Training stops after ``epochs`` over the data, ``max_steps`` or ``max_seconds``, whichever
    comes first. The learning rate warms up linearly, then decays (cosine, to a tenth) over
    steps or over ``max_seconds``, whichever is further along, so a run on a slow machine
    still ends annealed. Runs are reproducible from ``seed`` when ``max_seconds`` is None, or
    when the machine is fast enough that the steps always lead. ``lora`` (pretrained models
    only) trains adapters instead of every weight; ``device`` "auto" is cuda when available.
    """

    epochs: float = 11.0
    batch_size: int = 16
    learning_rate: float = 3e-3
    warmup_steps: int = 200
    seed: int = 0
    max_steps: int | None = None
    max_seconds: float | None = 285.0
    lora: LoraSettings | None = field(default=None, metadata=HASHED_IF_SET)
    device: str = field(default="auto", metadata=NOT_HASHED)
    checkpoint_every_seconds: float | None = field(default=60.0, metadata=NOT_HASHED)
    checkpoint_every_steps: int | None = field(default=None, metadata=NOT_HASHED)


@dataclass
class TrainResult:
    """What a training run did; ``loss_history`` holds (step, mean loss since the last entry)."""

    steps: int
    epochs: float
    seconds: float
    train_loss: float
    validation_loss: float | None
    tokens_per_second: float
    loss_history: list[tuple[int, float]] = field(default_factory=list)
    resumed_from_step: int = 0
    checkpoint_seconds: float = 0.0
    trainable_parameters: int = 0


def resolve_device(name: str) -> torch.device:
    """``auto``: cuda when available, else cpu; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def set_threads() -> None:
    """One torch thread per core, or FLYWHEEL_TORCH_THREADS (fewer helps on a machine shared with others)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(max(1, int(os.environ.get("FLYWHEEL_TORCH_THREADS") or cores)))


def autocast(device: torch.device):
    """bf16 autocast on a GPU that supports it; nothing on the CPU."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def batches(data: Pairs, batch_size: int, rng: random.Random) -> list[Pairs]:
    """One epoch of batches of similar source length, in random order."""
    order = list(range(len(data)))
    rng.shuffle(order)
    pool = batch_size * 50
    out = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start:start + pool], key=lambda i: len(data[i][0]))
        out += [[data[i] for i in chunk[b:b + batch_size]] for b in range(0, len(chunk), batch_size)]
    rng.shuffle(out)
    return out


def learning_rate(config: TrainConfig, step: int, total: int, elapsed: float) -> float:
    """Linear warmup, then cosine decay to a tenth, by steps or by time, whichever is further along."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    done = step / total if not config.max_seconds else max(step / total, elapsed / config.max_seconds)
    start = config.warmup_steps / total
    progress = min(1.0, max(0.0, (done - start) / (1 - start))) if start < 1 else 1.0
    return config.learning_rate * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))


def total_steps(config: TrainConfig, examples: int) -> tuple[int, int]:
    """(steps per epoch, steps the run takes unless time runs out)."""
    per_epoch = math.ceil(examples / config.batch_size)
    total = max(1, math.ceil(config.epochs * per_epoch))
    return per_epoch, total if config.max_steps is None else min(total, config.max_steps)


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def train(model: torch.nn.Module, data: Pairs, collate: Collate, config: TrainConfig,
          validation: Pairs | None, log: Callable[[str], None], checkpoint_dir: Path | None = None) -> TrainResult:
    """Train ``model`` (its trainable parameters) on ``data``; resumes from ``checkpoint_dir``."""
    set_threads()
    device = resolve_device(config.device)
    model.to(device)
    steps_per_epoch, total = total_steps(config, len(data))
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=0.01)
    rng = random.Random(config.seed)
    state = checkpoint.State(epoch_rng=rng.getstate())
    fingerprint = _fingerprint(data, config)
    if checkpoint_dir is not None:
        found = checkpoint.load_latest(checkpoint_dir, fingerprint, model, optimizer, log)
        state = found or state
    rng.setstate(state.epoch_rng)
    resumed_from = state.step
    model.train()
    started = time.monotonic() - state.elapsed
    last_log = last_checkpoint = time.monotonic()
    checkpoint_seconds = 0.0
    stop = state.step >= total
    while not stop:
        epoch_rng = rng.getstate()
        epoch = batches(data, config.batch_size, rng)
        for index in range(state.batch_index, len(epoch)):
            rate = learning_rate(config, state.step, total, time.monotonic() - started)
            for group in optimizer.param_groups:
                group["lr"] = rate
            batch, tokens = collate(epoch[index])
            with autocast(device):
                loss = model(**to_device(batch, device)).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            state.step += 1
            state.window.append(loss.item())
            state.tokens += tokens
            now = time.monotonic()
            elapsed = now - started
            stop = state.step >= total or (config.max_seconds is not None and elapsed >= config.max_seconds)
            if state.step % LOG_EVERY_STEPS == 0 or now - last_log >= LOG_EVERY_SECONDS or stop:
                state.history.append((state.step, sum(state.window) / len(state.window)))
                state.window = []
                last_log = now
                log(f"step {state.step}/{total} loss {state.history[-1][1]:.4f} lr {rate:.2e} elapsed {elapsed:.0f}s")
            if stop:
                break
            if checkpoint_dir is not None and _due(config, state.step, now - last_checkpoint):
                state.elapsed, state.epoch_rng, state.batch_index = elapsed, epoch_rng, index + 1
                spent = checkpoint.save(checkpoint_dir, state, fingerprint, model, optimizer)
                checkpoint_seconds += spent
                last_checkpoint = time.monotonic()
                log(f"checkpoint at step {state.step} ({spent:.2f}s)")
        state.batch_index = 0
    seconds = time.monotonic() - started
    validation_loss = evaluate_loss(model, validation, collate, config.batch_size, device) if validation else None
    if validation_loss is not None:
        log(f"validation loss {validation_loss:.4f}")
    model.eval()
    return TrainResult(steps=state.step, epochs=state.step / steps_per_epoch, seconds=seconds,
                       train_loss=state.history[-1][1] if state.history else float("nan"),
                       validation_loss=validation_loss, tokens_per_second=state.tokens / seconds if seconds else 0.0,
                       loss_history=state.history, resumed_from_step=resumed_from,
                       checkpoint_seconds=checkpoint_seconds, trainable_parameters=sum(p.numel() for p in parameters))


@torch.no_grad()
def evaluate_loss(model: torch.nn.Module, data: Pairs, collate: Collate, batch_size: int,
                  device: torch.device) -> float:
    """Mean token loss over ``data``."""
    model.eval()
    total = count = 0.0
    for start in range(0, len(data), batch_size):
        batch, _ = collate(data[start:start + batch_size])
        n = int((batch["labels"] != -100).sum())
        with autocast(device):
            total += model(**to_device(batch, device)).loss.item() * n
        count += n
    return total / count


def _due(config: TrainConfig, step: int, since_last: float) -> bool:
    by_steps = config.checkpoint_every_steps is not None and step % config.checkpoint_every_steps == 0
    by_time = config.checkpoint_every_seconds is not None and since_last >= config.checkpoint_every_seconds
    return by_steps or by_time


def _fingerprint(data: Pairs, config: TrainConfig) -> str:
    """What a checkpoint must match to be resumed: the data and the identity-bearing settings."""
    digest = hashlib.sha256(json.dumps(hashed_fields(config), sort_keys=True).encode())
    for source, target in data:
        digest.update(json.dumps([source, target]).encode())
    return digest.hexdigest()[:16]
