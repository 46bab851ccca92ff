"""The graph with a pretrained transformers model as the base: registered (not trained), fine-tuned
with LoRA, evaluated through the same provider interface."""

import json

import dagster as dg

from pipeline.definitions import ASSET_MODULES
from pipeline.engine.tasks.nl2query import TASK
from pipeline.resources import LocalTrainer
from tests.assets.tiny import materialize, tiny_resources
from tests.engine.tiny_hf import save_tiny_llama


def test_a_pretrained_base_is_registered_and_fine_tuned_with_lora(tmp_path, tiny_demo):
    source = save_tiny_llama(tmp_path / "tiny-llama")
    resources = tiny_resources(tmp_path / "flywheel", tiny_demo)
    builtin_trainer = resources["trainer"]
    resources["trainer"] = LocalTrainer(
        base_corpus=str(tiny_demo / "base_corpus.jsonl"), model_name_or_path=str(source), lora=True,
        lora_target_modules=["all-linear"], max_source_tokens=64, max_target_tokens=8, finetune_max_steps=3,
        replay_examples=0, batch_size=16)
    assets = [*dg.load_assets_from_modules(ASSET_MODULES), *dg.load_asset_checks_from_modules(ASSET_MODULES)]
    result, events = materialize(assets, resources)
    assert result.success

    base = events["base_model"].metadata
    assert base["steps"].value == 0 and base["reused"].value is False
    from assets.train import base_model_id

    assert base["model_id"].value == base_model_id(resources["trainer"], TASK) != base_model_id(builtin_trainer, TASK)
    base_dir = tmp_path / "flywheel" / "models" / base["model_id"].value
    assert json.loads((base_dir / "flywheel.json").read_text())["backend"] == "transformers"
    assert (base_dir / "model.safetensors").is_file() and (base_dir / "tokenizer.json").is_file()

    tuned = events["fine_tuned_model"].metadata
    assert tuned["steps"].value == 3 and tuned["resumed_from_step"].value == 0
    tuned_dir = tmp_path / "flywheel" / "models" / tuned["model_id"].value
    assert (tuned_dir / "adapter_model.safetensors").is_file() and not (tuned_dir / "model.safetensors").exists()
    assert "eval_report" in events
