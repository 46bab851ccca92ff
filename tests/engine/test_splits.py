"""Splits: groups, stratified quotas, stability as data arrives; near-duplicate detection (for
nl2query, whose hooks say what groups and what is compared; the defaults: test_task_hooks.py)."""

import json
from collections import Counter

import pytest

from pipeline.engine.curate.dedup import NearDuplicateIndex, input_key, near_duplicate_pairs, words
from pipeline.engine.curate.splits import NO_FAILURE, SplitConfig, assign_splits, group_id, split_sizes
from pipeline.engine.tasks import hooks, load_task

CONFIG = SplitConfig()
TASK = load_task("nl2query")
FILLER = hooks.filler_words(TASK)


def inp(question, dataset="checkout-api", columns=("duration_ms", "service.name")):
    return json.dumps({"question": question, "columns": list(columns), "dataset": dataset})


def groups(n, tag="q"):
    return [group_id(TASK, inp(f"count for {tag} {i}")) for i in range(n)]


def test_group_id_ignores_case_and_whitespace_but_not_dataset_or_wording():
    a = group_id(TASK, inp("P95 duration_ms by service.name  last 2 hours"))
    assert a == group_id(TASK, inp("  p95 duration_ms BY service.name\tlast 2 hours\n"))
    assert a == group_id(TASK, inp("p95 duration_ms by service.name last 2 hours", columns=["duration_ms"]))
    assert a != group_id(TASK, inp("p95 duration_ms by service.name last 2 hours", dataset="payments-worker"))
    assert a != group_id(TASK, inp("p95 duration_ms by service.name last 3 hours"))
    assert a.startswith("g_")


def test_each_stratum_gets_its_share_of_test_and_validation():
    strata = {g: NO_FAILURE for g in groups(400)}
    strata |= {g: "unknown_column" for g in groups(40, "uc")}
    strata |= {g: "invalid_json" for g in groups(20, "ij")}
    splits = assign_splits(strata, CONFIG)
    for mode, n in ((NO_FAILURE, 400), ("unknown_column", 40), ("invalid_json", 20)):
        counts = Counter(s for g, s in splits.items() if strata[g] == mode)
        assert counts["test"] == round(0.15 * n) and counts["validation"] == round(0.1 * n)
        assert counts["train"] == n - counts["test"] - counts["validation"]


def test_assignment_is_deterministic_and_independent_of_order():
    strata = {g: NO_FAILURE for g in groups(200)}
    assert assign_splits(strata, CONFIG) == assign_splits(dict(reversed(list(strata.items()))), CONFIG)
    assert assign_splits(strata, CONFIG) != assign_splits(strata, SplitConfig(salt="other"))


def test_existing_groups_keep_their_split_and_new_groups_fill_each_stratum():
    old = {g: NO_FAILURE for g in groups(100)} | {g: "unknown_column" for g in groups(20, "uc")}
    first = assign_splits(old, CONFIG)
    new = {g: NO_FAILURE for g in groups(100, "new")} | {g: "unknown_column" for g in groups(20, "uc-new")}
    second = assign_splits(old | new, CONFIG, previous=first)
    assert {g: second[g] for g in first} == first
    for mode, n in ((NO_FAILURE, 200), ("unknown_column", 40)):
        counts = Counter(s for g, s in second.items() if (old | new)[g] == mode)
        assert counts["test"] == round(0.15 * n) and counts["validation"] == round(0.1 * n)
    # a stratum already over its test share takes no new test groups
    crowded = {g: "test" for g in groups(10, "crowd")}
    third = assign_splits({g: "rare" for g in [*crowded, *groups(10, "more")]}, CONFIG, previous=crowded)
    assert Counter(third.values())["test"] == 10


def test_shares_are_configurable_and_validated():
    strata = {g: NO_FAILURE for g in groups(100)}
    counts = Counter(assign_splits(strata, SplitConfig(validation=0.2, test=0.3)).values())
    assert counts == {"test": 30, "validation": 20, "train": 50}
    assert set(assign_splits(strata, SplitConfig(validation=0, test=0)).values()) == {"train"}
    with pytest.raises(ValueError):
        SplitConfig(test=-0.1)


def test_split_sizes_against_targets_and_tolerance():
    sizes = split_sizes(["train"] * 75 + ["validation"] * 10 + ["test"] * 15, CONFIG)
    assert all(v["within_tolerance"] for v in sizes.values()) and sizes["test"]["share"] == 0.15
    skewed = split_sizes(["train"] * 95 + ["test"] * 5, CONFIG)
    assert not skewed["train"]["within_tolerance"] and not skewed["test"]["within_tolerance"]
    assert skewed["validation"]["share"] == 0.0


# --- near-duplicates ---------------------------------------------------------------------------

def test_words_drop_case_punctuation_and_filler_but_keep_identifiers():
    assert words("Show me the P95 of duration_ms by service.name, in the last 2 hours?", FILLER) == \
        {"p95", "duration_ms", "by", "service.name", "last", "2", "hours"}
    assert "/api/cart" in words("count where http.route = '/api/cart'", FILLER)
    assert {"show", "me", "the"} <= words("Show me the P95")  # no filler words given: none dropped


@pytest.mark.parametrize("question,is_near", [
    ("Show me p95 duration_ms by service.name in the last 2 hours?", True),
    ("P95 DURATION_MS BY SERVICE.NAME LAST 2 HOURS", True),
    ("p95 duration_ms by service.name last 3 hours", False),
    ("p99 duration_ms by service.name last 2 hours", False),
    ("p95 duration_ms by region last 2 hours", False),
])
def test_near_duplicates_within_a_scope(question, is_near):
    index = NearDuplicateIndex(TASK, 0.9)
    index.add(inp("p95 duration_ms by service.name last 2 hours"), "a")
    assert (index.find(inp(question)) == "a") is is_near
    assert index.find(inp(question, dataset="payments-worker")) is None  # another dataset is another scope


def test_near_duplicate_threshold_and_extra_scope():
    index = NearDuplicateIndex(TASK, 0.7)
    index.add(inp("p95 duration_ms by service.name last 2 hours"), "a", scope="out-1")
    assert index.find(inp("p95 duration_ms by service.name last 3 hours"), scope="out-1") == "a"
    assert index.find(inp("p95 duration_ms by service.name last 3 hours"), scope="out-2") is None
    with pytest.raises(ValueError):
        NearDuplicateIndex(TASK, 0)


def test_input_key_is_exact_up_to_case_and_spaces():
    assert input_key(TASK, inp("Count  by region")) == input_key(TASK, inp(" count by REGION "))
    assert input_key(TASK, inp("count by region")) != input_key(TASK, inp("count by region", columns=["region"]))


def test_near_duplicate_pairs_name_the_leaking_example_and_what_it_leaks():
    reference = [("te1", inp("p95 duration_ms by service.name last 2 hours")), ("te2", inp("count by region"))]
    others = [("tr1", inp("Show me the p95 duration_ms by service.name in the last 2 hours")),
              ("tr2", inp("count by region last week")), ("tr3", inp("count by region", dataset="other"))]
    assert near_duplicate_pairs(TASK, reference, others) == [("tr1", "te1")]
    assert near_duplicate_pairs(TASK, reference, others, threshold=0.6) == [("tr1", "te1"), ("tr2", "te2")]


def test_many_small_strata_still_give_every_split_its_share():
    # 40 strata of 3 groups: rounding each stratum's 0.3 validation and 0.45 test groups to zero
    # would put everything in train; the remainder carried from stratum to stratum does not
    strata = {f"g{s}_{i}": f"mode{s}" for s in range(40) for i in range(3)}
    result = assign_splits(strata, SplitConfig())
    counts = Counter(result.values())
    assert abs(counts["test"] - 0.15 * 120) <= 1 and abs(counts["validation"] - 0.1 * 120) <= 1
    assert counts["train"] == 120 - counts["test"] - counts["validation"]
