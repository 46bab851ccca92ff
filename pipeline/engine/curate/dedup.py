"""Exact and near-duplicate detection of inputs.

The task says what is compared (:func:`pipeline.engine.tasks.hooks.dedup_text`): each input has
a scope and a text, and two inputs are compared only within one scope. Their texts are
near-duplicates when the Jaccard similarity of their word sets (lower-cased, punctuation and the
task's filler words dropped) reaches a threshold. For nl2query the scope is the dataset and its
columns and the text the question, so "Show me p95 duration_ms by service.name in the last 2
hours?" and "p95 duration_ms by service.name last 2 hours" are near-duplicates; "... last 3
hours" is not (at 0.9). A task without the hook has one scope and the whole input as text.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from typing import Hashable

from pipeline.engine.tasks import Task, hooks

DEFAULT_THRESHOLD = 0.9
_WORD = re.compile(r"[\w./'-]+")


def scope_and_text(task: Task, input_json: str) -> tuple[str, str]:
    """The scope an input is compared within and the text compared, for an input as JSON text."""
    return hooks.dedup_text(task, json.loads(input_json))


def words(text: str, filler: frozenset[str] = frozenset()) -> frozenset[str]:
    """The text's informative words: lower-cased, trailing punctuation and ``filler`` dropped."""
    tokens = (t.strip(".'") for t in _WORD.findall(text.lower()))
    return frozenset(t for t in tokens if t and t not in filler)


def input_key(task: Task, input_json: str) -> str:
    """Exact-duplicate key of an input: its scope and its text lower-cased, spaces collapsed."""
    scope, text = scope_and_text(task, input_json)
    return json.dumps([scope, hooks.collapse(text)], ensure_ascii=False)


class NearDuplicateIndex:
    """Inputs added so far, searchable for a near-duplicate of a new one."""

    def __init__(self, task: Task, threshold: float = DEFAULT_THRESHOLD):
        if not 0 < threshold <= 1:
            raise ValueError(f"near-duplicate threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self._task = task
        self._filler = frozenset(w.lower() for w in hooks.filler_words(task))
        self._entries: dict[str, list[tuple[frozenset[str], Hashable]]] = defaultdict(list)
        self._postings: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))

    def add(self, input_json: str, key: Hashable, scope: str | None = None) -> None:
        """Add an input; ``scope`` (for example its output) narrows what it is compared with."""
        scope, tokens = self._scope_and_words(input_json, scope)
        entries = self._entries[scope]
        for token in tokens:
            self._postings[scope][token].append(len(entries))
        entries.append((tokens, key))

    def find(self, input_json: str, scope: str | None = None) -> Hashable | None:
        """The key of the most similar input added in the same scope, if at least ``threshold``
        similar, else None."""
        scope, tokens = self._scope_and_words(input_json, scope)
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

    def _scope_and_words(self, input_json: str, extra: str | None) -> tuple[str, frozenset[str]]:
        scope, text = scope_and_text(self._task, input_json)
        return (scope if extra is None else f"{scope}\x1f{extra}"), words(text, self._filler)


def near_duplicate_pairs(task: Task, reference: list[tuple[Hashable, str]], others: list[tuple[Hashable, str]],
                         threshold: float = DEFAULT_THRESHOLD) -> list[tuple[Hashable, Hashable]]:
    """(other key, reference key) for every input of ``others`` that near-duplicates a reference input."""
    index = NearDuplicateIndex(task, threshold)
    for key, input_json in reference:
        index.add(input_json, key)
    pairs = []
    for key, input_json in others:
        match = index.find(input_json)
        if match is not None:
            pairs.append((key, match))
    return pairs
