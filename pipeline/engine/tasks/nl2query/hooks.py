"""What the engine asks nl2query about its inputs (see :mod:`pipeline.engine.tasks.hooks`).

A question on its dataset is one split group and one report slice per dataset; near-duplicates
are questions compared within one dataset and its columns, ignoring the filler words people put
around an observability question; a person sees the question first.
"""

from __future__ import annotations

import json
from typing import Any

from pipeline.engine.tasks.hooks import collapse

#: Words near-duplicate detection ignores in a question ("show me the p95 ..." = "p95 ...").
FILLER_WORDS = frozenset({"a", "an", "the", "me", "show", "give", "what", "what's", "whats", "is", "was", "of", "in",
                          "over", "for", "can", "you", "i", "need", "please", "chart", "graph", "get"})
#: The (min, max) number of scalar values in a query that curation keeps.
COMPLEXITY_BOUNDS = (2, 30)


def group_key(input: dict[str, Any]) -> str:
    """The dataset and the question, lower-cased with spaces collapsed."""
    return f"{input.get('dataset', '')}\x1f{collapse(str(input.get('question', '')))}"


def slice_of(input: dict[str, Any]) -> str:
    """The input's dataset ("" when it names none)."""
    return str(input.get("dataset", ""))


def dedup_text(input: Any) -> tuple[str, str]:
    """(the input without its question as JSON with sorted keys, the question)."""
    if not isinstance(input, dict):
        return json.dumps(input, sort_keys=True), ""
    return (json.dumps({k: v for k, v in input.items() if k != "question"}, sort_keys=True),
            str(input.get("question", "")))


def display_text(input: Any) -> str:
    """The question (the input as JSON when it has none)."""
    question = input.get("question") if isinstance(input, dict) else None
    return question if isinstance(question, str) else json.dumps(input, ensure_ascii=False)
