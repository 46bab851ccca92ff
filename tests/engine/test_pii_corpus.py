"""The scrubber on the labelled corpus: recall per kind it claims, and false positives on near misses.

``pytest -s`` prints the table. A positive counts as found when its value is gone and its kind
counted; as exact when the text is otherwise untouched. A near miss is a false positive when any
of it changes.
"""

import re
from collections import Counter
from dataclasses import dataclass

import pytest

from pipeline.engine.core.pii import settings
from pipeline.engine.core.scrub import DEFAULT_PATTERNS, scrub_text

from tests.engine.pii_corpus import NEGATIVES, POSITIVES, luhn_completed

NER_KINDS = {"person", "location"}
REPLACEMENT = {p.name: p.replacement for p in DEFAULT_PATTERNS}
TOTALS = Counter(case.kind for case in POSITIVES)


@dataclass
class Measured:
    found: Counter
    exact: Counter
    missed: list[tuple[str, str, str]]
    false_positives: list[tuple[str, str, str]]

    def table(self) -> str:
        lines = [f"{'kind':<12} {'cases':>5} {'recall':>8} {'exact':>8}"]
        for kind in sorted(TOTALS):
            total = TOTALS[kind]
            lines.append(f"{kind:<12} {total:>5} {self.found[kind] / total:>8.1%} {self.exact[kind] / total:>8.1%}")
        categories = len(Counter(category for category, _ in NEGATIVES))
        lines.append(f"near misses {len(NEGATIVES):>5}, false positives {len(self.false_positives)} "
                     f"({len(self.false_positives) / len(NEGATIVES):.1%}) over {categories} categories")
        lines += [f"  missed {kind}: {text!r} -> {out!r}" for kind, text, out in self.missed]
        lines += [f"  false positive ({category}): {text!r} -> {out!r}" for category, text, out in self.false_positives]
        return "\n".join(lines)


@pytest.fixture(scope="module")
def measured() -> Measured:
    found, exact, missed = Counter(), Counter(), []
    for case in POSITIVES:
        result = scrub_text(case.text)
        if case.value not in result.text and result.counts.get(case.kind, 0) >= 1:
            found[case.kind] += 1
        else:
            missed.append((case.kind, case.text, result.text))
        exact[case.kind] += result.text == case.text.replace(case.value, REPLACEMENT[case.kind])
    changed = [(category, text, scrub_text(text).text) for category, text in NEGATIVES]
    result = Measured(found, exact, missed, [c for c in changed if c[1] != c[2]])
    print("\n" + result.table())
    return result


def test_the_corpus_covers_every_claimed_kind_with_at_least_40_cases(measured):
    claimed = {p.name for p in DEFAULT_PATTERNS} - (set() if settings().ner_model else NER_KINDS)
    assert set(TOTALS) == claimed
    assert min(TOTALS.values()) >= 40


def test_recall_is_at_least_99_percent_on_every_claimed_kind(measured):
    low = {kind: measured.found[kind] / total for kind, total in TOTALS.items() if measured.found[kind] / total < 0.99}
    assert low == {}, measured.table()


def test_the_rest_of_each_text_is_left_as_it_was(measured):
    low = {kind: measured.exact[kind] / total for kind, total in TOTALS.items() if measured.exact[kind] / total < 0.99}
    assert low == {}, measured.table()


def test_at_most_1_percent_of_near_misses_change(measured):
    assert len(NEGATIVES) >= 300
    assert len(measured.false_positives) / len(NEGATIVES) <= 0.01, measured.table()


def test_order_ids_that_pass_the_luhn_check_are_near_misses_not_cards(measured):
    order_ids = [text for category, text in NEGATIVES if category == "order id"]
    numbers = [re.search(r"\d{16}", text).group() for text in order_ids]
    assert len(order_ids) >= 30 and all(luhn_completed(n[:-1]) == n for n in numbers)
    assert [text for text in order_ids if scrub_text(text).text != text] == []
