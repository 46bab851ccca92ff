import json
import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pipeline.engine.tasks import nl2query
from pipeline.engine.tasks.hooks import PLACEHOLDERS
from pipeline.engine.tasks.nl2query.literals import LITERALS
from pipeline.engine.train.local import LocalSeq2Seq, ModelConfig, TrainConfig, fine_tune, train_base
from pipeline.engine.train.local.config import fit_length
from pipeline.engine.train.local.seq2seq import mask_pairs
from pipeline.engine.train.local.tokenizer import EOS_ID, UNK_ID, decode, encode, load_tokenizer, train_tokenizer

TINY = ModelConfig(vocab_size=400, d_model=64, num_layers=1, num_decoder_layers=1, num_heads=4, d_ff=128,
                   dropout=0.0, max_source_tokens=96, max_target_tokens=128)
OVERFIT = TrainConfig(epochs=250, batch_size=8, learning_rate=5e-3, warmup_steps=10, seed=0)

DATASETS = {
    "web": ["duration_ms", "http.status_code", "service.name", "http.route"],
    "jobs": ["job.name", "queue", "runtime_s", "attempts"],
}
OPS = {"P95": "95th percentile", "AVG": "average", "MAX": "max", "SUM": "sum"}


def toy_examples(n: int, seed: int, datasets=("web", "jobs")) -> tuple[list[str], list[str]]:
    """(sources, targets) of a small templated nl2query task."""
    rng = random.Random(seed)
    sources, targets = [], []
    for _ in range(n):
        columns = DATASETS[rng.choice(datasets)]
        op, column = rng.choice(sorted(OPS)), rng.choice(columns)
        query, question = {"calculations": [{"op": op, "column": column}]}, f"{OPS[op]} of {column}"
        if rng.random() < 0.5:
            value, where = rng.choice([200, 500, 1000]), rng.choice(columns)
            query["filters"] = [{"column": where, "op": ">", "value": value}]
            question += f" where {where} is above {value}"
        if rng.random() < 0.5:
            hours = rng.choice([1, 2, 6])
            query["time_range"] = hours * 3600
            question += f" over the last {hours} hours"
        sources.append(nl2query.prompt({"question": question, "columns": columns})[-1]["content"])
        targets.append(nl2query.dump(nl2query.canonical(query)))
    return sources, targets


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> tuple[Path, list[str], list[str]]:
    sources, targets = toy_examples(8, seed=1, datasets=("web",))
    model_dir = tmp_path_factory.mktemp("models") / "base"
    train_base(model_dir, sources, targets, TINY, OVERFIT, log=lambda _: None)
    return model_dir, sources, targets


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(model_dir / "model.safetensors")


def test_tokenizer_encodes_unseen_names_without_unknown_tokens():
    sources, targets = toy_examples(50, seed=0)
    tokenizer = train_tokenizer(sources + targets, vocab_size=300)
    text = 'Columns: zz_unseen.col, ünïcode-col\nQuestion: p99 of "naïve ☃" since <v0> in <v1>'
    [ids] = encode(tokenizer, [text], max_tokens=1000)
    assert UNK_ID not in ids
    assert decode(tokenizer, ids) == text
    for placeholder in PLACEHOLDERS:
        assert len(tokenizer.encode(placeholder, add_special_tokens=False).ids) == 1


def test_encode_truncates_sources_from_the_start_and_targets_from_the_end():
    tokenizer = train_tokenizer(["abc def ghi"] * 10, vocab_size=300)
    text = "Columns: a, b, c, d, e, f\nQuestion: the end"
    [kept_end] = encode(tokenizer, [text], max_tokens=6, keep_end=True)
    [kept_start] = encode(tokenizer, [text], max_tokens=6)
    assert len(kept_end) == len(kept_start) == 6
    assert kept_end[-1] == kept_start[-1] == EOS_ID
    assert text.endswith(decode(tokenizer, kept_end)) and decode(tokenizer, kept_end).endswith("end")
    assert text.startswith(decode(tokenizer, kept_start)) and decode(tokenizer, kept_start).startswith("Col")


def test_tiny_model_overfits_and_reloads_generating_its_examples(base):
    model_dir, sources, targets = base
    assert json.loads((model_dir / "flywheel.json").read_text())["result"]["steps"] == 250
    model = LocalSeq2Seq.load(model_dir)
    assert model.generate(sources, batch_size=3) == targets
    assert all(nl2query.normalise(out) == out for out in model.generate(sources))


def test_model_directory_is_replaced_whole_and_nothing_half_written_loads(base, tmp_path):
    with pytest.raises(FileNotFoundError):
        LocalSeq2Seq.load(tmp_path)
    model_dir, sources, targets = base
    target_dir = tmp_path / "model"
    (target_dir / "stale").mkdir(parents=True)
    fine_tune(model_dir, target_dir, sources, targets, TrainConfig(epochs=1, batch_size=8, max_steps=1),
              log=lambda _: None)
    assert sorted(p.name for p in target_dir.iterdir()) == ["config.json", "flywheel.json",
                                                            "model.safetensors", "tokenizer.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_fine_tune_with_zero_learning_rate_keeps_the_base_exactly(base, tmp_path):
    model_dir, sources, targets = base
    other_sources, other_targets = toy_examples(8, seed=2, datasets=("jobs",))
    fine_tune(model_dir, tmp_path / "ft", other_sources, other_targets,
              TrainConfig(epochs=2, batch_size=4, learning_rate=0.0, warmup_steps=1), log=lambda _: None)
    before, after = _weights(model_dir), _weights(tmp_path / "ft")
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert LocalSeq2Seq.load(tmp_path / "ft").generate(sources) == targets


def test_fine_tune_warm_starts_with_the_base_tokenizer_and_learns_a_new_dataset(base, tmp_path):
    model_dir, sources, targets = base
    new_sources, new_targets = toy_examples(8, seed=3, datasets=("jobs",))
    log: list[str] = []
    result = fine_tune(model_dir, tmp_path / "ft", sources + new_sources, targets + new_targets,
                       TrainConfig(epochs=100, batch_size=8, learning_rate=3e-3, warmup_steps=5),
                       validation=(new_sources[:2], new_targets[:2]), log=log.append)
    assert (tmp_path / "ft" / "tokenizer.json").read_bytes() == (model_dir / "tokenizer.json").read_bytes()
    assert load_tokenizer(tmp_path / "ft").get_vocab_size() == load_tokenizer(model_dir).get_vocab_size()
    assert result.validation_loss is not None and result.validation_loss < 0.1
    assert any(line.startswith("fine-tuning from") for line in log)
    # the base never saw the jobs dataset; the warm-started model generates it
    base_outputs = LocalSeq2Seq.load(model_dir).generate(new_sources)
    tuned = LocalSeq2Seq.load(tmp_path / "ft")
    assert tuned.model.get_input_embeddings().weight.shape == (tuned.tokenizer.get_vocab_size(), TINY.d_model)
    assert sum(o == t for o, t in zip(base_outputs, new_targets)) == 0
    assert sum(o == t for o, t in zip(tuned.generate(new_sources), new_targets)) >= 6
    assert sum(o == t for o, t in zip(tuned.generate(sources), targets)) >= 6


def test_training_is_reproducible_from_the_seed(tmp_path):
    sources, targets = toy_examples(16, seed=4)
    config = TrainConfig(epochs=3, batch_size=4, learning_rate=3e-3, warmup_steps=2, seed=7)
    first = train_base(tmp_path / "a", sources, targets, TINY, config, log=lambda _: None)
    second = train_base(tmp_path / "b", sources, targets, TINY, config, log=lambda _: None)
    third = train_base(tmp_path / "c", sources, targets, TINY, TrainConfig(**{**config.__dict__, "seed": 8}),
                       log=lambda _: None)
    assert first.loss_history == second.loss_history != third.loss_history
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (tmp_path / "b" / "tokenizer.json").read_bytes()


def test_training_stops_at_max_steps_and_logs_progress(tmp_path):
    sources, targets = toy_examples(16, seed=5)
    log: list[str] = []
    result = train_base(tmp_path / "m", sources, targets, TINY,
                        TrainConfig(epochs=100, batch_size=4, max_steps=60, warmup_steps=5), log=log.append)
    assert result.steps == 60 and result.epochs == 15
    assert [step for step, _ in result.loss_history][-2:] == [50, 60]
    assert result.tokens_per_second > 0 and result.validation_loss is None
    assert any(line.startswith("step 50/60 loss") for line in log)


def test_the_loss_is_logged_every_logging_steps_and_at_the_last_step(tmp_path):
    sources, targets = toy_examples(16, seed=5)
    result = train_base(tmp_path / "m", sources, targets, TINY,
                        TrainConfig(epochs=100, batch_size=4, max_steps=23, warmup_steps=5, logging_steps=5),
                        log=lambda _: None)
    steps = [step for step, _ in result.loss_history]
    assert steps == [5, 10, 15, 20, 23] and all(step % 5 == 0 for step in steps[:-1])
    assert result.planned_steps == result.steps == 23 and result.planned_epochs == 100 and result.epochs == pytest.approx(23 / 4)
    assert result.complete and not result.stopped_early and result.tokens > 0 and result.processes == 1


def test_a_run_stopped_by_its_time_limit_is_recorded_as_stopped_early(tmp_path):
    """max_seconds=0 stops after the first step, whatever the machine's speed."""
    sources, targets = toy_examples(16, seed=5)
    log: list[str] = []
    result = train_base(tmp_path / "m", sources, targets, TINY,
                        TrainConfig(epochs=10, batch_size=4, warmup_steps=5, max_seconds=0), log=log.append)
    assert result.stopped_early and result.steps == 1 < result.planned_steps == 40 and not result.complete
    assert result.loss_history == [(1, result.train_loss)] and any(line.startswith("step 1/40 loss") for line in log)
    saved = json.loads((tmp_path / "m" / "flywheel.json").read_text())["result"]
    assert saved["stopped_early"] is True and saved["steps"] == 1 and saved["planned_steps"] == 40


def test_a_finished_model_is_reused_with_its_saved_training_result(tmp_path):
    """A re-run whose registry row was lost (say the database was deleted) still reports the
    metrics of the training that produced the folder, without training again."""
    import polars as pl

    from pipeline.engine.tasks import load_task
    from pipeline.engine.train.local.runs import train_base_model

    task = load_task("nl2query")
    corpus = pl.DataFrame({"input": [json.dumps({"question": f"count last {n} hours", "columns": ["duration_ms"]})
                                     for n in range(2, 8)],
                           "output": [json.dumps({"calculations": [{"op": "COUNT"}], "time_range": n * 3600})
                                      for n in range(2, 8)]})
    config = TrainConfig(epochs=1, batch_size=4, learning_rate=1e-3, warmup_steps=1, max_steps=2)
    first = train_base_model(tmp_path / "m", corpus, task, TINY, config, log=lambda _: None)
    again = train_base_model(tmp_path / "m", corpus, task, TINY, config, log=lambda _: None)
    assert first["reused"] is False and again["reused"] is True
    assert again["steps"] == first["steps"] == 2 and again["train_loss"] == first["train_loss"]


def test_a_crashed_base_training_resumes_from_its_last_checkpoint_to_the_same_model(tmp_path):
    """Weights, optimizer, scheduler, RNG, the position in the data order and the loss logged so
    far are restored: the resumed run ends exactly where an uninterrupted one does."""
    sources, targets = toy_examples(16, seed=6)
    config = TrainConfig(epochs=4, batch_size=3, learning_rate=3e-3, warmup_steps=2, seed=2,
                         checkpoint_every_steps=7, logging_steps=7)
    whole = train_base(tmp_path / "whole", sources, targets, TINY, config, log=lambda _: None)

    def crash(line: str) -> None:
        if line.startswith("checkpoint at step 14"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_base(tmp_path / "crashed", sources, targets, TINY, config, log=crash)
    assert sorted(p.name for p in (tmp_path / "crashed").iterdir()) == ["checkpoints", "tokenizer.json"]
    with pytest.raises(FileNotFoundError):
        LocalSeq2Seq.load(tmp_path / "crashed")
    log: list[str] = []
    resumed = train_base(tmp_path / "crashed", sources, targets, TINY, config, log=log.append)
    assert any(line.startswith("resuming from checkpoint checkpoint-14 (step 14)") for line in log)
    assert resumed.resumed_from_step == 14 and resumed.steps == whole.steps == 24
    # the loss logged before the crash comes back with the checkpoint; the last step is logged too
    assert [s for s, _ in resumed.loss_history] == [s for s, _ in whole.loss_history] == [7, 14, 21, 24]
    assert [loss for _, loss in resumed.loss_history] == pytest.approx([loss for _, loss in whole.loss_history],
                                                                      rel=1e-5)
    assert resumed.train_loss == pytest.approx(whole.train_loss, rel=1e-5)
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "crashed")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert sorted(p.name for p in (tmp_path / "crashed" / "checkpoints").glob("checkpoint-*")) == ["checkpoint-21"]


def test_a_length_left_to_the_data_fits_the_longest_rounded_up_and_an_explicit_one_wins():
    assert fit_length([3, 17, 9], None, ceiling=1024).length == 24 and fit_length([16], None, 1024).length == 16
    assert fit_length([3, 17, 9], None, ceiling=1024).cut == 0
    assert (fit_length([3, 17, 9, 40], None, ceiling=20).length, fit_length([3, 17, 9, 40], None, 20).cut) == (20, 1)
    assert [fit_length([3, 17, 9, 40], None, ceiling=16).cut, fit_length([3, 17, 9, 40], 9, 1024).cut] == [2, 2]
    assert fit_length([3, 17, 9, 40], 9, ceiling=8).length == 9
    with pytest.raises(ValueError, match="room"):
        fit_length([3], 1, 1024)


def _token_lengths(model_dir: Path, texts: list[str]) -> list[int]:
    return [len(ids) for ids in encode(load_tokenizer(model_dir), texts, 10**6)]


def test_token_lengths_are_sized_from_the_training_data_and_generation_uses_them(tmp_path):
    sources, targets = toy_examples(12, seed=8)
    sized = replace(TINY, max_source_tokens=None, max_target_tokens=None)
    log: list[str] = []
    result = train_base(tmp_path / "m", sources, targets, sized, TrainConfig(max_steps=1, batch_size=4),
                        log=log.append)
    longest_source = max(_token_lengths(tmp_path / "m", sources))
    longest_target = max(_token_lengths(tmp_path / "m", targets))
    assert result.max_source_tokens_used == -(-longest_source // 8) * 8 >= longest_source
    assert result.max_target_tokens_used == -(-longest_target // 8) * 8 >= longest_target
    assert result.sources_cut == result.targets_cut == 0 and not any(line.startswith("warning") for line in log)
    model = LocalSeq2Seq.load(tmp_path / "m")
    assert (model.max_source_tokens, model.max_target_tokens) == (result.max_source_tokens_used,
                                                                   result.max_target_tokens_used)
    assert json.loads((tmp_path / "m" / "flywheel.json").read_text())["model_config"]["max_source_tokens"] is None


def test_sources_longer_than_an_explicit_length_are_counted_and_warned_about(tmp_path):
    sources, targets = toy_examples(12, seed=8)
    log: list[str] = []
    result = train_base(tmp_path / "m", sources, targets, replace(TINY, max_source_tokens=24, max_target_tokens=None),
                        TrainConfig(max_steps=1, batch_size=4), log=log.append)
    cut = sum(n > 24 for n in _token_lengths(tmp_path / "m", sources))
    assert cut > 0 and result.sources_cut == cut and result.max_source_tokens_used == 24
    assert f"warning: {cut} of 12 training sources are longer than 24 tokens and lose their start" in log
    saved = json.loads((tmp_path / "m" / "flywheel.json").read_text())["result"]
    assert saved["sources_cut"] == cut and saved["targets_cut"] == 0
    # fine-tuning from it keeps the explicit length, as does generation
    tuned = fine_tune(tmp_path / "m", tmp_path / "ft", sources, targets, TrainConfig(max_steps=1, batch_size=4),
                      log=lambda _: None)
    assert tuned.max_source_tokens_used == LocalSeq2Seq.load(tmp_path / "ft").max_source_tokens == 24


def test_masked_training_restores_the_literals_of_new_questions(tmp_path):
    """The model learns to copy placeholders; generation masks the question and restores its values."""
    sources, targets = toy_examples(8, seed=1, datasets=("web",))
    masked_sources, masked_targets = mask_pairs(LITERALS, sources, targets)
    assert any("<v0>" in s for s in masked_sources) and all("<v" not in s for s in sources)
    train_base(tmp_path / "m", masked_sources, masked_targets, TINY, OVERFIT, log=lambda _: None)
    model = LocalSeq2Seq.load(tmp_path / "m")
    assert model.generate(sources, masker=LITERALS) == targets
    assert [len(model.tokenizer.encode(p, add_special_tokens=False).ids) for p in PLACEHOLDERS] == [1] * 16
    # the same questions with other values: the values come from the question, not from memory
    renumbered = [s.replace("500", "777").replace("1000", "4242") for s in sources]
    expected = [t.replace("500", "777").replace("1000", "4242") for t in targets]
    assert model.generate(renumbered, masker=LITERALS) == expected


def test_the_training_job_holds_the_tasks_masked_texts_and_the_base_id_names_the_masking(tmp_path):
    import polars as pl

    from pipeline.engine.tasks import load_task
    from pipeline.engine.train.local.config import TrainResult
    from pipeline.engine.train.local.runs import base_model_id, train_base_model

    task = load_task("nl2query")
    corpus = pl.DataFrame({"input": [json.dumps({"question": "count on eu-west-1 over the last 2 hours",
                                                 "columns": ["region"]})],
                           "output": [json.dumps({"calculations": [{"op": "COUNT"}], "time_range": 7200})]})
    written: list[dict] = []

    def read_job(job, processes, log):
        written.extend(json.loads(line) for line in Path(job.train).read_text().splitlines())
        return TrainResult(steps=0, epochs=0.0, seconds=0.0, train_loss=0.0, validation_loss=None,
                           tokens_per_second=0.0)

    train_base_model(tmp_path / "m", corpus, task, TINY, TrainConfig(), lambda _: None, train_job=read_job)
    [pair] = written
    assert pair["source"].endswith("count on eu-west-1 over the last <v0> hours")
    assert json.loads(pair["target"].replace("<v0>", "0")) == {"calculations": [{"op": "COUNT"}], "time_range": 0}

    class Unmasked:
        name, version = task.name, task.version

    corpus_file = tmp_path / "corpus.jsonl"
    corpus_file.write_text("{}\n")
    ids = {base_model_id(corpus_file, TINY, TrainConfig(), None, t) for t in (task, Unmasked(), None)}
    assert len(ids) == 2 and base_model_id(corpus_file, TINY, TrainConfig(), None, Unmasked()) == \
        base_model_id(corpus_file, TINY, TrainConfig(), None)
