"""What the engine asks a task about its inputs and outputs, each with a default for any task.

The engine never reads an input key by name: where it needs to know something about an input
or an output (what must never straddle splits, how reports slice, what near-duplicate detection
compares, how complex an output is, how a local model masks literals, what a person sees first)
it calls one of these functions. Each uses the task's own hook when the task defines it and a
default that works for any task otherwise. A task defines a hook as an attribute of its TASK
object with the name given below; all are optional.

========================  ==================================================  =========================
hook on the task          what it answers                                     default
========================  ==================================================  =========================
``group_key(input)``      what must never straddle splits (a string)          the whole input
``slice_name``            what reports slice by ("dataset", "database")       no slicing
``slice_of(input)``       the slice of one input (a string or None)           --
``dedup_text(input)``     (scope, text): near-duplicates are looked for among the whole input as text,
                          inputs of one scope, on the text's words            one scope
``filler_words``          words near-duplicate detection ignores              none
``complexity(output)``    how complex an output is (an integer)               JSON leaves, or words
``complexity_bounds``     (min, max) curation keeps, None = unbounded         (None, None)
``literals``              a :class:`LiteralMasker` for a local model          no masking
``display_text(input)``   the one line a person sees first (reports, the app) the longest text in it
``normalise(output,       canonical output; may take the input (a dialect)    ``normalise(output)``
input)``
``match_key(output)``     what exact match compares (a string or None)        the canonical output
``demo_data``             a :class:`DemoData`: the task's bundled files       none
``prompt_layouts``        production prompts chat logs may be written by,     none
                          beyond its own ({name, user, system?} each)
``input_from_slots``      the input the slots of a matched layout give        the slots as the input
========================  ==================================================  =========================
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from pipeline.engine.tasks.base import Task


@dataclass(frozen=True)
class DemoData:
    """Files a task bundles to run the whole graph on: trace files (a file or a folder),
    annotation files, the corpus the local base model is pre-trained on, and the layout file of
    the production prompts that wrote the traces (each a path, or None)."""

    traces: str | None = None
    annotations: str | None = None
    base_corpus: str | None = None
    prompt_layouts: str | None = None


class Masked(Protocol):
    """A text with its literals replaced by placeholders."""

    text: str
    literals: Sequence[Any]


#: The placeholder tokens a :class:`LiteralMasker` replaces literals with: a local model's
#: tokenizer keeps each whole (one token), whatever the task.
PLACEHOLDERS: tuple[str, ...] = tuple(f"<v{i}>" for i in range(16))


class LiteralMasker(Protocol):
    """How a local model sees literals: masked in the source, the same placeholders in the target,
    restored in what it generates. The placeholders are :data:`PLACEHOLDERS`."""

    def mask_source(self, text: str) -> Masked: ...

    def mask_target(self, target: str, literals: Sequence[Any]) -> str: ...

    def unmask(self, generated: str, literals: Sequence[Any]) -> str: ...


def canonical_json(value: Any) -> str:
    """``value`` as JSON with sorted keys and no spaces: equal values give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def group_key(task: Task, input: dict[str, Any]) -> str:
    """What must never straddle splits: the task's ``group_key(input)``, else the whole input."""
    hook = getattr(task, "group_key", None)
    return str(hook(input)) if hook else canonical_json(input)


def group_id(task: Task, input: dict[str, Any]) -> str:
    """The split group of an input: a short stable hash of its group key."""
    return "g_" + hashlib.sha256(group_key(task, input).encode()).hexdigest()[:20]


def slice_name(task: Task) -> str | None:
    """What reports slice by (the task's ``slice_name``), or None: no per-slice section."""
    return getattr(task, "slice_name", None)


def slice_of(task: Task, input: dict[str, Any]) -> str | None:
    """The report slice of an input (the task's ``slice_of``), or None when the task has no slices."""
    hook = getattr(task, "slice_of", None)
    if not hook or not slice_name(task):
        return None
    value = hook(input)
    return None if value is None else str(value)


def dedup_text(task: Task, input: dict[str, Any]) -> tuple[str, str]:
    """(scope, text) for near-duplicate detection: the task's ``dedup_text``, else one scope and
    the whole input as text."""
    hook = getattr(task, "dedup_text", None)
    if hook:
        scope, text = hook(input)
        return str(scope), str(text)
    return "", canonical_json(input)


def filler_words(task: Task) -> frozenset[str]:
    """Words near-duplicate detection ignores (the task's ``filler_words``; none by default)."""
    return frozenset(getattr(task, "filler_words", ()) or ())


def default_complexity(output: str) -> int:
    """JSON leaves of an output that parses as JSON, else its words."""
    try:
        value = json.loads(output)
    except (TypeError, ValueError):
        return len(output.split())

    def leaves(v: Any) -> int:
        if isinstance(v, dict):
            return sum(leaves(x) for x in v.values())
        if isinstance(v, list):
            return sum(leaves(x) for x in v)
        return 1

    return leaves(value)


def complexity(task: Task, output: str) -> int:
    """How complex an output is: the task's ``complexity(output)``, else :func:`default_complexity`."""
    hook = getattr(task, "complexity", None)
    return int(hook(output)) if hook else default_complexity(output)


def complexity_bounds(task: Task) -> tuple[int | None, int | None]:
    """(min, max) complexity curation keeps for the task (None: unbounded); unbounded by default."""
    low, high = getattr(task, "complexity_bounds", (None, None)) or (None, None)
    return low, high


def literal_masker(task: Task) -> LiteralMasker | None:
    """The task's literal masking for a local model, or None: the model sees literals as they are."""
    return getattr(task, "literals", None)


def display_text(task: Task, input: Any) -> str:
    """The one line a person sees first for an input: the task's ``display_text(input)``, else
    the last user message of a chat input, else the longest text in the input."""
    hook = getattr(task, "display_text", None)
    if hook:
        return str(hook(input))
    if isinstance(input, dict) and isinstance(input.get("messages"), list):
        users = [m.get("content") for m in input["messages"]
                 if isinstance(m, dict) and m.get("role") == "user" and isinstance(m.get("content"), str)]
        if users:
            return users[-1]
    texts = [t for t in _strings(input) if t.strip()]
    return max(texts, key=len) if texts else canonical_json(input)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def normalise(task: Task, output: str, input: dict[str, Any] | None = None) -> str | None:
    """The task's canonical form of ``output``, passing ``input`` to a ``normalise`` that takes it."""
    if input is not None and _takes_input(task.normalise):
        return task.normalise(output, input)
    return task.normalise(output)


def _takes_input(function: Any) -> bool:
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return len(parameters) >= 2


def match_key(task: Task, output: str, input: dict[str, Any] | None = None) -> str | None:
    """What exact match compares for ``output``: the task's ``match_key(output)`` (a part of the
    output, such as a decision without its free-text summary), else :func:`normalise`."""
    hook = getattr(task, "match_key", None)
    return hook(output) if hook else normalise(task, output, input)


def demo_data(task: Task) -> DemoData:
    """The task's bundled files (its ``demo_data``); none by default."""
    return getattr(task, "demo_data", None) or DemoData()


def prompt_layouts(task: Task) -> tuple[Any, ...]:
    """The production prompt layouts the task recognises in chat logs besides its own prompt (its
    ``prompt_layouts``: ``{name, user, system?}`` mappings or layout objects; see
    :mod:`pipeline.engine.ingest.layouts`); none by default."""
    return tuple(getattr(task, "prompt_layouts", ()) or ())


def input_from_slots(task: Task, slots: dict[str, Any]) -> Any:
    """The input the slots of a matched prompt layout give: the task's ``input_from_slots(slots)``,
    else the slots themselves as the input."""
    hook = getattr(task, "input_from_slots", None)
    return hook(slots) if hook else dict(slots)


_WORD = re.compile(r"\s+")


def collapse(text: str) -> str:
    """Lower-cased, surrounding spaces stripped, runs of white space as one space."""
    return _WORD.sub(" ", text.strip().lower())


__all__ = [
    "PLACEHOLDERS", "DemoData", "LiteralMasker", "Masked", "canonical_json", "collapse", "complexity", "complexity_bounds",
    "dedup_text", "default_complexity", "demo_data", "display_text", "filler_words", "group_id", "group_key",
    "input_from_slots", "literal_masker", "match_key", "normalise", "prompt_layouts", "slice_name", "slice_of",
]
