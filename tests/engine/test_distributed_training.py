"""Data-parallel local training: the tiny seq2seq model trained by two CPU processes (torchrun, gloo)."""

import json
from dataclasses import asdict

import polars as pl
import pytest

from pipeline.engine.tasks import hooks, load_task
from pipeline.engine.train.local import LocalSeq2Seq, ModelConfig, TrainConfig
from pipeline.engine.train.local.launch import Job, train_in_processes
from pipeline.engine.train.local.runs import pairs, train_base_model

TINY = ModelConfig(vocab_size=400, d_model=64, num_layers=1, num_decoder_layers=1, num_heads=4, d_ff=128,
                   max_source_tokens=96, max_target_tokens=64)


def corpus() -> pl.DataFrame:
    """16 count queries over a few columns and time ranges."""
    rows = [({"question": f"count of {column} over the last {hours} hours", "columns": ["duration_ms", column]},
             {"calculations": [{"op": "COUNT"}], "time_range": hours * 3600})
            for column in ("service.name", "http.route", "queue", "attempts") for hours in (1, 2, 6, 12)]
    return pl.DataFrame({"input": [json.dumps(i) for i, _ in rows], "output": [json.dumps(o) for _, o in rows]})


def test_two_cpu_processes_train_the_tiny_model_into_one_model_folder(tmp_path):
    task, examples = load_task("nl2query"), corpus()
    config = TrainConfig(epochs=30, batch_size=4, learning_rate=5e-3, warmup_steps=5, device="cpu", processes=2,
                         logging_steps=10)
    log: list[str] = []
    result = train_base_model(tmp_path / "base", examples, task, TINY, config, log.append)
    # 16 examples in batches of 4 on each of 2 processes: 2 steps an epoch
    assert result["processes"] == 2 and result["steps"] == result["planned_steps"] == 60
    assert result["epochs"] == pytest.approx(30)
    losses = [loss for _, loss in result["loss_history"]]
    assert losses[-1] < 0.5 * losses[0]
    assert sum(line.startswith("step 60/60 loss") for line in log) == 1  # only rank 0 logs
    assert [p.parent for p in tmp_path.rglob("flywheel.json")] == [tmp_path / "base"]
    assert sorted(p.name for p in (tmp_path / "base").iterdir()) == ["config.json", "flywheel.json",
                                                                    "model.safetensors", "tokenizer.json"]
    sources, _ = pairs(examples, task)
    outputs = LocalSeq2Seq.load(tmp_path / "base").generate(sources, masker=hooks.literal_masker(task))
    assert len(outputs) == len(sources) and all(isinstance(o, str) and o for o in outputs)


def test_a_failing_multi_process_run_raises_with_the_end_of_its_output(tmp_path):
    job = Job(function="nonsense", model_dir=str(tmp_path / "m"), train=str(tmp_path / "train.jsonl"),
              train_config=asdict(TrainConfig(device="cpu", processes=2)))
    with pytest.raises(RuntimeError, match="(?s)training in 2 processes failed.*unknown training function"):
        train_in_processes(job, 2, log=lambda _: None)
