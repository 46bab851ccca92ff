"""Decisions saved by the app (directly, or through the outbox while the database was busy) reach
labelled_failures and training_examples through the normal asset graph."""

import json

import duckdb

from assets.curate import training_examples
from assets.label import labelled_failures, trace_evaluations
from assets.ingest import annotations, raw_traces
from pipeline.engine.label.review import Review, make_decision, new_annotation_id
from pipeline.resources import AnnotationFiles
from tests.annotate.seed import TASK
from tests.assets.tiny import materialize, tiny_resources


def test_saved_corrections_reach_labelled_failures_and_training_examples(tmp_path, tiny_demo):
    resources = tiny_resources(tmp_path, tiny_demo)
    outbox = tmp_path / "incoming_annotations"
    resources["annotation_files"] = AnnotationFiles(paths=[str(tiny_demo / "annotations.jsonl"), str(outbox)])
    result, _ = materialize([raw_traces, annotations, trace_evaluations, labelled_failures], resources)
    assert result.success
    database = str(tmp_path / "flywheel.duckdb")
    with duckdb.connect(database, read_only=True) as conn:
        picked = conn.execute("""
            SELECT t.trace_id, t.input::VARCHAR FROM raw_traces t
            WHERE t.trace_id IN (SELECT trace_id FROM trace_evaluations
                                 WHERE check_name = 'unknown_column' AND NOT passed)
              AND t.trace_id NOT IN (SELECT trace_id FROM annotations)
            ORDER BY t.trace_id LIMIT 2""").fetchall()
    review = Review(database, outbox, TASK)
    decisions = []
    for trace_id, input_json in picked:
        input = json.loads(input_json)
        correction = json.dumps({"calculations": [{"op": "COUNT"}], "breakdowns": [input["columns"][0]],
                                 "time_range": 3600})
        decisions.append(make_decision(TASK, input, annotation_id=new_annotation_id(), trace_id=trace_id,
                                       label="bad", annotator="ana", failure_mode="wrong_breakdown",
                                       correction=correction, critique="breakdown by the first column"))
    direct, queued = decisions
    assert review.save(direct) == "saved"
    review.outbox.put(queued)  # as a save does while a run holds the database: the asset imports it

    result, _ = materialize([annotations, labelled_failures, training_examples], resources)
    assert result.success
    with duckdb.connect(database, read_only=True) as conn:
        for decision in decisions:
            assert conn.execute("SELECT count(*) FROM annotations WHERE annotation_id = ?",
                                [decision.annotation_id]).fetchone() == (1,)
            assert conn.execute("""SELECT failure_mode, correction FROM labelled_failures
                                   WHERE trace_id = ? AND label_source = 'human'""", [decision.trace_id]).fetchall() \
                == [("wrong_breakdown", decision.correction)]
            assert conn.execute("SELECT source FROM training_examples WHERE example_id = ?",
                                ["correction:" + decision.trace_id]).fetchall() == [("correction",)]
    assert review.flush() == 0  # the asset got the queued one first: nothing is written twice
    with duckdb.connect(database, read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM annotations WHERE annotation_id = ?",
                            [queued.annotation_id]).fetchone() == (1,)
