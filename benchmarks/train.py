"""Local training throughput: Flywheel's training loop against a bare PyTorch loop, in one run.

Both start from the same weights and train on the same batches (the demo's small T5 on examples
of the demo's base corpus, or a small Llama with LoRA adapters through transformers + peft):
the bare loop only collates, runs forward, backward and the optimizer step; Flywheel's adds the
learning-rate schedule, gradient clipping, loss logging and a checkpoint half-way (by default a
checkpoint is every 60 s, far rarer). Tokens/s are medians over ``--repeats`` alternating runs;
the overhead is bare tokens/s over Flywheel's (target: under 1.3x). Run from the repository root::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/train.py                 # built-in T5 and Llama + LoRA
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/train.py --steps 10 --repeats 1   # a smoke test
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.engine.train.local import ModelConfig, TrainConfig, loop  # noqa: E402
from pipeline.engine.train.local.pretrained import PretrainedSpec, register  # noqa: E402
from pipeline.engine.train.local.seq2seq import _encode_pairs, _mask, _t5_config, collate  # noqa: E402
from pipeline.engine.train.local.tokenizer import EOS, PAD, UNK, train_tokenizer  # noqa: E402
from pipeline.engine.tasks import nl2query  # noqa: E402

CORPUS = Path(__file__).resolve().parents[1] / "data" / "demo" / "base_corpus.jsonl"


def demo_examples(n: int) -> tuple[list[list[dict]], list[str]]:
    """(chat prompts, normalised outputs) of the first ``n`` usable examples of the demo's base corpus."""
    prompts, targets = [], []
    for line in CORPUS.read_text().splitlines():
        row = json.loads(line)
        target = nl2query.normalise(row["output"])
        if target:
            prompts.append(nl2query.prompt(row["input"]))
            targets.append(target)
        if len(prompts) == n:
            break
    return prompts, targets


def same_batches(data: loop.Pairs, config: TrainConfig, steps: int) -> list[loop.Pairs]:
    """The batches Flywheel's loop draws for ``steps`` steps (same seed, same epoch order)."""
    rng, out = random.Random(config.seed), []
    while len(out) < steps:
        out += loop.batches(data, config.batch_size, rng)
    return out[:steps]


def bare_loop(model: torch.nn.Module, batches: list[loop.Pairs], collate_fn: loop.Collate,
              config: TrainConfig) -> tuple[float, int]:
    """Plain forward/backward/step over ``batches``: (seconds, tokens)."""
    loop.set_threads()
    device = loop.resolve_device(config.device)
    started = time.perf_counter()
    model.to(device).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate,
                                  weight_decay=0.01)
    tokens = 0
    for pairs in batches:
        batch, n = collate_fn(pairs)
        with loop.autocast(device):
            loss = model(**loop.to_device(batch, device)).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        tokens += n
    loss.item()
    return time.perf_counter() - started, tokens


def flywheel_loop(model: torch.nn.Module, data: loop.Pairs, collate_fn: loop.Collate, config: TrainConfig,
                  folder: Path) -> tuple[float, loop.TrainResult]:
    """Flywheel's training loop (checkpointing into ``folder``): (seconds, result)."""
    started = time.perf_counter()
    result = loop.train(model, data, collate_fn, config, None, lambda _: None, folder / "checkpoints")
    return time.perf_counter() - started, result


def compare(name: str, make_model, data: loop.Pairs, collate_fn: loop.Collate, config: TrainConfig,
            repeats: int) -> float:
    """Print tokens/s of both loops (medians) and the overhead; returns the overhead ratio."""
    batches = same_batches(data, config, config.max_steps)
    rates: dict[str, list[float]] = {"bare": [], "flywheel": []}
    checkpoint_seconds = []
    bare_loop(make_model(), batches[:3], collate_fn, config)  # warm-up, not counted
    for repeat in range(repeats):
        for which in (("bare", "flywheel") if repeat % 2 == 0 else ("flywheel", "bare")):
            model = make_model()
            if which == "bare":
                seconds, tokens = bare_loop(model, batches, collate_fn, config)
            else:
                with tempfile.TemporaryDirectory() as folder:
                    seconds, result = flywheel_loop(model, data, collate_fn, config, Path(folder))
                tokens = round(result.tokens_per_second * result.seconds)
                checkpoint_seconds.append(result.checkpoint_seconds)
                assert result.steps == len(batches)
            rates[which].append(tokens / seconds)
            print(f"  {which} run {repeat + 1}: {tokens / seconds:,.0f} tokens/s", flush=True)
    expected = sum(collate_fn(b)[1] for b in batches)
    assert abs(tokens - expected) <= 1, f"the loops saw different tokens: {tokens} vs {expected}"
    bare, flywheel = statistics.median(rates["bare"]), statistics.median(rates["flywheel"])
    ratio = bare / flywheel
    print(f"{name}: {config.max_steps} steps x {repeats} repeats, {expected:,} tokens per run (medians below)")
    for label, key, rate in (("bare PyTorch loop", "bare", bare), ("Flywheel loop", "flywheel", flywheel)):
        print(f"  {label:<19} {rate:>10,.0f} tokens/s   (runs: {', '.join(f'{r:,.0f}' for r in rates[key])})")
    print(f"  overhead {ratio:.3f}x (target < 1.3x: {'ok' if ratio < 1.3 else 'NOT MET'}); "
          f"checkpoint {statistics.median(checkpoint_seconds):.3f}s per run")
    return ratio


def builtin_case(n: int, config: TrainConfig):
    """The demo's small T5 (default ModelConfig) with its tokenizer, on demo examples."""
    prompts, targets = demo_examples(n)
    sources, targets = _mask([p[-1]["content"] for p in prompts], targets)
    tokenizer = train_tokenizer(sources + targets, ModelConfig().vocab_size)
    model_config = replace(ModelConfig(), vocab_size=tokenizer.get_vocab_size())
    data = _encode_pairs(tokenizer, model_config, sources, targets)
    torch.manual_seed(config.seed)
    from transformers import T5ForConditionalGeneration

    initial = T5ForConditionalGeneration(_t5_config(model_config)).state_dict()

    def make_model():
        model = T5ForConditionalGeneration(_t5_config(model_config))
        model.load_state_dict(initial)
        return model

    return make_model, data, collate


def llama_lora_case(n: int, folder: Path, config: TrainConfig):
    """A small Llama built from a config (the demo BPE tokenizer) with LoRA adapters, on demo chat prompts."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from pipeline.engine.train.local.pretrained import _Codec, _lora_config

    prompts, targets = demo_examples(n)
    texts = [m["content"] for p in prompts for m in p] + targets
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=train_tokenizer(texts, 2048),
                                        pad_token=PAD, eos_token=EOS, unk_token=UNK)
    torch.manual_seed(config.seed)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=384,
                                 num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                                 max_position_embeddings=512, pad_token_id=0, eos_token_id=1)
                     ).save_pretrained(folder / "src")
    tokenizer.save_pretrained(folder / "src")
    register(PretrainedSpec(str(folder / "src"), 256, 128), folder / "base", log=lambda _: None)
    codec = _Codec(tokenizer, "causal", PretrainedSpec(str(folder / "src"), 256, 128))
    data = codec.pairs(prompts, targets)

    def make_model():
        base = AutoModelForCausalLM.from_pretrained(folder / "base", dtype=torch.float32)
        return get_peft_model(base, _lora_config("causal", config))

    return make_model, data, codec.collate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="training steps per run")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each loop (medians are reported)")
    parser.add_argument("--examples", type=int, default=2000, help="demo examples to train on")
    parser.add_argument("--skip-llama", action="store_true", help="only the built-in T5")
    args = parser.parse_args()
    import transformers

    transformers.utils.logging.disable_progress_bar()
    config = TrainConfig(epochs=1000, batch_size=16, learning_rate=3e-3, warmup_steps=10, max_steps=args.steps,
                         max_seconds=None, checkpoint_every_seconds=None,
                         checkpoint_every_steps=max(1, args.steps // 2))
    loop.set_threads()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {loop.resolve_device('auto')}",
          flush=True)
    ratios = [compare("built-in T5 (demo size), full fine-tuning", *builtin_case(args.examples, config), config,
                      args.repeats)]
    if not args.skip_llama:
        lora = replace(config, learning_rate=2e-4, lora=loop.LoraSettings())
        with tempfile.TemporaryDirectory() as folder:
            case = llama_lora_case(args.examples, Path(folder), lora)
            ratios.append(compare("Llama 2x128 (transformers), LoRA", *case, lora, args.repeats))
    sys.exit(0 if max(ratios) < 1.3 else 1)


if __name__ == "__main__":
    main()
