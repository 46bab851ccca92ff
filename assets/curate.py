"""Curate group: synthetic data, curated training examples with splits, training files."""

import dagster as dg

from assets.ingest import annotations
from assets.label import labelled_failures
from assets.metadata import counts_table, preview
from pipeline.automation import table_version
from pipeline.engine.core import store
from pipeline.engine.curate.audit import SplitAudit, audit_splits
from pipeline.engine.curate.examples import curate, data_version, outside_test, plan_splits, training_data_version
from pipeline.engine.curate.export import MAX_TOKENS_PER_EXAMPLE, split_files, token_counter, training_cost, write_jsonl
from pipeline.engine.curate.reads import previous_splits, real_examples_from, stored_synthetic
from pipeline.engine.curate.synthetic_run import SyntheticConfig, synthesize
from pipeline.resources import CurationSettings, FlywheelDuckDB, FlywheelPaths, TaskResource


class SyntheticSettings(dg.Config):
    """Synthetic data: the offline budget (a share of the real examples) and the LLM generators.

    The LLM generators run only when ``llm_model`` is set; the API key comes from the
    environment (OPENAI_API_KEY), OPENAI_BASE_URL or ``llm_base_url`` picks the server.
    """

    share_of_real: float = 0.5
    seed: int = 7
    llm_model: str | None = None
    llm_base_url: str | None = None
    llm_rewrites: int = 60
    llm_dimension_examples: int = 30
    llm_temperature: float = 0.8
    prompt_version: str = "v1"


class TrainingFileSettings(dg.Config):
    """Training files: the per-example token limit and the inputs of the cost estimate."""

    epochs: int = 3
    #: Price of 1M training tokens (gpt-4o-mini fine-tuning list price when written; check yours).
    price_per_1m_training_tokens: float = 3.0
    max_tokens_per_example: int = MAX_TOKENS_PER_EXAMPLE
    tokenizer_encoding: str = "o200k_base"


@dg.asset(
    group_name="curate",
    kinds={"duckdb", "polars", "openai"},
    deps=[labelled_failures, annotations],
    description="Synthetic examples from real passing traces and corrections outside the test split: the "
                "task's offline generators (for nl2query column substitution; time-range, limit, operator and "
                "breakdown variation; questions composed from feature x scenario x persona) and, when a model "
                "is configured, LLM rewrites and dimension-tuple generation. Kept only if every assertion passes "
                "and it is no near-duplicate of an existing example; provenance in parent_id, generator, "
                "prompt_version, seed.",
)
def synthetic_examples(context: dg.AssetExecutionContext, config: SyntheticSettings, duckdb: FlywheelDuckDB,
                       task: TaskResource, curation: CurationSettings) -> dg.MaterializeResult:
    the_task = task.load()
    settings = curation.config()
    with duckdb.get_connection() as conn:
        real = real_examples_from(conn, the_task)
        seeds = outside_test(real, the_task, plan_splits(real, the_task, settings.splits, previous_splits(conn)))
        stored = stored_synthetic(conn)
    run = synthesize(real, seeds, stored, the_task, SyntheticConfig(**config.model_dump()),
                     settings.near_duplicate_threshold)
    with duckdb.get_connection() as conn:
        changes = store.sync(conn, "synthetic_examples", run.examples, ["example_id"])
        version = table_version(conn, "synthetic_examples")
    context.log.info(f"kept {run.examples.height} of {run.candidates} synthetic candidates from {seeds.height} "
                     f"seeds; LLM generators {run.llm_status}")
    return dg.MaterializeResult(data_version=version, metadata={
        "dagster/row_count": run.examples.height, "offline_budget": run.offline_budget, "seed_examples": seeds.height,
        "llm_generators": run.llm_status, "by_generator": preview(run.by_generator, n=20),
        "rejected": counts_table(run.rejected), "changes": counts_table(changes),
        "preview": preview(run.examples.select("generator", "input", "output"))})


@dg.asset(
    group_name="curate",
    kinds={"duckdb", "polars"},
    deps=[labelled_failures, synthetic_examples],
    description="Curated examples with a group and a stable split: passing traces and people's corrections "
                "(real), and synthetic examples in their parent's group (never in test). Failing outputs, "
                "duplicates (input, output, pair), out-of-bounds complexity (the task's bounds unless set), "
                "near-duplicates of test inputs and synthetic data over its cap are dropped and counted. Test "
                "is stratified by failure mode and by whether a person verified the reference (reference_verified: "
                "a correction, or a trace a person marked good); existing groups keep their split as new data "
                "arrives.",
    check_specs=[
        dg.AssetCheckSpec("no_group_in_two_splits", asset="training_examples", blocking=True,
                          description="Every group (what the task groups, such as a question on its "
                                      "dataset, and everything derived from it) lies in one split."),
        dg.AssetCheckSpec("test_split_is_real", asset="training_examples", blocking=True,
                          description="The test split holds only real traces and corrections."),
        dg.AssetCheckSpec("no_test_near_duplicate_in_train", asset="training_examples", blocking=True,
                          description="No train or validation input is a near-duplicate of a test input."),
        dg.AssetCheckSpec("splits_within_target_size", asset="training_examples",
                          description="Each split's share of the real examples is within tolerance of its target."),
    ],
)
def training_examples(context: dg.AssetExecutionContext, duckdb: FlywheelDuckDB, task: TaskResource,
                      curation: CurationSettings) -> dg.MaterializeResult:
    the_task = task.load()
    settings = curation.config()
    with duckdb.get_connection() as conn:
        examples, report = curate(real_examples_from(conn, the_task), stored_synthetic(conn), the_task, settings,
                                  previous_splits(conn))
        changes = store.sync(conn, "training_examples", examples, ["example_id"],
                             compare=["split", "output", "group_id", "reference_verified", "output_origin"])
        audit = audit_splits(conn, settings, the_task)
        stored = table_version(conn, "training_examples")
    version = data_version(examples)
    context.log.info(f"{examples.height} training examples, data version {version}")
    return dg.MaterializeResult(
        data_version=stored,  # splits and outputs included: the training files follow any change
        metadata={"dagster/row_count": audit.rows, "training_data_version": version,
                  "candidates": report["candidates"], "splits": preview(audit.split_table(report)),
                  "composition": preview(audit.composition, n=60),
                  "dropped": counts_table(report["dropped"]), "changes": counts_table(changes)},
        check_results=split_checks(audit, settings.splits.tolerance),
    )


def split_checks(audit: SplitAudit, tolerance: float) -> list[dg.AssetCheckResult]:
    """The training_examples checks' results from the stored examples' audit."""
    return [
        dg.AssetCheckResult(check_name="no_group_in_two_splits", passed=audit.groups_in_two_splits == 0,
                            metadata={"groups_in_two_splits": audit.groups_in_two_splits}),
        dg.AssetCheckResult(check_name="test_split_is_real", passed=audit.synthetic_in_test == 0,
                            metadata={"synthetic_in_test": audit.synthetic_in_test}),
        dg.AssetCheckResult(check_name="no_test_near_duplicate_in_train", passed=not audit.leaks,
                            metadata={"leaks": len(audit.leaks), "examples": dg.MetadataValue.md(
                                "\n".join(f"- {a} ~ {b}" for a, b in audit.leaks[:20]) or "none")}),
        dg.AssetCheckResult(check_name="splits_within_target_size",
                            passed=all(v["within_tolerance"] for v in audit.sizes.values()),
                            severity=dg.AssetCheckSeverity.WARN,
                            metadata={s: f"{v['share']:.3f} (target {v['target']:.2f} ± {tolerance})"
                                      for s, v in audit.sizes.items()}),
    ]


@dg.asset(
    group_name="curate",
    kinds={"duckdb", "openai"},
    deps=[training_examples],
    description="Train, validation and test files in OpenAI chat format (JSONL), checked against the format's "
                "rules by a blocking check; what every backend trains on. Examples over the per-example token "
                "limit cannot be trained on: they are left out and counted by reason. Token counts and an "
                "estimated training cost in the metadata.",
    check_specs=[dg.AssetCheckSpec("openai_format", asset="training_files", blocking=True,
                                   description="Roles, non-empty content, an assistant message, weights, "
                                               "minimum size.")],
)
def training_files(context: dg.AssetExecutionContext, config: TrainingFileSettings, duckdb: FlywheelDuckDB,
                   task: TaskResource, paths: FlywheelPaths) -> dg.MaterializeResult:
    with duckdb.get_connection() as conn:
        examples, version = training_data_version(conn, None)
    out_dir = paths.exports_dir / version
    counter = token_counter(config.tokenizer_encoding)
    files = split_files(examples, task.load(), counter, config.max_tokens_per_example)
    written = {split: str(write_jsonl(records, out_dir / f"{split}.jsonl")) for split, records in files.records.items()}
    cost = training_cost(files.tokens["train"], config.epochs, config.price_per_1m_training_tokens)
    context.log.info(f"wrote training files under {out_dir}" +
                     "".join(f"; left out {n} examples {reason}" for reason, n in files.dropped.items()))
    return dg.MaterializeResult(
        # the content hash as Dagster's data version: training runs only when it changes (pipeline/automation.py)
        data_version=dg.DataVersion(version),
        metadata={"training_data_version": version,
                  **{f"{s}_file": dg.MetadataValue.path(p) for s, p in written.items()},
                  "examples": counts_table(files.counts), "tokens": counts_table(files.tokens),
                  "dropped": counts_table(files.dropped) if files.dropped else "none",
                  "token_count_method": counter.method,
                  "pii_scrubbed": counts_table(files.scrubbed) if files.scrubbed else "none found",
                  "estimated_training_cost_usd": dg.MetadataValue.float(cost),
                  "cost_estimate_basis": f"estimate: train tokens x {config.epochs} epochs x "
                                         f"${config.price_per_1m_training_tokens}/1M tokens ({counter.method})"},
        check_results=[dg.AssetCheckResult(
            check_name="openai_format", passed=not files.problems,
            metadata={"problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in files.problems[:50]) or "none")},
            description=f"{len(files.problems)} problems" if files.problems else "all records valid")],
    )
