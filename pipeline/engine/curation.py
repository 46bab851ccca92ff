"""Curate training examples from traces, people's corrections and synthetic data, with splits.

Splits are group-aware and stable: an example's group is its normalised question on its
dataset, so a trace, its correction and every synthetic example derived from it share a group;
the split is a hash of the group id, so existing examples keep their split as data arrives.
The test split holds only real examples (traces and corrections), never synthetic ones.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from datetime import datetime, timezone

import polars as pl

from pipeline.engine.annotations import latest_decisions
from pipeline.engine.tasks import Example, Task

EXAMPLE_SCHEMA = {
    "example_id": pl.String, "source": pl.String, "group_id": pl.String, "split": pl.String,
    "input": pl.String, "output": pl.String, "parent_id": pl.String,
    "created_at": pl.Datetime("us", "UTC"),
}
#: Which example wins when several share an input: a person's correction, then a trace, then synthetic.
SOURCE_PRIORITY = {"correction": 0, "trace": 1, "synthetic": 2}


@dataclass(frozen=True)
class SplitConfig:
    """Target shares of validation and test; the rest is train. ``salt`` reshuffles all groups."""

    validation: float = 0.1
    test: float = 0.15
    salt: str = "flywheel-v1"


def group_id(input_json: str) -> str:
    """Group of an input: its dataset and its question, lower-cased with spaces collapsed."""
    value = json.loads(input_json)
    question = re.sub(r"\s+", " ", str(value.get("question", "")).strip().lower())
    key = f"{value.get('dataset', '')}\x1f{question}"
    return "g_" + hashlib.sha256(key.encode()).hexdigest()[:20]


def assign_split(group: str, config: SplitConfig) -> str:
    """train / validation / test for a group, by a stable hash."""
    bucket = int(hashlib.sha256(f"{config.salt}\x1f{group}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if bucket < config.test:
        return "test"
    if bucket < config.test + config.validation:
        return "validation"
    return "train"


def real_examples(traces: pl.DataFrame, evaluations: pl.DataFrame, annotations: pl.DataFrame,
                  task: Task) -> pl.DataFrame:
    """Examples from production: traces that pass every assertion and were not judged bad by a
    person (output normalised), and people's corrections (replacing the trace's output).

    Columns: example_id, source, parent_id (the trace), input, output.
    """
    failing = evaluations.filter(pl.col("passed") == False).select("trace_id").unique()  # noqa: E712
    decisions = latest_decisions(annotations)
    judged_bad = decisions.filter(pl.col("label") == "bad").select("trace_id")
    passing = (traces.filter(pl.col("error").is_null() | (pl.col("output") != ""))
               .join(evaluations.select("trace_id").unique(), on="trace_id", how="semi")
               .join(failing, on="trace_id", how="anti")
               .join(judged_bad, on="trace_id", how="anti"))
    from_traces = passing.select(
        ("trace:" + pl.col("trace_id")).alias("example_id"), pl.lit("trace").alias("source"),
        pl.col("trace_id").alias("parent_id"), "input",
        pl.col("output").map_elements(task.normalise, return_dtype=pl.String).alias("output"))
    from_people = (decisions.filter(pl.col("correction").is_not_null())
                   .join(traces.select("trace_id", "input"), on="trace_id", how="inner")
                   .select(("correction:" + pl.col("trace_id")).alias("example_id"),
                           pl.lit("correction").alias("source"), pl.col("trace_id").alias("parent_id"),
                           "input",
                           pl.col("correction").map_elements(task.normalise, return_dtype=pl.String).alias("output")))
    return pl.concat([from_traces, from_people]).filter(pl.col("output").is_not_null())


def synthesize(seeds: pl.DataFrame, task: Task, n: int, seed: int, split_config: SplitConfig,
               now: datetime | None = None) -> pl.DataFrame:
    """Up to ``n`` synthetic examples from seed examples in the train and validation groups.

    Seeds from test groups are never used, so nothing derived from a test example can train.
    Columns of the synthetic_examples table.
    """
    now = now or datetime.now(timezone.utc)
    usable = seeds.filter(
        pl.col("input").map_elements(lambda i: assign_split(group_id(i), split_config), return_dtype=pl.String) != "test")
    examples = [Example(json.loads(i), o) for i, o in usable.select("input", "output").iter_rows()]
    parents = usable["example_id"].to_list()
    generated = task.synthesize(examples, n, random.Random(seed))
    rows = []
    for ex in generated:
        input_json = json.dumps(ex.input, ensure_ascii=False)
        digest = hashlib.sha256(f"{input_json}\x1f{ex.output}".encode()).hexdigest()[:24]
        rows.append({"example_id": f"synthetic:{digest}", "parent_id": parents[ex.parent_index],
                     "generator": ex.generator, "input": input_json, "output": ex.output,
                     "seed": seed, "created_at": now})
    schema = {"example_id": pl.String, "parent_id": pl.String, "generator": pl.String, "input": pl.String,
              "output": pl.String, "seed": pl.Int64, "created_at": pl.Datetime("us", "UTC")}
    return pl.DataFrame(rows, schema=schema).unique("example_id", keep="first", maintain_order=True)


def curate(real: pl.DataFrame, synthetic: pl.DataFrame, split_config: SplitConfig,
           now: datetime | None = None) -> tuple[pl.DataFrame, dict[str, int]]:
    """training_examples rows and counts of what was dropped and why.

    Deduplicates on input (keeping a correction over a trace over a synthetic example, then the
    first seen), assigns group and split, and drops synthetic examples whose group is in test.
    """
    now = now or datetime.now(timezone.utc)
    parent_groups = real.select(pl.col("example_id").alias("parent_id"),
                                pl.col("input").map_elements(group_id, return_dtype=pl.String).alias("parent_group"))
    synth = (synthetic.select("example_id", pl.lit("synthetic").alias("source"), "parent_id", "input", "output")
             .join(parent_groups, on="parent_id", how="left"))
    frame = pl.concat([real.with_columns(parent_group=pl.lit(None, pl.String)), synth], how="diagonal_relaxed")
    frame = frame.with_columns(
        group_id=pl.coalesce("parent_group", pl.col("input").map_elements(group_id, return_dtype=pl.String)),
        priority=pl.col("source").replace_strict(SOURCE_PRIORITY, return_dtype=pl.Int8),
        input_key=pl.col("input").map_elements(_input_key, return_dtype=pl.String),
    ).with_row_index("order")
    counts = {"candidates": frame.height}
    deduped = frame.sort("priority", "order").unique("input_key", keep="first", maintain_order=True)
    counts["dropped_duplicate_input"] = frame.height - deduped.height
    with_split = deduped.with_columns(
        split=pl.col("group_id").map_elements(lambda g: assign_split(g, split_config), return_dtype=pl.String))
    kept = with_split.filter(~((pl.col("split") == "test") & (pl.col("source") == "synthetic")))
    counts["dropped_synthetic_in_test"] = with_split.height - kept.height
    counts.update({f"split_{k}": v for k, v in kept.group_by("split").len().iter_rows()})
    result = (kept.sort("order").select("example_id", "source", "group_id", "split", "input", "output", "parent_id")
              .with_columns(created_at=pl.lit(now)).cast(EXAMPLE_SCHEMA))
    return result, counts


def _input_key(input_json: str) -> str:
    value = json.loads(input_json)
    question = re.sub(r"\s+", " ", str(value.get("question", "")).strip().lower())
    return json.dumps([question, value.get("columns")], ensure_ascii=False)


def data_version(examples: pl.DataFrame, splits: tuple[str, ...] = ("train", "validation")) -> str:
    """Content hash of the examples in ``splits``: changes exactly when training data changes."""
    rows = (examples.filter(pl.col("split").is_in(splits))
            .select("example_id", "split", "input", "output").sort("example_id").iter_rows())
    digest = hashlib.sha256()
    for row in rows:
        digest.update("\x1f".join(row).encode() + b"\x1e")
    return digest.hexdigest()[:16]
