"""A small T5-style encoder-decoder built from a config, trained here, fine-tuned by warm start.

``train_base`` trains the tokenizer and a model from scratch (the stand-in for a pretrained
LLM); ``fine_tune`` continues from a base checkpoint with its tokenizer frozen, so the
vocabulary and embeddings never change; ``LocalSeq2Seq`` loads either and generates greedily.
Sources and targets go through literal masking on the way in and out.

A model directory holds a transformers checkpoint (``config.json``, ``model.safetensors``:
``T5ForConditionalGeneration.from_pretrained`` reads it too), ``tokenizer.json``, training
checkpoints under ``checkpoints/`` (a crashed run resumes from the newest) and ``flywheel.json``
(configs and training figures), written last: a directory with ``flywheel.json`` is complete.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_model, save_model
from tokenizers import Tokenizer
from transformers import T5Config, T5ForConditionalGeneration

from pipeline.engine.train.local import loop
from pipeline.engine.train.local.literals import mask_source, mask_target, unmask
from pipeline.engine.train.local.loop import Pairs, TrainConfig, TrainResult
from pipeline.engine.train.local.folders import CHECKPOINTS, WEIGHTS_FILE, prepare, read_meta, write_model
from pipeline.engine.train.local.tokenizer import (
    EOS_ID, FILE_NAME as TOKENIZER_FILE, PAD_ID, decode, encode, load_tokenizer, save_tokenizer, train_tokenizer,
)


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


#: Recommended settings for fine-tuning the demo base on ~1,500-2,000 curated examples.
FINE_TUNE_CONFIG = TrainConfig(epochs=20.0, batch_size=16, learning_rate=1.5e-3, warmup_steps=50,
                               max_seconds=140.0)


def train_base(model_dir: Path, sources: list[str], targets: list[str], model_config: ModelConfig,
               train_config: TrainConfig, log: Callable[[str], None] = print) -> TrainResult:
    """Train a tokenizer and a model from scratch on (source, target) pairs; save under ``model_dir``."""
    _check_pairs(sources, targets, train_config)
    model_dir = Path(model_dir)
    loop.seed_everything(train_config.seed)
    masked_sources, masked_targets = _mask(sources, targets)
    tokenizer = train_tokenizer(masked_sources + masked_targets, model_config.vocab_size)
    model_config = replace(model_config, vocab_size=tokenizer.get_vocab_size())
    model = T5ForConditionalGeneration(_t5_config(model_config))
    log(f"base model: {parameter_count(model):,} parameters, vocabulary {model_config.vocab_size}")
    prepare(model_dir)
    save_tokenizer(tokenizer, model_dir)
    data = _encode_pairs(tokenizer, model_config, masked_sources, masked_targets)
    result = loop.train(model, data, collate, train_config, None, log, model_dir / CHECKPOINTS)
    write_model(model_dir, lambda d: (model.config.save_pretrained(d), _save_weights(model, d)),
                {"backend": "builtin", "model_config": asdict(model_config), "train_config": asdict(train_config),
                 "result": asdict(result), "base_dir": None})
    return result


def fine_tune(base_dir: Path, model_dir: Path, sources: list[str], targets: list[str],
              train_config: TrainConfig, validation: tuple[list[str], list[str]] | None = None,
              log: Callable[[str], None] = print) -> TrainResult:
    """Continue training the model in ``base_dir`` on (source, target) pairs; save under ``model_dir``.

    The base's weights are the starting point and its tokenizer is reused unchanged.
    """
    _check_pairs(sources, targets, train_config)
    model_dir = Path(model_dir)
    loop.seed_everything(train_config.seed)
    base = LocalSeq2Seq.load(base_dir)
    log(f"fine-tuning from {base_dir}: {parameter_count(base.model):,} parameters")
    prepare(model_dir)
    shutil.copy(Path(base_dir) / TOKENIZER_FILE, model_dir)
    data = _encode_pairs(base.tokenizer, base.config, *_mask(sources, targets))
    held_out = _encode_pairs(base.tokenizer, base.config, *_mask(*validation)) if validation else None
    result = loop.train(base.model, data, collate, train_config, held_out, log, model_dir / CHECKPOINTS)
    write_model(model_dir, lambda d: (base.model.config.save_pretrained(d), _save_weights(base.model, d)),
                {"backend": "builtin", "model_config": asdict(base.config), "train_config": asdict(train_config),
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
        meta = read_meta(model_dir)
        model = T5ForConditionalGeneration(T5Config.from_pretrained(model_dir))
        load_model(model, model_dir / WEIGHTS_FILE)
        model.eval()
        return cls(model, load_tokenizer(model_dir), ModelConfig(**meta["model_config"]))

    @torch.no_grad()
    def generate(self, sources: list[str], batch_size: int = 64) -> list[str]:
        """Greedy decoding of each source, literals restored; batched by similar length."""
        loop.set_threads()
        self.model.eval()
        device = next(self.model.parameters()).device
        masked = [mask_source(s) for s in sources]
        ids = encode(self.tokenizer, [m.text for m in masked], self.config.max_source_tokens, keep_end=True)
        outputs: list[str] = [""] * len(sources)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            input_ids, attention_mask = _pad([ids[i] for i in chunk])
            generated = self.model.generate(
                input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), do_sample=False,
                num_beams=1, max_new_tokens=self.config.max_target_tokens,
                decoder_start_token_id=PAD_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID,
            )
            for i, row in zip(chunk, generated.tolist()):
                outputs[i] = unmask(decode(self.tokenizer, row[1:]), masked[i].literals)
        return outputs


def collate(pairs: Pairs) -> tuple[dict[str, torch.Tensor], int]:
    """A padded batch of (source, target) ids with its token count (sources and targets)."""
    input_ids, attention_mask = _pad([s for s, _ in pairs])
    labels, _ = _pad([t for _, t in pairs], value=-100)
    tokens = int(attention_mask.sum()) + int((labels != -100).sum())
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}, tokens


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- internals ---------------------------------------------------------------------------------

def _check_pairs(sources: list[str], targets: list[str], config: TrainConfig) -> None:
    if len(sources) != len(targets) or not sources:
        raise ValueError(f"need as many targets as sources, and some: got {len(sources)} and {len(targets)}")
    if config.lora is not None:
        raise ValueError("LoRA needs a pretrained model (model_name_or_path); the built-in model trains fully")


def _t5_config(config: ModelConfig) -> T5Config:
    return T5Config(
        vocab_size=config.vocab_size, d_model=config.d_model, d_kv=config.d_model // config.num_heads,
        d_ff=config.d_ff, num_layers=config.num_layers, num_decoder_layers=config.num_decoder_layers,
        num_heads=config.num_heads, dropout_rate=config.dropout, feed_forward_proj="relu",
        pad_token_id=PAD_ID, eos_token_id=EOS_ID, decoder_start_token_id=PAD_ID,
        tie_word_embeddings=True,
    )


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


def _save_weights(model: T5ForConditionalGeneration, directory: Path) -> None:
    save_model(model.to("cpu"), str(directory / WEIGHTS_FILE))
