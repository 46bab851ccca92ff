"""Base model vs fine-tuned model on the demo data, with the local training backend.

Trains the base on data/demo/base_corpus.jsonl (5 datasets), fine-tunes it on the production
traces that pass every nl2query assertion (all 8 datasets; 80/10/10 split by a stable hash of
the question), and scores both on the held-out traces: share of outputs passing every
assertion, and exact match of the normalised output against the trace's. Run from the
repository root::

    HF_HUB_OFFLINE=1 python benchmarks/local_model_demo.py            # the demo settings
    HF_HUB_OFFLINE=1 python benchmarks/local_model_demo.py --tiny     # seconds, a smoke test
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.engine.train.local import (  # noqa: E402
    FINE_TUNE_CONFIG, LocalSeq2Seq, ModelConfig, TrainConfig, fine_tune, train_base,
)
from pipeline.engine.tasks import nl2query  # noqa: E402
from pipeline.demo.generate import read_demo_traces  # noqa: E402
from pipeline.engine.train.local.seq2seq import mask_pairs  # noqa: E402

DEMO = Path(__file__).resolve().parents[1] / "data" / "demo"
TINY_MODEL = ModelConfig(d_model=32, num_layers=1, num_decoder_layers=1, num_heads=2, d_ff=64)
TINY_TRAIN = TrainConfig(epochs=1, max_steps=5)


def read_jsonl(path: Path) -> list[dict]:
    """The JSON objects of a JSONL file; malformed lines are skipped."""
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def passes(input: dict, output: str) -> bool:
    """True when ``output`` passes every nl2query assertion."""
    return all(result.passed for result in nl2query.check(input, output))


def split_of(question: str) -> str:
    """train (80%), validation (10%) or test (10%), from a stable hash of the question."""
    bucket = int(hashlib.sha256(question.encode()).hexdigest(), 16) % 10
    return "test" if bucket == 0 else "validation" if bucket == 1 else "train"


def curated_traces() -> dict[str, list[tuple[dict, str]]]:
    """(input, normalised output) of the demo traces passing every assertion, by split."""
    splits: dict[str, list[tuple[dict, str]]] = {"train": [], "validation": [], "test": []}
    for row in read_demo_traces():
        input, output = row.get("input"), row.get("output")
        if nl2query.validate_input(input) is None and isinstance(output, str) and passes(input, output):
            splits[split_of(input["question"])].append((input, nl2query.normalise(output)))
    return splits


def source(input: dict) -> str:
    """The text the model reads: the prompt's user message."""
    return nl2query.prompt(input)[-1]["content"]


def score(examples: list[tuple[dict, str]], outputs: list[str], base_datasets: set[str]) -> dict:
    """Pass-all share and exact match, overall and for base and team-only datasets."""
    groups: dict[str, list[tuple[bool, bool]]] = {"all": [], "base": [], "team-only": []}
    for (input, reference), output in zip(examples, outputs):
        outcome = (passes(input, output), nl2query.normalise(output) == reference)
        groups["all"].append(outcome)
        groups["base" if input.get("dataset") in base_datasets else "team-only"].append(outcome)
    return {name: {"n": len(rows),
                   "pass_all": sum(p for p, _ in rows) / len(rows) if rows else 0.0,
                   "exact": sum(e for _, e in rows) / len(rows) if rows else 0.0}
            for name, rows in groups.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model, a few steps: a smoke test")
    parser.add_argument("--out", type=Path, help="where the models go (default: a temporary folder)")
    args = parser.parse_args()
    model_config, base_train, tune_train = ((TINY_MODEL, TINY_TRAIN, TINY_TRAIN) if args.tiny
                                            else (ModelConfig(), TrainConfig(), FINE_TUNE_CONFIG))
    out = args.out or Path(tempfile.mkdtemp(prefix="local-model-demo-"))

    corpus = [row for row in read_jsonl(DEMO / "base_corpus.jsonl") if nl2query.normalise(row["output"])]
    base_datasets = {row["input"].get("dataset") for row in corpus}
    splits = curated_traces()
    print(f"base corpus {len(corpus)} over {len(base_datasets)} datasets; curated traces "
          + ", ".join(f"{name} {len(rows)}" for name, rows in splits.items()))
    print(f"model {model_config}\nbase training {base_train}\nfine-tuning {tune_train}")

    started = time.monotonic()
    masker = nl2query.TASK.literals  # the task's literal masking, as the pipeline trains with it
    base_result = train_base(out / "base", *mask_pairs(masker, [source(r["input"]) for r in corpus],
                                                       [nl2query.normalise(r["output"]) for r in corpus]),
                             model_config, base_train)
    base_seconds = time.monotonic() - started
    started = time.monotonic()
    tune_result = fine_tune(out / "base", out / "fine_tuned",
                            *mask_pairs(masker, [source(i) for i, _ in splits["train"]], [o for _, o in splits["train"]]),
                            tune_train, validation=mask_pairs(masker, [source(i) for i, _ in splits["validation"]],
                                                              [o for _, o in splits["validation"]]))
    tune_seconds = time.monotonic() - started

    test = splits["test"]
    figures, generation_seconds = {}, {}
    for name in ("base", "fine_tuned"):
        model = LocalSeq2Seq.load(out / name)
        started = time.monotonic()
        outputs = model.generate([source(i) for i, _ in test], masker=masker)
        generation_seconds[name] = time.monotonic() - started
        figures[name] = score(test, outputs, base_datasets)

    parameters = sum(p.numel() for p in LocalSeq2Seq.load(out / "base").model.parameters())
    print(f"\nparameters {parameters:,}; models in {out}")
    print(f"base training {base_seconds:.0f}s ({base_result.steps} of {base_result.planned_steps} steps, "
          f"{base_result.epochs:.1f} epochs, loss {base_result.train_loss:.4f}); fine-tuning {tune_seconds:.0f}s "
          f"({tune_result.steps} of {tune_result.planned_steps} steps, loss {tune_result.train_loss:.4f}, "
          f"validation loss {tune_result.validation_loss:.4f})")
    print(f"generation for {len(test)} test traces: "
          + ", ".join(f"{name} {seconds:.1f}s" for name, seconds in generation_seconds.items()))
    print(f"\n{'model':<11} {'group':<10} {'n':>4} {'pass-all':>9} {'exact':>7}")
    for name, groups in figures.items():
        for group, row in groups.items():
            print(f"{name:<11} {group:<10} {row['n']:>4} {row['pass_all']:>9.1%} {row['exact']:>7.1%}")


if __name__ == "__main__":
    main()
