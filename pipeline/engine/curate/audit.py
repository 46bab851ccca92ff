"""What the stored training_examples say about their splits: groups in two splits, synthetic
examples in test, train or validation inputs that near-duplicate a test input, each split's share
of the real examples against its target, and the composition by split, source and who wrote the outputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb
import polars as pl

from pipeline.engine.core import store
from pipeline.engine.curate.dedup import near_duplicate_pairs
from pipeline.engine.curate.examples import CurationConfig
from pipeline.engine.curate.splits import split_sizes
from pipeline.engine.tasks import Task


@dataclass(frozen=True)
class SplitAudit:
    """The stored examples' split facts (see the module docstring); ``sizes`` as
    :func:`~pipeline.engine.curate.splits.split_sizes` gives them."""

    rows: int
    groups_in_two_splits: int
    synthetic_in_test: int
    leaks: list[tuple[str, str]]
    sizes: dict[str, dict[str, float]]
    composition: pl.DataFrame

    def split_table(self, report: dict[str, Any]) -> pl.DataFrame:
        """One row per split: curation's ``report["splits"]`` figures, the real share and its target."""
        return pl.DataFrame([{"split": s, **report["splits"][s], "real_share": v["share"], "target": v["target"]}
                             for s, v in self.sizes.items()])


def audit_splits(conn: duckdb.DuckDBPyConnection, config: CurationConfig, task: Task) -> SplitAudit:
    """The split facts of the stored training_examples, near-duplicates as ``task`` compares inputs
    at ``config``'s threshold, and shares against ``config.splits``."""
    stored = store.read(conn, "SELECT example_id, source, group_id, split, input::VARCHAR AS input, "
                              "coalesce(output_origin, 'unknown') AS output_origin "
                              "FROM training_examples ORDER BY example_id")
    test = stored.filter(pl.col("split") == "test")
    return SplitAudit(
        rows=stored.height,
        groups_in_two_splits=stored.group_by("group_id").agg(pl.col("split").n_unique())
        .filter(pl.col("split") > 1).height,
        synthetic_in_test=test.filter(pl.col("source") == "synthetic").height,
        leaks=near_duplicate_pairs(task, test.select("example_id", "input").rows(),
                                   stored.filter(pl.col("split") != "test").select("example_id", "input").rows(),
                                   config.near_duplicate_threshold),
        sizes=split_sizes(stored.filter(pl.col("source") != "synthetic")["split"].to_list(), config.splits),
        composition=stored.group_by("split", "source", "output_origin").len("examples")
        .sort("split", "source", "output_origin"))
