"""Literal masking: numbers, quoted values, dates and durations become placeholders.

A small model copies a placeholder far more reliably than it spells out ``7200`` or a quoted
service name, so literals in the source are replaced by ``<v0>``, ``<v1>``, ... before the
model sees them, the matching JSON values in the target by the same placeholders, and the
placeholders in generated text are restored into valid JSON values afterwards.

- quoted text (``"checkout"``, ``'eu-west-1'``): the quotes stay, the content is masked;
- ISO dates and datetimes (``2024-05-01``, ``2024-05-01T10:00:00Z``): masked as strings;
- durations (``2 hours``, ``30 minutes``): the number is masked, the unit stays, and the
  placeholder stands for the duration in seconds (``time_range`` is in seconds);
- other numbers (``500``, ``99.5``, ``1,000``, the ``250`` of ``250ms``): masked as numbers.

Equal values share one placeholder. Numbers inside identifiers (``P95``, ``http.status_code``,
``5xx``) are not literals.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

MAX_LITERALS = 16
PLACEHOLDERS: tuple[str, ...] = tuple(f"<v{i}>" for i in range(MAX_LITERALS))

_UNIT_SECONDS = {
    "second": 1, "seconds": 1, "sec": 1, "secs": 1,
    "minute": 60, "minutes": 60, "min": 60, "mins": 60,
    "hour": 3600, "hours": 3600, "hr": 3600, "hrs": 3600,
    "day": 86400, "days": 86400,
    "week": 604800, "weeks": 604800,
    "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800,
}
_NUMBER = r"\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?"
_SOURCE_LITERAL = re.compile(
    r"""(?<!\w)"(?P<dq>[^"\n]+)"|(?<!\w)'(?P<sq>[^'\n]+)'(?!\w)"""
    r"|(?<![\w.])(?P<date>\d{4}-\d{2}-\d{2}"
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?)(?![\w.:-])"
    rf"|(?<![\w.])(?P<dur>\d+)(?P<unit>\s*(?:{'|'.join(sorted(_UNIT_SECONDS, key=len, reverse=True))}))\b"
    rf"|(?<![\w.])(?P<num>{_NUMBER})(?:(?=ms\b)|(?!\w|\.\d|,\d))"
)
_JSON_TOKEN = re.compile(r'(?P<str>"(?:[^"\\]|\\.)*")(?P<key>\s*:)?|(?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)')
_JSON_STRING_OR_PLACEHOLDER = re.compile(r'(?P<str>"(?:[^"\\]|\\.)*")|<v(?P<index>\d+)>')
_PLACEHOLDER = re.compile(r"<v(\d+)>")


@dataclass(frozen=True)
class Literal:
    """A masked literal: ``value`` is the string content, or the number as JSON text."""

    value: str
    is_string: bool

    def json(self) -> str:
        """The literal as a JSON value."""
        return json.dumps(self.value, ensure_ascii=False) if self.is_string else self.value


@dataclass(frozen=True)
class Masked:
    """A text with its literals replaced by placeholders; ``literals[i]`` is ``<vi>``."""

    text: str
    literals: tuple[Literal, ...]


def mask_source(text: str) -> Masked:
    """Replace the literals in ``text`` by placeholders, equal values sharing one."""
    literals: list[Literal] = []

    def placeholder(literal: Literal) -> str | None:
        if literal not in literals:
            if len(literals) == MAX_LITERALS:
                return None
            literals.append(literal)
        return PLACEHOLDERS[literals.index(literal)]

    def replace(match: re.Match) -> str:
        kind = match.lastgroup if match.lastgroup != "unit" else "dur"
        if kind in ("dq", "sq", "date"):
            literal = Literal(match.group(kind), is_string=True)
        elif kind == "dur":
            unit = match.group("unit").strip().lower()
            literal = Literal(str(int(match.group("dur")) * _UNIT_SECONDS[unit]), is_string=False)
        else:
            literal = Literal(_number_text(match.group("num")), is_string=False)
        token = placeholder(literal)
        if token is None:
            return match.group(0)
        start, end = match.span(kind)
        return match.group(0)[: start - match.start()] + token + match.group(0)[end - match.start():]

    return Masked(_SOURCE_LITERAL.sub(replace, text), tuple(literals))


def mask_target(target: str, literals: tuple[Literal, ...]) -> str:
    """Replace the JSON values in ``target`` that equal a literal by that literal's placeholder.

    Object keys are never masked; a number matches only a number literal (so the restored
    value keeps its JSON type); a string matches any literal with the same text.
    """

    def replace(match: re.Match) -> str:
        if match.group("key"):
            return match.group(0)
        if match.group("str"):
            content = json.loads(match.group("str"))
            for i, literal in enumerate(literals):
                if literal.value == content:
                    return f'"{PLACEHOLDERS[i]}"'
            return match.group(0)
        for i, literal in enumerate(literals):
            if not literal.is_string and _same_number(literal.value, match.group("num")):
                return PLACEHOLDERS[i]
        return match.group(0)

    return _JSON_TOKEN.sub(replace, target)


def unmask(text: str, literals: tuple[Literal, ...]) -> str:
    """Restore placeholders in generated text as JSON values (escaped inside JSON strings).

    A placeholder without a literal (the model invented ``<v7>`` for a source with two) is
    left as it is, so the output fails the checks visibly rather than silently.
    """

    def inside_string(match: re.Match) -> str:
        index = int(match.group(1))
        if index >= len(literals):
            return match.group(0)
        return json.dumps(literals[index].value, ensure_ascii=False)[1:-1]

    def replace(match: re.Match) -> str:
        if match.group("str"):
            whole = _PLACEHOLDER.fullmatch(match.group("str")[1:-1])
            if whole and int(whole.group(1)) < len(literals):
                return json.dumps(literals[int(whole.group(1))].value, ensure_ascii=False)
            return _PLACEHOLDER.sub(inside_string, match.group("str"))
        index = int(match.group("index"))
        return literals[index].json() if index < len(literals) else match.group(0)

    return _JSON_STRING_OR_PLACEHOLDER.sub(replace, text)


def _number_text(text: str) -> str:
    return text.replace(",", "")


def _same_number(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return False
