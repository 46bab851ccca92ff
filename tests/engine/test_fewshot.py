"""The few-shot candidate: retrieval from the train split (deterministic, k respected, verified
references preferred, never the test split), the examples in front of a chat model's request
(through a fake OpenAI API) and of a local model's source, built-in or transformers (cut to its
source length, whole examples, the least similar first), and its generation recorded per item."""

import json
from datetime import datetime, timezone

import polars as pl
import pytest

from pipeline.engine.core import store
from pipeline.engine.evaluate.candidates import generate
from pipeline.engine.evaluate.fewshot import (VERIFIED_BOOST, FewShot, bm25_top_k, few_shot_candidate, few_shot_id,
                                              parse_few_shot_id, read_pool)
from pipeline.engine.providers.models import ChatModelProvider, few_shot_messages
from pipeline.engine.providers.openai_chat import OpenAIChatProvider
from pipeline.engine.tasks import load_task
from pipeline.engine.train.local import ModelConfig, TrainConfig, train_base
from pipeline.engine.train.local.inference import SHOT_SEPARATOR, LocalModelProvider
from pipeline.engine.train.local.pretrained import PretrainedSpec, register
from tests.engine.tiny_hf import FACTS, SYSTEM, save_tiny_llama
from tests.fakes import FakeOpenAI

TASK = load_task("nl2query")
CHAT = load_task("chat")
T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
KEY = "sk-test-fewshot"


def query(op="COUNT", seconds=7200):
    calculation = {"op": op} if op == "COUNT" else {"op": op, "column": "duration_ms"}
    return json.dumps({"time_range": seconds, "calculations": [calculation]}, indent=1)


def example(example_id, split, question, output=None, group=None, verified=False, columns=("duration_ms",)):
    return {"example_id": example_id, "source": "trace", "group_id": group or f"g-{example_id}", "split": split,
            "input": json.dumps({"question": question, "columns": list(columns)}), "output": output or query(),
            "reference_verified": verified, "created_at": T0}


TRAIN = [
    example("train:p95", "train", "p95 of duration_ms by service last 2 hours", query("P95")),
    example("train:avg", "train", "average duration_ms by service", query("AVG")),
    example("train:count", "train", "count of errors in the last hour", query(seconds=3600)),
    example("train:count-verified", "train", "count of errors in the last hour", query(seconds=60), verified=True),
    example("train:other", "train", "heatmap of nothing in particular"),
    example("train:same-group", "train", "p95 of duration_ms last 2 hours", group="g-test:p95"),
    example("train:same-input", "train", "count of errors last hour"),
    example("validation:count", "validation", "count of errors in the last hour please"),
]
TEST = [example("test:p95", "test", "p95 of duration_ms last 2 hours"),
        example("test:count", "test", "count of errors last hour"),
        example("test:nothing", "test", "zzz")]


@pytest.fixture
def conn():
    connection = store.connect(":memory:")
    store.upsert(connection, "training_examples", pl.DataFrame([*TRAIN, *TEST]), ["example_id"])
    yield connection
    connection.close()


def the_test_split():
    return pl.DataFrame(TEST).select("example_id", "input", "output").sort("example_id")


# --- retrieval --------------------------------------------------------------------------------------------

def test_bm25_ranks_by_shared_rare_words_respects_k_and_is_deterministic():
    documents = ["count of errors last hour", "p95 of latency by service name", "latency by service", "count errors"]
    queries = ["p95 latency by service", "count errors", "nothing shared"]
    top = bm25_top_k(queries, documents, 2)
    assert top == [[1, 2], [3, 0], []]  # most similar first; no shared word, no example
    assert bm25_top_k(queries, documents, 2) == top
    assert [len(t) for t in bm25_top_k(queries, documents, 1)] == [1, 1, 0]
    assert bm25_top_k(queries, documents, 10) == [[1, 2], [3, 0], []]  # only documents sharing a word
    assert bm25_top_k(queries, [], 3) == [[], [], []]
    assert bm25_top_k(queries, documents, 0) == [[], [], []]
    # equal scores go to the smaller index; a boost reorders them
    assert bm25_top_k(["a b"], ["b a", "a b"], 2) == [[0, 1]]
    assert bm25_top_k(["a b"], ["b a", "a b"], 2, [1.0, 1.0 + VERIFIED_BOOST]) == [[1, 0]]


def test_the_pool_is_the_train_split_without_what_a_test_example_shares_a_group_or_input_with(conn):
    pool, left_out = read_pool(conn)
    assert pool["example_id"].to_list() == sorted(e["example_id"] for e in TRAIN[:5])
    assert left_out == 2  # train:same-group and train:same-input


def test_shots_come_from_the_train_split_only_most_similar_last_with_normalised_outputs(conn):
    few = few_shot_candidate(conn, TASK, "base-1", the_test_split(), 3)
    assert (few.model_id, few.base_id, few.k, few.pool_size, few.left_out) == ("base-1+3-shot", "base-1", 3, 5, 2)
    by_test = dict(zip(the_test_split()["example_id"], few.example_ids))
    test_ids = {e["example_id"] for e in TEST} | {"validation:count", "train:same-group", "train:same-input"}
    assert all(len(ids) <= 3 for ids in few.example_ids)
    assert not {i for ids in few.example_ids for i in ids} & test_ids  # no leakage
    # the verified example wins the tie between the two "count of errors in the last hour"
    assert by_test["test:count"][-2:] == ("train:count", "train:count-verified")
    assert by_test["test:p95"][-1] == "train:p95" and by_test["test:nothing"] == ()
    shots = dict(zip(the_test_split()["example_id"], few.shots))
    shot_input, shot_output = shots["test:p95"][-1]
    assert shot_input["question"] == "p95 of duration_ms by service last 2 hours"
    assert shot_output == TASK.normalise(query("P95"))  # canonical form, not the stored indentation
    again = few_shot_candidate(conn, TASK, "base-1", the_test_split(), 3)
    assert again == few  # deterministic, version included


def test_the_version_names_the_examples_and_k_zero_or_an_empty_pool_means_no_candidate(conn):
    few = few_shot_candidate(conn, TASK, "base-1", the_test_split(), 2)
    conn.execute("UPDATE training_examples SET output = ? WHERE example_id = 'train:p95'", [query("P95", 3600)])
    assert few_shot_candidate(conn, TASK, "base-1", the_test_split(), 2).version != few.version
    assert few_shot_candidate(conn, TASK, "base-1", the_test_split(), 0) is None
    conn.execute("DELETE FROM training_examples WHERE split = 'train'")
    assert few_shot_candidate(conn, TASK, "base-1", the_test_split(), 3) is None


def test_the_candidate_id_names_its_base_and_k():
    assert few_shot_id("local-base-1a2b", 3) == "local-base-1a2b+3-shot"
    assert parse_few_shot_id("local-base-1a2b+3-shot") == ("local-base-1a2b", 3)
    assert parse_few_shot_id("local-ft-1") is None and parse_few_shot_id(None) is None


# --- the examples in front of the request -----------------------------------------------------------------

def few_shot(shots, version):
    """A few-shot candidate with these shots per test example."""
    return FewShot("base+shots", "base", max(map(len, shots)), shots, tuple(() for _ in shots), version, 0, 0)


SHOTS = [({"question": "count rows", "columns": ["duration_ms"]}, '{"calculations":[{"op":"COUNT"}]}'),
         ({"question": "max duration_ms", "columns": ["duration_ms"]},
          '{"calculations":[{"column":"duration_ms","op":"MAX"}]}')]


def test_chat_shots_are_user_assistant_pairs_after_the_system_prompt_and_before_the_request():
    request = {"question": "p95 duration_ms", "columns": ["duration_ms"]}
    messages = few_shot_messages(TASK, request, SHOTS)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert messages[0] == TASK.prompt(request)[0] and messages[-1] == TASK.prompt(request)[-1]
    assert messages[1] == TASK.prompt(SHOTS[0][0])[-1] and messages[2]["content"] == SHOTS[0][1]
    assert few_shot_messages(TASK, request, ()) == TASK.prompt(request)
    # a logged conversation keeps its own turns after the examples, whatever the task
    conversation = {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
                                 {"role": "assistant", "content": "hello"}, {"role": "user", "content": "bye?"}]}
    shot = ({"messages": [{"role": "user", "content": "thanks?"}]}, "you are welcome")
    assert [m["content"] for m in few_shot_messages(CHAT, conversation, [shot])] == [
        "be brief", "thanks?", "you are welcome", "hi", "hello", "bye?"]


def test_a_chat_model_gets_the_shots_and_each_calls_latency_and_tokens_are_kept():
    fake = FakeOpenAI(api_key=KEY)
    fake.chat_responder = lambda request: '{"calculations":[{"op":"COUNT"}]}'
    chat = OpenAIChatProvider("gpt-4o-mini", api_key=KEY, base_url="http://fake.test/v1",
                              http_client=fake.http_client())
    test = pl.DataFrame({"example_id": ["e1", "e2"], "output": ['{"calculations":[{"op":"COUNT"}]}'] * 2,
                         "input": [json.dumps({"question": q, "columns": ["duration_ms"]}) for q in ("count", "rows")]})
    few = few_shot(((SHOTS[0],), tuple(SHOTS)), "v9")
    results = generate(ChatModelProvider(chat, TASK, concurrency=2), "gpt-4o-mini+2-shot", test, TASK,
                       lambda line: None, few)
    sent = sorted((r["messages"] for r in fake.requests), key=len)
    assert [len(m) for m in sent] == [4, 6]  # system, the shots as pairs, the request
    assert sent[1] == few_shot_messages(TASK, json.loads(test["input"][1]), SHOTS)
    metrics = [json.loads(m) for m in results["metrics"]]
    assert [m["shots"] for m in metrics] == [1, 2] and {m["shots_version"] for m in metrics} == {"v9"}
    assert all(m["latency_ms"] > 0 and m["prompt_tokens"] > 0 and m["completion_tokens"] > 0 for m in metrics)


@pytest.fixture(scope="module")
def local_model(tmp_path_factory):
    """A tiny built-in model (one training step) reading at most 128 source tokens."""
    sources = [TASK.prompt(json.loads(e["input"]))[-1]["content"] for e in TRAIN]
    targets = [TASK.normalise(e["output"]) for e in TRAIN]
    folder = tmp_path_factory.mktemp("fewshot") / "base"
    train_base(folder, sources * 4, targets * 4, ModelConfig(vocab_size=300, d_model=16, num_layers=1,
                                                            num_decoder_layers=1, num_heads=2, d_ff=32,
                                                            max_source_tokens=128, max_target_tokens=24),
               TrainConfig(epochs=1, batch_size=8, max_steps=1, warmup_steps=0), log=lambda line: None)
    return LocalModelProvider(folder, TASK, batch_size=2, device="cpu")


def test_the_local_model_keeps_whole_examples_that_fit_its_source_length_dropping_the_first(local_model):
    request = {"question": "count rows", "columns": ["duration_ms"]}
    many = [SHOTS[0], SHOTS[1]] * 3
    assert local_model.max_source_tokens == 128
    alone = local_model.source_tokens(request)
    assert alone < 128 < local_model.source_tokens(request, many)
    (kept,) = local_model.fit_shots([request], [many])
    assert 0 < len(kept) < len(many) and kept == many[len(many) - len(kept):]  # a tail: the least similar dropped
    assert local_model.source_tokens(request, kept) <= 128
    assert len(kept) == len(many) or local_model.source_tokens(request, many[len(many) - len(kept) - 1:]) > 128
    # a request too long alone keeps no example (and is cut as without examples)
    long_request = {"question": "count " * 200, "columns": ["duration_ms"]}
    assert local_model.source_tokens(long_request) > 128 and local_model.fit_shots([long_request], [many]) == [[]]
    # the source: each example's source and target, then the request's, masked part by part
    text, literals = local_model._source(request, kept[-1:])
    assert text.endswith(SHOT_SEPARATOR + "Columns: duration_ms\nQuestion: count rows") and literals == ()


def test_local_few_shot_generation_batches_and_records_the_examples_used(local_model):
    inputs = [{"question": "count rows", "columns": ["duration_ms"]},
              {"question": "count " * 200, "columns": ["duration_ms"]},
              {"question": "max duration_ms", "columns": ["duration_ms"]}]
    test = pl.DataFrame({"example_id": ["a", "b", "c"], "input": [json.dumps(i) for i in inputs],
                         "output": ['{"calculations":[{"op":"COUNT"}]}'] * 3})
    few = few_shot(tuple([tuple(SHOTS * 3)] * 3), "v1")
    results = generate(local_model, "base+6-shot", test, TASK, lambda line: None, few)
    metrics = [json.loads(m) for m in results["metrics"]]
    assert metrics[1]["shots"] == 0 and all(0 < m["shots"] < 6 for m in (metrics[0], metrics[2]))
    assert all(m["latency_ms"] >= 0 and m["shots_version"] == "v1" for m in metrics)
    # without examples the model reads what it reads without few-shot: the same outputs
    assert local_model.complete(inputs[1:2], [[]]) == local_model.complete(inputs[1:2])


class Colours:
    """A toy task on the tiny transformers models: the colour of a thing."""

    name = "colours"

    def prompt(self, input):
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"what colour is {input['thing']} ?"}]


def test_a_transformers_model_reads_the_shots_as_chat_turns_within_its_prompt_length(tmp_path):
    register(PretrainedSpec(str(save_tiny_llama(tmp_path / "source")), 40, 4), tmp_path / "base", log=lambda line: None)
    model = LocalModelProvider(tmp_path / "base", Colours(), batch_size=2, device="cpu")
    request = {"thing": "sky"}
    shots = [({"thing": thing}, colour) for thing, colour in FACTS.items()]
    assert model.max_source_tokens == 40 and model.source_tokens(request) < 40 < model.source_tokens(request, shots)
    (kept,) = model.fit_shots([request], [shots])
    assert 0 < len(kept) < len(shots) and kept == shots[len(shots) - len(kept):]
    assert model.source_tokens(request, kept) <= 40 < model.source_tokens(request, shots[len(shots) - len(kept) - 1:])
    assert len(model.complete([request, {"thing": "snow"}], [shots, []])) == 2
