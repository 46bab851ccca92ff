"""Pretrained transformers models (an HF model id or a local path): seq2seq or causal, full or
LoRA (peft) fine-tuning, batched greedy generation, on the CPU or a GPU.

``register`` saves the pretrained model and its tokenizer into the base model's directory (no
training), so fine-tuning always starts from a directory of ours. A prompt is the task's chat
messages: a causal LM reads them through the tokenizer's chat template (or plain text when it
has none) followed by the completion, with the loss on the completion only; a seq2seq model
reads the same text in its encoder and the completion is its target. A LoRA run saves the
adapter (``adapter_config.json``, ``adapter_model.safetensors``); a full run the whole model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from peft import LoraConfig, PeftModel, TaskType, get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from pipeline.engine.train.local import loop
from pipeline.engine.train.local.loop import Pairs, TrainConfig, TrainResult
from pipeline.engine.train.local.folders import CHECKPOINTS, prepare, read_meta, write_model

Messages = list[dict[str, str]]
#: Defaults for fine-tuning a pretrained model: a few epochs at a small learning rate (LoRA's is larger).
FINE_TUNE_CONFIG = TrainConfig(epochs=3.0, batch_size=8, learning_rate=5e-5, warmup_steps=20, max_seconds=None)
LORA_LEARNING_RATE = 2e-4


@dataclass(frozen=True)
class PretrainedSpec:
    """A pretrained model to fine-tune: an HF model id or a local path, and token limits."""

    model_name_or_path: str
    max_source_tokens: int = 512
    max_target_tokens: int = 256


def register(spec: PretrainedSpec, model_dir: Path, log: Callable[[str], None] = print) -> dict:
    """Save the pretrained model and tokenizer into ``model_dir`` as a base model; returns its figures."""
    model_dir = Path(model_dir)
    is_seq2seq = bool(getattr(AutoConfig.from_pretrained(spec.model_name_or_path), "is_encoder_decoder", False))
    kind = "seq2seq" if is_seq2seq else "causal"
    model = _model_class(kind).from_pretrained(spec.model_name_or_path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(spec.model_name_or_path)
    prepare(model_dir)
    figures = {"steps": 0, "parameters": _count(model), "source": spec.model_name_or_path}
    write_model(model_dir, lambda d: (model.save_pretrained(d), tokenizer.save_pretrained(d)),
                {"backend": "transformers", "kind": kind, "spec": asdict(spec), "base_dir": None, "lora": False,
                 "result": figures})
    log(f"registered pretrained {kind} model {spec.model_name_or_path} ({figures['parameters']:,} parameters) "
        f"at {model_dir}")
    return figures


def fine_tune(base_dir: Path, model_dir: Path, prompts: list[Messages], targets: list[str], config: TrainConfig,
              validation: tuple[list[Messages], list[str]] | None = None,
              log: Callable[[str], None] = print) -> TrainResult:
    """Fine-tune the model in ``base_dir`` (from ``register`` or an earlier fine-tune) on
    (prompt, completion) pairs, fully or with LoRA adapters; save under ``model_dir``."""
    if len(prompts) != len(targets) or not prompts:
        raise ValueError(f"need as many targets as prompts, and some: got {len(prompts)} and {len(targets)}")
    model_dir = Path(model_dir)
    meta = read_meta(base_dir)
    if meta["lora"]:
        raise ValueError(f"{base_dir} holds a LoRA adapter; fine-tune from a full model")
    loop.seed_everything(config.seed)
    model, tokenizer = _load(base_dir, meta, torch.float32)
    if config.lora is not None:
        model = get_peft_model(model, _lora_config(meta["kind"], config))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log(f"fine-tuning {meta['kind']} model from {base_dir} ({'LoRA' if config.lora else 'full'}): "
        f"{trainable:,} of {_count(model):,} parameters train")
    prepare(model_dir)
    tokenizer.save_pretrained(model_dir)
    codec = _Codec(tokenizer, meta["kind"], PretrainedSpec(**meta["spec"]))
    data = codec.pairs(prompts, targets)
    held_out = codec.pairs(*validation) if validation else None
    result = loop.train(model, data, codec.collate, config, held_out, log, model_dir / CHECKPOINTS)
    write_model(model_dir, lambda d: model.save_pretrained(d),
                {"backend": "transformers", "kind": meta["kind"], "spec": meta["spec"],
                 "base_dir": str(base_dir) if config.lora else None, "lora": config.lora is not None,
                 "train_config": asdict(config), "result": asdict(result)})
    return result


class PretrainedModel:
    """A registered or fine-tuned transformers model with its tokenizer, ready to generate."""

    def __init__(self, model_dir: Path, device: str = "auto"):
        meta = read_meta(model_dir)
        self.device = loop.resolve_device(device)
        dtype = torch.bfloat16 if self.device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
        if meta["lora"]:
            base_dir = Path(meta["base_dir"])
            if not base_dir.is_dir():  # saved relative to another working directory: a sibling folder
                base_dir = Path(model_dir).parent / base_dir.name
            base, _ = _load(base_dir, read_meta(base_dir), dtype)
            self.model = PeftModel.from_pretrained(base, model_dir).merge_and_unload()
        else:
            self.model = _model_class(meta["kind"]).from_pretrained(model_dir, dtype=dtype)
        self.model.to(self.device).eval()
        self.codec = _Codec(AutoTokenizer.from_pretrained(model_dir), meta["kind"], PretrainedSpec(**meta["spec"]))

    @torch.no_grad()
    def generate(self, prompts: list[Messages], batch_size: int = 32) -> list[str]:
        """Greedy completion of each prompt, batched by similar length."""
        loop.set_threads()
        codec, tokenizer = self.codec, self.codec.tokenizer
        ids = [codec.prompt_ids(p) for p in prompts]
        outputs = [""] * len(prompts)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            batch = codec.pad([ids[i] for i in chunk], left=codec.kind == "causal")
            generated = self.model.generate(
                **loop.to_device(batch, self.device), do_sample=False, num_beams=1,
                max_new_tokens=codec.spec.max_target_tokens, pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id)
            if codec.kind == "causal":
                generated = generated[:, batch["input_ids"].shape[1]:]
            for i, row in zip(chunk, generated.tolist()):
                outputs[i] = tokenizer.decode(row, skip_special_tokens=True).strip()
        return outputs


class _Codec:
    """Prompts and completions to token ids and padded batches, the same at training and inference."""

    def __init__(self, tokenizer, kind: str, spec: PretrainedSpec):
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.tokenizer, self.kind, self.spec = tokenizer, kind, spec

    def prompt_ids(self, messages: Messages) -> list[int]:
        """The prompt's ids, truncated from the start (a question comes last)."""
        tokenizer = self.tokenizer
        if tokenizer.chat_template:
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        else:
            ids = tokenizer("\n\n".join(m["content"] for m in messages) + "\n")["input_ids"]
        return ids[-self.spec.max_source_tokens:]

    def completion_ids(self, target: str) -> list[int]:
        ids = self.tokenizer(target, add_special_tokens=False)["input_ids"][:self.spec.max_target_tokens - 1]
        return ids + [self.tokenizer.eos_token_id]

    def pairs(self, prompts: list[Messages], targets: list[str]) -> Pairs:
        return [(self.prompt_ids(p), self.completion_ids(t)) for p, t in zip(prompts, targets)]

    def pad(self, rows: list[list[int]], left: bool = False, value: int | None = None) -> dict[str, torch.Tensor]:
        value = self.tokenizer.pad_token_id if value is None else value
        width = max(len(r) for r in rows)
        pads = [[value] * (width - len(r)) for r in rows]
        masks = [[0] * len(p) + [1] * len(r) if left else [1] * len(r) + [0] * len(p) for r, p in zip(rows, pads)]
        ids = [p + r if left else r + p for r, p in zip(rows, pads)]
        return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(masks)}

    def collate(self, pairs: Pairs) -> tuple[dict[str, torch.Tensor], int]:
        """A training batch: seq2seq (source, labels) or causal (prompt + completion, loss on the completion)."""
        if self.kind == "seq2seq":
            batch = self.pad([s for s, _ in pairs])
            labels = self.pad([t for _, t in pairs], value=-100)["input_ids"]
            return {**batch, "labels": labels}, int(batch["attention_mask"].sum()) + int((labels != -100).sum())
        batch = self.pad([s + t for s, t in pairs])
        labels = self.pad([[-100] * len(s) + t for s, t in pairs], value=-100)["input_ids"]
        return {**batch, "labels": labels}, int(batch["attention_mask"].sum())


def _model_class(kind: str):
    return AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModelForCausalLM


def _load(model_dir: Path, meta: dict, dtype: torch.dtype):
    """Model and tokenizer of a full model directory (registered or fully fine-tuned)."""
    model = _model_class(meta["kind"]).from_pretrained(model_dir, dtype=dtype)
    return model, AutoTokenizer.from_pretrained(model_dir)


def _lora_config(kind: str, config: TrainConfig) -> LoraConfig:
    lora = config.lora
    return LoraConfig(task_type=TaskType.SEQ_2_SEQ_LM if kind == "seq2seq" else TaskType.CAUSAL_LM,
                      r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=_targets(lora.target_modules))


def _targets(names: tuple[str, ...] | None) -> list[str] | str | None:
    """peft's target_modules: None (its default), "all-linear", or module names."""
    return None if not names else "all-linear" if list(names) == ["all-linear"] else list(names)


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
