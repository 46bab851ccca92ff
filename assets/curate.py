"""Curate group: synthetic data, curated training examples with splits, training files."""

import random
from collections import Counter

import dagster as dg
import polars as pl

from assets.evaluations import labelled_failures
from assets.ingest import annotations
from assets.metadata import counts_table, preview
from pipeline.engine.core import store
from pipeline.engine.curate.examples import curate, data_version, outside_test, plan_splits, real_examples, stored_examples
from pipeline.engine.curate.dedup import near_duplicate_pairs
from pipeline.engine.curate.export import (
    MAX_TOKENS_PER_EXAMPLE, chat_records, format_problems, scrub_records, token_counter, training_cost, write_jsonl,
)
from pipeline.engine.curate.splits import split_sizes
from pipeline.engine.curate.synth import (accept, llm_dimensions, llm_rewrite, load_dimensions, load_prompt,
                                   offline_candidates, reuse_llm_examples)
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


def _real_examples(conn, task):
    traces = store.read(conn, "SELECT trace_id, input::VARCHAR AS input, output, error FROM raw_traces ORDER BY trace_id")
    evaluations = store.read(conn, "SELECT trace_id, check_name, passed FROM trace_evaluations ORDER BY trace_id, check_name")
    people = store.read(conn, "SELECT * FROM annotations")
    return real_examples(traces, evaluations, people, task)


def _previous_splits(conn) -> dict[str, str]:
    """Group -> split as stored: existing groups keep their split."""
    rows = conn.execute("SELECT group_id, min(split) FROM training_examples GROUP BY group_id").fetchall()
    return dict(rows)


def _llm_candidates(config: SyntheticSettings, task_name: str, seeds: pl.DataFrame, rewrites: int, composed: int):
    """``rewrites`` and ``composed`` new LLM candidates (the API key comes from the environment)."""
    from pipeline.engine.providers.openai_chat import OpenAIChatProvider

    provider = OpenAIChatProvider(config.llm_model, base_url=config.llm_base_url)
    rng = random.Random(config.seed)
    from_rewrites, problems = llm_rewrite(provider, seeds, rewrites, rng,
                                          load_prompt(task_name, "rewrite", config.prompt_version),
                                          temperature=config.llm_temperature)
    from_dimensions, more = llm_dimensions(provider, seeds, composed, rng,
                                           load_prompt(task_name, "dimensions_spec", config.prompt_version),
                                           load_prompt(task_name, "dimensions_question", config.prompt_version),
                                           load_dimensions(task_name, config.prompt_version),
                                           temperature=config.llm_temperature)
    return from_rewrites + from_dimensions, problems + more


def _family(generator: str) -> str:
    return generator.split(":", 1)[0]


@dg.asset(
    group_name="curate",
    kinds={"duckdb", "polars", "openai"},
    deps=[labelled_failures, annotations],
    description="Synthetic examples from real passing traces and corrections outside the test split: offline "
                "generators (column substitution; time-range, limit, operator and breakdown variation; "
                "questions composed from feature x scenario x persona) and, when a model is configured, LLM "
                "rewrites and dimension-tuple generation. Kept only if every assertion passes and it is no "
                "near-duplicate of an existing example; provenance in parent_id, generator, prompt_version, seed.",
)
def synthetic_examples(context: dg.AssetExecutionContext, config: SyntheticSettings, duckdb: FlywheelDuckDB,
                       task: TaskResource, curation: CurationSettings) -> dg.MaterializeResult:
    the_task = task.load()
    settings = curation.config()
    with duckdb.get_connection() as conn:
        real = _real_examples(conn, the_task)
        seeds = outside_test(real, plan_splits(real, settings.splits, _previous_splits(conn)))
        stored = store.read(conn, "SELECT * EXCLUDE (input), input::VARCHAR AS input FROM synthetic_examples "
                                  "ORDER BY example_id")
    earlier_llm, wanted = reuse_llm_examples(stored, seeds["example_id"].to_list(), config.llm_rewrites,
                                             config.llm_dimension_examples)
    n = int(seeds.height * config.share_of_real)
    candidates = offline_candidates(seeds, the_task, n, config.seed)
    problems: Counter = Counter()
    if config.llm_model and any(wanted.values()):
        llm, problems = _llm_candidates(config, the_task.name, seeds, wanted["llm_rewrite"], wanted["llm_dimensions"])
        candidates += llm
        llm_status = f"ran with model {config.llm_model} (prompts {config.prompt_version})"
    elif config.llm_model:
        llm_status = "not called: earlier LLM examples meet the requested counts"
    else:
        llm_status = "skipped: no llm_model configured"
    if earlier_llm.height:
        llm_status += f"; kept {earlier_llm.height} earlier LLM examples"
    existing = pl.concat([real.select("input", "output"), earlier_llm.select("input", "output")])
    accepted, rejected = accept(candidates, existing, the_task, config.seed, settings.near_duplicate_threshold)
    generated = pl.concat([accepted, earlier_llm])
    with duckdb.get_connection() as conn:
        changes = store.sync(conn, "synthetic_examples", generated, ["example_id"])
    tried = Counter(_family(c.generator) for c in candidates)
    kept = Counter(_family(g) for g in accepted["generator"])
    have = Counter(_family(g) for g in earlier_llm["generator"])
    names = sorted(set(tried) | set(have))
    by_generator = pl.DataFrame({"generator": names, "candidates": [tried[g] for g in names],
                                 "kept": [kept[g] for g in names], "kept_from_earlier_runs": [have[g] for g in names]},
                                schema={"generator": pl.String, "candidates": pl.Int64, "kept": pl.Int64,
                                        "kept_from_earlier_runs": pl.Int64})
    context.log.info(f"kept {generated.height} of {len(candidates)} synthetic candidates from {seeds.height} seeds; "
                     f"LLM generators {llm_status}")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": generated.height, "offline_budget": n, "seed_examples": seeds.height,
        "llm_generators": llm_status, "by_generator": preview(by_generator, n=20),
        "rejected": counts_table(dict(sorted((rejected + problems).items()))), "changes": counts_table(changes),
        "preview": preview(generated.select("generator", "input", "output"))})


@dg.asset(
    group_name="curate",
    kinds={"duckdb", "polars"},
    deps=[labelled_failures, synthetic_examples],
    description="Curated examples with a group and a stable split: passing traces and people's corrections "
                "(real), and synthetic examples in their parent's group (never in test). Failing outputs, "
                "duplicates (input, output, pair), out-of-bounds complexity, near-duplicates of test inputs "
                "and synthetic data over its cap are dropped and counted. Test is stratified by failure mode; "
                "existing groups keep their split as new data arrives.",
    check_specs=[
        dg.AssetCheckSpec("no_group_in_two_splits", asset="training_examples", blocking=True,
                          description="Every group (a question and everything derived from it) lies in one split."),
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
        real = _real_examples(conn, the_task)
        synthetic = store.read(conn, "SELECT example_id, parent_id, input::VARCHAR AS input, output "
                                     "FROM synthetic_examples ORDER BY example_id")
        examples, report = curate(real, synthetic, the_task, settings, _previous_splits(conn))
        changes = store.sync(conn, "training_examples", examples, ["example_id"],
                             compare=["split", "output", "group_id"])
        stored = store.read(conn, "SELECT example_id, source, group_id, split, input::VARCHAR AS input "
                                  "FROM training_examples ORDER BY example_id")
    groups_in_two = stored.group_by("group_id").agg(pl.col("split").n_unique()).filter(pl.col("split") > 1).height
    synthetic_in_test = stored.filter((pl.col("split") == "test") & (pl.col("source") == "synthetic")).height
    leaks = near_duplicate_pairs(stored.filter(pl.col("split") == "test").select("example_id", "input").rows(),
                                 stored.filter(pl.col("split") != "test").select("example_id", "input").rows(),
                                 settings.near_duplicate_threshold)
    sizes = split_sizes(stored.filter(pl.col("source") != "synthetic")["split"].to_list(), settings.splits)
    splits = pl.DataFrame([{"split": s, **report["splits"][s], "real_share": sizes[s]["share"],
                            "target": sizes[s]["target"]} for s in sizes])
    version = data_version(examples)
    context.log.info(f"{examples.height} training examples, data version {version}")
    return dg.MaterializeResult(
        metadata={"dagster/row_count": stored.height, "training_data_version": version,
                  "candidates": report["candidates"], "splits": preview(splits),
                  "composition": preview(stored.group_by("split", "source").len().sort("split", "source"), n=20),
                  "dropped": counts_table(report["dropped"]), "changes": counts_table(changes)},
        check_results=[
            dg.AssetCheckResult(check_name="no_group_in_two_splits", passed=groups_in_two == 0,
                                metadata={"groups_in_two_splits": groups_in_two}),
            dg.AssetCheckResult(check_name="test_split_is_real", passed=synthetic_in_test == 0,
                                metadata={"synthetic_in_test": synthetic_in_test}),
            dg.AssetCheckResult(check_name="no_test_near_duplicate_in_train", passed=not leaks,
                                metadata={"leaks": len(leaks), "examples": dg.MetadataValue.md(
                                    "\n".join(f"- {a} ~ {b}" for a, b in leaks[:20]) or "none")}),
            dg.AssetCheckResult(check_name="splits_within_target_size",
                                passed=all(v["within_tolerance"] for v in sizes.values()),
                                severity=dg.AssetCheckSeverity.WARN,
                                metadata={s: f"{v['share']:.3f} (target {v['target']:.2f} ± {settings.splits.tolerance})"
                                          for s, v in sizes.items()}),
        ],
    )


@dg.asset(
    group_name="curate",
    kinds={"duckdb", "openai"},
    deps=[training_examples],
    description="Train, validation and test files in OpenAI chat format (JSONL), checked against the format's "
                "rules by a blocking check; what every backend trains on. Token counts and an estimated "
                "training cost in the metadata.",
    check_specs=[dg.AssetCheckSpec("openai_format", asset="training_files", blocking=True,
                                   description="Roles, non-empty content, an assistant message, weights, "
                                               "minimum size, tokens per example.")],
)
def training_files(context: dg.AssetExecutionContext, config: TrainingFileSettings, duckdb: FlywheelDuckDB,
                   task: TaskResource, paths: FlywheelPaths) -> dg.MaterializeResult:
    the_task = task.load()
    with duckdb.get_connection() as conn:
        examples = stored_examples(conn)
    version = data_version(examples)
    out_dir = paths.exports_dir / version
    counter = token_counter(config.tokenizer_encoding)
    written, problems, tokens, counts, scrubbed = {}, [], {}, {}, {}
    for split, min_examples in (("train", 10), ("validation", 1), ("test", 1)):
        # Files leave the machine (a hosted fine-tuning API): PII is scrubbed from every copy.
        records, found = scrub_records(chat_records(examples.filter(pl.col("split") == split), the_task))
        for name, n in found.items():
            scrubbed[name] = scrubbed.get(name, 0) + n
        problems += [f"{split}: {p}" for p in format_problems(records, min_examples, counter, config.max_tokens_per_example)]
        written[split] = str(write_jsonl(records, out_dir / f"{split}.jsonl"))
        tokens[split] = sum(counter.example_tokens(r) for r in records)
        counts[split] = len(records)
    cost = training_cost(tokens["train"], config.epochs, config.price_per_1m_training_tokens)
    context.log.info(f"wrote training files under {out_dir}")
    return dg.MaterializeResult(
        # the content hash as Dagster's data version: training runs only when it changes (pipeline/automation.py)
        data_version=dg.DataVersion(version),
        metadata={"training_data_version": version,
                  **{f"{s}_file": dg.MetadataValue.path(p) for s, p in written.items()},
                  "examples": counts_table(counts), "tokens": counts_table(tokens),
                  "token_count_method": counter.method,
                  "pii_scrubbed": counts_table(scrubbed) if scrubbed else "none found",
                  "estimated_training_cost_usd": dg.MetadataValue.float(cost),
                  "cost_estimate_basis": f"estimate: train tokens x {config.epochs} epochs x "
                                         f"${config.price_per_1m_training_tokens}/1M tokens ({counter.method})"},
        check_results=[dg.AssetCheckResult(
            check_name="openai_format", passed=not problems,
            metadata={"problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems[:50]) or "none")},
            description=f"{len(problems)} problems" if problems else "all records valid")],
    )
