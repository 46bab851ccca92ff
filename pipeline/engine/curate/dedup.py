"""Exact and near-duplicate detection of inputs.

Two inputs are compared only within one scope: the input without its question (for nl2query
the dataset and its columns). Their questions are near-duplicates when the Jaccard similarity of
their word sets (lower-cased, punctuation and filler words dropped) reaches a threshold:
"Show me p95 duration_ms by service.name in the last 2 hours?" and "p95 duration_ms by
service.name last 2 hours" are near-duplicates; "... last 3 hours" is not (at 0.9).
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from typing import Hashable

DEFAULT_THRESHOLD = 0.9
FILLER = frozenset({"a", "an", "the", "me", "show", "give", "what", "what's", "whats", "is", "was", "of", "in",
                    "over", "for", "can", "you", "i", "need", "please", "chart", "graph", "get"})
_WORD = re.compile(r"[\w./'-]+")


def scope_and_question(input_json: str) -> tuple[str, str]:
    """The input without its question (as canonical JSON) and the question."""
    value = json.loads(input_json)
    if not isinstance(value, dict):
        return json.dumps(value, sort_keys=True), ""
    question = str(value.get("question", ""))
    return json.dumps({k: v for k, v in value.items() if k != "question"}, sort_keys=True), question


def words(text: str) -> frozenset[str]:
    """The question's informative words: lower-cased, trailing punctuation and filler dropped."""
    tokens = (t.strip(".'") for t in _WORD.findall(text.lower()))
    return frozenset(t for t in tokens if t and t not in FILLER)


def input_key(input_json: str) -> str:
    """Exact-duplicate key of an input: its scope and its question lower-cased, spaces collapsed."""
    scope, question = scope_and_question(input_json)
    return json.dumps([scope, re.sub(r"\s+", " ", question.strip().lower())], ensure_ascii=False)


class NearDuplicateIndex:
    """Inputs added so far, searchable for a near-duplicate of a new one."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD):
        if not 0 < threshold <= 1:
            raise ValueError(f"near-duplicate threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self._entries: dict[str, list[tuple[frozenset[str], Hashable]]] = defaultdict(list)
        self._postings: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))

    def add(self, input_json: str, key: Hashable, scope: str | None = None) -> None:
        """Add an input; ``scope`` (for example its output) narrows what it is compared with."""
        scope, question = self._scope(input_json, scope)
        tokens = words(question)
        entries = self._entries[scope]
        for token in tokens:
            self._postings[scope][token].append(len(entries))
        entries.append((tokens, key))

    def find(self, input_json: str, scope: str | None = None) -> Hashable | None:
        """The key of the most similar input added in the same scope, if at least ``threshold``
        similar, else None."""
        scope, question = self._scope(input_json, scope)
        tokens = words(question)
        entries = self._entries.get(scope, [])
        if not tokens:
            return next((key for other, key in entries if not other), None)
        postings = self._postings.get(scope, {})
        shared = Counter(i for t in tokens for i in postings.get(t, ()))
        best, best_score = None, 0.0
        for i, n in shared.items():
            other, key = entries[i]
            score = n / (len(tokens) + len(other) - n)
            if score >= self.threshold and score > best_score:
                best, best_score = key, score
        return best

    @staticmethod
    def _scope(input_json: str, extra: str | None) -> tuple[str, str]:
        scope, question = scope_and_question(input_json)
        return (scope if extra is None else f"{scope}\x1f{extra}"), question


def near_duplicate_pairs(reference: list[tuple[Hashable, str]], others: list[tuple[Hashable, str]],
                         threshold: float = DEFAULT_THRESHOLD) -> list[tuple[Hashable, Hashable]]:
    """(other key, reference key) for every input of ``others`` that near-duplicates a reference input."""
    index = NearDuplicateIndex(threshold)
    for key, input_json in reference:
        index.add(input_json, key)
    pairs = []
    for key, input_json in others:
        match = index.find(input_json)
        if match is not None:
            pairs.append((key, match))
    return pairs
