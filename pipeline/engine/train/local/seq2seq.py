"""A small T5-style encoder-decoder built from a config, trained here, fine-tuned by warm start.

``train_base`` trains the tokenizer and a model from scratch (the stand-in for a pretrained
LLM); ``fine_tune`` continues from a base checkpoint with its tokenizer frozen, so the
vocabulary and embeddings never change; ``LocalSeq2Seq`` loads either and generates greedily.
Training takes sources and targets as the model reads them: a task's literal masking
(:func:`mask_pairs`) is done before, and undone after generation (``generate``'s ``masker``).

Sequence lengths come from the training data unless the config sets them: the longest tokenized
source (target), rounded up to a multiple of 8, at most ``max_source_tokens_limit``
(``max_target_tokens_limit``). Examples longer than the length used are cut (a source loses its
start, a target its end), counted in the result (``sources_cut``, ``targets_cut``) and logged as
a warning. Generation uses the lengths the model trained with (its result's
``max_source_tokens_used`` and ``max_target_tokens_used``).

A model directory holds a transformers checkpoint (``config.json``, ``model.safetensors``:
``T5ForConditionalGeneration.from_pretrained`` reads it too), ``tokenizer.json``, the
trainer's checkpoints under ``checkpoints/`` (a crashed run resumes from the newest) and
``flywheel.json`` (configs and training figures), written last: a directory with it is complete.
Training runs on transformers' Seq2SeqTrainer (see :mod:`.trainer`), in one process or several.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import torch
from safetensors.torch import load_model, save_model
from tokenizers import Tokenizer
from transformers import (
    DataCollatorForSeq2Seq, Seq2SeqTrainingArguments, T5Config, T5ForConditionalGeneration, set_seed,
)

from pipeline.engine.train.local import trainer
from pipeline.engine.tasks.hooks import LiteralMasker
from pipeline.engine.train.local.config import FittedLength, TrainConfig, TrainResult, fit_length, report_length
from pipeline.engine.train.local.devices import set_threads
from pipeline.engine.train.local.folders import WEIGHTS_FILE, read_meta, write_model
from pipeline.engine.train.local.tokenizer import (
    EOS_ID, FILE_NAME as TOKENIZER_FILE, PAD_ID, decode, encode, fast_tokenizer, load_tokenizer, save_tokenizer,
    train_tokenizer,
)

#: (source ids, target ids) of each example.
Pairs = list[tuple[list[int], list[int]]]


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the encoder-decoder; the defaults are the demo's size. A token length left
    as None is sized from the training data, up to its limit."""

    vocab_size: int = 2048
    d_model: int = 64
    num_layers: int = 2
    num_decoder_layers: int = 2
    num_heads: int = 4
    d_ff: int = 256
    dropout: float = 0.0
    max_source_tokens: int | None = None
    max_target_tokens: int | None = None
    max_source_tokens_limit: int = 1024
    max_target_tokens_limit: int = 512


#: Recommended settings for fine-tuning the demo base on ~2,000-2,500 curated examples (with the
#: 1,000 replayed ones, about 1,900 steps: three to four minutes on 2 CPU cores).
FINE_TUNE_CONFIG = TrainConfig(epochs=9.0, batch_size=16, learning_rate=1.5e-3, warmup_steps=50)


def train_base(model_dir: Path, sources: list[str], targets: list[str], model_config: ModelConfig,
               train_config: TrainConfig, log: Callable[[str], None] = print) -> TrainResult:
    """Train a tokenizer and a model from scratch on (source, target) pairs; save under ``model_dir``."""
    _check_pairs(sources, targets, train_config)
    set_seed(train_config.seed)
    tokenizer = train_tokenizer(sources + targets, model_config.vocab_size)
    model_config = replace(model_config, vocab_size=tokenizer.get_vocab_size())
    model = T5ForConditionalGeneration(_t5_config(model_config))
    log(f"base model: {parameter_count(model):,} parameters, vocabulary {model_config.vocab_size}")
    data, lengths = _encode_training(tokenizer, model_config, sources, targets, log)
    return _train(model, tokenizer, model_config, data, None, lengths, train_config, Path(model_dir),
                  lambda d: save_tokenizer(tokenizer, d), None, log)


def fine_tune(base_dir: Path, model_dir: Path, sources: list[str], targets: list[str],
              train_config: TrainConfig, validation: tuple[list[str], list[str]] | None = None,
              log: Callable[[str], None] = print) -> TrainResult:
    """Continue training the model in ``base_dir`` on (source, target) pairs; save under ``model_dir``.

    The base's weights are the starting point and its tokenizer is reused unchanged; token
    lengths the base's config leaves to the data are sized from this run's data.
    """
    _check_pairs(sources, targets, train_config)
    set_seed(train_config.seed)
    base = LocalSeq2Seq.load(base_dir)
    log(f"fine-tuning from {base_dir}: {parameter_count(base.model):,} parameters")
    data, lengths = _encode_training(base.tokenizer, base.config, sources, targets, log)
    held_out = _encode_pairs(base.tokenizer, *validation, *lengths) if validation else None
    return _train(base.model, base.tokenizer, base.config, data, held_out, lengths, train_config, Path(model_dir),
                  lambda d: shutil.copy(Path(base_dir) / TOKENIZER_FILE, d), str(base_dir), log)


def mask_pairs(masker: LiteralMasker | None, sources: list[str], targets: list[str]) -> tuple[list[str], list[str]]:
    """Sources and targets as the model reads them: their literals masked alike by ``masker``
    (a task's, :func:`pipeline.engine.tasks.hooks.literal_masker`); as they are without one."""
    if masker is None:
        return sources, targets
    masked = [masker.mask_source(s) for s in sources]
    return [m.text for m in masked], [masker.mask_target(t, m.literals) for m, t in zip(masked, targets)]


class LocalSeq2Seq:
    """A trained model with its tokenizer and the token lengths it trained with, ready to generate."""

    def __init__(self, model: T5ForConditionalGeneration, tokenizer: Tokenizer, config: ModelConfig,
                 max_source_tokens: int, max_target_tokens: int):
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.max_source_tokens, self.max_target_tokens = max_source_tokens, max_target_tokens

    @classmethod
    def load(cls, model_dir: Path) -> "LocalSeq2Seq":
        """The model saved in ``model_dir`` by ``train_base`` or ``fine_tune``."""
        model_dir = Path(model_dir)
        meta = read_meta(model_dir)
        model = T5ForConditionalGeneration(T5Config.from_pretrained(model_dir))
        load_model(model, model_dir / WEIGHTS_FILE)
        model.eval()
        config, result = ModelConfig(**meta["model_config"]), meta.get("result") or {}
        return cls(model, load_tokenizer(model_dir), config,
                   result.get("max_source_tokens_used") or config.max_source_tokens or config.max_source_tokens_limit,
                   result.get("max_target_tokens_used") or config.max_target_tokens or config.max_target_tokens_limit)

    @torch.no_grad()
    def generate(self, sources: list[str], batch_size: int = 64, masker: LiteralMasker | None = None) -> list[str]:
        """Greedy decoding of each source, batched by similar length; with the ``masker`` the model
        trained with (see :func:`mask_pairs`), literals are masked in and restored in the output."""
        set_threads()
        self.model.eval()
        device = next(self.model.parameters()).device
        padder = fast_tokenizer(self.tokenizer)
        masked = [masker.mask_source(s) for s in sources] if masker else None
        texts = [m.text for m in masked] if masked else sources
        ids = encode(self.tokenizer, texts, self.max_source_tokens, keep_end=True)
        outputs: list[str] = [""] * len(sources)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            batch = padder.pad({"input_ids": [ids[i] for i in chunk]}, return_tensors="pt")
            generated = self.model.generate(
                input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                do_sample=False, num_beams=1, max_new_tokens=self.max_target_tokens,
                decoder_start_token_id=PAD_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID,
            )
            for i, row in zip(chunk, generated.tolist()):
                text = decode(self.tokenizer, row[1:])
                outputs[i] = masker.unmask(text, masked[i].literals) if masked else text
        return outputs


def records(pairs: Pairs) -> list[dict[str, list[int]]]:
    """(source, target) ids as the trainer's examples."""
    return [{"input_ids": source, "labels": target} for source, target in pairs]


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- internals ---------------------------------------------------------------------------------

def _train(model: T5ForConditionalGeneration, tokenizer: Tokenizer, model_config: ModelConfig, data: Pairs,
           validation: Pairs | None, lengths: tuple[FittedLength, FittedLength], config: TrainConfig,
           model_dir: Path, write_tokenizer: Callable[[Path], object], base_dir: str | None,
           log: Callable[[str], None]) -> TrainResult:
    """Train ``model`` with Seq2SeqTrainer and save it (main process) with its metadata; the
    result records the (source, target) ``lengths`` used."""
    args = trainer.arguments(Seq2SeqTrainingArguments, config, model_dir, len(data))
    trainer.prepare_folder(args, model_dir, write_tokenizer)
    padder = fast_tokenizer(tokenizer)
    run = trainer.SeededSeq2SeqTrainer(model=model, args=args, train_dataset=records(data),
                                       eval_dataset=records(validation) if validation else None,
                                       data_collator=DataCollatorForSeq2Seq(padder), processing_class=padder)
    source, target = lengths
    result = replace(trainer.fit(run, config, trainer.fingerprint(data, config), log),
                     max_source_tokens_used=source.length, max_target_tokens_used=target.length,
                     sources_cut=source.cut, targets_cut=target.cut)
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


def _encode_training(tokenizer: Tokenizer, config: ModelConfig, sources: list[str], targets: list[str],
                     log: Callable[[str], None]) -> tuple[Pairs, tuple[FittedLength, FittedLength]]:
    """The training pairs' ids at the lengths the config sets or the data needs, and those lengths."""
    source = fit_length(_lengths(tokenizer, sources), config.max_source_tokens, config.max_source_tokens_limit)
    target = fit_length(_lengths(tokenizer, targets), config.max_target_tokens, config.max_target_tokens_limit)
    report_length(log, "sources", source, len(sources), "start")
    report_length(log, "targets", target, len(targets), "end")
    return _encode_pairs(tokenizer, sources, targets, source, target), (source, target)


def _lengths(tokenizer: Tokenizer, texts: Sequence[str]) -> list[int]:
    """Tokens of each text with its end of sequence."""
    return [len(ids) for ids in encode(tokenizer, list(texts), sys.maxsize)]


def _encode_pairs(tokenizer: Tokenizer, sources: list[str], targets: list[str], source: FittedLength,
                  target: FittedLength) -> Pairs:
    source_ids = encode(tokenizer, sources, source.length, keep_end=True)
    target_ids = encode(tokenizer, targets, target.length)
    return list(zip(source_ids, target_ids))


def _save_weights(model: T5ForConditionalGeneration, directory: Path) -> None:
    save_model(model.to("cpu"), str(directory / WEIGHTS_FILE))
