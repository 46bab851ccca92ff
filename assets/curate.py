"""Curate group: synthetic data, curated training examples with splits, training files."""


import dagster as dg
import polars as pl

from assets.evaluations import labelled_failures
from assets.ingest import annotations
from assets.metadata import counts_table, preview
from pipeline.engine import store
from pipeline.engine.curation import SplitConfig, curate, data_version, real_examples, synthesize
from pipeline.engine.export import approx_tokens, chat_records, format_problems, write_jsonl
from pipeline.resources import FlywheelDuckDB, FlywheelPaths, TaskResource


class SplitSettings(dg.Config):
    """Target shares of the validation and test splits (the rest is train)."""

    validation_share: float = 0.1
    test_share: float = 0.15


class SyntheticSettings(dg.Config):
    """How many offline synthetic examples to generate, as a share of the real ones."""

    share_of_real: float = 0.5
    seed: int = 7
    validation_share: float = 0.1
    test_share: float = 0.15


def _split_config(settings) -> SplitConfig:
    return SplitConfig(validation=settings.validation_share, test=settings.test_share)


def _real_examples(conn, task):
    traces = store.read(conn, "SELECT trace_id, input::VARCHAR AS input, output, error FROM raw_traces ORDER BY trace_id")
    evaluations = store.read(conn, "SELECT trace_id, check_name, passed FROM trace_evaluations")
    people = store.read(conn, "SELECT * FROM annotations")
    return real_examples(traces, evaluations, people, task)


@dg.asset(
    group_name="curate",
    kinds={"duckdb", "polars"},
    deps=[labelled_failures, annotations],
    description="Synthetic examples generated offline from real passing traces and corrections "
                "(column substitution, time-range and limit variation). Only examples passing every "
                "assertion are kept; none is derived from a test-split example.",
)
def synthetic_examples(context: dg.AssetExecutionContext, config: SyntheticSettings, duckdb: FlywheelDuckDB,
                       task: TaskResource) -> dg.MaterializeResult:
    the_task = task.load()
    with duckdb.get_connection() as conn:
        seeds = _real_examples(conn, the_task)
        n = int(seeds.height * config.share_of_real)
        generated = synthesize(seeds, the_task, n, config.seed, _split_config(config))
        changes = store.sync(conn, "synthetic_examples", generated, ["example_id"])
    by_generator = generated.group_by("generator").len().sort("generator")
    context.log.info(f"generated {generated.height} synthetic examples from {seeds.height} seeds")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": generated.height, "requested": n, "seed_examples": seeds.height,
        "by_generator": counts_table(dict(by_generator.iter_rows())), "changes": counts_table(changes),
        "preview": preview(generated.select("generator", "input", "output"))})


@dg.asset(
    group_name="curate",
    kinds={"duckdb", "polars"},
    deps=[labelled_failures, synthetic_examples],
    description="Curated examples with a group and a stable split: passing traces and people's "
                "corrections (real), and synthetic examples (never in test). An example keeps its "
                "split as new data arrives.",
    check_specs=[
        dg.AssetCheckSpec("no_group_in_two_splits", asset="training_examples", blocking=True,
                          description="Every group (a question and everything derived from it) lies in one split."),
        dg.AssetCheckSpec("test_split_is_real", asset="training_examples", blocking=True,
                          description="The test split holds only real traces and corrections."),
    ],
)
def training_examples(context: dg.AssetExecutionContext, config: SplitSettings, duckdb: FlywheelDuckDB,
                      task: TaskResource) -> dg.MaterializeResult:
    the_task = task.load()
    with duckdb.get_connection() as conn:
        real = _real_examples(conn, the_task)
        synthetic = store.read(conn, "SELECT example_id, parent_id, input::VARCHAR AS input, output FROM synthetic_examples")
        examples, counts = curate(real, synthetic, _split_config(config))
        changes = store.sync(conn, "training_examples", examples, ["example_id"],
                             compare=["split", "output", "group_id"])
        stored = store.read(conn, "SELECT example_id, source, group_id, split FROM training_examples")
    groups_in_two = stored.group_by("group_id").agg(pl.col("split").n_unique()).filter(pl.col("split") > 1).height
    synthetic_in_test = stored.filter((pl.col("split") == "test") & (pl.col("source") == "synthetic")).height
    composition = stored.group_by("split", "source").len().sort("split", "source")
    version = data_version(examples)
    context.log.info(f"{examples.height} training examples, data version {version}")
    return dg.MaterializeResult(
        metadata={"dagster/row_count": stored.height, "training_data_version": version,
                  "composition": preview(composition, n=20), "curation": counts_table(counts),
                  "changes": counts_table(changes)},
        check_results=[
            dg.AssetCheckResult(check_name="no_group_in_two_splits", passed=groups_in_two == 0,
                                metadata={"groups_in_two_splits": groups_in_two}),
            dg.AssetCheckResult(check_name="test_split_is_real", passed=synthetic_in_test == 0,
                                metadata={"synthetic_in_test": synthetic_in_test}),
        ],
    )


@dg.asset(
    group_name="curate",
    kinds={"duckdb", "openai"},
    deps=[training_examples],
    description="Training and validation files in OpenAI chat format (JSONL), checked against the "
                "format's rules by a blocking check; what every backend trains on.",
    check_specs=[dg.AssetCheckSpec("openai_format", asset="training_files", blocking=True,
                                   description="Roles, non-empty content, an assistant message, weights, minimum size.")],
)
def training_files(context: dg.AssetExecutionContext, duckdb: FlywheelDuckDB, task: TaskResource,
                   paths: FlywheelPaths) -> dg.MaterializeResult:
    the_task = task.load()
    with duckdb.get_connection() as conn:
        examples = store.read(conn, "SELECT example_id, split, input::VARCHAR AS input, output FROM training_examples ORDER BY example_id")
    version = data_version(examples)
    out_dir = paths.exports_dir / version
    written, problems, tokens = {}, {}, {}
    for split in ("train", "validation"):
        records = chat_records(examples.filter(pl.col("split") == split), the_task)
        problems[split] = format_problems(records, min_examples=10 if split == "train" else 1)
        written[split] = str(write_jsonl(records, out_dir / f"{split}.jsonl"))
        tokens[split] = approx_tokens(records)
    all_problems = [f"{split}: {p}" for split, ps in problems.items() for p in ps]
    context.log.info(f"wrote training files under {out_dir}")
    return dg.MaterializeResult(
        metadata={"training_data_version": version, "train_file": dg.MetadataValue.path(written["train"]),
                  "validation_file": dg.MetadataValue.path(written["validation"]),
                  "approx_tokens_train": tokens["train"], "approx_tokens_validation": tokens["validation"],
                  "token_count_method": "approximate: characters / 4 (no tokenizer offline)"},
        check_results=[dg.AssetCheckResult(
            check_name="openai_format", passed=not all_problems,
            metadata={"problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in all_problems[:50]) or "none")},
            description=f"{len(all_problems)} problems" if all_problems else "all records valid")],
    )
