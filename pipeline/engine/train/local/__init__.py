"""The local training backend: the built-in small encoder-decoder (trained from scratch, then
fine-tuned) and pretrained transformers models (seq2seq or causal, full or LoRA fine-tuning), on
the Hugging Face trainer stack, in one process or several data-parallel ones."""

from pipeline.engine.train.local.config import LoraSettings, TrainConfig, TrainResult
from pipeline.engine.train.local.seq2seq import FINE_TUNE_CONFIG, LocalSeq2Seq, ModelConfig, fine_tune, train_base

__all__ = [
    "FINE_TUNE_CONFIG",
    "LocalSeq2Seq",
    "LoraSettings",
    "ModelConfig",
    "TrainConfig",
    "TrainResult",
    "fine_tune",
    "train_base",
]
