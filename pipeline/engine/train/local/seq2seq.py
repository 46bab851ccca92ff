"""A small T5-style encoder-decoder built from a config, trained here, fine-tuned by warm start.

``train_base`` trains the tokenizer and a model from scratch (the stand-in for a pretrained
LLM); ``fine_tune`` continues from a base checkpoint with its tokenizer frozen, so the
vocabulary and embeddings never change; ``LocalSeq2Seq`` loads either and generates greedily.
Sources and targets go through literal masking on the way in and out.

A model directory holds a transformers checkpoint (``config.json``, ``model.safetensors``:
``T5ForConditionalGeneration.from_pretrained`` reads it too), ``tokenizer.json``, the
trainer's checkpoints under ``checkpoints/`` (a crashed run resumes from the newest) and
``flywheel.json`` (configs and training figures), written last: a directory with it is complete.
Training runs on transformers' Seq2SeqTrainer (see :mod:`.trainer`), in one process or several.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_model, save_model
from tokenizers import Tokenizer
from transformers import (
    DataCollatorForSeq2Seq, Seq2SeqTrainingArguments, T5Config, T5ForConditionalGeneration, set_seed,
)

from pipeline.engine.train.local import trainer
from pipeline.engine.train.local.config import TrainConfig, TrainResult
from pipeline.engine.train.local.devices import set_threads
from pipeline.engine.train.local.folders import WEIGHTS_FILE, read_meta, write_model
from pipeline.engine.train.local.literals import mask_source, mask_target, unmask
from pipeline.engine.train.local.tokenizer import (
    EOS_ID, FILE_NAME as TOKENIZER_FILE, PAD_ID, decode, encode, fast_tokenizer, load_tokenizer, save_tokenizer,
    train_tokenizer,
)

#: (source ids, target ids) of each example.
Pairs = list[tuple[list[int], list[int]]]


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


#: Recommended settings for fine-tuning the demo base on ~1,500-2,000 curated examples (with the
#: 1,000 replayed ones, about 2,000 steps: two to three minutes on 2 CPU cores).
FINE_TUNE_CONFIG = TrainConfig(epochs=12.0, batch_size=16, learning_rate=1.5e-3, warmup_steps=50)


def train_base(model_dir: Path, sources: list[str], targets: list[str], model_config: ModelConfig,
               train_config: TrainConfig, log: Callable[[str], None] = print) -> TrainResult:
    """Train a tokenizer and a model from scratch on (source, target) pairs; save under ``model_dir``."""
    _check_pairs(sources, targets, train_config)
    set_seed(train_config.seed)
    masked_sources, masked_targets = _mask(sources, targets)
    tokenizer = train_tokenizer(masked_sources + masked_targets, model_config.vocab_size)
    model_config = replace(model_config, vocab_size=tokenizer.get_vocab_size())
    model = T5ForConditionalGeneration(_t5_config(model_config))
    log(f"base model: {parameter_count(model):,} parameters, vocabulary {model_config.vocab_size}")
    data = _encode_pairs(tokenizer, model_config, masked_sources, masked_targets)
    return _train(model, tokenizer, model_config, data, None, train_config, Path(model_dir),
                  lambda d: save_tokenizer(tokenizer, d), None, log)


def fine_tune(base_dir: Path, model_dir: Path, sources: list[str], targets: list[str],
              train_config: TrainConfig, validation: tuple[list[str], list[str]] | None = None,
              log: Callable[[str], None] = print) -> TrainResult:
    """Continue training the model in ``base_dir`` on (source, target) pairs; save under ``model_dir``.

    The base's weights are the starting point and its tokenizer is reused unchanged.
    """
    _check_pairs(sources, targets, train_config)
    set_seed(train_config.seed)
    base = LocalSeq2Seq.load(base_dir)
    log(f"fine-tuning from {base_dir}: {parameter_count(base.model):,} parameters")
    data = _encode_pairs(base.tokenizer, base.config, *_mask(sources, targets))
    held_out = _encode_pairs(base.tokenizer, base.config, *_mask(*validation)) if validation else None
    return _train(base.model, base.tokenizer, base.config, data, held_out, train_config, Path(model_dir),
                  lambda d: shutil.copy(Path(base_dir) / TOKENIZER_FILE, d), str(base_dir), log)


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
        set_threads()
        self.model.eval()
        device = next(self.model.parameters()).device
        padder = fast_tokenizer(self.tokenizer)
        masked = [mask_source(s) for s in sources]
        ids = encode(self.tokenizer, [m.text for m in masked], self.config.max_source_tokens, keep_end=True)
        outputs: list[str] = [""] * len(sources)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            batch = padder.pad({"input_ids": [ids[i] for i in chunk]}, return_tensors="pt")
            generated = self.model.generate(
                input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                do_sample=False, num_beams=1, max_new_tokens=self.config.max_target_tokens,
                decoder_start_token_id=PAD_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID,
            )
            for i, row in zip(chunk, generated.tolist()):
                outputs[i] = unmask(decode(self.tokenizer, row[1:]), masked[i].literals)
        return outputs


def records(pairs: Pairs) -> list[dict[str, list[int]]]:
    """(source, target) ids as the trainer's examples."""
    return [{"input_ids": source, "labels": target} for source, target in pairs]


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- internals ---------------------------------------------------------------------------------

def _train(model: T5ForConditionalGeneration, tokenizer: Tokenizer, model_config: ModelConfig, data: Pairs,
           validation: Pairs | None, config: TrainConfig, model_dir: Path, write_tokenizer: Callable[[Path], object],
           base_dir: str | None, log: Callable[[str], None]) -> TrainResult:
    """Train ``model`` with Seq2SeqTrainer and save it (main process) with its metadata."""
    args = trainer.arguments(Seq2SeqTrainingArguments, config, model_dir, len(data))
    trainer.prepare_folder(args, model_dir, write_tokenizer)
    padder = fast_tokenizer(tokenizer)
    run = trainer.SeededSeq2SeqTrainer(model=model, args=args, train_dataset=records(data),
                                       eval_dataset=records(validation) if validation else None,
                                       data_collator=DataCollatorForSeq2Seq(padder), processing_class=padder)
    result = trainer.fit(run, config, trainer.fingerprint(data, config), log)
    if trainer.is_main_process():
        write_model(model_dir, lambda d: (model.config.save_pretrained(d), _save_weights(model, d)),
                    {"backend": "builtin", "model_config": asdict(model_config), "train_config": asdict(config),
                     "result": asdict(result), "base_dir": base_dir})
    return result


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


def _save_weights(model: T5ForConditionalGeneration, directory: Path) -> None:
    save_model(model.to("cpu"), str(directory / WEIGHTS_FILE))
