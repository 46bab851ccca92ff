"""The stand-in incumbent: local model folders (a tiny transformers Llama built from a config, the
built-in seq2seq model trained a few steps) served on 127.0.0.1 through the chat completions API,
called with the real openai client (strict validation), captured as an incumbent, stopped."""

import json
import queue
import subprocess
import sys
import threading
from datetime import datetime, timezone

import openai
import polars as pl
import pytest

from pipeline.demo.incumbent_server import IncumbentServer
from pipeline.engine.core import store
from pipeline.engine.evaluate.incumbent import IncumbentSettings, capture_incumbent
from pipeline.engine.tasks import load_task
from pipeline.engine.train.local import ModelConfig, TrainConfig, train_base
from pipeline.engine.train.local.inference import LocalModelProvider
from pipeline.engine.train.local.pretrained import PretrainedModel, PretrainedSpec, register
from pipeline.engine.train.local.runs import model_source
from tests.engine.tiny_hf import save_tiny_llama, toy_pairs

TASK = load_task("nl2query")
QUIET = lambda _: None  # noqa: E731
INPUTS = [{"question": f"p95 duration_ms by service.name where status_code is {code} last 2 hours",
           "columns": ["service.name", "duration_ms", "status_code", "http.route", "Deployment Env"],
           "dataset": "checkout-api"} for code in (500, 404, 503)]
DEADLINE_S = 180  # a loaded 2-core machine imports torch and transformers slowly


def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key="local", max_retries=0, _strict_response_validation=True)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    """A tiny transformers Llama (built from a config, untrained) registered as a local model folder."""
    root = tmp_path_factory.mktemp("incumbent")
    register(PretrainedSpec(str(save_tiny_llama(root / "source")), 64, 8), root / "ft-llama", log=QUIET)
    return root / "ft-llama"


@pytest.fixture(scope="module")
def seq2seq_dir(tmp_path_factory):
    """The built-in encoder-decoder trained a few steps on nl2query prompts."""
    model_dir = tmp_path_factory.mktemp("incumbent") / "ft-builtin"
    sources = [model_source(TASK, i) for i in INPUTS] * 4
    tiny = ModelConfig(vocab_size=300, d_model=32, num_layers=1, num_decoder_layers=1, num_heads=2, d_ff=64,
                       dropout=0.0, max_source_tokens=96, max_target_tokens=24)
    train_base(model_dir, sources, ['{"calculations":[{"op":"COUNT"}]}'] * len(sources), tiny,
               TrainConfig(epochs=1, batch_size=4, max_steps=3, warmup_steps=1), log=QUIET)
    return model_dir


def test_the_server_answers_like_the_local_backend_in_the_api_shapes_and_stops(llama_dir):
    messages = toy_pairs()[0][0]
    local = PretrainedModel(llama_dir)
    with IncumbentServer(llama_dir, TASK, served_model_name="ft:gpt-4o-mini-2024-07-18:demo::standin") as server:
        api = client(server.base_url)
        assert server.base_url.startswith("http://127.0.0.1:")
        assert [m.id for m in api.models.list()] == ["ft:gpt-4o-mini-2024-07-18:demo::standin"]
        reply = api.chat.completions.create(model="ft:gpt-4o-mini-2024-07-18:demo::standin", messages=messages,
                                            temperature=0.0, seed=0)
        assert reply.object == "chat.completion" and reply.choices[0].finish_reason == "stop"
        assert reply.choices[0].message.content == local.generate([messages])[0]
        assert reply.usage.prompt_tokens == len(local.codec.prompt_ids(messages)) > 0
        assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
        with pytest.raises(openai.NotFoundError) as missing:
            api.chat.completions.create(model="gpt-4o-mini", messages=messages)
        assert missing.value.code == "model_not_found"
        with pytest.raises(openai.BadRequestError, match="streaming is not supported"):
            api.chat.completions.create(model=server.served_model_name, messages=messages, stream=True)
        with pytest.raises(openai.BadRequestError, match="non-empty list"):
            api.chat.completions.create(model=server.served_model_name, messages=[])
    with pytest.raises(openai.APIConnectionError):
        api.models.list()


def test_the_built_in_model_is_served_with_the_tasks_literal_masking_and_captured_as_the_incumbent(
        seq2seq_dir, tmp_path, monkeypatch):
    expected = LocalModelProvider(seq2seq_dir, TASK).complete(INPUTS)
    database = str(tmp_path / "flywheel.duckdb")
    with store.connect(database) as conn:
        store.upsert(conn, "training_examples", pl.DataFrame({
            "example_id": ["e0", "e1", "e2"], "source": "trace", "group_id": ["g0", "g1", "g2"], "split": "test",
            "input": [json.dumps(i) for i in INPUTS], "output": "{}",
            "created_at": datetime(2026, 11, 1, tzinfo=timezone.utc)}), ["example_id"])
    monkeypatch.setenv("STANDIN_KEY", "local")
    with IncumbentServer(seq2seq_dir, TASK, served_model_name="standin") as server:
        reply = client(server.base_url).chat.completions.create(model="standin", messages=TASK.prompt(INPUTS[0]))
        assert reply.choices[0].message.content == expected[0] and reply.usage.completion_tokens > 0
        registered = IncumbentSettings(model="standin", provider="openai_compatible", base_url=server.base_url,
                                       api_key_env="STANDIN_KEY", price_per_hour=2.0, max_retries=0)
        summary = capture_incumbent(lambda: store.connect(database), registered, TASK, QUIET)
    assert summary.total("captured_now") == 3 and summary.pricing == "configured per hour"
    with store.connect(database) as conn:
        rows = store.read(conn, "SELECT * FROM incumbent_outputs ORDER BY item_id")
    assert rows["output"].to_list() == expected
    assert (rows["cost_usd"] - rows["latency_ms"] / 1000 * 2.0 / 3600).abs().max() < 1e-12


def test_the_command_line_prints_its_url_serves_and_stops_on_sigterm(llama_dir, tmp_path):
    errors = (tmp_path / "stderr.txt").open("w")
    process = subprocess.Popen([sys.executable, "-m", "pipeline.demo.incumbent_server", "--model-dir", str(llama_dir),
                                "--port", "0", "--served-model-name", "standin"],
                               stdout=subprocess.PIPE, stderr=errors, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: lines.put(process.stdout.readline()), daemon=True).start()
    try:
        base_url = lines.get(timeout=DEADLINE_S).strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1"), \
            (tmp_path / "stderr.txt").read_text()
        assert [m.id for m in client(base_url).models.list()] == ["standin"]
    finally:
        process.terminate()
        returncode = process.wait(timeout=DEADLINE_S)
        errors.close()
    assert returncode == 0
