"""The tiny offline configuration of the pipeline and a helper to materialize assets with it."""

import dagster as dg

from pipeline.resources import (
    AnnotationFiles,
    CurationSettings,
    EvalServing,
    FineTuning,
    FlywheelDuckDB,
    FlywheelPaths,
    JudgeResource,
    LocalTrainer,
    TaskResource,
    TraceFiles,
    TrainingCompute,
)
from pipeline.resources.incumbent import IncumbentResource


def tiny_resources(folder, demo, task="nl2query", max_source_tokens=160):
    """Every resource, pointed at ``folder`` and the tiny demo data in ``demo`` (traces/ or
    traces.jsonl, prompt_layouts.yaml if there is one, annotations.jsonl, base_corpus.jsonl) of
    ``task``; models of a few steps (``max_source_tokens`` None: sized from the data)."""
    traces = demo / "traces" if (demo / "traces").is_dir() else demo / "traces.jsonl"
    layouts = [str(demo / "prompt_layouts.yaml")] if (demo / "prompt_layouts.yaml").exists() else []
    return {
        "duckdb": FlywheelDuckDB(database=str(folder / "flywheel.duckdb")),
        "task": TaskResource(name=task),
        "trace_files": TraceFiles(paths=[str(traces), str(folder / "incoming")], prompt_layouts=layouts),
        "annotation_files": AnnotationFiles(paths=[str(demo / "annotations.jsonl")]),
        "trainer": LocalTrainer(base_corpus=str(demo / "base_corpus.jsonl"), d_model=32, num_layers=1,
                                num_decoder_layers=1, num_heads=2, d_ff=64, vocab_size=400,
                                max_source_tokens=max_source_tokens, max_target_tokens=40, base_max_steps=8,
                                finetune_max_steps=4, batch_size=16),
        "paths": FlywheelPaths(data_dir=str(folder)),
        "judge": JudgeResource(),
        "curation": CurationSettings(),
        "fine_tuning": FineTuning(),
        "training_compute": TrainingCompute(),
        "eval_serving": EvalServing(),
        "incumbent": IncumbentResource(),
    }


def materialize(assets, resources, run_config=None):
    """Materialize ``assets`` in a test instance: the result and each asset's materialization by name."""
    with dg.instance_for_test() as instance:
        result = dg.materialize(assets, resources=resources, instance=instance, run_config=run_config or {})
    materializations = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()]
    return result, {m.asset_key.to_user_string(): m for m in materializations}
