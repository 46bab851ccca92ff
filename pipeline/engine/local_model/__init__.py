"""The local training backend: a small encoder-decoder trained from scratch, then fine-tuned."""

from pipeline.engine.local_model.seq2seq import (
    FINE_TUNE_CONFIG,
    LocalSeq2Seq,
    ModelConfig,
    TrainConfig,
    TrainResult,
    fine_tune,
    train_base,
)

__all__ = [
    "FINE_TUNE_CONFIG",
    "LocalSeq2Seq",
    "ModelConfig",
    "TrainConfig",
    "TrainResult",
    "fine_tune",
    "train_base",
]
