"""What a local training run is asked to do (TrainConfig, LoraSettings), what it did (TrainResult),
and how long its token sequences are (:func:`fit_length`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Sequence

from pipeline.engine.core.versions import HASHED_IF_SET, NOT_HASHED

MIXED_PRECISION = ("auto", "no", "bf16", "fp16")
#: Sized sequence lengths are rounded up to a multiple of this.
LENGTH_MULTIPLE = 8


@dataclass(frozen=True)
class LoraSettings:
    """LoRA adapters (peft): rank, scaling, dropout and the modules adapted (None: peft's default
    for the architecture, e.g. q and v of attention; ("all-linear",): every linear layer).
    ``load_in_4bit`` is QLoRA: the frozen base in 4 bits (bitsandbytes, CUDA only)."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] | None = None
    load_in_4bit: bool = False


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; the defaults are the demo's base training (12 epochs of its 5,000
    examples: 3,750 steps, about seven minutes on 2 CPU cores).

    A run takes ``epochs`` over the data or ``max_steps`` optimizer steps, whichever is fewer, so
    it is the same on any machine and reproducible from ``seed``. ``max_seconds`` (off by
    default) is a wall-clock limit: a run it stops is recorded as stopped early. The learning
    rate warms up linearly over ``warmup_steps``, then decays (cosine, to a tenth) by steps.
    ``batch_size`` is per process; ``processes`` data-parallel processes (each on a GPU, or on
    CPU cores) and ``gradient_accumulation_steps`` multiply it. ``mixed_precision`` "auto" is
    bf16 on a GPU that supports it, else fp32. ``lora`` (pretrained models only) trains adapters
    instead of every weight; ``device`` "auto" is cuda when available. Checkpoints are written
    every ``checkpoint_every_steps`` and the loss logged every ``logging_steps``.
    """

    epochs: float = 12.0
    batch_size: int = 16
    learning_rate: float = 3e-3
    warmup_steps: int = 200
    seed: int = 0
    max_steps: int | None = None
    max_seconds: float | None = None
    gradient_accumulation_steps: int = 1
    mixed_precision: str = "auto"
    processes: int = 1
    lora: LoraSettings | None = field(default=None, metadata=HASHED_IF_SET)
    device: str = field(default="auto", metadata=NOT_HASHED)
    gradient_checkpointing: bool = field(default=False, metadata=NOT_HASHED)
    checkpoint_every_steps: int | None = field(default=500, metadata=NOT_HASHED)
    logging_steps: int = field(default=50, metadata=NOT_HASHED)

    def __post_init__(self):
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"mixed_precision is one of {', '.join(MIXED_PRECISION)}, not {self.mixed_precision!r}")

    def steps_per_epoch(self, examples: int, processes: int) -> int:
        """Optimizer steps in one epoch over ``examples`` split across ``processes``."""
        batches = math.ceil(examples / (self.batch_size * processes))
        return max(1, math.ceil(batches / self.gradient_accumulation_steps))

    def planned_steps(self, examples: int, processes: int) -> int:
        """Steps the run takes: ``epochs`` over the data or ``max_steps``, whichever is fewer."""
        total = max(1, math.ceil(self.epochs * self.steps_per_epoch(examples, processes)))
        return total if self.max_steps is None else min(total, self.max_steps)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """The config that ``dataclasses.asdict`` (or its JSON) gave ``values``."""
        lora = values.get("lora")
        if lora is not None:
            targets = lora.get("target_modules")
            lora = LoraSettings(**{**lora, "target_modules": tuple(targets) if targets else None})
        return cls(**{**{f.name: values[f.name] for f in fields(cls) if f.name in values}, "lora": lora})


@dataclass
class TrainResult:
    """What a training run did; ``loss_history`` holds (step, mean loss since the last entry).

    ``planned_steps``/``planned_epochs`` are what the config asked for; ``stopped_early`` says the
    wall-clock limit ended the run; ``tokens`` counts the input tokens seen (padding excluded),
    ``processes`` the data-parallel world size. ``max_source_tokens_used``/``max_target_tokens_used``
    are the lengths the model trained with (and generates with), ``sources_cut``/``targets_cut``
    the training examples longer than them, which lost their start (a source) or end (a target).
    """

    steps: int
    epochs: float
    seconds: float
    train_loss: float
    validation_loss: float | None
    tokens_per_second: float
    loss_history: list[tuple[int, float]] = field(default_factory=list)
    resumed_from_step: int = 0
    trainable_parameters: int = 0
    planned_steps: int = 0
    planned_epochs: float = 0.0
    tokens: int = 0
    stopped_early: bool = False
    processes: int = 1
    max_source_tokens_used: int | None = None
    max_target_tokens_used: int | None = None
    sources_cut: int = 0
    targets_cut: int = 0

    @property
    def complete(self) -> bool:
        """True when the run did all it planned: its steps, one epoch at least (or all it planned), no time limit."""
        return (self.steps >= self.planned_steps and not self.stopped_early
                and self.epochs >= min(1.0, self.planned_epochs))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainResult":
        """The result that ``dataclasses.asdict`` (or its JSON) gave ``values``; other keys are ignored."""
        known = {f.name for f in fields(cls)}
        result = cls(**{k: v for k, v in values.items() if k in known})
        result.loss_history = [(int(step), float(loss)) for step, loss in result.loss_history]
        return result


@dataclass(frozen=True)
class FittedLength:
    """The token length sequences are cut to, and how many of them were longer."""

    length: int
    cut: int


def fit_length(lengths: Sequence[int], asked: int | None, ceiling: int) -> FittedLength:
    """The length for sequences of ``lengths`` tokens: ``asked`` when set, else sized from them
    (the longest, rounded up to a multiple of :data:`LENGTH_MULTIPLE`, at most ``ceiling``), so
    that nothing is cut below the ceiling; with how many are longer than it."""
    if asked is None:
        longest = max(lengths, default=1)
        asked = min(ceiling, -(-longest // LENGTH_MULTIPLE) * LENGTH_MULTIPLE)
    if asked < 2:
        raise ValueError(f"a token length must leave room for a token and the end of sequence, not {asked}")
    return FittedLength(asked, sum(n > asked for n in lengths))


def report_length(log: Callable[[str], None], what: str, fitted: FittedLength, total: int, loses: str) -> None:
    """Log the length used for ``what`` (sources, targets), with a warning when examples were cut."""
    log(f"{what}: at most {fitted.length} tokens")
    if fitted.cut:
        log(f"warning: {fitted.cut} of {total} training {what} are longer than {fitted.length} tokens "
            f"and lose their {loses}")
