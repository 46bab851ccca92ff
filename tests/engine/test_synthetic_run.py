"""A synthetic-data run: offline budget, reuse of earlier LLM examples, LLM generators through a
provider, the per-generator table and rejections with LLM problems."""

import json
from datetime import datetime, timezone

import polars as pl

from pipeline.engine.curate.synth import SYNTHETIC_SCHEMA, Candidate
from pipeline.engine.curate.synthetic_run import (
    GENERATOR_SCHEMA, SyntheticConfig, generator_family, generator_table, synthesize,
)
from pipeline.engine.providers import Completion
from pipeline.engine.tasks import load_task
from pipeline.engine.tasks.nl2query import canonical, dump

TASK = load_task("nl2query")
NOW = datetime(2026, 10, 20, 12, 0, tzinfo=timezone.utc)
COLUMNS = ["duration_ms", "service.name", "http.status_code", "region"]


def inp(question):
    return json.dumps({"question": question, "columns": COLUMNS, "dataset": "checkout-api"})


def out(query):
    return dump(canonical(query))


SEEDS = pl.DataFrame({
    "example_id": ["trace:a", "trace:b", "trace:c", "trace:d"],
    "input": [inp("p95 duration_ms by service.name last 2 hours"),
              inp("count by region where http.status_code >= 500 today"),
              inp("max duration_ms by region in the last hour"),
              inp("count by service.name over the last 7 days")],
    "output": [out({"calculations": [{"op": "P95", "column": "duration_ms"}], "breakdowns": ["service.name"],
                    "time_range": 7200}),
               out({"calculations": [{"op": "COUNT"}], "breakdowns": ["region"],
                    "filters": [{"column": "http.status_code", "op": ">=", "value": 500}], "time_range": 86400}),
               out({"calculations": [{"op": "MAX", "column": "duration_ms"}], "breakdowns": ["region"],
                    "time_range": 3600}),
               out({"calculations": [{"op": "COUNT"}], "breakdowns": ["service.name"], "time_range": 604800})],
})
NONE_STORED = pl.DataFrame(schema=SYNTHETIC_SCHEMA)


def config(**changes):
    values = {"share_of_real": 1.0, "seed": 7, "llm_model": None, "llm_base_url": None, "llm_rewrites": 0,
              "llm_dimension_examples": 0, "llm_temperature": 0.8, "prompt_version": "v1"}
    return SyntheticConfig(**{**values, **changes})


class StubProvider:
    """Answers the rewrite prompt with ``rewrite_reply`` and the dimension prompts with a query and a question."""

    model = "stub"

    def __init__(self, rewrite_reply):
        self.rewrite_reply = rewrite_reply
        self.calls = 0

    def complete(self, messages, *, temperature=0.0, response_format=None, seed=None):
        self.calls += 1
        user = messages[-1]["content"]
        if "Write one query" in user:
            text = json.dumps({"output": {"calculations": [{"op": "COUNT"}], "time_range": 7200}})
        elif "Who is asking" in user:
            text = json.dumps({"question": "count of rows over the last 2 hours"})
        else:
            text = self.rewrite_reply
        return Completion(text=text, model=self.model)


class RefusingProvider:
    model = "refusing"

    def complete(self, *args, **kwargs):
        raise AssertionError("the LLM generators should not be called")


def test_offline_run_keeps_its_budget_and_reports_every_generator():
    run = synthesize(SEEDS, SEEDS, NONE_STORED, TASK, config(share_of_real=0.5), 0.9, now=NOW)
    assert run.offline_budget == 2
    assert run.llm_status == "skipped: no llm_model configured"
    assert run.by_generator.schema == pl.Schema(GENERATOR_SCHEMA)
    assert run.candidates == run.by_generator["candidates"].sum() > 0
    assert run.examples.height == run.by_generator["kept"].sum() > 0
    assert run.by_generator["kept_from_earlier_runs"].sum() == 0
    assert run.examples.schema == pl.Schema(SYNTHETIC_SCHEMA)
    assert set(run.examples["parent_id"]) <= set(SEEDS["example_id"])
    assert run.examples["created_at"].to_list() == [NOW] * run.examples.height
    assert not set(run.examples["input"]) & set(SEEDS["input"])
    assert run.candidates - run.examples.height == sum(run.rejected.values())
    assert list(run.rejected) == sorted(run.rejected)


def test_earlier_llm_examples_meeting_the_counts_are_kept_without_calling_the_model():
    earlier = pl.DataFrame([{"example_id": "synthetic:old", "parent_id": "trace:a", "generator": "llm_rewrite",
                             "input": inp("p99 duration_ms by region last hour"),
                             "output": out({"calculations": [{"op": "P99", "column": "duration_ms"}],
                                            "breakdowns": ["region"], "time_range": 3600}),
                             "seed": 7, "prompt_version": "nl2query/rewrite.v1", "model": "gpt-test",
                             "created_at": NOW}], schema=SYNTHETIC_SCHEMA)
    run = synthesize(SEEDS, SEEDS, earlier, TASK, config(share_of_real=0.0, llm_model="gpt-test", llm_rewrites=1),
                     0.9, provider=RefusingProvider(), now=NOW)
    assert run.llm_status == ("not called: earlier LLM examples meet the requested counts; "
                              "kept 1 earlier LLM examples")
    assert run.candidates == 0
    assert run.examples["example_id"].to_list() == ["synthetic:old"]
    assert run.by_generator.rows() == [("llm_rewrite", 0, 0, 1)]


def test_llm_generators_run_through_the_provider_and_their_problems_are_counted_as_rejections():
    provider = StubProvider(rewrite_reply="not json")
    run = synthesize(SEEDS, SEEDS, NONE_STORED, TASK,
                     config(share_of_real=0.0, llm_model="stub", llm_rewrites=2, llm_dimension_examples=1),
                     0.9, provider=provider, now=NOW)
    assert provider.calls == 1 + 2  # one rewrite request (3 per call), two per dimension example
    assert run.llm_status == "ran with model stub (prompts v1)"
    assert run.rejected["llm_reply_not_json"] == 1
    assert run.by_generator.rows() == [("llm_dimensions", 1, 1, 0)]
    (row,) = run.examples.iter_rows(named=True)
    assert row["generator"].startswith("llm_dimensions:") and row["model"] == "stub"
    assert json.loads(row["input"])["question"] == "count of rows over the last 2 hours"


def test_generator_family_and_table_group_detailed_generators():
    assert generator_family("llm_dimensions:top_groups/analyst/incident") == "llm_dimensions"
    assert generator_family("vary_limit") == "vary_limit"
    accepted = pl.DataFrame({"generator": ["vary_limit"]})
    earlier = pl.DataFrame({"generator": ["llm_dimensions:a/b/c", "llm_dimensions:d/e/f"]})
    tried = [Candidate({}, "{}", "trace:a", g) for g in ("vary_limit", "vary_limit", "substitute_column")]
    table = generator_table(tried, accepted, earlier)
    assert table.rows() == [("llm_dimensions", 0, 0, 2), ("substitute_column", 1, 0, 0), ("vary_limit", 2, 1, 0)]
