"""Distillation's provenance: every curated example says who wrote its output, and with
``distill_from`` train and validation keep only that model's outputs (and, if asked, only those a
person marked good) beside people's corrections, while the test split does not change."""

import json
from datetime import datetime, timezone

import polars as pl
import pytest

from pipeline.engine.curate.examples import CurationConfig, CurationOptions, curate, real_examples
from pipeline.engine.curate.splits import SplitConfig
from pipeline.engine.label.annotations import ANNOTATION_SCHEMA, annotation_id
from pipeline.engine.tasks import load_task
from pipeline.engine.tasks.nl2query import canonical, dump

TASK = load_task("nl2query")
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)
COLUMNS = ["duration_ms", "service.name", "region"]
SYN_SCHEMA = {"example_id": pl.String, "parent_id": pl.String, "generator": pl.String, "input": pl.String,
              "output": pl.String}
INCUMBENT = "ft:gpt-4o-mini-2024-07-18:observa::AbC123"


def inp(i):
    return json.dumps({"question": f"count by region for shop {i}", "columns": COLUMNS, "dataset": f"shop-{i}"})


def out(i):
    return dump(canonical({"calculations": [{"op": "COUNT"}], "breakdowns": ["region"], "time_range": 60 + i}))


def corpus(n=60):
    """n passing traces, alternately written by the incumbent and by another model; trace 0 has
    no model; traces 1 and 2 were marked good by a person and trace 3 corrected."""
    models = [None] + [INCUMBENT if i % 2 else "prod-assistant-v2" for i in range(1, n)]
    traces = pl.DataFrame({"trace_id": [f"t{i}" for i in range(n)], "input": [inp(i) for i in range(n)],
                           "output": [out(i) for i in range(n)], "error": [None] * n, "model": models})
    evaluations = pl.DataFrame([(f"t{i}", r.check_name, r.passed) for i in range(n)
                                for r in TASK.check(json.loads(inp(i)), out(i))],
                               schema={"trace_id": pl.String, "check_name": pl.String, "passed": pl.Boolean},
                               orient="row")
    people = pl.DataFrame([
        {"annotation_id": annotation_id(t, "ana", T0), "trace_id": t, "label": label, "failure_mode": mode,
         "correction": correction, "critique": None, "annotator": "ana", "annotated_at": T0, "source": "app",
         "supersedes": None, "role": "annotation"}
        for t, label, mode, correction in [("t1", "good", None, None), ("t2", "good", None, None),
                                           ("t3", "bad", "wrong_time_range", out(999))]], schema=ANNOTATION_SCHEMA)
    return traces, evaluations, people


def curated(config, synthetic=None):
    real = real_examples(*corpus(), TASK)
    synthetic = synthetic if synthetic is not None else pl.DataFrame(schema=SYN_SCHEMA)
    return curate(real, synthetic, TASK, config, now=T0)


SPLITS = SplitConfig(validation=0.2, test=0.2, tolerance=0.5)


def test_every_example_says_who_wrote_its_output():
    synthetic = pl.DataFrame([("synthetic:s1", "trace:t5", "paraphrase", inp(1000), out(5))], schema=SYN_SCHEMA,
                             orient="row")
    examples, _ = curated(CurationConfig(splits=SPLITS, max_synthetic_share=0.3), synthetic)
    origin = dict(examples.select("example_id", "output_origin").iter_rows())
    assert origin["trace:t0"] == "model:unknown"
    assert origin["trace:t1"] == f"model:{INCUMBENT}"
    assert origin["trace:t2"] == "model:prod-assistant-v2"
    assert origin["correction:t3"] == "person:ana"
    if "synthetic:s1" in origin:  # kept unless its parent's split is test
        assert origin["synthetic:s1"] == "synthetic:paraphrase"
    assert examples["output_origin"].null_count() == 0


def test_distilling_keeps_only_the_incumbents_outputs_in_train_and_validation_and_leaves_test_alone():
    everything, _ = curated(CurationConfig(splits=SPLITS))
    distilled, report = curated(CurationConfig(splits=SPLITS, distill_from=INCUMBENT))
    trained = distilled.filter(pl.col("split") != "test")
    traces = trained.filter(pl.col("source") == "trace")
    assert traces.height > 0 and set(traces["output_origin"]) == {f"model:{INCUMBENT}"}
    # people's corrections stay, wherever they land
    assert set(everything.filter(pl.col("source") == "correction")["example_id"]) == \
        set(distilled.filter(pl.col("source") == "correction")["example_id"])
    # the test split is the same examples: candidates stay comparable across distillation settings
    test = lambda frame: sorted(frame.filter(pl.col("split") == "test")["example_id"])  # noqa: E731
    assert test(distilled) == test(everything)
    other = everything.filter((pl.col("split") != "test") & (pl.col("source") == "trace")
                              & (pl.col("output_origin") != f"model:{INCUMBENT}")).height
    assert other > 0 and report["dropped"]["not_from_distilled_model"] == other


def test_distilling_verified_only_keeps_what_a_person_marked_good():
    distilled, report = curated(CurationConfig(splits=SPLITS, distill_from=INCUMBENT, distill_verified_only=True))
    traces = distilled.filter((pl.col("split") != "test") & (pl.col("source") == "trace"))
    assert set(traces["example_id"]) <= {"trace:t1"}
    assert traces["reference_verified"].all()
    assert report["dropped"]["distilled_output_not_verified"] > 0


def test_verified_only_without_a_model_is_refused():
    with pytest.raises(ValueError, match="distill_from"):
        CurationConfig(distill_verified_only=True)
    assert CurationOptions(distill_from="").config().distill_from is None  # '' (an unset env var) means off


def test_the_synthetic_cap_holds_on_what_distillation_keeps():
    synthetic = pl.DataFrame([(f"synthetic:s{i}", f"trace:t{i}", "paraphrase", inp(1000 + i), out(i))
                              for i in range(60)], schema=SYN_SCHEMA, orient="row")
    config = CurationConfig(splits=SPLITS, max_synthetic_share=0.2, distill_from=INCUMBENT)
    examples, _ = curated(config, synthetic)
    for split in ("train", "validation"):
        rows = examples.filter(pl.col("split") == split)
        assert rows.filter(pl.col("source") == "synthetic").height <= 0.2 * rows.height + 1e-9
