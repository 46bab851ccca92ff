"""Synthetic examples: acceptance (assertions, duplicates, near-duplicates, provenance), versioned
prompts, and the LLM generators through the real OpenAI client against a fake of the HTTP API."""

import json
import random
import re
from datetime import datetime, timezone

import polars as pl
import pytest

from pipeline.engine.providers.openai_chat import OpenAIChatProvider
from pipeline.engine.curate.synth import (SYNTHETIC_SCHEMA, Candidate, accept, llm_dimensions, llm_rewrite, load_dimensions,
                                   load_prompt, offline_candidates, reuse_llm_examples)
from pipeline.engine.tasks import load_task
from pipeline.engine.tasks.nl2query import canonical, dump
from tests.fakes.openai_api import FakeOpenAI

TASK = load_task("nl2query")
NOW = datetime(2026, 10, 20, 12, 0, tzinfo=timezone.utc)
COLUMNS = ["duration_ms", "service.name", "http.status_code", "region"]
P95 = {"calculations": [{"op": "P95", "column": "duration_ms"}], "breakdowns": ["service.name"], "time_range": 7200}


def inp(question, dataset="checkout-api"):
    return {"question": question, "columns": COLUMNS, "dataset": dataset}


def out(query):
    return dump(canonical(query))


SEEDS = pl.DataFrame({
    "example_id": ["trace:a", "trace:b"],
    "input": [json.dumps(inp("p95 duration_ms by service.name last 2 hours")),
              json.dumps(inp("count by region where http.status_code >= 500 today"))],
    "output": [out(P95), out({"calculations": [{"op": "COUNT"}], "breakdowns": ["region"],
                              "filters": [{"column": "http.status_code", "op": ">=", "value": 500}],
                              "time_range": 86400})],
})


def cand(question, query, generator="llm_rewrite", **kw):
    return Candidate(inp(question), query if isinstance(query, str) else json.dumps(query), "trace:a", generator, **kw)


# --- acceptance -------------------------------------------------------------------------------

def test_accept_keeps_valid_new_examples_with_provenance_and_counts_rejections():
    candidates = [
        cand("p99 duration_ms by region last hour",
             {"calculations": [{"op": "P99", "column": "duration_ms"}], "breakdowns": ["region"], "time_range": 3600},
             prompt_version="nl2query/rewrite.v1", model="gpt-test"),
        cand("p95 colour by region", {"calculations": [{"op": "P95", "column": "colour"}]}),              # unknown column
        cand("count last hour", {"calculations": [{"op": "COUNT"}], "time_range": "1h"}),                  # not an integer
        cand("Show me the p95 duration_ms by service.name in the last 2 hours", P95),                      # near-duplicate
        cand("p95 duration_ms by service.name, last 2 hours please", {**P95, "limit": 5}),                 # near input, new output
        cand("P99 duration_ms BY region last hour", {"calculations": [{"op": "COUNT"}]}),                  # same input as #1
        Candidate({"question": "", "columns": COLUMNS}, out(P95), "trace:a", "llm_rewrite"),               # invalid input
    ]
    kept, rejected = accept(candidates, SEEDS, TASK, seed=7, now=NOW)
    assert kept.schema == pl.Schema(SYNTHETIC_SCHEMA)
    assert kept["input"].map_elements(lambda i: json.loads(i)["question"], return_dtype=pl.String).to_list() == [
        "p99 duration_ms by region last hour", "p95 duration_ms by service.name, last 2 hours please"]
    assert dict(rejected) == {"fails:unknown_column": 1, "fails:time_range_not_integer": 1, "near_duplicate": 1,
                              "duplicate_input": 1, "invalid_input": 1}
    first = kept.row(0, named=True)
    assert (first["parent_id"], first["generator"], first["prompt_version"], first["model"], first["seed"]) == (
        "trace:a", "llm_rewrite", "nl2query/rewrite.v1", "gpt-test", 7)
    assert first["output"] == out(json.loads(candidates[0].output))  # normalised
    assert first["example_id"].startswith("synthetic:") and first["created_at"] == NOW
    # ids are content hashes: the same candidates give the same rows
    again, _ = accept(list(reversed(candidates[:1])), SEEDS, TASK, seed=7, now=NOW)
    assert again["example_id"][0] == first["example_id"]


def test_offline_candidates_name_their_parent_and_generator():
    candidates = offline_candidates(SEEDS, TASK, 20, seed=3)
    assert candidates and {c.parent_id for c in candidates} <= {"trace:a", "trace:b"}
    assert all(c.prompt_version is None and c.model is None for c in candidates)
    kept, rejected = accept(candidates, SEEDS, TASK, seed=3)
    assert kept.height + sum(rejected.values()) == len(candidates)
    assert offline_candidates(SEEDS, TASK, 20, seed=3) == candidates


# --- prompts ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["rewrite", "dimensions_spec", "dimensions_question"])
def test_prompt_files_load_and_fill_every_placeholder(name):
    prompt = load_prompt("nl2query", name, "v1")
    assert prompt.id == f"nl2query/{name}.v1"
    messages = prompt.messages(question="q", columns="a, b", dataset="d", output="{}", k=3, dimensions="- x")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert not any("$" in m["content"] for m in messages)


def test_missing_prompt_and_missing_field_give_clear_errors():
    with pytest.raises(ValueError, match="no synthetic-data prompt nl2query/rewrite.v9.md"):
        load_prompt("nl2query", "rewrite", "v9")
    with pytest.raises(ValueError, match="needs field 'dataset'"):
        load_prompt("nl2query", "rewrite").messages(question="q", columns="a", output="{}", k=3)


def test_dimensions_file_describes_every_value():
    dims = load_dimensions("nl2query")
    assert set(dims) == {"feature", "scenario", "persona"}
    assert all(isinstance(text, str) and text for values in dims.values() for text in values.values())


# --- LLM generators over HTTP -----------------------------------------------------------------

@pytest.fixture
def fake():
    return FakeOpenAI(api_key="sk-test-synth")


def provider(fake, **kw):
    return OpenAIChatProvider("gpt-test", api_key="sk-test-synth", http_client=fake.http_client(),
                              strict_validation=True, **kw)


def test_llm_rewrite_asks_for_variations_of_a_real_example_and_keeps_provenance(fake):
    def respond(request):
        user = request["messages"][1]["content"]
        assert request["response_format"] == {"type": "json_object"} and request["temperature"] == 0.8
        question = re.search(r"Question: (.*)", user).group(1)
        return json.dumps({"variations": [
            {"question": f"{question} (variant {k})", "output": {**P95, "time_range": 3600 * (k + 1)}} for k in range(3)]})
    fake.chat_responder = respond
    candidates, problems = llm_rewrite(provider(fake), SEEDS, 5, random.Random(0), load_prompt("nl2query", "rewrite"))
    assert len(fake.requests) == 2 and len(candidates) == 5 and not problems
    for c in candidates:
        parent = json.loads(SEEDS.filter(pl.col("example_id") == c.parent_id)["input"][0])
        assert c.input["question"].startswith(parent["question"])
        assert (c.input["columns"], c.input["dataset"]) == (parent["columns"], parent["dataset"])
        assert (c.generator, c.prompt_version, c.model) == ("llm_rewrite", "nl2query/rewrite.v1", "gpt-test")
    # the seed's output is in the prompt, the API key in no request body
    assert all(SEEDS["output"][0] in r["messages"][1]["content"] or SEEDS["output"][1] in r["messages"][1]["content"]
               for r in fake.requests)
    assert "sk-test-synth" not in json.dumps(fake.requests)


def test_llm_rewrite_counts_bad_replies_and_failed_calls_instead_of_failing(fake):
    replies = iter(["not json", json.dumps({"items": []}),
                    json.dumps({"variations": [{"question": "p95 duration_ms"}, "x", {"output": {"calculations": []}}]})])
    fake.chat_responder = lambda request: next(replies)
    candidates, problems = llm_rewrite(provider(fake, max_retries=0), SEEDS, 9, random.Random(0),
                                       load_prompt("nl2query", "rewrite"))
    assert candidates == []
    assert dict(problems) == {"llm_reply_not_json": 1, "llm_reply_without_variations": 1,
                              "llm_item_without_output": 2, "llm_item_without_input": 1}
    fake.fail_next(500, times=3)
    fake.chat_responder = lambda request: json.dumps({"variations": []})
    _, problems = llm_rewrite(provider(fake, max_retries=0), SEEDS, 9, random.Random(0), load_prompt("nl2query", "rewrite"))
    assert dict(problems) == {"llm_call_failed": 3}


def test_llm_dimensions_makes_a_query_then_phrases_it(fake):
    query = {"calculations": [{"op": "P99", "column": "duration_ms"}], "breakdowns": ["region"], "time_range": 1800}

    def respond(request):
        user = request["messages"][1]["content"]
        assert re.search(r"- feature: \w+ \(.+\)\n- persona: \w+ \(.+\)\n- scenario: \w+ \(.+\)", user)
        if "Write one query" in user:
            return json.dumps({"output": query})
        assert out(query) in user.replace(" ", "") or json.dumps(query) in user
        return json.dumps({"question": "p99 duration_ms by region in the last 30 minutes"})
    fake.chat_responder = respond
    candidates, problems = llm_dimensions(provider(fake), SEEDS, 3, random.Random(1),
                                          load_prompt("nl2query", "dimensions_spec"),
                                          load_prompt("nl2query", "dimensions_question"), load_dimensions("nl2query"))
    assert len(fake.requests) == 6 and len(candidates) == 3 and not problems
    for c in candidates:
        assert c.generator.startswith("llm_dimensions:") and c.generator.count("/") == 2
        assert c.prompt_version == "nl2query/dimensions_spec.v1+nl2query/dimensions_question.v1"
        assert json.loads(c.output) == query
    kept, rejected = accept(candidates, SEEDS, TASK, seed=1)
    assert kept.height == 1 and rejected == {"duplicate_input": 2}  # the fake always phrases it the same way


def test_earlier_llm_examples_are_reused_while_their_parent_is_a_seed():
    rows = [("synthetic:1", "trace:a", "llm_rewrite", "gpt-test"), ("synthetic:2", "trace:a", "llm_rewrite", "gpt-test"),
            ("synthetic:3", "trace:gone", "llm_rewrite", "gpt-test"),
            ("synthetic:4", "trace:b", "llm_dimensions:top_groups/analyst/incident", "gpt-test"),
            ("synthetic:5", "trace:a", "vary_limit", None)]
    stored = pl.DataFrame([{"example_id": e, "parent_id": p, "generator": g, "input": "{}", "output": "{}", "seed": 1,
                            "prompt_version": "v" if m else None, "model": m, "created_at": NOW} for e, p, g, m in rows],
                          schema=SYNTHETIC_SCHEMA)
    kept, wanted = reuse_llm_examples(stored, ["trace:a", "trace:b"], rewrites=5, composed=1)
    assert kept["example_id"].to_list() == ["synthetic:1", "synthetic:2", "synthetic:4"]
    assert wanted == {"llm_rewrite": 3, "llm_dimensions": 0}
    _, wanted = reuse_llm_examples(stored.clear(), [], rewrites=5, composed=1)
    assert wanted == {"llm_rewrite": 5, "llm_dimensions": 1}
