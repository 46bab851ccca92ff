"""Curate training examples from traces, people's corrections and synthetic data, with splits.

:func:`real_examples` picks what production and people give; :func:`curate` drops failing
outputs, duplicates (on input, on output, on the pair), examples outside the complexity bounds,
train examples that near-duplicate a test input and synthetic examples over their split's cap,
and assigns every group a split (:mod:`pipeline.engine.curate.splits`). Every drop is counted by reason.
Each example says whether a person verified its reference (``reference_verified``): a correction
and a passing trace whose latest decision is "good" are verified; a passing trace no person looked
at, and a synthetic example, are not (their output is what a model wrote). Each example also says
who wrote its output (``output_origin``: ``model:<the trace's model>``, ``person:<annotator>`` or
``synthetic:<generator>``), so a team leaving a hosted model can see, and restrict, what it
distils from that model (``CurationConfig.distill_from``).
What an input's group is, what counts as a duplicate input and how complex an output is, the task
says (:mod:`pipeline.engine.tasks.hooks`).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import duckdb
import polars as pl

from pipeline.engine.core import store
from pipeline.engine.label.agreement import decided_labels
from pipeline.engine.curate.dedup import DEFAULT_THRESHOLD, input_key, near_duplicate_pairs
from pipeline.engine.curate.splits import NO_FAILURE, SPLITS, SplitConfig, assign_splits, group_id, split_sizes
from pipeline.engine.tasks import Task, hooks

EXAMPLE_SCHEMA = {
    "example_id": pl.String, "source": pl.String, "group_id": pl.String, "split": pl.String,
    "input": pl.String, "output": pl.String, "parent_id": pl.String, "failure_mode": pl.String,
    "complexity": pl.Int64, "reference_verified": pl.Boolean, "output_origin": pl.String,
    "created_at": pl.Datetime("us", "UTC"),
}
#: Which example wins when several share an input or output: a person's correction, then a trace, then synthetic.
SOURCE_PRIORITY = {"correction": 0, "trace": 1, "synthetic": 2}


@dataclass(frozen=True)
class CurationConfig:
    """What curation keeps: complexity bounds (inclusive; None = the task's ``complexity_bounds``),
    at most ``max_per_output`` examples per output, at most ``max_synthetic_share`` synthetic
    examples in a split, and the near-duplicate threshold for test leakage.

    Distillation: with ``distill_from`` (a model name, as traces record it), the train and
    validation traces keep only outputs that model wrote (``model:<distill_from>``), and with
    ``distill_verified_only`` only those a person marked good; people's corrections and synthetic
    data are kept as before, and the test split is unchanged, so candidates stay comparable."""

    splits: SplitConfig = field(default_factory=SplitConfig)
    min_complexity: int | None = None
    max_complexity: int | None = None
    max_per_output: int = 10
    max_synthetic_share: float = 0.4
    near_duplicate_threshold: float = DEFAULT_THRESHOLD
    distill_from: str | None = None
    distill_verified_only: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.max_synthetic_share < 1:
            raise ValueError(f"max_synthetic_share must be in [0, 1), got {self.max_synthetic_share}")
        if self.max_per_output < 1:
            raise ValueError(f"max_per_output must be at least 1, got {self.max_per_output}")
        if self.distill_verified_only and not self.distill_from:
            raise ValueError("distill_verified_only needs distill_from (the model whose outputs to distil)")

    def complexity_bounds(self, task: Task) -> tuple[int | None, int | None]:
        """(min, max) complexity kept: each bound as set here, else the task's (None: unbounded)."""
        low, high = hooks.complexity_bounds(task)
        return (low if self.min_complexity is None else self.min_complexity,
                high if self.max_complexity is None else self.max_complexity)


@dataclass(frozen=True)
class CurationOptions:
    """What a deployment sets about curation, flat (the ``CurationSettings`` resource's fields),
    with CurationConfig's and SplitConfig's defaults: split shares (and the size check's
    tolerance), complexity bounds (None: the task's), duplicates allowed per output, the cap on
    synthetic data per split, the near-duplicate threshold, what to distil from ('' or None: every
    model's outputs)."""

    validation_share: float = SplitConfig.validation
    test_share: float = SplitConfig.test
    split_tolerance: float = SplitConfig.tolerance
    min_complexity: int | None = CurationConfig.min_complexity
    max_complexity: int | None = CurationConfig.max_complexity
    max_per_output: int = CurationConfig.max_per_output
    max_synthetic_share: float = CurationConfig.max_synthetic_share
    near_duplicate_threshold: float = CurationConfig.near_duplicate_threshold
    distill_from: str | None = CurationConfig.distill_from
    distill_verified_only: bool = CurationConfig.distill_verified_only

    def config(self) -> CurationConfig:
        """The CurationConfig these options make (validated there)."""
        return CurationConfig(
            splits=SplitConfig(validation=self.validation_share, test=self.test_share, tolerance=self.split_tolerance),
            min_complexity=self.min_complexity, max_complexity=self.max_complexity,
            max_per_output=self.max_per_output, max_synthetic_share=self.max_synthetic_share,
            near_duplicate_threshold=self.near_duplicate_threshold, distill_from=self.distill_from or None,
            distill_verified_only=self.distill_verified_only)


def real_examples(traces: pl.DataFrame, evaluations: pl.DataFrame, annotations: pl.DataFrame,
                  task: Task) -> pl.DataFrame:
    """Examples from production: traces that pass every assertion and were not judged bad by
    people (output normalised), and people's corrections (replacing the trace's output, normalised).

    People's decision per trace is :func:`pipeline.engine.label.agreement.decided_labels` (the
    adjudication, else the annotators' agreed decision): a trace whose annotators disagree and
    that is not adjudicated yet counts as unlabelled. Columns: example_id, source, parent_id (the
    trace), input, output, failure_mode (what the corrected trace got wrong: the person's label,
    else its first failing check in the task's order; None for traces), reference_verified (a
    correction; a trace whose decided label is "good"), output_origin (``model:<traces.model>``,
    ``model:unknown`` when the trace names none; ``person:<annotator>`` for a correction).
    """
    failing = evaluations.filter(pl.col("passed") == False)  # noqa: E712
    order = {name: i for i, name in enumerate(task.check_names)}
    first_failure = (failing.with_columns(rank=pl.col("check_name").replace_strict(order, default=len(order),
                                                                                   return_dtype=pl.Int64))
                     .sort("trace_id", "rank").group_by("trace_id", maintain_order=True)
                     .agg(pl.col("check_name").first().alias("failed")))
    decisions = decided_labels(annotations)
    judged_bad = decisions.filter(pl.col("label") == "bad").select("trace_id")
    judged_good = decisions.filter(pl.col("label") == "good")["trace_id"].to_list()
    passing = (traces.filter(pl.col("error").is_null() | (pl.col("output") != ""))
               .join(evaluations.select("trace_id").unique(), on="trace_id", how="semi")
               .join(failing.select("trace_id").unique(), on="trace_id", how="anti")
               .join(judged_bad, on="trace_id", how="anti"))
    from_traces = passing.select(
        ("trace:" + pl.col("trace_id")).alias("example_id"), pl.lit("trace").alias("source"),
        pl.col("trace_id").alias("parent_id"), "input",
        _normalised(task, "output").alias("output"),
        pl.lit(None, pl.String).alias("failure_mode"),
        pl.col("trace_id").is_in(judged_good).alias("reference_verified"),
        _model_origin(passing))
    from_people = (decisions.filter(pl.col("correction").is_not_null())
                   .join(traces.select("trace_id", "input"), on="trace_id", how="inner")
                   .join(first_failure, on="trace_id", how="left")
                   .select(("correction:" + pl.col("trace_id")).alias("example_id"),
                           pl.lit("correction").alias("source"), pl.col("trace_id").alias("parent_id"),
                           "input",
                           _normalised(task, "correction").alias("output"),
                           pl.coalesce("failure_mode", "failed").alias("failure_mode"),
                           pl.lit(True).alias("reference_verified"),
                           ("person:" + pl.col("annotator")).alias("output_origin")))
    return pl.concat([from_traces, from_people]).filter(pl.col("output").is_not_null())


def _model_origin(traces: pl.DataFrame) -> pl.Expr:
    """``model:<model>`` of each trace (``model:unknown`` when the frame or the trace has none)."""
    model = pl.col("model") if "model" in traces.columns else pl.lit(None, pl.String)
    return ("model:" + model.fill_null("unknown")).alias("output_origin")


def _normalised(task: Task, column: str) -> pl.Expr:
    """The task's canonical form of ``column`` (an output), given each row's input; null when it
    does not parse."""
    def normalise(row: dict[str, Any]) -> str | None:
        output = row[column]
        return None if output is None else hooks.normalise(task, output, json.loads(row["input"]))

    return pl.struct("input", column).map_elements(normalise, return_dtype=pl.String)


def real_groups(real: pl.DataFrame, task: Task) -> dict[str, tuple[str, bool]]:
    """Group -> stratum: (the first failure mode among its examples, else ``NO_FAILURE``; whether
    one of its references was verified by a person), so test holds verified references in the
    same share as the rest."""
    modes: dict[str, str] = {}
    verified: set[str] = set()
    for input_json, mode, checked in _with_verification(real).select("input", "failure_mode",
                                                                      "reference_verified").iter_rows():
        group = group_id(task, input_json)
        if mode is not None and modes.get(group, NO_FAILURE) == NO_FAILURE:
            modes[group] = mode
        modes.setdefault(group, NO_FAILURE)
        if checked:
            verified.add(group)
    return {group: (mode, group in verified) for group, mode in modes.items()}


def _with_verification(real: pl.DataFrame) -> pl.DataFrame:
    """``real`` with its reference_verified and output_origin columns; in a frame without them,
    corrections are verified and nothing else is (no person's "good" decision is known), and
    the origin is unknown (null)."""
    if "output_origin" not in real.columns:
        real = real.with_columns(output_origin=pl.lit(None, pl.String))
    if "reference_verified" in real.columns:
        return real
    return real.with_columns(reference_verified=pl.col("source") == "correction")


def plan_splits(real: pl.DataFrame, task: Task, config: SplitConfig,
                previous: dict[str, str] | None = None) -> dict[str, str]:
    """Group -> split for every group of the real examples (before any curation drops, so the
    synthetic stage, which must not use test seeds, sees the same plan as curation)."""
    return assign_splits(real_groups(real, task), config, previous)


def outside_test(real: pl.DataFrame, task: Task, splits: dict[str, str]) -> pl.DataFrame:
    """The real examples whose group is not in test: the only ones synthetic data may derive from."""
    return real.filter(pl.col("input").map_elements(lambda i: splits[group_id(task, i)], return_dtype=pl.String)
                       != "test")


def curate(real: pl.DataFrame, synthetic: pl.DataFrame, task: Task, config: CurationConfig,
           previous: dict[str, str] | None = None, now: datetime | None = None) -> tuple[pl.DataFrame, dict[str, Any]]:
    """training_examples rows and a report: candidates, what was dropped and why, split sizes.

    ``previous`` (group -> split, from the table) keeps existing groups in their split.
    Synthetic examples join their parent's group; those whose parent is not curated any more
    are dropped, as are those in a test group.
    """
    now = now or datetime.now(timezone.utc)
    dropped: Counter = Counter()
    real = _with_verification(real)
    parent_groups = {e: group_id(task, i) for e, i in real.select("example_id", "input").iter_rows()}
    synth = synthetic.select("example_id", pl.lit("synthetic").alias("source"), "parent_id", "input", "output",
                             pl.lit(None, pl.String).alias("failure_mode"), pl.lit(False).alias("reference_verified"),
                             _synthetic_origin(synthetic))
    rows = [dict(r, order=n) for n, r in enumerate(pl.concat([real.select(synth.columns), synth]).iter_rows(named=True))]
    report: dict[str, Any] = {"candidates": len(rows)}

    kept = []
    for row in rows:
        if row["source"] == "synthetic" and row["parent_id"] not in parent_groups:
            dropped["synthetic_parent_not_curated"] += 1
            continue
        if row["output"] is None or any(r.passed is False for r in task.check(json.loads(row["input"]), row["output"])):
            dropped["failing_output"] += 1
            continue
        row["group_id"] = (parent_groups[row["parent_id"]] if row["source"] == "synthetic"
                           else group_id(task, row["input"]))
        row["complexity"] = hooks.complexity(task, row["output"])
        row["input_key"] = input_key(task, row["input"])
        kept.append(row)
    kept.sort(key=lambda r: (SOURCE_PRIORITY[r["source"]], not r["reference_verified"], r["order"]))
    kept = _first_per(kept, lambda r: (r["input_key"], r["output"]), 1, "duplicate_pair", dropped)
    kept = _first_per(kept, lambda r: r["input_key"], 1, "duplicate_input", dropped)
    low, high = config.complexity_bounds(task)
    dropped["too_simple"] += sum(1 for r in kept if low is not None and r["complexity"] < low)
    dropped["too_complex"] += sum(1 for r in kept if high is not None and r["complexity"] > high)
    kept = [r for r in kept if (low is None or r["complexity"] >= low) and (high is None or r["complexity"] <= high)]
    kept = _first_per(kept, lambda r: r["output"], config.max_per_output, "over_max_per_output", dropped)

    splits = plan_splits(real, task, config.splits, previous)
    for r in kept:
        r["split"] = splits[r["group_id"]]
    dropped["synthetic_in_test"] += sum(1 for r in kept if r["split"] == "test" and r["source"] == "synthetic")
    kept = [r for r in kept if not (r["split"] == "test" and r["source"] == "synthetic")]
    kept = _drop_near_duplicates_of_test(kept, task, config.near_duplicate_threshold, dropped)
    kept = _distilled(kept, config, dropped)  # before the cap: the cap is a share of what stays
    kept = _cap_synthetic(kept, config.max_synthetic_share, dropped)

    report["dropped"] = {k: v for k, v in sorted(dropped.items()) if v}
    report["splits"] = {split: _split_report(kept, split) for split in SPLITS}
    report["real_split_sizes"] = split_sizes([r["split"] for r in kept if r["source"] != "synthetic"], config.splits)
    kept.sort(key=lambda r: r["order"])
    result = pl.DataFrame([{**{k: r[k] for k in EXAMPLE_SCHEMA if k != "created_at"}, "created_at": now} for r in kept],
                          schema=EXAMPLE_SCHEMA)
    return result, report


def _synthetic_origin(synthetic: pl.DataFrame) -> pl.Expr:
    """``synthetic:<generator>`` of each synthetic example (``synthetic`` when the frame has no generator)."""
    if "generator" not in synthetic.columns:
        return pl.lit("synthetic").alias("output_origin")
    return ("synthetic:" + pl.col("generator")).alias("output_origin")


def _distilled(rows: list[dict], config: CurationConfig, dropped: Counter) -> list[dict]:
    """With ``config.distill_from``: train and validation traces written by another model (or,
    with ``distill_verified_only``, not marked good by a person) are dropped, counted by reason."""
    if not config.distill_from:
        return rows
    wanted = f"model:{config.distill_from}"
    out = []
    for row in rows:
        if row["split"] != "test" and row["source"] == "trace":
            if row["output_origin"] != wanted:
                dropped["not_from_distilled_model"] += 1
                continue
            if config.distill_verified_only and not row["reference_verified"]:
                dropped["distilled_output_not_verified"] += 1
                continue
        out.append(row)
    return out


def _first_per(rows: list[dict], key, limit: int, reason: str, dropped: Counter) -> list[dict]:
    """The first ``limit`` rows per key (rows are in priority order); the rest counted as ``reason``."""
    seen: Counter = Counter()
    out = []
    for row in rows:
        k = key(row)
        seen[k] += 1
        if seen[k] <= limit:
            out.append(row)
        else:
            dropped[reason] += 1
    return out


def _drop_near_duplicates_of_test(rows: list[dict], task: Task, threshold: float, dropped: Counter) -> list[dict]:
    """Train and validation examples whose input near-duplicates a test input would leak it."""
    test = [(r["example_id"], r["input"]) for r in rows if r["split"] == "test"]
    leaking = {k for k, _ in near_duplicate_pairs(task, test, [(r["example_id"], r["input"]) for r in rows
                                                               if r["split"] != "test"], threshold)}
    dropped["near_duplicate_of_test"] += len(leaking)
    return [r for r in rows if r["example_id"] not in leaking]


def _cap_synthetic(rows: list[dict], cap: float, dropped: Counter) -> list[dict]:
    """Drop synthetic examples (in a stable hash order) until each split's synthetic share is at most ``cap``."""
    out = [r for r in rows if r["source"] != "synthetic"]
    for split in SPLITS:
        real = sum(1 for r in out if r["split"] == split)
        synthetic = sorted((r for r in rows if r["source"] == "synthetic" and r["split"] == split),
                           key=lambda r: hashlib.sha256(r["example_id"].encode()).hexdigest())
        allowed = int(cap * real / (1 - cap) + 1e-9)
        out += synthetic[:allowed]
        dropped[f"synthetic_over_cap_in_{split}"] += max(0, len(synthetic) - allowed)
    return out


def _split_report(rows: list[dict], split: str) -> dict[str, Any]:
    in_split = [r for r in rows if r["split"] == split]
    synthetic = sum(1 for r in in_split if r["source"] == "synthetic")
    return {"examples": len(in_split), "synthetic": synthetic,
            "synthetic_share": round(synthetic / len(in_split), 4) if in_split else 0.0,
            "verified_references": sum(1 for r in in_split if r["reference_verified"])}


def stored_examples(conn: duckdb.DuckDBPyConnection, splits: tuple[str, ...] | None = None) -> pl.DataFrame:
    """The stored training_examples (example_id, split, input as JSON text, output) by example_id,
    only those of ``splits`` when given: what :func:`data_version` hashes."""
    where = "WHERE list_contains(?, split)" if splits else ""
    return store.read(conn, "SELECT example_id, split, input::VARCHAR AS input, output FROM training_examples "
                            f"{where} ORDER BY example_id", [list(splits)] if splits else None)


def data_version(examples: pl.DataFrame, splits: tuple[str, ...] = ("train", "validation")) -> str:
    """Content hash of the examples in ``splits``: changes exactly when training data changes."""
    rows = (examples.filter(pl.col("split").is_in(splits))
            .select("example_id", "split", "input", "output").sort("example_id").iter_rows())
    digest = hashlib.sha256()
    for row in rows:
        digest.update("\x1f".join(row).encode() + b"\x1e")
    return digest.hexdigest()[:16]


def training_data_version(conn: duckdb.DuckDBPyConnection,
                          splits: tuple[str, ...] | None = ("train", "validation")) -> tuple[pl.DataFrame, str]:
    """The stored examples of ``splits`` (None: every split, test included) and the training data
    version, the :func:`data_version` of the stored train and validation examples (``splits``
    must hold both)."""
    examples = stored_examples(conn, splits)
    return examples, data_version(examples)
