"""PII scrubbing for text that leaves the machine (training files, provider calls).

raw_traces keeps what was received; callers scrub the copies they export or send::

    result = scrub_text("mail jane.doe@example.com or call +1 415 555 0100")
    result.text    # 'mail [EMAIL] or call [PHONE]'
    result.counts  # {'email': 1, 'phone': 1}

Built-in patterns (:data:`DEFAULT_PATTERNS`, applied in this order): API keys and tokens
(OpenAI, Anthropic, LangSmith, AWS, GitHub, Slack, Stripe, Google, JWTs, bearer tokens,
``api_key=...``-style assignments), email addresses, credit card numbers (Luhn-checked), IPv4
and IPv6 addresses (validated), phone numbers (E.164 and common national formats). Add your own
with :func:`patterns_with`, e.g. ``patterns_with({"employee_id": r"\\bEMP-\\d{6}\\b"})``.
Near misses are left alone on purpose: ISO dates and times, version numbers, order ids that
fail the Luhn check, out-of-range IPs, durations and counts.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Pattern:
    """A kind of sensitive text: its name, a regex, the replacement, and an optional check
    that a match really is one (a match failing the check is left as it is)."""

    name: str
    regex: re.Pattern[str]
    replacement: str
    check: Callable[[str], bool] | None = None
    #: The regex group to replace (0: the whole match), e.g. only the value of ``api_key=...``.
    group: int = 0


@dataclass
class Scrubbed:
    """Scrubbed text and how many matches of each pattern were replaced."""

    text: str
    counts: dict[str, int] = field(default_factory=dict)


def _luhn(candidate: str) -> bool:
    digits = [int(c) for c in candidate if c.isdigit()]
    if not 13 <= len(digits) <= 19 or len(set(digits)) == 1:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _ipv4(candidate: str) -> bool:
    try:
        ipaddress.IPv4Address(candidate)
    except ValueError:
        return False
    return True


def _ipv6(candidate: str) -> bool:
    """A valid IPv6 address with a hex letter or 5+ colons (so times like 10:30:00 are not)."""
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return candidate.count(":") >= 2 and any(c.isalpha() for c in candidate) or candidate.count(":") >= 5


def _phone(candidate: str) -> bool:
    digits = sum(c.isdigit() for c in candidate)
    return 8 <= digits <= 15


def pattern(name: str, regex: str, replacement: str | None = None, check: Callable[[str], bool] | None = None,
            group: int = 0, flags: int = 0) -> Pattern:
    """A :class:`Pattern`; the replacement defaults to ``[NAME]``."""
    return Pattern(name, re.compile(regex, flags), replacement or f"[{name.upper()}]", check, group)


_SECRET = "[API_KEY]"
DEFAULT_PATTERNS: tuple[Pattern, ...] = (
    pattern("api_key", r"\bsk-ant-[A-Za-z0-9_-]{20,}", _SECRET),
    pattern("api_key", r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}", _SECRET),
    pattern("api_key", r"\blsv2_(?:pt|sk)_[A-Za-z0-9]{20,}(?:_[A-Za-z0-9]+)?", _SECRET),
    pattern("api_key", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", _SECRET),
    pattern("api_key", r"\bgh[pousr]_[A-Za-z0-9]{36,}\b", _SECRET),
    pattern("api_key", r"\bgithub_pat_[A-Za-z0-9_]{40,}\b", _SECRET),
    pattern("api_key", r"\bxox[abposr]-[A-Za-z0-9-]{10,}", _SECRET),
    pattern("api_key", r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}\b", _SECRET),
    pattern("api_key", r"\bAIza[0-9A-Za-z_-]{35}\b", _SECRET),
    pattern("api_key", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}", _SECRET),
    pattern("api_key", r"(?i)\bbearer\s+([A-Za-z0-9._~+/-]{16,}=*)", _SECRET, group=1),
    pattern("api_key", r"(?i)\b(?:api[_-]?key|secret|token|password|passwd|access[_-]?key)\b[\"']?\s*[:=]\s*[\"']?"
                       r"([^\s\"',;]{8,})", _SECRET, group=1),
    pattern("email", r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+"
                     r"[A-Za-z]{2,}\b"),
    pattern("credit_card", r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])", check=_luhn),
    pattern("ip_address", r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])", check=_ipv4),
    pattern("ip_address", r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])", check=_ipv6),
    pattern("phone", r"(?<![\w+])\+[1-9]\d{0,2}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?!\w)", check=_phone),
    pattern("phone", r"(?<![\w-])\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}(?![\w-])", check=_phone),
)


def patterns_with(extra: Mapping[str, str] | Iterable[Pattern], base: Iterable[Pattern] = DEFAULT_PATTERNS,
                  ) -> tuple[Pattern, ...]:
    """``base`` plus configured patterns: ``{name: regex}`` (replaced by ``[NAME]``) or Patterns."""
    added = [pattern(n, r) for n, r in extra.items()] if isinstance(extra, Mapping) else list(extra)
    return (*base, *added)


def scrub_text(text: str, patterns: Iterable[Pattern] = DEFAULT_PATTERNS) -> Scrubbed:
    """``text`` with every match of ``patterns`` replaced, and the count per pattern name."""
    counts: dict[str, int] = {}
    for p in patterns:
        def replace(match: re.Match[str], p: Pattern = p) -> str:
            found = match.group(p.group)
            if p.check is not None and not p.check(found):
                return match.group(0)
            counts[p.name] = counts.get(p.name, 0) + 1
            whole, start = match.group(0), match.start(p.group) - match.start(0)
            return whole[:start] + p.replacement + whole[start + len(found):]
        text = p.regex.sub(replace, text)
    return Scrubbed(text, counts)


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
