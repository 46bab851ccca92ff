"""Pretrained transformers models (an HF model id or a local path): seq2seq or causal, full or
LoRA (peft) fine-tuning, batched greedy generation, on the CPU or a GPU.

``register`` saves the pretrained model and its tokenizer into the base model's directory (no
training), so fine-tuning always starts from a directory of ours. Examples are conversational
prompt-completion records (:func:`chat_record`, :func:`chat_records` for exported chat JSONL).
A causal LM trains with TRL's SFTTrainer, the prompt through the tokenizer's chat template (or
plain text when it has none), the loss on the completion only; a seq2seq model trains with
Seq2SeqTrainer, the prompt's text in its encoder and the completion as its target. LoRA adapters
come from peft (QLoRA: the base in 4 bits, on a GPU with bitsandbytes). A LoRA run saves the
adapter (``adapter_config.json``, ``adapter_model.safetensors``); a full run the whole model.

Token lengths come from the training records unless the spec sets them: the longest tokenized
prompt (completion), rounded up to a multiple of 8, at most ``max_source_tokens_limit``
(``max_target_tokens_limit``). Longer records are cut (a prompt loses its start, a completion
its end), counted in the result (``sources_cut``, ``targets_cut``) and logged as a warning.
Generation uses the lengths the model trained with; a registered model, never trained here,
those the spec sets, else the limits.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import torch
from datasets import Dataset, disable_progress_bars
from peft import LoraConfig, PeftModel, TaskType, get_peft_model, prepare_model_for_kbit_training
from transformers import (
    AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer, DataCollatorForSeq2Seq,
    Seq2SeqTrainingArguments, Trainer, set_seed,
)
from trl import SFTConfig

from pipeline.engine.train.local import trainer
from pipeline.engine.train.local.config import FittedLength, TrainConfig, TrainResult, fit_length, report_length
from pipeline.engine.train.local.devices import resolve_device, set_threads, to_device
from pipeline.engine.train.local.folders import prepare, read_meta, write_model
from pipeline.engine.train.local.seq2seq import Pairs, records as seq2seq_records

Messages = list[dict[str, str]]
#: {"prompt": messages, "completion": [the assistant's message]}: TRL's conversational prompt-completion.
ChatRecord = dict[str, Messages]
#: Defaults for fine-tuning a pretrained model: a few epochs at a small learning rate (LoRA's is larger).
FINE_TUNE_CONFIG = TrainConfig(epochs=3.0, batch_size=8, learning_rate=5e-5, warmup_steps=20)
LORA_LEARNING_RATE = 2e-4


@dataclass(frozen=True)
class PretrainedSpec:
    """A pretrained model to fine-tune: an HF model id or a local path, and token lengths (None:
    sized from the training records, up to the limit)."""

    model_name_or_path: str
    max_source_tokens: int | None = None
    max_target_tokens: int | None = None
    max_source_tokens_limit: int = 1024
    max_target_tokens_limit: int = 512


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


def chat_record(prompt: Messages, completion: str) -> ChatRecord:
    """A prompt (chat messages) and the assistant's completion as a prompt-completion record."""
    return {"prompt": prompt, "completion": [{"role": "assistant", "content": completion}]}


def chat_records(path: Path) -> list[ChatRecord]:
    """The records of an exported chat JSONL file (a {"messages": [...]} object a line): every
    message but the last is the prompt, the last (the assistant's) the completion."""
    out = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            messages = [{"role": m["role"], "content": m["content"]} for m in json.loads(line)["messages"]]
            if len(messages) < 2 or messages[-1]["role"] != "assistant":
                raise ValueError(f"{path} line {number}: the last message is not an assistant's after a prompt")
            out.append({"prompt": messages[:-1], "completion": messages[-1:]})
    return out


def fine_tune(base_dir: Path, model_dir: Path, prompts: list[Messages], targets: list[str], config: TrainConfig,
              validation: tuple[list[Messages], list[str]] | None = None,
              log: Callable[[str], None] = print) -> TrainResult:
    """Fine-tune the model in ``base_dir`` on (prompt, completion) pairs: :func:`fine_tune_records`."""
    if len(prompts) != len(targets) or not prompts:
        raise ValueError(f"need as many targets as prompts, and some: got {len(prompts)} and {len(targets)}")
    held_out = [chat_record(p, t) for p, t in zip(*validation)] if validation else None
    return fine_tune_records(base_dir, model_dir, [chat_record(p, t) for p, t in zip(prompts, targets)], config,
                             held_out, log)


def fine_tune_records(base_dir: Path, model_dir: Path, records: list[ChatRecord], config: TrainConfig,
                      validation: list[ChatRecord] | None = None,
                      log: Callable[[str], None] = print) -> TrainResult:
    """Fine-tune the model in ``base_dir`` (from ``register`` or an earlier fine-tune) on
    prompt-completion records, fully or with LoRA adapters; save under ``model_dir``."""
    if not records:
        raise ValueError("need some training records")
    model_dir = Path(model_dir)
    meta = read_meta(base_dir)
    if meta["lora"]:
        raise ValueError(f"{base_dir} holds a LoRA adapter; fine-tune from a full model")
    set_seed(config.seed)
    quantization = _quantization(config)
    model = _model_class(meta["kind"]).from_pretrained(base_dir, **_load_options(quantization))
    if quantization is not None:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
    codec, (source, target) = _fitted_codec(AutoTokenizer.from_pretrained(base_dir), meta["kind"],
                                            PretrainedSpec(**meta["spec"]), records, log)
    build = _causal_trainer if meta["kind"] == "causal" else _seq2seq_trainer
    run = build(model, codec, records, validation, config, model_dir)
    trainable = sum(p.numel() for p in run.model.parameters() if p.requires_grad)
    log(f"fine-tuning {meta['kind']} model from {base_dir} ({'LoRA' if config.lora else 'full'}): "
        f"{trainable:,} of {_count(run.model):,} parameters train")
    lengths = {"max_source_tokens": source.length, "max_target_tokens": target.length}
    result = replace(trainer.fit(run, config, trainer.fingerprint([lengths, *records], config), log),
                     max_source_tokens_used=source.length, max_target_tokens_used=target.length,
                     sources_cut=source.cut, targets_cut=target.cut)
    if trainer.is_main_process():
        write_model(model_dir, lambda d: run.model.save_pretrained(d),
                    {"backend": "transformers", "kind": meta["kind"], "spec": meta["spec"],
                     "base_dir": str(base_dir) if config.lora else None, "lora": config.lora is not None,
                     "train_config": asdict(config), "result": asdict(result)})
    return result


class PretrainedModel:
    """A registered or fine-tuned transformers model with its tokenizer, ready to generate."""

    def __init__(self, model_dir: Path, device: str = "auto"):
        meta = read_meta(model_dir)
        self.device = resolve_device(device)
        dtype = torch.bfloat16 if self.device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
        if meta["lora"]:
            base_dir = Path(meta["base_dir"])
            if not base_dir.is_dir():  # saved relative to another working directory: a sibling folder
                base_dir = Path(model_dir).parent / base_dir.name
            base = _model_class(meta["kind"]).from_pretrained(base_dir, dtype=dtype)
            self.model = PeftModel.from_pretrained(base, model_dir).merge_and_unload()
        else:
            self.model = _model_class(meta["kind"]).from_pretrained(model_dir, dtype=dtype)
        self.model.to(self.device).eval()
        spec, result = PretrainedSpec(**meta["spec"]), meta.get("result") or {}
        self.codec = _Codec(AutoTokenizer.from_pretrained(model_dir), meta["kind"],
                            result.get("max_source_tokens_used") or spec.max_source_tokens or spec.max_source_tokens_limit,
                            result.get("max_target_tokens_used") or spec.max_target_tokens or spec.max_target_tokens_limit)

    @torch.no_grad()
    def generate(self, prompts: list[Messages], batch_size: int = 32) -> list[str]:
        """Greedy completion of each prompt, batched by similar length."""
        set_threads()
        codec, tokenizer = self.codec, self.codec.tokenizer
        ids = [codec.prompt_ids(p) for p in prompts]
        outputs = [""] * len(prompts)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            batch = codec.pad([ids[i] for i in chunk], left=codec.kind == "causal")
            generated = self.model.generate(
                **to_device(batch, self.device), do_sample=False, num_beams=1,
                max_new_tokens=codec.max_target_tokens, pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id)
            if codec.kind == "causal":
                generated = generated[:, batch["input_ids"].shape[1]:]
            for i, row in zip(chunk, generated.tolist()):
                outputs[i] = tokenizer.decode(row, skip_special_tokens=True).strip()
        return outputs


class _Codec:
    """Prompts and completions as the model reads them, the same at training and inference: cut to
    ``max_source_tokens`` and ``max_target_tokens`` (None: not cut, to measure them)."""

    def __init__(self, tokenizer, kind: str, max_source_tokens: int | None = None,
                 max_target_tokens: int | None = None):
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.tokenizer, self.kind = tokenizer, kind
        self.max_source_tokens, self.max_target_tokens = max_source_tokens, max_target_tokens

    def prompt_text(self, messages: Messages) -> str:
        """A prompt as plain text, for a tokenizer without a chat template."""
        return "\n\n".join(m["content"] for m in messages) + "\n"

    def whole_prompt_ids(self, messages: Messages) -> list[int]:
        """The prompt's ids as SFTTrainer tokenizes it: through the chat template, else as plain text."""
        tokenizer = self.tokenizer
        if tokenizer.chat_template:
            return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                 return_dict=True)["input_ids"]
        return tokenizer(self.prompt_text(messages))["input_ids"]

    def prompt_ids(self, messages: Messages) -> list[int]:
        """The prompt's ids cut from the start to ``max_source_tokens`` (a question comes last)."""
        ids = self.whole_prompt_ids(messages)
        return ids if self.max_source_tokens is None else ids[-self.max_source_tokens:]

    def whole_answer_ids(self, record: ChatRecord) -> list[int]:
        """The completion's ids as the model learns them, its end included: what follows the prompt
        in the chat template (a causal LM whose tokenizer has one), else its text then end of sequence."""
        tokenizer = self.tokenizer
        if self.kind == "causal" and tokenizer.chat_template:
            full = tokenizer.apply_chat_template(record["prompt"] + record["completion"], tokenize=True,
                                                 return_dict=True)["input_ids"]
            return full[len(self.whole_prompt_ids(record["prompt"])):]
        completion = record["completion"][-1]["content"]
        return tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]

    def answer_ids(self, record: ChatRecord) -> list[int]:
        """The completion's ids cut to ``max_target_tokens`` (a seq2seq target keeps its end of sequence)."""
        ids, limit = self.whole_answer_ids(record), self.max_target_tokens
        if limit is None or len(ids) <= limit:
            return ids
        return ids[:limit] if self.kind == "causal" else ids[:limit - 1] + [self.tokenizer.eos_token_id]

    def sft_record(self, record: ChatRecord) -> dict[str, Any]:
        """A record for SFTTrainer, tokenized here as generation will read it: the prompt (cut from
        the start), then the completion (cut at the end), the loss on the completion only (completion_mask)."""
        prompt_ids, answer = self.prompt_ids(record["prompt"]), self.answer_ids(record)
        return {"input_ids": prompt_ids + answer, "completion_mask": [0] * len(prompt_ids) + [1] * len(answer)}

    def seq2seq_pairs(self, records: list[ChatRecord]) -> Pairs:
        """(prompt ids, completion ids ending with end-of-sequence) of each record."""
        return [(self.prompt_ids(r["prompt"]), self.answer_ids(r)) for r in records]

    def pad(self, rows: list[list[int]], left: bool = False) -> dict[str, torch.Tensor]:
        """Prompts padded into a batch for generation (on the left for a causal LM)."""
        value = self.tokenizer.pad_token_id
        width = max(len(r) for r in rows)
        pads = [[value] * (width - len(r)) for r in rows]
        masks = [[0] * len(p) + [1] * len(r) if left else [1] * len(r) + [0] * len(p) for r, p in zip(rows, pads)]
        ids = [p + r if left else r + p for r, p in zip(rows, pads)]
        return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(masks)}


def _fitted_codec(tokenizer, kind: str, spec: PretrainedSpec, records: list[ChatRecord],
                  log: Callable[[str], None]) -> tuple[_Codec, tuple[FittedLength, FittedLength]]:
    """The codec at the lengths ``spec`` sets or the records need, and those lengths (logged)."""
    codec = _Codec(tokenizer, kind)
    source = fit_length([len(codec.whole_prompt_ids(r["prompt"])) for r in records], spec.max_source_tokens,
                        spec.max_source_tokens_limit)
    target = fit_length([len(codec.whole_answer_ids(r)) for r in records], spec.max_target_tokens,
                        spec.max_target_tokens_limit)
    report_length(log, "prompts", source, len(records), "start")
    report_length(log, "completions", target, len(records), "end")
    codec.max_source_tokens, codec.max_target_tokens = source.length, target.length
    return codec, (source, target)


def _causal_trainer(model, codec: _Codec, records: list[ChatRecord], validation: list[ChatRecord] | None,
                    config: TrainConfig, model_dir: Path) -> Trainer:
    """TRL's SFTTrainer on the records, the loss on the completion; LoRA through its peft_config."""
    disable_progress_bars()
    args = trainer.arguments(SFTConfig, config, model_dir, len(records), completion_only_loss=True,
                             max_length=codec.max_source_tokens + codec.max_target_tokens)
    trainer.prepare_folder(args, model_dir, codec.tokenizer.save_pretrained)

    def dataset(rows: list[ChatRecord]) -> Dataset:
        return Dataset.from_list([codec.sft_record(r) for r in rows])

    return trainer.SeededSFTTrainer(model=model, args=args, train_dataset=dataset(records),
                                    eval_dataset=dataset(validation) if validation else None,
                                    processing_class=codec.tokenizer,
                                    peft_config=_lora_config("causal", config) if config.lora else None)


def _seq2seq_trainer(model, codec: _Codec, records: list[ChatRecord], validation: list[ChatRecord] | None,
                     config: TrainConfig, model_dir: Path) -> Trainer:
    """Seq2SeqTrainer on the records' (prompt, completion) ids; LoRA through peft's get_peft_model."""
    if config.lora is not None:
        model = get_peft_model(model, _lora_config("seq2seq", config))
    args = trainer.arguments(Seq2SeqTrainingArguments, config, model_dir, len(records))
    trainer.prepare_folder(args, model_dir, codec.tokenizer.save_pretrained)
    return trainer.SeededSeq2SeqTrainer(
        model=model, args=args, train_dataset=seq2seq_records(codec.seq2seq_pairs(records)),
        eval_dataset=seq2seq_records(codec.seq2seq_pairs(validation)) if validation else None,
        data_collator=DataCollatorForSeq2Seq(codec.tokenizer), processing_class=codec.tokenizer)


def _quantization(config: TrainConfig):
    """The 4-bit quantization QLoRA asks for (None without it); an error where it cannot run."""
    if config.lora is None or not config.lora.load_in_4bit:
        return None
    if resolve_device(config.device).type != "cuda":
        raise ValueError("QLoRA (load_in_4bit) needs a CUDA GPU; use LoRA without it on this device")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as error:
        raise ValueError("QLoRA (load_in_4bit) needs bitsandbytes (pip install bitsandbytes)") from error
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)


def _load_options(quantization) -> dict[str, Any]:
    """from_pretrained's options: float32 weights, or the 4-bit base on this process's GPU."""
    if quantization is None:
        return {"dtype": torch.float32}
    return {"quantization_config": quantization, "dtype": torch.bfloat16,
            "device_map": {"": int(os.environ.get("LOCAL_RANK", 0))}}


def _model_class(kind: str):
    return AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModelForCausalLM


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
