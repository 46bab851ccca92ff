"""Pretrained transformers models through the local backend: tiny T5 and Llama built from configs
and saved locally, fine-tuned by path (full and LoRA), checkpointed, resumed, generating batched."""

import json
from pathlib import Path

import polars as pl
import pytest
import torch
from safetensors.torch import load_file

from pipeline.engine.core.versions import config_hash
from pipeline.engine.train.local import LoraSettings, TrainConfig
from pipeline.engine.train.local.pretrained import (
    PretrainedModel, PretrainedSpec, chat_records, fine_tune, register,
)
from pipeline.engine.train.local.inference import LocalModelProvider
from pipeline.engine.train.local.runs import fine_tune_model, train_base_model
from tests.engine.tiny_hf import FACTS, SYSTEM, save_tiny_llama, save_tiny_t5, toy_pairs

QUIET = lambda _: None  # noqa: E731
FULL = TrainConfig(epochs=60, batch_size=4, learning_rate=5e-3, warmup_steps=5)
LORA = TrainConfig(epochs=60, batch_size=4, learning_rate=5e-3, warmup_steps=5,
                   lora=LoraSettings(r=8, alpha=32, dropout=0.0, target_modules=("all-linear",)))


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> dict[str, Path]:
    """Registered base directories of a tiny T5 and a tiny Llama, by kind."""
    root = tmp_path_factory.mktemp("hf")
    out = {}
    for kind, save in (("seq2seq", save_tiny_t5), ("causal", save_tiny_llama)):
        figures = register(PretrainedSpec(str(save(root / f"{kind}-source")), 64, 8), root / kind, log=QUIET)
        assert figures["steps"] == 0 and figures["parameters"] > 0
        out[kind] = root / kind
    return out


def _parameters(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("kind", ["seq2seq", "causal"])
def test_full_fine_tuning_learns_the_toy_set_and_generates_it_batched(bases, kind, tmp_path):
    prompts, targets = toy_pairs()
    result = fine_tune(bases[kind], tmp_path / "ft", prompts, targets, FULL, log=QUIET)
    assert result.loss_history[-1][1] < 0.2 * result.loss_history[0][1]
    model = PretrainedModel(tmp_path / "ft")
    assert model.generate(prompts, batch_size=3) == targets  # batches of mixed lengths, padded
    assert model.generate(prompts[:1], batch_size=1) == targets[:1]
    base = PretrainedModel(bases[kind]).generate(prompts)
    assert sum(o == t for o, t in zip(base, targets)) == 0


@pytest.mark.parametrize("kind", ["seq2seq", "causal"])
def test_lora_trains_adapters_only_and_saves_them_with_the_tokenizer(bases, kind, tmp_path):
    prompts, targets = toy_pairs()
    log: list[str] = []
    result = fine_tune(bases[kind], tmp_path / "lora", prompts, targets, LORA, log=log.append)
    assert result.loss_history[-1][1] < 0.6 * result.loss_history[0][1]
    files = {p.name for p in (tmp_path / "lora").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "flywheel.json"} <= files
    assert "model.safetensors" not in files
    meta = json.loads((tmp_path / "lora" / "flywheel.json").read_text())
    base_parameters = json.loads((bases[kind] / "flywheel.json").read_text())["result"]["parameters"]
    assert meta["lora"] and 0 < meta["result"]["trainable_parameters"] < base_parameters / 2
    adapter = load_file(tmp_path / "lora" / "adapter_model.safetensors")
    assert adapter and all("lora_" in name for name in adapter)
    assert any("LoRA" in line and "parameters train" in line for line in log)
    # the base directory is untouched; generation runs through base + adapter
    assert PretrainedModel(bases[kind]).generate(prompts) != targets
    outputs = PretrainedModel(tmp_path / "lora").generate(prompts, batch_size=4)
    assert sum(o == t for o, t in zip(outputs, targets)) >= 6


def test_seeded_runs_are_reproducible(bases, tmp_path):
    prompts, targets = toy_pairs()
    config = TrainConfig(epochs=6, batch_size=3, learning_rate=5e-3, warmup_steps=2, seed=3)
    runs = [fine_tune(bases["causal"], tmp_path / name, prompts, targets, config, log=QUIET) for name in "ab"]
    assert runs[0].loss_history == runs[1].loss_history
    a, b = (load_file(tmp_path / name / "model.safetensors") for name in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)


class _Crash(Exception):
    pass


def _crash_at(line_start: str):
    def log(line: str) -> None:
        if line.startswith(line_start):
            raise _Crash(line)
    return log


def test_a_crashed_lora_run_resumes_from_its_checkpoint_to_the_same_state(bases, tmp_path):
    prompts, targets = toy_pairs()
    config = TrainConfig(epochs=8, batch_size=3, learning_rate=1e-2, warmup_steps=2, seed=1,
                         checkpoint_every_steps=5, logging_steps=5, lora=LORA.lora)
    whole = fine_tune(bases["causal"], tmp_path / "whole", prompts, targets, config, log=QUIET)
    with pytest.raises(_Crash):
        fine_tune(bases["causal"], tmp_path / "crashed", prompts, targets, config,
                  log=_crash_at("checkpoint at step 10"))
    checkpoints = tmp_path / "crashed" / "checkpoints"
    assert [p.name for p in checkpoints.glob("checkpoint-*")] == ["checkpoint-10"]  # only the newest is kept
    assert not (tmp_path / "crashed" / "flywheel.json").exists()
    assert (tmp_path / "crashed" / "tokenizer.json").is_file()
    log: list[str] = []
    resumed = fine_tune(bases["causal"], tmp_path / "crashed", prompts, targets, config, log=log.append)
    assert any(line.startswith("resuming from checkpoint checkpoint-10 (step 10)") for line in log)
    assert resumed.resumed_from_step == 10 and resumed.steps == whole.steps == 24
    assert [s for s, _ in resumed.loss_history] == [s for s, _ in whole.loss_history]
    losses = [loss for _, loss in whole.loss_history]
    assert [loss for _, loss in resumed.loss_history] == pytest.approx(losses, rel=1e-5)
    a, b = (load_file(tmp_path / name / "adapter_model.safetensors") for name in ("whole", "crashed"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_a_checkpoint_of_other_data_is_not_resumed(bases, tmp_path):
    prompts, targets = toy_pairs()
    config = TrainConfig(epochs=4, batch_size=3, checkpoint_every_steps=2)
    with pytest.raises(_Crash):
        fine_tune(bases["causal"], tmp_path / "m", prompts, targets, config, log=_crash_at("checkpoint at step 2"))
    log: list[str] = []
    result = fine_tune(bases["causal"], tmp_path / "m", prompts[:6], targets[:6], config, log=log.append)
    assert result.resumed_from_step == 0
    assert any(line.startswith("ignoring checkpoint") for line in log)


def test_exported_chat_records_become_prompt_completion_records(tmp_path):
    path = tmp_path / "train.jsonl"
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "what colour is sky ?"},
                {"role": "assistant", "content": "light blue", "weight": 1}]
    path.write_text(json.dumps({"messages": messages}) + "\n\n")
    assert chat_records(path) == [{"prompt": messages[:2],
                                   "completion": [{"role": "assistant", "content": "light blue"}]}]
    path.write_text(json.dumps({"messages": messages[:2]}) + "\n")
    with pytest.raises(ValueError, match="line 1: the last message is not an assistant's"):
        chat_records(path)


def test_qlora_is_refused_with_a_reason_where_it_cannot_run(bases, tmp_path):
    prompts, targets = toy_pairs()
    qlora = TrainConfig(device="cpu", lora=LoraSettings(load_in_4bit=True))
    with pytest.raises(ValueError, match="QLoRA .* needs a CUDA GPU"):
        fine_tune(bases["causal"], tmp_path / "q", prompts, targets, qlora, log=QUIET)


class ToyTask:
    """The parts of a task that training and inference use: the prompt and the normaliser."""

    def prompt(self, input: dict) -> list[dict[str, str]]:
        question = f"what colour is {input['thing']} ?"
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]

    def normalise(self, output: str) -> str:
        return output.strip()


def test_the_pipeline_registers_a_pretrained_base_and_serves_the_fine_tuned_model(tmp_path):
    source = save_tiny_llama(tmp_path / "source")
    spec = PretrainedSpec(str(source), 64, 8)
    assert config_hash(spec) != config_hash(PretrainedSpec(str(tmp_path / "other"), 64, 8))
    examples = pl.DataFrame({"input": [json.dumps({"thing": t}) for t in FACTS], "output": list(FACTS.values())})
    task = ToyTask()
    base = train_base_model(tmp_path / "base", examples, task, spec, TrainConfig(), log=QUIET)
    assert base["reused"] is False and base["steps"] == 0
    tuned = fine_tune_model(tmp_path / "base", tmp_path / "ft", examples, examples.head(2), task, FULL, QUIET)
    assert tuned["steps"] == 120 and tuned["validation_loss"] < 0.2
    provider = LocalModelProvider(tmp_path / "ft", task, batch_size=3)
    assert provider.complete([json.loads(i) for i in examples["input"]]) == list(FACTS.values())


@pytest.mark.parametrize("kind", ["seq2seq", "causal"])
def test_token_lengths_are_sized_from_the_records_or_cut_where_set_counted_and_used_to_generate(kind, tmp_path):
    save = save_tiny_t5 if kind == "seq2seq" else save_tiny_llama
    source = save(tmp_path / "source")
    prompts, targets = toy_pairs()
    one_step = TrainConfig(max_steps=1, batch_size=4)
    register(PretrainedSpec(str(source)), tmp_path / "sized-base", log=QUIET)
    sized = fine_tune(tmp_path / "sized-base", tmp_path / "sized", prompts, targets, one_step, log=QUIET)
    assert sized.sources_cut == sized.targets_cut == 0
    assert sized.max_source_tokens_used % 8 == 0 and sized.max_target_tokens_used % 8 == 0
    model = PretrainedModel(tmp_path / "sized")
    longest = max(len(model.codec.whole_prompt_ids(p)) for p in prompts)
    assert longest <= sized.max_source_tokens_used < longest + 8
    assert (model.codec.max_source_tokens, model.codec.max_target_tokens) == (sized.max_source_tokens_used,
                                                                               sized.max_target_tokens_used)
    register(PretrainedSpec(str(source), max_source_tokens=longest - 1), tmp_path / "short-base", log=QUIET)
    log: list[str] = []
    short = fine_tune(tmp_path / "short-base", tmp_path / "short", prompts, targets, one_step, log=log.append)
    cut = sum(len(model.codec.whole_prompt_ids(p)) > longest - 1 for p in prompts)
    assert short.sources_cut == cut > 0 and short.max_source_tokens_used == longest - 1
    assert any(line.startswith(f"warning: {cut} of {len(prompts)} training prompts are longer") for line in log)
