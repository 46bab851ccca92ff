"""What one call of a model costs: hosted models from list prices per 1M input and output tokens,
local models from a configured price per GPU-hour (or CPU-hour) times the measured seconds per
call, or from a configured price per token.

The list prices are OpenAI's standard tier (no batch or cached-input discount) as its pricing
page listed them on :data:`PRICES_READ_ON`. A fine-tuned model (``ft:<base>:<org>:<suffix>:<id>``)
is billed at its own, higher inference price, not its base model's. Prices change: pass your own
(:func:`pricing_for`'s overrides, the incumbent's ``price_*`` settings) rather than trusting these.
Azure OpenAI bills per token at its own prices and, for a fine-tuned deployment, per hosting hour
as well; give Azure's figures as overrides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: When the list prices below were read (year-month).
PRICES_READ_ON = "2026-04"


@dataclass(frozen=True)
class Pricing:
    """How a model's calls are priced: per 1M input and output tokens, or per hour of the machine
    that serves it (``per_hour``, for a local model: GPU-hour or CPU-hour), and where the figures
    come from (``source``, shown beside the cost)."""

    input_per_1m: float | None = None
    output_per_1m: float | None = None
    per_hour: float | None = None
    source: str = "configured"

    def __post_init__(self):
        figures = (self.input_per_1m, self.output_per_1m, self.per_hour)
        if any(f is not None and f < 0 for f in figures):
            raise ValueError(f"prices cannot be negative: {self}")
        if (self.input_per_1m is None) != (self.output_per_1m is None):
            raise ValueError("give both the input and the output price per 1M tokens, or neither")

    @property
    def per_token(self) -> bool:
        """Whether calls are priced by their tokens (else by time)."""
        return self.input_per_1m is not None


def _list(input_per_1m: float, output_per_1m: float) -> Pricing:
    return Pricing(input_per_1m, output_per_1m, source=f"OpenAI list price read {PRICES_READ_ON}")


#: USD per 1M tokens (input, output) of known hosted models; ``ft:`` keys are fine-tuned inference.
LIST_PRICES: dict[str, Pricing] = {
    "gpt-4o-mini": _list(0.15, 0.60),
    "ft:gpt-4o-mini": _list(0.30, 1.20),
    "gpt-4o": _list(2.50, 10.00),
    "ft:gpt-4o": _list(3.75, 15.00),
    "gpt-4.1": _list(2.00, 8.00),
    "ft:gpt-4.1": _list(3.00, 12.00),
    "gpt-4.1-mini": _list(0.40, 1.60),
    "ft:gpt-4.1-mini": _list(0.80, 3.20),
    "gpt-4.1-nano": _list(0.10, 0.40),
    "ft:gpt-4.1-nano": _list(0.20, 0.80),
}

_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")


def price_key(model: str) -> str:
    """The :data:`LIST_PRICES` key of a model name: the snapshot date dropped
    (``gpt-4o-mini-2024-07-18`` -> ``gpt-4o-mini``), a fine-tuned model named by its base
    (``ft:gpt-4o-mini-2024-07-18:acme::AbC12`` -> ``ft:gpt-4o-mini``)."""
    name = model.strip()
    if name.startswith("ft:"):
        return "ft:" + _SNAPSHOT.sub("", name.split(":")[1])
    return _SNAPSHOT.sub("", name)


def list_price(model: str) -> Pricing | None:
    """The list price of ``model`` (:func:`price_key`), or None for a model not listed."""
    return LIST_PRICES.get(price_key(model))


def pricing_for(model: str, input_per_1m: float | None = None, output_per_1m: float | None = None,
                per_hour: float | None = None) -> Pricing | None:
    """The configured prices when given (per token, else per hour), else ``model``'s list price;
    None when neither is known (the cost is then unknown, not zero)."""
    if input_per_1m is not None or output_per_1m is not None:
        return Pricing(input_per_1m, output_per_1m, source="configured per 1M tokens")
    if per_hour is not None:
        return Pricing(per_hour=per_hour, source="configured per hour")
    return list_price(model)


def cost_per_call(pricing: Pricing | None, prompt_tokens: int | None = None,
                  completion_tokens: int | None = None, seconds: float | None = None) -> float | None:
    """USD of one call: its tokens at the per-token prices, or ``seconds`` (the measured time per
    call) at the hourly price; None when the pricing or the figure it needs is unknown."""
    if pricing is None:
        return None
    if pricing.per_token:
        if prompt_tokens is None or completion_tokens is None:
            return None
        return (prompt_tokens * pricing.input_per_1m + completion_tokens * pricing.output_per_1m) / 1_000_000
    if pricing.per_hour is None or seconds is None:
        return None
    return pricing.per_hour * seconds / 3600
