"""Group-aware, stratified and stable train / validation / test splits.

A group is what the task says must never straddle splits (its ``group_key``, through
:func:`pipeline.engine.tasks.hooks.group_id`; for nl2query a question on its dataset): a trace,
people's corrections of it and every synthetic example derived from it share one, and a group
lies in exactly one split. Groups already assigned keep their split (``previous``), so eval
numbers stay comparable across nightly runs; new groups fill each stratum up to its target
shares, in the order of a stable hash, so the test split mirrors the strata of the real data.
Curation's strata are (failure mode, whether a person verified a reference of the group:
:func:`pipeline.engine.curate.examples.real_groups`), so verified references reach test in the
same share as the rest; a group keeps its split when its stratum changes.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Hashable

from pipeline.engine.tasks import Task, hooks

SPLITS = ("train", "validation", "test")
NO_FAILURE = "none"


@dataclass(frozen=True)
class SplitConfig:
    """Target shares of validation and test (the rest is train), the tolerance the size check
    allows around them, and ``salt``, which reorders groups (effective for new groups only)."""

    validation: float = 0.1
    test: float = 0.15
    tolerance: float = 0.05
    salt: str = "flywheel-v1"

    def __post_init__(self) -> None:
        if not (0 <= self.validation and 0 <= self.test and self.validation + self.test < 1):
            raise ValueError(f"split shares must be >= 0 and leave room for train: "
                             f"validation={self.validation}, test={self.test}")

    def target(self, split: str) -> float:
        return {"train": 1 - self.validation - self.test, "validation": self.validation, "test": self.test}[split]


def group_id(task: Task, input_json: str) -> str:
    """The split group of an input given as JSON text (:func:`pipeline.engine.tasks.hooks.group_id`)."""
    return hooks.group_id(task, json.loads(input_json))


def bucket(group: str, salt: str) -> float:
    """A stable pseudo-random number in [0, 1] for a group."""
    return int(hashlib.sha256(f"{salt}\x1f{group}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def assign_splits(strata: dict[str, Hashable], config: SplitConfig,
                  previous: dict[str, str] | None = None) -> dict[str, str]:
    """A split for every group in ``strata`` (group -> its stratum: a failure mode, or
    ``NO_FAILURE``, or a tuple such as (failure mode, verified); one kind of label per call).

    Groups in ``previous`` keep their split. In each stratum, new groups in hash order go to
    test until the stratum's test groups reach its share of test (``test * groups in stratum``,
    rounded), then to validation likewise, then to train. What rounding leaves over in one
    stratum is carried to the next, so that many small strata (a task with few groups) still
    give each split its share overall instead of rounding every stratum's share to zero.
    """
    previous = previous or {}
    result = {g: previous[g] for g in strata if previous.get(g) in SPLITS}
    by_stratum: dict[Hashable, list[str]] = defaultdict(list)
    for group, stratum in strata.items():
        by_stratum[stratum].append(group)
    carried = {"test": 0.0, "validation": 0.0}
    for stratum, groups in sorted(by_stratum.items()):
        new = sorted((g for g in groups if g not in result), key=lambda g: (bucket(g, config.salt), g))
        for split in ("test", "validation"):
            have = sum(1 for g in groups if result.get(g) == split)
            share = config.target(split) * len(groups) + carried[split]
            carried[split] = share - round(share)
            want = max(0, round(share) - have)
            for group in new[:want]:
                result[group] = split
            new = new[want:]
        result.update({g: "train" for g in new})
    return result


def split_sizes(splits_of_real: list[str], config: SplitConfig) -> dict[str, dict[str, float]]:
    """Share of real examples in each split against its target, and whether it is within tolerance."""
    total = len(splits_of_real) or 1
    out = {}
    for split in SPLITS:
        share = sum(1 for s in splits_of_real if s == split) / total
        out[split] = {"share": round(share, 4), "target": config.target(split),
                      "within_tolerance": abs(share - config.target(split)) <= config.tolerance}
    return out
