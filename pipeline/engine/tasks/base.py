"""The task plugin interface: everything domain-specific about the LLM feature under improvement.

A task owns the prompt template (identical at training and inference), output parsing and
normalisation, the assertions that name failure modes, offline synthetic generators, and the
prompts it ships for the judge and LLM synthetic data (a ``prompts/`` folder next to its module:
``judge.<version>.md``, ``synth/<name>.<version>.md``, ``synth/dimensions.<version>.json``). The
rest of the pipeline only talks to this interface.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one assertion on one output.

    ``passed`` is None when the check could not run (for example the output is not JSON, so
    column checks have nothing to look at); ``detail`` says why it failed or was skipped.
    """

    check_name: str
    passed: bool | None
    detail: str = ""


@dataclass(frozen=True)
class Example:
    """An (input, output) pair the task understands; ``input`` is the task's input dict."""

    input: dict[str, Any]
    output: str


@dataclass(frozen=True)
class SyntheticExample:
    """A generated example with its provenance."""

    input: dict[str, Any]
    output: str
    parent_index: int
    generator: str


@runtime_checkable
class Task(Protocol):
    """What a task module provides. Register one by naming its module in configuration.

    Optional attributes ingestion uses when present (not part of the protocol check):
    ``input_sql_check``, DuckDB SQL over a JSON value ``{input}`` that is true only for inputs
    ``validate_input`` accepts (the fast path; without it every record is validated in Python),
    and ``input_from_messages(messages) -> input | None``, the inverse of ``prompt`` (chat logs).

    Stored assertion results are keyed by the check version: a hash of ``name``, ``version`` and
    the source of the module defining ``check``, plus of any modules listed in an optional
    ``check_modules`` attribute (a tuple of modules the checks call into). Keep the checks apart
    from the prompt and generators, so that editing those does not re-evaluate every trace.
    """

    name: str
    version: str
    #: Names of the assertions, which are also the failure modes they detect.
    check_names: tuple[str, ...]

    def prompt(self, input: dict[str, Any]) -> list[dict[str, str]]:
        """Chat messages (system, user) for an input; used for training files and inference."""
        ...

    def validate_input(self, input: Any) -> str | None:
        """None when ``input`` is a well-formed task input, else a human-readable reason."""
        ...

    def check(self, input: dict[str, Any], output: str) -> list[CheckResult]:
        """Run every assertion; one result per name in ``check_names``, in that order."""
        ...

    def normalise(self, output: str) -> str | None:
        """Canonical text of an output for exact-match comparison; None if it does not parse."""
        ...

    def synthesize(
        self, examples: list[Example], n: int, rng: random.Random
    ) -> list[SyntheticExample]:
        """Up to ``n`` new examples derived offline (no LLM) from ``examples``."""
        ...
