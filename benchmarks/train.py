"""Local training throughput: Flywheel's trainer stack against a bare PyTorch loop, in one run.

Both start from the same weights and train on the same batches (those the trainer's dataloader
draws: the demo's small T5 on examples of the demo's base corpus through Seq2SeqTrainer, and a
small Llama with LoRA adapters through TRL's SFTTrainer): the bare loop only runs forward,
backward and an AdamW step on them; the stack adds what a flywheel run has (the learning-rate
schedule, gradient clipping, loss logging, a checkpoint half-way, the progress callback).
Tokens/s (input tokens, padding excluded) are medians over ``--repeats`` alternating runs; the
overhead is bare tokens/s over the stack's (target: under 1.3x). Then the demo T5's base
training in 1 and in 2 CPU processes (torchrun, gloo) through ``launch.train_in_processes``.
Run from the repository root::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/train.py            # demo sizes
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/train.py --quick    # tiny sizes, a smoke test
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.engine.tasks import nl2query  # noqa: E402
from pipeline.engine.train.local import LoraSettings, ModelConfig, TrainConfig, launch, trainer  # noqa: E402
from pipeline.engine.train.local.devices import resolve_device, set_threads  # noqa: E402
from pipeline.engine.train.local.pretrained import (  # noqa: E402
    PretrainedSpec, _causal_trainer, _Codec, chat_record, register,
)
from pipeline.engine.train.local.seq2seq import _encode_pairs, _mask, _t5_config, records  # noqa: E402
from pipeline.engine.train.local.tokenizer import fast_tokenizer, train_tokenizer  # noqa: E402

CORPUS = Path(__file__).resolve().parents[1] / "data" / "demo" / "base_corpus.jsonl"
QUICK_MODEL = ModelConfig(vocab_size=512, d_model=32, num_layers=1, num_decoder_layers=1, num_heads=2, d_ff=64)


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


def bare_loop(model: torch.nn.Module, batches: list[dict[str, torch.Tensor]], config: TrainConfig) -> tuple[float, int]:
    """Plain forward/backward/AdamW step over ``batches``: (seconds, input tokens)."""
    set_threads()
    device = resolve_device(config.device)
    started = time.perf_counter()
    model.to(device).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate,
                                  weight_decay=0.01)
    tokens = 0
    for batch in batches:
        loss = model(**{k: v.to(device) for k, v in batch.items()}).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        tokens += int(batch["attention_mask"].sum())
    loss.item()
    return time.perf_counter() - started, tokens


def stack_run(build: Callable[[Path], trainer.Trainer], config: TrainConfig, fingerprint: str) -> tuple[float, int]:
    """The trainer ``build`` makes (checkpoints in a temporary folder) run as a flywheel run: (seconds, tokens)."""
    with tempfile.TemporaryDirectory() as folder:
        run = build(Path(folder))
        started = time.perf_counter()
        result = trainer.fit(run, config, fingerprint, lambda _: None)
        seconds = time.perf_counter() - started
    assert result.steps == config.max_steps, result
    return seconds, result.tokens


def the_batches(build: Callable[[Path], trainer.Trainer], steps: int) -> list[dict[str, torch.Tensor]]:
    """The first ``steps`` batches the trainer ``build`` makes would train on (epoch 0 onwards)."""
    out: list[dict[str, torch.Tensor]] = []
    with tempfile.TemporaryDirectory() as folder:
        loader = build(Path(folder)).get_train_dataloader()
        epoch = 0
        while len(out) < steps:
            loader.set_epoch(epoch)
            out += [{k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "labels")}
                    for batch in loader]
            epoch += 1
    return out[:steps]


def compare(name: str, make_model: Callable[[], torch.nn.Module], build: Callable[[Path], trainer.Trainer],
            fingerprint: str, config: TrainConfig, repeats: int) -> float:
    """Print tokens/s of both (medians) and the overhead; returns the overhead ratio."""
    batches = the_batches(build, config.max_steps)
    expected = sum(int(b["attention_mask"].sum()) for b in batches)
    rates: dict[str, list[float]] = {"bare": [], "stack": []}
    bare_loop(make_model(), batches[:2], config)  # warm-up, not counted
    for repeat in range(repeats):
        for which in (("bare", "stack") if repeat % 2 == 0 else ("stack", "bare")):
            if which == "bare":
                seconds, tokens = bare_loop(make_model(), batches, config)
            else:
                seconds, tokens = stack_run(build, config, fingerprint)
            assert tokens == expected, f"{which} saw {tokens} tokens, the batches hold {expected}"
            rates[which].append(tokens / seconds)
            print(f"  {which} run {repeat + 1}: {tokens / seconds:,.0f} tokens/s", flush=True)
    bare, stack = statistics.median(rates["bare"]), statistics.median(rates["stack"])
    ratio = bare / stack
    print(f"{name}: {config.max_steps} steps x {repeats} repeats, {expected:,} tokens per run (medians below)")
    for label, key, rate in (("bare PyTorch loop", "bare", bare), ("Flywheel's trainer", "stack", stack)):
        print(f"  {label:<19} {rate:>10,.0f} tokens/s   (runs: {', '.join(f'{r:,.0f}' for r in rates[key])})")
    print(f"  overhead {ratio:.3f}x (target < 1.3x: {'ok' if ratio < 1.3 else 'NOT MET'})", flush=True)
    return ratio


def t5_case(n: int, model_config: ModelConfig, config: TrainConfig):
    """The built-in T5 with its tokenizer on demo examples: (make_model, build, fingerprint)."""
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainingArguments, T5ForConditionalGeneration

    prompts, targets = demo_examples(n)
    sources, targets = _mask([p[-1]["content"] for p in prompts], targets)
    tokenizer = train_tokenizer(sources + targets, model_config.vocab_size)
    model_config = replace(model_config, vocab_size=tokenizer.get_vocab_size())
    data = _encode_pairs(tokenizer, model_config, sources, targets)
    torch.manual_seed(config.seed)
    initial = T5ForConditionalGeneration(_t5_config(model_config)).state_dict()
    padder = fast_tokenizer(tokenizer)

    def make_model():
        model = T5ForConditionalGeneration(_t5_config(model_config))
        model.load_state_dict(initial)
        return model

    def build(folder: Path):
        args = trainer.arguments(Seq2SeqTrainingArguments, config, folder, len(data))
        return trainer.SeededSeq2SeqTrainer(model=make_model(), args=args, train_dataset=records(data),
                                            data_collator=DataCollatorForSeq2Seq(padder), processing_class=padder)

    return make_model, build, trainer.fingerprint(data, config)


def llama_lora_case(n: int, folder: Path, config: TrainConfig, hidden: int):
    """A small Llama built from a config (the demo BPE tokenizer) with LoRA adapters on demo chat
    prompts, through SFTTrainer: (make_model, build, fingerprint)."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, set_seed

    from pipeline.engine.train.local.pretrained import _lora_config

    prompts, targets = demo_examples(n)
    texts = [m["content"] for p in prompts for m in p] + targets
    tokenizer = fast_tokenizer(train_tokenizer(texts, 2048))
    tokenizer.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}</s>\n{% endfor %}"
                               "{% if add_generation_prompt %}assistant:{% endif %}")
    torch.manual_seed(config.seed)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=3 * hidden,
                                 num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                                 max_position_embeddings=1024, pad_token_id=0, eos_token_id=1)
                     ).save_pretrained(folder / "src")
    tokenizer.save_pretrained(folder / "src")
    register(PretrainedSpec(str(folder / "src"), 256, 128), folder / "base", log=lambda _: None)
    spec = PretrainedSpec(str(folder / "src"), 256, 128)
    chat = [chat_record(p, t) for p, t in zip(prompts, targets)]

    def base_model():
        return AutoModelForCausalLM.from_pretrained(folder / "base", dtype=torch.float32)

    def make_model():
        set_seed(config.seed)
        return get_peft_model(base_model(), _lora_config("causal", config))

    def build(out: Path):
        codec = _Codec(AutoTokenizer.from_pretrained(folder / "base"), "causal", spec)
        return _causal_trainer(base_model(), codec, chat, None, config, out)

    return make_model, build, trainer.fingerprint(chat, config)


def processes_case(n: int, model_config: ModelConfig, config: TrainConfig, repeats: int) -> None:
    """Base training of the demo T5 in 1 and in 2 CPU processes: tokens/s (medians) and the speed-up."""
    prompts, targets = demo_examples(n)
    rates: dict[int, list[float]] = {1: [], 2: []}
    for repeat in range(repeats):
        for processes in ((1, 2) if repeat % 2 == 0 else (2, 1)):
            with tempfile.TemporaryDirectory() as folder:
                job = launch.write_job(Path(folder), launch.BASE, Path(folder) / "model",
                                       ([p[-1]["content"] for p in prompts], targets), None,
                                       replace(config, device="cpu", processes=processes), model_config=model_config)
                result = launch.train_in_processes(job, processes, lambda _: None)
            assert result.processes == processes and result.steps == config.max_steps
            rates[processes].append(result.tokens_per_second)
            print(f"  {processes} process(es) run {repeat + 1}: {result.tokens_per_second:,.0f} tokens/s", flush=True)
    one, two = statistics.median(rates[1]), statistics.median(rates[2])
    print(f"demo T5 base training, {config.max_steps} steps of {config.batch_size} examples per process:")
    print(f"  1 process  {one:>10,.0f} tokens/s\n  2 processes {two:>9,.0f} tokens/s   (speed-up {two / one:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="training steps per run")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each (medians are reported)")
    parser.add_argument("--examples", type=int, default=2000, help="demo examples to train on")
    parser.add_argument("--quick", action="store_true", help="tiny models, few steps, one repeat: a smoke test")
    parser.add_argument("--skip-llama", action="store_true", help="leave out the Llama with LoRA")
    parser.add_argument("--skip-processes", action="store_true", help="leave out 1 vs 2 processes")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.repeats, args.examples = 6, 1, 64
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    config = TrainConfig(epochs=1000, batch_size=16, learning_rate=3e-3, warmup_steps=2, max_steps=args.steps,
                         checkpoint_every_steps=max(1, args.steps // 2), logging_steps=max(1, args.steps // 3))
    model_config = QUICK_MODEL if args.quick else ModelConfig()
    set_threads()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {resolve_device('auto')}",
          flush=True)
    ratios = [compare("built-in T5, full training (Seq2SeqTrainer)", *t5_case(args.examples, model_config, config),
                      config, args.repeats)]
    if not args.skip_llama:
        lora = replace(config, learning_rate=2e-4, lora=LoraSettings())
        with tempfile.TemporaryDirectory() as folder:
            case = llama_lora_case(args.examples, Path(folder), lora, hidden=32 if args.quick else 128)
            ratios.append(compare("Llama with LoRA (SFTTrainer)", *case, lora, args.repeats))
    if not args.skip_processes:
        processes_case(args.examples, model_config, config, args.repeats)
    sys.exit(0 if args.quick or max(ratios) < 1.3 else 1)


if __name__ == "__main__":
    main()
