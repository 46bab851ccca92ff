"""nl2query's literal masking for a local model: values in the question become placeholders.

A small model copies a placeholder far more reliably than it spells out ``7200`` or a quoted
service name, so literals in the source are replaced by ``<v0>``, ``<v1>``, ... before the
model sees them, the matching JSON values in the target (a query) by the same placeholders, and
the placeholders in generated text are restored into JSON values afterwards.

- quoted text (``"checkout"``, ``'eu-west-1'``): the quotes stay, the content is masked;
- ISO dates and datetimes (``2024-05-01``, ``2024-05-01T10:00:00Z``): masked as strings;
- durations (``2 hours``, ``30 minutes``): the number is masked, the unit stays, and the
  placeholder stands for the duration in seconds (the query's ``time_range`` is in seconds);
- other numbers (``500``, ``99.5``, ``1,000``, the ``250`` of ``250ms``): masked as numbers.

Equal values share one placeholder. Digits that are part of an identifier are not literals: a
run of letters, digits, ``_``, ``.`` and ``-`` that has a letter (``P95``, ``t3``, ``5xx``,
``eu-west-1``, ``ip-10-0-0-1``, ``node-3``, ``http.status_code``) stays whole, except a number
with its unit (``24h``, ``250ms``). So does a hyphenated range (``1-5``).

Unmasking restores every placeholder that stands for a literal, wherever it is. A placeholder
that stands for none (the model wrote ``<v3>`` for a source with two literals, or ``<v0>`` for
one without any) is left bare, outside any JSON string: the output is then not JSON and fails
the task's parse check, and the placeholder shows what the model wrote. It never becomes a
plausible value (the string ``"<v3>"``) that the checks could pass.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Sequence

from pipeline.engine.tasks.hooks import PLACEHOLDERS

MAX_LITERALS = len(PLACEHOLDERS)

_UNIT_SECONDS = {
    "second": 1, "seconds": 1, "sec": 1, "secs": 1,
    "minute": 60, "minutes": 60, "min": 60, "mins": 60,
    "hour": 3600, "hours": 3600, "hr": 3600, "hrs": 3600,
    "day": 86400, "days": 86400,
    "week": 604800, "weeks": 604800,
    "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800,
}
_NUMBER = r"\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?"
#: Not inside an identifier: no word character, ``.`` or word-then-hyphen just before.
_START = r"(?<![\w.])(?<!\w-)"
#: Not continued by an identifier: no word character, hyphen-then-word or ``.``-then-word after.
_END = r"(?![\w]|-\w|\.\w)"
_SOURCE_LITERAL = re.compile(
    r"""(?<!\w)"(?P<dq>[^"\n]+)"|(?<!\w)'(?P<sq>[^'\n]+)'(?!\w)"""
    rf"|{_START}(?P<date>\d{{4}}-\d{{2}}-\d{{2}}"
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?)(?![\w.:-])"
    rf"|{_START}(?P<dur>\d+)(?P<unit>\s*(?:{'|'.join(sorted(_UNIT_SECONDS, key=len, reverse=True))})){_END}"
    rf"|{_START}(?P<num>{_NUMBER})(?:(?=ms{_END})|(?!\.\d|,\d){_END})"
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


class JsonLiterals:
    """Literal masking for questions in, JSON queries out (:class:`~pipeline.engine.tasks.hooks.LiteralMasker`)."""

    #: Changes when the rules do (it is part of the local base model's id): 2 keeps identifiers whole.
    version = "2"

    def mask_source(self, text: str) -> Masked:
        """Replace the literals in ``text`` by placeholders, equal values sharing one; literals
        beyond :data:`MAX_LITERALS` distinct ones stay as text."""
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
                literal = Literal(match.group("num").replace(",", ""), is_string=False)
            token = placeholder(literal)
            if token is None:
                return match.group(0)
            start, end = match.span(kind)
            return match.group(0)[: start - match.start()] + token + match.group(0)[end - match.start():]

        return Masked(_SOURCE_LITERAL.sub(replace, text), tuple(literals))

    def mask_target(self, target: str, literals: Sequence[Literal]) -> str:
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

    def unmask(self, generated: str, literals: Sequence[Literal]) -> str:
        """Restore every placeholder in generated text that stands for a literal: a whole JSON
        string as the literal's JSON value, one inside a string escaped into it, a bare one as
        the JSON value. One that stands for none is left bare (see the module's docstring)."""

        def known(index: str) -> Literal | None:
            return literals[int(index)] if int(index) < len(literals) else None

        def in_string(match: re.Match) -> str:
            literal = known(match.group(1))
            if literal is None:  # close the string around it: the output is no longer JSON
                return f'"{match.group(0)}"'
            return json.dumps(literal.value, ensure_ascii=False)[1:-1]

        def replace(match: re.Match) -> str:
            if match.group("str"):
                whole = _PLACEHOLDER.fullmatch(match.group("str")[1:-1])
                if whole:
                    literal = known(whole.group(1))
                    return json.dumps(literal.value, ensure_ascii=False) if literal else whole.group(0)
                return _PLACEHOLDER.sub(in_string, match.group("str"))
            literal = known(match.group("index"))
            return literal.json() if literal else match.group(0)

        return _JSON_STRING_OR_PLACEHOLDER.sub(replace, generated)


def _same_number(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return False


#: nl2query's literal masking (the task's ``literals`` hook).
LITERALS = JsonLiterals()
