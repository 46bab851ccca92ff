"""Assertions at inference time: repair an output that fails a check, or ask the model again.

:func:`complete_checked` calls a chat provider with the task's prompt, runs the task's
assertions on the reply, tries a cheap deterministic repair (the JSON object inside chatter,
for instance), and otherwise retries with the failed checks as feedback, up to a budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.engine.providers import ChatProvider
from pipeline.engine.tasks import CheckResult, Task, hooks


@dataclass(frozen=True)
class CheckedOutput:
    """The output kept, whether it passes every assertion, and how it was obtained."""

    output: str
    passed: bool
    failed_checks: tuple[str, ...]
    attempts: int
    repaired: bool


def failed_checks(task: Task, input: dict[str, Any], output: str) -> list[CheckResult]:
    """The assertions ``output`` fails (not the ones that could not run)."""
    return [r for r in task.check(input, output) if r.passed is False]


def _embedded_object(text: str) -> str | None:
    """The outermost ``{...}`` inside ``text`` when there is text around it, else None."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start or (start == 0 and end == len(text) - 1):
        return None
    return text[start:end + 1]


def repair(task: Task, input: dict[str, Any], output: str) -> str | None:
    """A deterministic repair of ``output`` that passes every assertion, or None.

    Tried in order: the JSON object embedded in surrounding text, then the task's canonical
    form of the output (which drops unknown empty parts and fixes key order).
    """
    candidates = [_embedded_object(output)]
    candidates.append(hooks.normalise(task, candidates[0] or output, input))
    for candidate in candidates:
        if candidate and candidate != output and not failed_checks(task, input, candidate):
            return candidate
    return None


def feedback(failures: list[CheckResult]) -> str:
    """The user message that tells the model which checks its answer failed."""
    lines = [f"- {r.check_name}: {r.detail}" if r.detail else f"- {r.check_name}" for r in failures]
    return ("Your answer failed these checks:\n" + "\n".join(lines)
            + "\nAnswer again with only the corrected output.")


def complete_checked(provider: ChatProvider, task: Task, input: dict[str, Any], *, max_attempts: int = 3,
                     temperature: float = 0.0, seed: int | None = None) -> CheckedOutput:
    """An output for ``input`` that passes the task's assertions if the budget allows.

    Each attempt is one provider call. A failing reply is first repaired without a call; if
    that does not pass, the next attempt sees the reply and the failed checks. When every
    attempt fails, the reply with the fewest failed checks is returned with ``passed=False``.
    """
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    messages = task.prompt(input)
    best: CheckedOutput | None = None
    for attempt in range(1, max_attempts + 1):
        text = provider.complete(messages, temperature=temperature, seed=seed).text
        failures = failed_checks(task, input, text)
        if not failures:
            return CheckedOutput(text, True, (), attempt, False)
        fixed = repair(task, input, text)
        if fixed is not None:
            return CheckedOutput(fixed, True, (), attempt, True)
        if best is None or len(failures) < len(best.failed_checks):
            best = CheckedOutput(text, False, tuple(r.check_name for r in failures), attempt, False)
        messages = messages + [{"role": "assistant", "content": text}, {"role": "user", "content": feedback(failures)}]
    assert best is not None
    return CheckedOutput(best.output, False, best.failed_checks, max_attempts, False)
