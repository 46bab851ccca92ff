"""A small T5-style encoder-decoder built from a config, trained here, fine-tuned by warm start.

``train_base`` trains the tokenizer and a model from scratch (the stand-in for a pretrained
LLM); ``fine_tune`` continues from a base checkpoint with its tokenizer frozen, so the
vocabulary and embeddings never change; ``LocalSeq2Seq`` loads either and generates greedily.
Sources and targets go through literal masking on the way in and out.

A model directory holds a transformers checkpoint (``config.json``, ``model.safetensors``:
``T5ForConditionalGeneration.from_pretrained`` reads it too), ``tokenizer.json`` and ``flywheel.json``
(configs and training figures). It is written under a temporary name and renamed into place,
so a directory with ``flywheel.json`` is always complete.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_model, save_model
from tokenizers import Tokenizer
from transformers import T5Config, T5ForConditionalGeneration

from pipeline.engine.local_model.literals import mask_source, mask_target, unmask
from pipeline.engine.local_model.tokenizer import (
    EOS_ID, FILE_NAME as TOKENIZER_FILE, PAD_ID, decode, encode, load_tokenizer, save_tokenizer, train_tokenizer,
)

META_FILE = "flywheel.json"
WEIGHTS_FILE = "model.safetensors"
LOG_EVERY_STEPS = 50
LOG_EVERY_SECONDS = 15.0


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the encoder-decoder; the defaults are the demo's size."""

    vocab_size: int = 2048
    d_model: int = 64
    num_layers: int = 2
    num_decoder_layers: int = 2
    num_heads: int = 4
    d_ff: int = 256
    dropout: float = 0.0
    max_source_tokens: int = 160
    max_target_tokens: int = 128


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; the defaults are the demo's base training.

    Training stops after ``epochs`` over the data, ``max_steps`` or ``max_seconds``, whichever
    comes first. The learning rate warms up linearly, then decays (cosine, to a tenth) over
    steps or over ``max_seconds``, whichever is further along, so a run on a slow machine
    still ends annealed. Runs are reproducible from ``seed`` when ``max_seconds`` is None, or
    when the machine is fast enough that the steps always lead.
    """

    epochs: float = 11.0
    batch_size: int = 16
    learning_rate: float = 3e-3
    warmup_steps: int = 200
    seed: int = 0
    max_steps: int | None = None
    max_seconds: float | None = 285.0


#: Recommended settings for fine-tuning the demo base on ~1,500-2,000 curated examples.
FINE_TUNE_CONFIG = TrainConfig(epochs=20.0, batch_size=16, learning_rate=1.5e-3, warmup_steps=50,
                               max_seconds=140.0)


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


def train_base(model_dir: Path, sources: list[str], targets: list[str], model_config: ModelConfig,
               train_config: TrainConfig, log: Callable[[str], None] = print) -> TrainResult:
    """Train a tokenizer and a model from scratch on (source, target) pairs; save under ``model_dir``."""
    _check_pairs(sources, targets)
    _seed(train_config.seed)
    masked_sources, masked_targets = _mask(sources, targets)
    tokenizer = train_tokenizer(masked_sources + masked_targets, model_config.vocab_size)
    model_config = replace(model_config, vocab_size=tokenizer.get_vocab_size())
    model = T5ForConditionalGeneration(_t5_config(model_config))
    log(f"base model: {_parameter_count(model):,} parameters, vocabulary {model_config.vocab_size}")
    data = _encode_pairs(tokenizer, model_config, masked_sources, masked_targets)
    result = _train(model, data, train_config, None, log)
    _save(model_dir, model, lambda directory: save_tokenizer(tokenizer, directory),
          {"model_config": asdict(model_config), "train_config": asdict(train_config),
           "result": asdict(result), "base_dir": None})
    return result


def fine_tune(base_dir: Path, model_dir: Path, sources: list[str], targets: list[str],
              train_config: TrainConfig, validation: tuple[list[str], list[str]] | None = None,
              log: Callable[[str], None] = print) -> TrainResult:
    """Continue training the model in ``base_dir`` on (source, target) pairs; save under ``model_dir``.

    The base's weights are the starting point and its tokenizer is reused unchanged.
    """
    _check_pairs(sources, targets)
    _seed(train_config.seed)
    base = LocalSeq2Seq.load(base_dir)
    log(f"fine-tuning from {base_dir}: {_parameter_count(base.model):,} parameters")
    data = _encode_pairs(base.tokenizer, base.config, *_mask(sources, targets))
    held_out = _encode_pairs(base.tokenizer, base.config, *_mask(*validation)) if validation else None
    result = _train(base.model, data, train_config, held_out, log)
    _save(model_dir, base.model, lambda directory: shutil.copy(Path(base_dir) / TOKENIZER_FILE, directory),
          {"model_config": asdict(base.config), "train_config": asdict(train_config),
           "result": asdict(result), "base_dir": str(base_dir)})
    return result


class LocalSeq2Seq:
    """A trained model with its tokenizer, ready to generate."""

    def __init__(self, model: T5ForConditionalGeneration, tokenizer: Tokenizer, config: ModelConfig):
        self.model = model
        self.tokenizer = tokenizer
        self.config = config

    @classmethod
    def load(cls, model_dir: Path) -> "LocalSeq2Seq":
        """The model saved in ``model_dir`` by ``train_base`` or ``fine_tune``."""
        model_dir = Path(model_dir)
        meta_path = model_dir / META_FILE
        if not meta_path.exists():
            raise FileNotFoundError(f"no complete local model in {model_dir} (missing {META_FILE})")
        meta = json.loads(meta_path.read_text())
        model = T5ForConditionalGeneration(T5Config.from_pretrained(model_dir))
        load_model(model, model_dir / WEIGHTS_FILE)
        model.eval()
        return cls(model, load_tokenizer(model_dir), ModelConfig(**meta["model_config"]))

    @torch.no_grad()
    def generate(self, sources: list[str], batch_size: int = 64) -> list[str]:
        """Greedy decoding of each source, literals restored; batched by similar length."""
        _set_threads()
        self.model.eval()
        masked = [mask_source(s) for s in sources]
        ids = encode(self.tokenizer, [m.text for m in masked], self.config.max_source_tokens, keep_end=True)
        outputs: list[str] = [""] * len(sources)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            input_ids, attention_mask = _pad([ids[i] for i in chunk])
            generated = self.model.generate(
                input_ids=input_ids, attention_mask=attention_mask, do_sample=False, num_beams=1,
                max_new_tokens=self.config.max_target_tokens,
                decoder_start_token_id=PAD_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID,
            )
            for i, row in zip(chunk, generated.tolist()):
                outputs[i] = unmask(decode(self.tokenizer, row[1:]), masked[i].literals)
        return outputs


# --- internals ---------------------------------------------------------------------------------

Pairs = list[tuple[list[int], list[int]]]


def _check_pairs(sources: list[str], targets: list[str]) -> None:
    if len(sources) != len(targets) or not sources:
        raise ValueError(f"need as many targets as sources, and some: got {len(sources)} and {len(targets)}")


def _seed(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def _set_threads() -> None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(max(1, cores))


def _t5_config(config: ModelConfig) -> T5Config:
    return T5Config(
        vocab_size=config.vocab_size, d_model=config.d_model, d_kv=config.d_model // config.num_heads,
        d_ff=config.d_ff, num_layers=config.num_layers, num_decoder_layers=config.num_decoder_layers,
        num_heads=config.num_heads, dropout_rate=config.dropout, feed_forward_proj="relu",
        pad_token_id=PAD_ID, eos_token_id=EOS_ID, decoder_start_token_id=PAD_ID,
        tie_word_embeddings=True,
    )


def _parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _mask(sources: list[str], targets: list[str]) -> tuple[list[str], list[str]]:
    """Sources and targets with their literals masked alike."""
    masked = [mask_source(s) for s in sources]
    return [m.text for m in masked], [mask_target(t, m.literals) for m, t in zip(masked, targets)]


def _encode_pairs(tokenizer: Tokenizer, config: ModelConfig, sources: list[str], targets: list[str]) -> Pairs:
    source_ids = encode(tokenizer, sources, config.max_source_tokens, keep_end=True)
    target_ids = encode(tokenizer, targets, config.max_target_tokens)
    return list(zip(source_ids, target_ids))


def _pad(rows: list[list[int]], value: int = PAD_ID) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [value] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    return ids, mask


def _batch(pairs: Pairs) -> dict[str, torch.Tensor]:
    input_ids, attention_mask = _pad([s for s, _ in pairs])
    labels, _ = _pad([t for _, t in pairs], value=-100)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def _batches(data: Pairs, batch_size: int, rng: random.Random) -> list[Pairs]:
    """One epoch of batches of similar source length, in random order."""
    order = list(range(len(data)))
    rng.shuffle(order)
    pool = batch_size * 50
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start:start + pool], key=lambda i: len(data[i][0]))
        batches += [[data[i] for i in chunk[b:b + batch_size]] for b in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def _learning_rate(config: TrainConfig, step: int, total: int, elapsed: float) -> float:
    """Linear warmup, then cosine decay to a tenth, by steps or by time, whichever is further along."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    done = step / total if not config.max_seconds else max(step / total, elapsed / config.max_seconds)
    start = config.warmup_steps / total
    progress = min(1.0, max(0.0, (done - start) / (1 - start))) if start < 1 else 1.0
    return config.learning_rate * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))


def _train(model: T5ForConditionalGeneration, data: Pairs, config: TrainConfig,
           validation: Pairs | None, log: Callable[[str], None]) -> TrainResult:
    _set_threads()
    rng = random.Random(config.seed)
    steps_per_epoch = math.ceil(len(data) / config.batch_size)
    total = max(1, math.ceil(config.epochs * steps_per_epoch))
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.01)
    model.train()
    history: list[tuple[int, float]] = []
    window: list[float] = []
    tokens = step = 0
    started = last_log = time.monotonic()
    stop = False
    while not stop:
        for pairs in _batches(data, config.batch_size, rng):
            learning_rate = _learning_rate(config, step, total, time.monotonic() - started)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate
            batch = _batch(pairs)
            loss = model(**batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            window.append(loss.item())
            tokens += int(batch["attention_mask"].sum()) + int((batch["labels"] != -100).sum())
            elapsed = time.monotonic() - started
            stop = step >= total or (config.max_seconds is not None and elapsed >= config.max_seconds)
            if step % LOG_EVERY_STEPS == 0 or time.monotonic() - last_log >= LOG_EVERY_SECONDS or stop:
                history.append((step, sum(window) / len(window)))
                window = []
                last_log = time.monotonic()
                log(f"step {step}/{total} loss {history[-1][1]:.4f} "
                    f"lr {learning_rate:.2e} elapsed {elapsed:.0f}s")
            if stop:
                break
    seconds = time.monotonic() - started
    validation_loss = _loss(model, validation, config.batch_size) if validation else None
    if validation_loss is not None:
        log(f"validation loss {validation_loss:.4f}")
    model.eval()
    return TrainResult(steps=step, epochs=step / steps_per_epoch, seconds=seconds,
                       train_loss=history[-1][1], validation_loss=validation_loss,
                       tokens_per_second=tokens / seconds if seconds else 0.0, loss_history=history)


@torch.no_grad()
def _loss(model: T5ForConditionalGeneration, data: Pairs, batch_size: int) -> float:
    """Mean token loss over ``data``."""
    model.eval()
    total = count = 0.0
    for start in range(0, len(data), batch_size):
        batch = _batch(data[start:start + batch_size])
        n = int((batch["labels"] != -100).sum())
        total += model(**batch).loss.item() * n
        count += n
    return total / count


def _save(model_dir: Path, model: T5ForConditionalGeneration, write_tokenizer: Callable[[Path], None],
          meta: dict) -> None:
    """Write the model under a temporary name next to ``model_dir``, then rename it into place."""
    model_dir = Path(model_dir)
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = model_dir.with_name(f".{model_dir.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        tmp.mkdir()
        model.config.save_pretrained(tmp)
        save_model(model, str(tmp / WEIGHTS_FILE))
        write_tokenizer(tmp)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
        if model_dir.exists():
            old = model_dir.with_name(f".{model_dir.name}.old-{uuid.uuid4().hex[:8]}")
            model_dir.rename(old)
            tmp.rename(model_dir)
            shutil.rmtree(old)
        else:
            tmp.rename(model_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
