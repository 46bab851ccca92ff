"""PII scrubbing for text that leaves the machine (training files, provider calls).

raw_traces keeps what was received; callers scrub the copies they export or send::

    result = scrub_text("mail jane.doe@example.com or call +1 415 555 0100")
    result.text    # 'mail [EMAIL] or call [PHONE]'
    result.counts  # {'email': 1, 'phone': 1}

Built-in patterns (:data:`DEFAULT_PATTERNS`; where two overlap, the earlier one wins): our rules for
API keys and tokens (OpenAI, Anthropic, LangSmith, AWS, GitHub, GitLab, Hugging Face, npm, Slack,
Stripe, Google, JWTs, private key blocks, bearer and basic credentials, passwords in URLs, ``API_KEY=...``,
``DB_PASSWORD=...``, ``client_secret: ...``-style assignments), then what Microsoft Presidio's
recognizers and Google's phonenumbers find (:mod:`pipeline.engine.core.pii`, with its checks):
email addresses, IBANs, credit card numbers, US social security numbers, IPv4 and IPv6 addresses,
phone numbers, and person names and places when an NER model is configured
(``FLYWHEEL_PII_NER_MODEL``; without one, names and postal addresses are not scrubbed). Add your
own with :func:`patterns_with`, e.g. ``patterns_with({"employee_id": r"\\bEMP-\\d{6}\\b"})``.
Near misses are left alone on purpose: dates and times, version numbers, order ids, hashes,
UUIDs, ports, measurements, prices, token counts, placeholder values.
"""

from __future__ import annotations

import bisect
import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Span = tuple[int, int]


@dataclass(frozen=True)
class Pattern:
    """A kind of sensitive text: its name, how it is found, and the replacement. Found by a regex
    (with an optional check that a match really is one: a match failing it is left as it is) or,
    with ``regex`` None, by ``find``: a function giving the (start, end) spans, a library's recognizer."""

    name: str
    regex: re.Pattern[str] | None
    replacement: str
    check: Callable[[str], bool] | None = None
    #: The regex group to replace (0: the whole match), e.g. only the value of ``api_key=...``.
    group: int = 0
    find: Callable[[str], Iterable[Span]] | None = None

    def spans(self, text: str) -> Iterable[Span]:
        """Where this kind occurs in ``text``."""
        if self.regex is None:
            return self.find(text)
        return (m.span(self.group) for m in self.regex.finditer(text)
                if self.check is None or self.check(m.group(self.group)))


@dataclass
class Scrubbed:
    """Scrubbed text and how many matches of each pattern were replaced."""

    text: str
    counts: dict[str, int] = field(default_factory=dict)


def pattern(name: str, regex: str, replacement: str | None = None, check: Callable[[str], bool] | None = None,
            group: int = 0, flags: int = 0) -> Pattern:
    """A :class:`Pattern`; the replacement defaults to ``[NAME]``."""
    return Pattern(name, re.compile(regex, flags), replacement or f"[{name.upper()}]", check, group)


def recognized(name: str, entity: str, replacement: str | None = None) -> Pattern:
    """A :class:`Pattern` for what Presidio's recognizers find as ``entity`` (see :mod:`.pii`)."""
    return Pattern(name, None, replacement or f"[{name.upper()}]", find=functools.partial(_pii_spans, entity))


def _pii_spans(entity: str, text: str) -> tuple[Span, ...]:
    from pipeline.engine.core import pii  # on first use: Presidio and spaCy take seconds to import

    return pii.spans(entity, text)


_PLACEHOLDER = re.compile(
    r"(?i)(?:none|null|nil|true|false|required|optional|string|str|bytes|redacted|hidden|masked|undefined|empty"
    r"|secret|password|token|\*+|x+|\.+|-+)[,.;]?"
    r"|[$<{%(\[*#].*|[A-Za-z_][\w.]*[(\[].*[)\]]|(?:os\.|process\.env|getenv|settings\.|config\.|secrets\.).*")


def _secret_value(value: str) -> bool:
    """A value assigned to a secret's name that is a secret, not a placeholder, type or lookup."""
    return not _PLACEHOLDER.fullmatch(value)


_SECRET = "[API_KEY]"
_SECRET_NAME = (r"(?:api[_-]?key|secret(?:[_-]?(?:access[_-]?)?key(?:[_-]?base)?)?|access[_-]?key(?:[_-]?id)?"
                r"|private[_-]?key|client[_-]?secret|auth[_-]?token|token|password|passwd|passphrase|(?<=[_-])pwd"
                r"|credentials?)")
_TOKENS = (  # OpenAI and Anthropic, LangSmith, AWS, GitHub, GitLab, Hugging Face, npm, Slack, Stripe, Google, JWTs
    r"\bsk-[A-Za-z0-9_-]{20,}", r"\blsv2_(?:pt|sk)_[A-Za-z0-9]{20,}(?:_[A-Za-z0-9]+)?",
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    r"\bgh[pousr]_[A-Za-z0-9]{36,}\b", r"\bgithub_pat_[A-Za-z0-9_]{40,}\b", r"\bglpat-[A-Za-z0-9_-]{20,}",
    r"\bhf_[A-Za-z0-9]{30,}\b", r"\bnpm_[A-Za-z0-9]{36}\b", r"\bxox[abposr]-[A-Za-z0-9-]{10,}",
    r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}\b", r"\bAIza[0-9A-Za-z_-]{35}\b",
    r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
    r"(?s:-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----.*?-----END (?:[A-Z]+ )*PRIVATE KEY-----)",
)
SECRET_PATTERNS: tuple[Pattern, ...] = (
    pattern("api_key", "|".join(_TOKENS), _SECRET),
    pattern("api_key", r"(?i)\b[a-z][a-z0-9+.-]*://[^\s:/@]*:([^\s:/@]+)@", _SECRET, check=_secret_value, group=1),
    pattern("api_key", r"(?i)\bbearer\s+([A-Za-z0-9._~+/-]{16,}=*)", _SECRET, group=1),
    pattern("api_key", r"(?i)\bauthorization[\"']?\s*[:=]\s*[\"']?basic\s+([A-Za-z0-9+/]{8,}={0,2})", _SECRET, group=1),
    # no \b before the name: AWS_SECRET_ACCESS_KEY=..., DB_PASSWORD=..., client_secret: ...
    pattern("api_key", rf"(?i)(?<![A-Za-z]){_SECRET_NAME}[\"']?\s*[:=]\s*[\"']?([^\s\"',;]{{6,}})", _SECRET,
            check=_secret_value, group=1),
)
LIBRARY_PATTERNS: tuple[Pattern, ...] = (
    recognized("email", "EMAIL_ADDRESS"),
    recognized("iban", "IBAN_CODE"),
    recognized("credit_card", "CREDIT_CARD"),
    recognized("ssn", "US_SSN"),
    recognized("ip_address", "IP_ADDRESS"),
    recognized("phone", "PHONE_NUMBER"),
    recognized("person", "PERSON"),
    recognized("location", "LOCATION"),
)
DEFAULT_PATTERNS: tuple[Pattern, ...] = (*SECRET_PATTERNS, *LIBRARY_PATTERNS)


def patterns_with(extra: Mapping[str, str] | Iterable[Pattern], base: Iterable[Pattern] = DEFAULT_PATTERNS,
                  ) -> tuple[Pattern, ...]:
    """``base`` plus configured patterns: ``{name: regex}`` (replaced by ``[NAME]``) or Patterns."""
    added = [pattern(n, r) for n, r in extra.items()] if isinstance(extra, Mapping) else list(extra)
    return (*base, *added)


def scrub_text(text: str, patterns: Iterable[Pattern] = DEFAULT_PATTERNS) -> Scrubbed:
    """``text`` with every match of ``patterns`` replaced, and the count per pattern name; a match
    overlapping one of an earlier pattern is left to it."""
    starts: list[int] = []
    claimed: list[tuple[int, int, Pattern]] = []
    for p in patterns:
        for start, end in p.spans(text):
            i = bisect.bisect(starts, start)
            if start < end and (i == 0 or claimed[i - 1][1] <= start) and (i == len(starts) or end <= starts[i]):
                starts.insert(i, start)
                claimed.insert(i, (start, end, p))
    counts: dict[str, int] = {}
    parts, done = [], 0
    for start, end, p in claimed:
        parts += [text[done:start], p.replacement]
        counts[p.name] = counts.get(p.name, 0) + 1
        done = end
    return Scrubbed("".join(parts) + text[done:], counts)


def scrub_value(value: Any, patterns: Iterable[Pattern] = DEFAULT_PATTERNS) -> tuple[Any, dict[str, int]]:
    """A JSON-like value (dicts, lists, strings) with every string scrubbed; keys are kept."""
    patterns = tuple(patterns)
    counts: dict[str, int] = {}

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            result = scrub_text(v, patterns)
            for k, n in result.counts.items():
                counts[k] = counts.get(k, 0) + n
            return result.text
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    return walk(value), counts


def scrub_json_text(text: str, patterns: Iterable[Pattern] = DEFAULT_PATTERNS) -> Scrubbed:
    """JSON text (such as raw_traces.input) with the strings inside it scrubbed, still valid JSON."""
    value, counts = scrub_value(json.loads(text), patterns)
    return Scrubbed(json.dumps(value, ensure_ascii=False), counts)
