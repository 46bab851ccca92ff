"""The local trainer's settings as a deployment writes them, and the engine configs they make.

One flat record (the ``LocalTrainer`` resource's config fields are these fields): what to train
(the built-in seq2seq model or a pretrained one), its size, how long base training and
fine-tuning run (by epochs and steps), LoRA, and where and how a run trains (device, processes,
precision) and checkpoints. Sizes left as None take the engine's defaults (the demo's for the
built-in model); token lengths left as None are sized from the training data, up to their limits.
"""

from dataclasses import dataclass, field, fields, replace
from typing import Any

from pipeline.engine.train.local import pretrained
from pipeline.engine.train.local.config import LoraSettings, TrainConfig
from pipeline.engine.train.local.pretrained import PretrainedSpec
from pipeline.engine.train.local.seq2seq import FINE_TUNE_CONFIG, ModelConfig


def _doc(default: Any, text: str) -> Any:
    """A field with ``default`` and the description a configuration UI shows."""
    return field(default=default, metadata={"doc": text})


@dataclass(frozen=True)
class LocalTrainerSettings:
    """The local backend: the built-in small seq2seq transformer (trained here from the base
    corpus) or a pretrained transformers model, fine-tuned fully or with LoRA, on ``device`` in
    ``processes`` data-parallel processes. Training is checkpointed every ``checkpoint_every_steps``
    under the model's folder, and a crashed run resumes from there."""

    base_corpus: str = "data/demo/base_corpus.jsonl"
    base_max_examples: int | None = None
    model_name_or_path: str | None = _doc(
        None, "A pretrained model to fine-tune instead of the built-in one: an HF id or a local path "
              "(None: the built-in one).")
    d_model: int | None = None
    num_layers: int | None = None
    num_decoder_layers: int | None = None
    num_heads: int | None = None
    d_ff: int | None = None
    vocab_size: int | None = None
    max_source_tokens: int | None = _doc(
        None, "Source (prompt) tokens a model reads; None: the longest in the training data, up to the limit. "
              "Longer sources lose their start, counted and logged as a warning.")
    max_target_tokens: int | None = _doc(
        None, "Target (completion) tokens a model learns and generates; None: the longest in the training data, "
              "up to the limit.")
    max_source_tokens_limit: int | None = _doc(None, "The most source tokens a length sized from the data may be "
                                                     "(None: the engine's, 1024).")
    max_target_tokens_limit: int | None = _doc(None, "The most target tokens a length sized from the data may be "
                                                     "(None: the engine's, 512).")
    base_epochs: float | None = None
    base_max_steps: int | None = None
    finetune_epochs: float | None = None
    finetune_max_steps: int | None = None
    finetune_max_seconds: float | None = None
    finetune_learning_rate: float | None = None
    replay_examples: int = _doc(
        1000, "Base-corpus examples mixed into fine-tuning so the model keeps what it knew (0 = none).")
    batch_size: int | None = None
    seed: int = TrainConfig.seed
    lora: bool = _doc(False, "LoRA adapters (peft) instead of full fine-tuning; pretrained models only.")
    lora_r: int = LoraSettings.r
    lora_alpha: int = LoraSettings.alpha
    lora_dropout: float = LoraSettings.dropout
    lora_target_modules: list[str] | None = _doc(
        None, 'Modules to adapt (None: peft\'s default for the architecture; ["all-linear"]: every linear layer).')
    qlora: bool = _doc(False, "LoRA on the base loaded in 4 bits (bitsandbytes); a CUDA GPU only.")
    gradient_accumulation_steps: int = TrainConfig.gradient_accumulation_steps
    gradient_checkpointing: bool = TrainConfig.gradient_checkpointing
    mixed_precision: str = _doc(TrainConfig.mixed_precision, '"auto": bf16 on a GPU that has it; "no", "bf16", "fp16".')
    processes: int = _doc(TrainConfig.processes, "Data-parallel processes for local training (torchrun): GPUs, or CPU "
                                                 "processes sharing the cores.")
    device: str = _doc(TrainConfig.device, '"auto": cuda when available.')
    checkpoint_every_steps: int | None = TrainConfig.checkpoint_every_steps
    logging_steps: int = TrainConfig.logging_steps

    def architecture(self) -> ModelConfig | PretrainedSpec:
        """The model to train: the pretrained one when named, else the built-in one's size."""
        if self.model_name_or_path:
            return _override(PretrainedSpec(self.model_name_or_path), **self._lengths())
        return _override(ModelConfig(), d_model=self.d_model, num_layers=self.num_layers,
                         num_decoder_layers=self.num_decoder_layers, num_heads=self.num_heads,
                         d_ff=self.d_ff, vocab_size=self.vocab_size, **self._lengths())

    def base_train_config(self) -> TrainConfig:
        """How the built-in model's base training runs."""
        return _override(TrainConfig(), epochs=self.base_epochs, max_steps=self.base_max_steps,
                         batch_size=self.batch_size, seed=self.seed, **self._shared())

    def finetune_train_config(self) -> TrainConfig:
        """How fine-tuning runs: the engine's defaults for the model (and LoRA), with what is set."""
        if self.model_name_or_path:
            defaults = pretrained.FINE_TUNE_CONFIG
            if self.lora:
                defaults = replace(defaults, learning_rate=pretrained.LORA_LEARNING_RATE)
        else:
            defaults = FINE_TUNE_CONFIG
        lora = LoraSettings(r=self.lora_r, alpha=self.lora_alpha, dropout=self.lora_dropout,
                            target_modules=tuple(self.lora_target_modules) if self.lora_target_modules else None,
                            load_in_4bit=self.qlora)
        return _override(defaults, epochs=self.finetune_epochs, max_steps=self.finetune_max_steps,
                         max_seconds=self.finetune_max_seconds, learning_rate=self.finetune_learning_rate,
                         batch_size=self.batch_size, seed=self.seed, lora=lora if self.lora else None,
                         **self._shared())

    def _lengths(self) -> dict[str, int | None]:
        return {"max_source_tokens": self.max_source_tokens, "max_target_tokens": self.max_target_tokens,
                "max_source_tokens_limit": self.max_source_tokens_limit,
                "max_target_tokens_limit": self.max_target_tokens_limit}

    def _shared(self) -> dict[str, Any]:
        """What both trainings take as set here: TrainConfig's unhashed fields (left out of model
        ids), and the processes, accumulation and precision (which count in them)."""
        unhashed = {f.name: getattr(self, f.name) for f in fields(TrainConfig) if f.metadata.get("hash") is False}
        return {**unhashed, "processes": self.processes, "mixed_precision": self.mixed_precision,
                "gradient_accumulation_steps": self.gradient_accumulation_steps}


def _override(config, **values):
    """``config`` with the values that are set (not None) replaced."""
    return replace(config, **{k: v for k, v in values.items() if v is not None})
