"""One synthetic-data run (what the synthetic_examples table holds after it): earlier LLM examples
kept while their parent is still a seed, offline candidates up to a share of the seeds, LLM
candidates when a model is configured and more are wanted, and acceptance against the real and
kept examples. The generators and acceptance themselves are in :mod:`pipeline.engine.curate.synth`."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from pipeline.engine.curate.synth import (
    Candidate, accept, llm_dimensions, llm_rewrite, load_dimensions, load_prompt, offline_candidates,
    reuse_llm_examples,
)
from pipeline.engine.providers import ChatProvider
from pipeline.engine.tasks import Task

GENERATOR_SCHEMA = {"generator": pl.String, "candidates": pl.Int64, "kept": pl.Int64,
                    "kept_from_earlier_runs": pl.Int64}


@dataclass(frozen=True)
class SyntheticConfig:
    """A run's settings: the offline budget as a share of the seeds, the generators' random seed,
    how many LLM rewrites and dimension examples to have, and the LLM generators' model (None:
    they do not run), server, temperature and prompt version."""

    share_of_real: float
    seed: int
    llm_model: str | None
    llm_base_url: str | None
    llm_rewrites: int
    llm_dimension_examples: int
    llm_temperature: float
    prompt_version: str


@dataclass(frozen=True)
class SyntheticRun:
    """What a run made: the synthetic_examples rows (accepted now, then earlier LLM ones), how many
    candidates were tried, the offline budget, what the LLM generators did, candidates and kept
    examples per generator family, and rejections (and LLM problems) by reason."""

    examples: pl.DataFrame
    candidates: int
    offline_budget: int
    llm_status: str
    by_generator: pl.DataFrame
    rejected: dict[str, int]


def generator_family(generator: str) -> str:
    """A generator's name without its detail (``llm_dimensions:a/b/c`` -> ``llm_dimensions``)."""
    return generator.split(":", 1)[0]


def llm_candidates(provider: ChatProvider, task_name: str, seeds: pl.DataFrame, rewrites: int, composed: int,
                   config: SyntheticConfig) -> tuple[list[Candidate], Counter]:
    """``rewrites`` LLM rewrites then ``composed`` dimension examples over ``seeds``, with the
    task's prompts of ``config.prompt_version``, and the problems counted on the way."""
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


def generator_table(candidates: list[Candidate], accepted: pl.DataFrame, earlier: pl.DataFrame) -> pl.DataFrame:
    """Per generator family: candidates tried, kept now, and kept from earlier runs."""
    tried = Counter(generator_family(c.generator) for c in candidates)
    kept = Counter(generator_family(g) for g in accepted["generator"])
    have = Counter(generator_family(g) for g in earlier["generator"])
    names = sorted(set(tried) | set(have))
    return pl.DataFrame({"generator": names, "candidates": [tried[g] for g in names],
                         "kept": [kept[g] for g in names], "kept_from_earlier_runs": [have[g] for g in names]},
                        schema=GENERATOR_SCHEMA)


def synthesize(real: pl.DataFrame, seeds: pl.DataFrame, stored: pl.DataFrame, task: Task, config: SyntheticConfig,
               threshold: float, provider: ChatProvider | None = None, now: datetime | None = None) -> SyntheticRun:
    """A synthetic-data run over ``seeds`` (the real examples outside test), ``stored`` being the
    synthetic examples stored so far; accepted candidates are no (near-)duplicate of ``real``.

    The LLM generators run only when ``config.llm_model`` is set and the earlier LLM examples fall
    short of the requested counts, through ``provider`` (by default an OpenAI-compatible client
    for the model; its API key comes from the environment).
    """
    earlier_llm, wanted = reuse_llm_examples(stored, seeds["example_id"].to_list(), config.llm_rewrites,
                                             config.llm_dimension_examples)
    budget = int(seeds.height * config.share_of_real)
    candidates = offline_candidates(seeds, task, budget, config.seed)
    problems: Counter = Counter()
    if config.llm_model and any(wanted.values()):
        if provider is None:
            from pipeline.engine.providers.openai_chat import OpenAIChatProvider

            provider = OpenAIChatProvider(config.llm_model, base_url=config.llm_base_url)
        llm, problems = llm_candidates(provider, task.name, seeds, wanted["llm_rewrite"], wanted["llm_dimensions"],
                                       config)
        candidates += llm
        llm_status = f"ran with model {config.llm_model} (prompts {config.prompt_version})"
    elif config.llm_model:
        llm_status = "not called: earlier LLM examples meet the requested counts"
    else:
        llm_status = "skipped: no llm_model configured"
    if earlier_llm.height:
        llm_status += f"; kept {earlier_llm.height} earlier LLM examples"
    existing = pl.concat([real.select("input", "output"), earlier_llm.select("input", "output")])
    accepted, rejected = accept(candidates, existing, task, config.seed, threshold, now)
    return SyntheticRun(examples=pl.concat([accepted, earlier_llm]), candidates=len(candidates), offline_budget=budget,
                        llm_status=llm_status, by_generator=generator_table(candidates, accepted, earlier_llm),
                        rejected=dict(sorted((rejected + problems).items())))
