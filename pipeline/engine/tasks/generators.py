"""The loop a task's offline generators run in: every seed meets every generator in turn.

A task supplies its generators (name -> ``generate(example, context, rng) -> Example | None``),
what they share (``context``, such as pools of values drawn from the seeds), which outputs it
accepts and what makes two examples duplicates; :func:`rotate` does the rest.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from pipeline.engine.tasks.base import Example, SyntheticExample

Generator = Callable[[Example, Any, random.Random], "Example | None"]


def rotate(examples: list[Example], n: int, rng: random.Random, generators: Mapping[str, Generator], context: Any,
           accept: Callable[[Example], bool], key: Callable[[Example], Hashable]) -> list[SyntheticExample]:
    """Up to ``n`` new examples: the seeds in an order drawn from ``rng``, each pass over them
    rotating which generator a seed meets, so that over the passes every seed meets every one.

    Only examples ``accept`` takes are returned, and none whose ``key`` a seed or an earlier
    example has.
    """
    seen = {key(example) for example in examples}
    out: list[SyntheticExample] = []
    order = list(range(len(examples)))
    rng.shuffle(order)
    names = sorted(generators)
    for attempt, index in enumerate(order * len(names)):
        if len(out) >= n:
            break
        name = names[(attempt % len(order) + attempt // len(order)) % len(names)]
        new = generators[name](examples[index], context, rng)
        if new is None or not accept(new):
            continue
        new_key = key(new)
        if new_key in seen:
            continue
        seen.add(new_key)
        out.append(SyntheticExample(new.input, new.output, index, name))
    return out
