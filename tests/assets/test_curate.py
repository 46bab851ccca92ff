"""The curate assets materialized on the tiny demo: synthetic data (offline; LLM through a served
fake of the OpenAI API), curated splits and their checks, training files."""

import json
import re

import duckdb
import pytest

from assets.curate import synthetic_examples, training_examples, training_files
from assets.label import labelled_failures, trace_evaluations
from assets.ingest import annotations, raw_traces
from tests.assets.tiny import materialize as materialize_with
from tests.assets.tiny import tiny_resources
from tests.fakes.openai_api import FakeOpenAI

ASSETS = [raw_traces, annotations, trace_evaluations, labelled_failures, synthetic_examples, training_examples,
          training_files]


def materialize(folder, demo, run_config=None):
    return materialize_with(ASSETS, tiny_resources(folder, demo), run_config)


def query(folder, sql):
    with duckdb.connect(str(folder / "flywheel.duckdb"), read_only=True) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture(scope="module")
def curated(tmp_path_factory, tiny_demo):
    folder = tmp_path_factory.mktemp("curate")
    result, events = materialize(folder, tiny_demo)
    return folder, result, events


def test_offline_synthetic_data_keeps_provenance_and_reports_generators(curated):
    folder, result, events = curated
    assert result.success
    meta = events["synthetic_examples"].metadata
    assert meta["llm_generators"].value == "skipped: no llm_model configured"
    table = meta["by_generator"].value
    for name in ("substitute_column", "vary_time_range", "compose_dimensions"):
        assert re.search(rf"\| {name} \| [1-9]\d* \| [1-9]\d* \|", table), table
    rows = query(folder, "SELECT parent_id, generator, seed, prompt_version FROM synthetic_examples")
    assert len(rows) == meta["dagster/row_count"].value > 0
    parents = {r[0] for r in query(folder, "SELECT parent_id FROM training_examples WHERE source <> 'synthetic'")}
    assert all(p.split(":", 1)[1] in parents and s == 7 and v is None for p, _, s, v in rows)
    # no synthetic example derives from a test example
    assert query(folder, """SELECT count(*) FROM synthetic_examples s JOIN training_examples t
                            ON t.example_id = s.parent_id WHERE t.split = 'test'""") == [(0,)]


def test_training_examples_checks_pass_and_metadata_reports_drops_and_shares(curated):
    folder, result, events = curated
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    for name in ("no_group_in_two_splits", "test_split_is_real", "no_test_near_duplicate_in_train",
                 "splits_within_target_size", "openai_format"):
        assert checks[name].passed, (name, checks[name].metadata)
    meta = events["training_examples"].metadata
    splits = meta["splits"].value
    for split in ("train", "validation", "test"):
        assert f"| {split} |" in splits
    shares = dict(query(folder, """SELECT split, avg((source = 'synthetic')::INT) FROM training_examples GROUP BY split"""))
    assert shares["test"] == 0 and 0 < shares["train"] <= 0.4 + 1e-9
    assert "| candidates |" not in meta["dropped"].value  # reasons only
    modes = {r[0] for r in query(folder, "SELECT DISTINCT failure_mode FROM training_examples WHERE split = 'test'")}
    assert None in modes and len(modes) > 1  # test holds passing traces and corrected failures


def test_training_files_are_chat_jsonl_with_tokens_and_a_labelled_cost_estimate(curated):
    folder, _, events = curated
    meta = events["training_files"].metadata
    assert meta["token_count_method"].value.startswith(("estimate", "tiktoken"))
    assert meta["estimated_training_cost_usd"].value > 0
    assert "estimate" in meta["cost_estimate_basis"].value
    counts = dict(query(folder, "SELECT split, count(*) FROM training_examples GROUP BY split"))
    for split in ("train", "validation", "test"):
        lines = open(meta[f"{split}_file"].value, encoding="utf-8").read().splitlines()
        assert len(lines) == counts[split]
        assert [m["role"] for m in json.loads(lines[0])["messages"]] == ["system", "user", "assistant"]


def test_new_data_keeps_existing_splits(curated, tiny_demo):
    folder, _, _ = curated
    before = dict(query(folder, "SELECT example_id, split FROM training_examples WHERE source <> 'synthetic'"))
    incoming = folder / "incoming"
    incoming.mkdir(exist_ok=True)
    records = [{"trace_id": f"tr_more_{i}", "ts": "2026-11-20T10:00:00Z", "model": "prod-assistant-v3",
                "input": {"question": f"count of requests for tenant {i} last {i + 1} minutes",
                          "columns": ["duration_ms"], "dataset": "x"},
                "output": json.dumps({"calculations": [{"op": "COUNT"}], "time_range": 60 * (i + 1)})} for i in range(40)]
    (incoming / "more.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    result, _ = materialize(folder, tiny_demo)
    assert result.success
    after = dict(query(folder, "SELECT example_id, split FROM training_examples WHERE source <> 'synthetic'"))
    assert {k: after[k] for k in before if k in after} == before
    new = set(after) - set(before)
    assert len(new) == 40
    assert {after[k] for k in new} == {"train", "validation", "test"}  # new groups fill every split


def test_an_example_too_long_to_train_on_is_left_out_and_counted_not_blocking(tmp_path, tiny_demo):
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    filler = " ".join(f"tenant-{i} region eu-west-{i % 3} pod checkout-{i % 17}" for i in range(30_000))
    question = f"count of requests in the last 5 minutes, for this context: {filler}"[:900_000]
    record = {"trace_id": "tr_very_long", "ts": "2026-11-20T10:00:00Z", "model": "prod-assistant-v3",
              "input": {"question": question, "columns": ["duration_ms"], "dataset": "x"},
              "output": json.dumps({"calculations": [{"op": "COUNT"}], "time_range": 300})}
    (incoming / "long.jsonl").write_text(json.dumps(record) + "\n")
    result, events = materialize(tmp_path, tiny_demo)
    assert result.success
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["openai_format"].passed, checks["openai_format"].metadata
    long_examples = query(tmp_path, "SELECT count(*) FROM training_examples WHERE length(input::VARCHAR) > 800000")[0][0]
    assert long_examples >= 1  # curated: nothing is wrong with it but its length
    meta = events["training_files"].metadata
    assert re.search(rf"\| over 65536 tokens \| {long_examples} \|", meta["dropped"].value), meta["dropped"].value
    lines = [line for split in ("train", "validation", "test")
             for line in open(meta[f"{split}_file"].value, encoding="utf-8").read().splitlines()]
    assert len(lines) == query(tmp_path, "SELECT count(*) FROM training_examples")[0][0] - long_examples
    assert max(len(line) for line in lines) < 100_000 and question[10_000:10_100] not in "".join(lines)


def test_llm_generators_run_through_the_api_when_a_model_is_configured(tmp_path, tiny_demo, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env-only")
    fake = FakeOpenAI(api_key="sk-from-env-only")

    def respond(request):
        user = request["messages"][-1]["content"]
        columns = re.search(r"Columns: (.*)", user).group(1).split(", ")
        question = f"count by {columns[0]} in the last 2 hours"
        if "Write one query" in user:
            return json.dumps({"output": {"calculations": [{"op": "COUNT"}], "time_range": 7200}})
        if "Who is asking" in user:
            return json.dumps({"question": f"count of rows for {columns[-1]} over the last 2 hours"})
        return json.dumps({"variations": [{"question": question,
                                           "output": {"calculations": [{"op": "COUNT"}], "breakdowns": [columns[0]],
                                                      "time_range": 7200}}]})
    fake.chat_responder = respond
    with fake.serve() as base_url:
        config = {"ops": {"synthetic_examples": {"config": {
            "llm_model": "gpt-test", "llm_base_url": base_url, "llm_rewrites": 4, "llm_dimension_examples": 2}}}}
        result, events = materialize(tmp_path, tiny_demo, config)
    assert result.success
    meta = events["synthetic_examples"].metadata
    assert meta["llm_generators"].value == "ran with model gpt-test (prompts v1)"
    assert len(fake.requests) == 2 + 2 * 2  # ceil(4 rewrites / 3 per request), two per dimension example
    assert re.search(r"\| llm_rewrite \| \d+ \| \d+ \|", meta["by_generator"].value)
    assert re.search(r"\| llm_dimensions \| 2 \| \d+ \|", meta["by_generator"].value)
    rows = sorted(query(tmp_path, "SELECT generator, prompt_version, model FROM synthetic_examples WHERE model IS NOT NULL"))
    assert rows and all(m == "gpt-test" and v.startswith("nl2query/") for _, v, m in rows)
    everything = json.dumps({k: str(v.value) for e in events.values() for k, v in e.metadata.items()})
    assert "sk-from-env-only" not in everything
    assert query(tmp_path, "SELECT count(*) FROM synthetic_examples WHERE input::VARCHAR LIKE '%sk-from%'") == [(0,)]
    # LLM examples cost money: a re-run keeps them and only tops up to the requested counts
    kept_rewrites = sum(1 for g, _, _ in rows if g == "llm_rewrite")
    kept_composed = sum(1 for g, _, _ in rows if g.startswith("llm_dimensions:"))
    assert kept_rewrites <= 4 and kept_composed <= 2
    with fake.serve() as base_url:
        config["ops"]["synthetic_examples"]["config"]["llm_base_url"] = base_url
        result, events = materialize(tmp_path, tiny_demo, config)
    assert result.success
    assert len(fake.requests) == 6 + -(-(4 - kept_rewrites) // 3) + 2 * (2 - kept_composed)
    assert set(rows) <= set(query(tmp_path, "SELECT generator, prompt_version, model FROM synthetic_examples "
                                            "WHERE model IS NOT NULL"))
    assert f"kept {len(rows)} earlier LLM examples" in events["synthetic_examples"].metadata["llm_generators"].value
