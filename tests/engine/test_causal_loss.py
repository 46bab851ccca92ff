"""The causal trainer's loss: the model's cross-entropy on the completion's tokens only."""

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from pipeline.engine.train.local import TrainConfig
from pipeline.engine.train.local.pretrained import _causal_trainer, _Codec, chat_record
from tests.engine.tiny_hf import save_tiny_llama, toy_pairs


def test_the_loss_is_the_cross_entropy_of_the_completion_tokens_alone(tmp_path):
    source = save_tiny_llama(tmp_path / "llama")
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source)
    codec = _Codec(tokenizer, "causal", max_source_tokens=64, max_target_tokens=8)
    prompts, targets = toy_pairs()
    records = [chat_record(p, t) for p, t in zip(prompts, targets)]
    run = _causal_trainer(model, codec, records, None, TrainConfig(epochs=1, batch_size=4), tmp_path / "model")
    batch = next(iter(run.get_train_dataloader()))

    completion_lengths = {len(codec.sft_record(r)["input_ids"]) - len(codec.prompt_ids(r["prompt"])) for r in records}
    labelled = (batch["labels"] != -100).sum(dim=1)
    assert set(labelled.tolist()) <= completion_lengths  # the prompt's tokens carry no loss

    run.model.eval()
    with torch.no_grad():
        loss = run.compute_loss(run.model, dict(batch))
        logits = run.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    expected = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.size(-1)), batch["labels"][:, 1:].reshape(-1), ignore_index=-100)
    assert torch.isclose(loss, expected, atol=1e-5)
    everything = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.size(-1)), batch["input_ids"][:, 1:].reshape(-1))
    assert not torch.isclose(loss, everything, atol=1e-3)
