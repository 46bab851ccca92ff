"""Human annotations: decision files, latest decision per trace, labelled failures."""

import json
from datetime import datetime, timedelta, timezone

import polars as pl
import pytest

from pipeline.engine.label.annotations import (ANNOTATION_SCHEMA, FAILURE_SCHEMA, annotation_id, labelled_failures,
                                         read_annotation_files)
from pipeline.engine.label.agreement import decided_labels
from pipeline.engine.tasks import load_task

TASK = load_task("nl2query")
NOW = datetime(2026, 10, 20, 12, 0, tzinfo=timezone.utc)
T0 = datetime(2026, 10, 17, 9, 0, tzinfo=timezone.utc)
INPUT = {"question": "p95 duration_ms by service.name last 2 hours",
         "columns": ["duration_ms", "service.name", "http.status_code"], "dataset": "checkout-api"}
TRACES = {"tr_1": INPUT, "tr_2": {**INPUT, "question": "count of errors by service.name"}}
CORRECTION = json.dumps({"calculations": [{"op": "P95", "column": "duration_ms"}], "breakdowns": ["service.name"],
                         "time_range": 7200})


def decision(**changes):
    rec = {"trace_id": "tr_1", "label": "bad", "failure_mode": "time_range_not_integer",
           "correction": CORRECTION, "critique": "time_range was '2h'", "annotator": "ana@example.com",
           "annotated_at": "2026-10-17T09:00:00Z"}
    for key, value in changes.items():
        if value is ...:
            rec.pop(key, None)
        else:
            rec[key] = value
    return rec


def write(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def read(files):
    return read_annotation_files(files, TASK, TRACES, now=NOW)


# --- import ----------------------------------------------------------------------------------------

def test_valid_decisions_are_imported_with_stable_ids(tmp_path):
    path = write(tmp_path / "decisions.jsonl", [
        decision(),
        decision(trace_id="tr_2", label="good", failure_mode=..., correction=..., critique=...,
                 annotator="bo", annotated_at="2026-10-17T11:30:00+02:00"),
    ])
    batch = read([path])
    assert batch.rejected.is_empty()
    rows = batch.annotations.to_dicts()
    assert [r["trace_id"] for r in rows] == ["tr_1", "tr_2"]
    bad, good = rows
    assert bad["label"] == "bad" and bad["failure_mode"] == "time_range_not_integer"
    assert bad["correction"] == CORRECTION and bad["critique"] == "time_range was '2h'"
    assert bad["annotated_at"] == T0 and bad["source"] == "file:decisions.jsonl"
    assert good["label"] == "good" and good["failure_mode"] is None and good["correction"] is None
    assert good["annotated_at"] == datetime(2026, 10, 17, 9, 30, tzinfo=timezone.utc)
    assert bad["annotation_id"] == annotation_id("tr_1", "ana@example.com", T0)
    assert bad["annotation_id"] != good["annotation_id"]
    # reading again gives the same ids
    assert read([path]).annotations["annotation_id"].to_list() == batch.annotations["annotation_id"].to_list()


def test_annotation_id_is_the_same_instant_in_any_timezone_and_differs_by_person_and_time(tmp_path):
    a = read([write(tmp_path / "a.jsonl", [decision()])]).annotations["annotation_id"][0]
    b = read([write(tmp_path / "b.jsonl", [decision(annotated_at="2026-10-17T11:00:00+02:00")])]).annotations["annotation_id"][0]
    assert a == b
    assert annotation_id("tr_1", "bo", T0) != a
    assert annotation_id("tr_1", "ana@example.com", T0 + timedelta(seconds=1)) != a
    assert annotation_id("tr_2", "ana@example.com", T0) != a


def test_same_decision_twice_in_a_file_is_imported_once(tmp_path):
    batch = read([write(tmp_path / "d.jsonl", [decision(), decision()])])
    assert batch.annotations.height == 1 and batch.rejected.is_empty()


def test_correction_given_as_object_is_stored_as_json_text(tmp_path):
    batch = read([write(tmp_path / "d.jsonl", [decision(correction=json.loads(CORRECTION))])])
    assert json.loads(batch.annotations["correction"][0]) == json.loads(CORRECTION)


def test_bad_without_failure_mode_is_unspecified(tmp_path):
    batch = read([write(tmp_path / "d.jsonl", [decision(failure_mode=...), decision(trace_id="tr_2", failure_mode="")])])
    assert batch.annotations["failure_mode"].to_list() == ["unspecified", "unspecified"]


REJECTED = [
    (decision(trace_id="tr_999"), "trace 'tr_999' is not in raw_traces"),
    (decision(trace_id=...), "trace None is not in raw_traces"),
    (decision(label="Bad"), "label must be one of ('good', 'bad'), got 'Bad'"),
    (decision(label="ok"), "label must be one of"),
    (decision(label=...), "got None"),
    (decision(annotator=...), "annotator is required"),
    (decision(annotator="   "), "annotator is required"),
    (decision(annotated_at=...), "annotated_at is required"),
    (decision(annotated_at="last tuesday"), "'last tuesday' is not an ISO-8601 timestamp"),
    (decision(correction='{"calculations": [{"op": "COUNT", "column": "duration_ms"}]}'),
     "correction fails assertions: count_with_column: COUNT takes no column"),
    (decision(correction='{"calculations": [{"op": "P95", "column": "latency"}]}'),
     "unknown_column: column 'latency' is not in the dataset's columns"),
    (decision(correction="SELECT p95(duration_ms)"), "correction fails assertions: invalid_json"),
    ("[1, 2]", "annotation must be a JSON object, got list"),
    ('{"trace_id": "tr_1", ', "malformed JSON"),
]


@pytest.mark.parametrize("bad,reason", REJECTED, ids=[r for _, r in REJECTED])
def test_unusable_decision_is_rejected_with_reason_and_the_rest_imported(tmp_path, bad, reason):
    path = write(tmp_path / "d.jsonl", [decision(trace_id="tr_2", annotator="bo"), bad, decision()])
    batch = read([path])
    assert batch.annotations["trace_id"].to_list() == ["tr_2", "tr_1"]
    assert batch.rejected.height == 1
    rejected = batch.rejected.row(0, named=True)
    assert rejected["location"] == f"{path}:2"
    assert reason in rejected["reason"], rejected["reason"]
    assert rejected["raw"] == (bad if isinstance(bad, str) else json.dumps(bad))
    assert rejected["source"] == "annotations"


def test_correction_is_checked_against_its_own_traces_columns(tmp_path):
    traces = {**TRACES, "tr_3": {"question": "avg queue.wait_ms", "columns": ["queue.wait_ms"], "dataset": "jobs"}}
    path = write(tmp_path / "d.jsonl", [decision(trace_id="tr_3")])
    batch = read_annotation_files([path], TASK, traces, now=NOW)
    assert batch.annotations.is_empty()
    assert "unknown_column" in batch.rejected["reason"][0]


def test_invalid_utf8_line_is_rejected_not_fatal(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"trace_id": "tr_1", "label": "b\xffad"}\n' + json.dumps(decision()).encode() + b"\n")
    batch = read([path])
    assert batch.annotations.height == 1
    assert batch.rejected["location"].to_list() == [f"{path}:1"]
    assert batch.rejected["reason"][0].startswith("malformed JSON")


# --- decided labels (one annotator: their latest decision) ---------------------------------------------------------------------------------

def frame(rows):
    out = []
    for r in rows:
        r = {"failure_mode": None, "correction": None, "critique": None, "annotator": "ana", "source": "app", **r}
        r.setdefault("annotation_id", annotation_id(r["trace_id"], r["annotator"], r["annotated_at"]))
        out.append(r)
    return pl.DataFrame(out, schema=ANNOTATION_SCHEMA)


def test_decided_label_of_one_annotator_is_their_newest_decision_regardless_of_row_order():
    rows = [
        {"trace_id": "tr_1", "label": "bad", "failure_mode": "unknown_column", "annotated_at": T0},
        {"trace_id": "tr_1", "label": "good", "annotated_at": T0 + timedelta(hours=2)},
        {"trace_id": "tr_1", "label": "bad", "failure_mode": "other", "annotated_at": T0 + timedelta(hours=1)},
        {"trace_id": "tr_2", "label": "bad", "failure_mode": "invalid_json", "annotated_at": T0 - timedelta(days=1)},
    ]
    for ordering in (rows, list(reversed(rows)), rows[2:] + rows[:2]):
        latest = decided_labels(frame(ordering)).sort("trace_id")
        assert latest.select("trace_id", "label", "failure_mode").rows() == [
            ("tr_1", "good", None), ("tr_2", "bad", "invalid_json")]


def test_decided_label_ties_in_time_are_deterministic():
    rows = [{"trace_id": "tr_1", "label": "bad", "annotator": "ana", "annotated_at": T0, "annotation_id": "ann_a"},
            {"trace_id": "tr_1", "label": "good", "annotator": "ana", "annotated_at": T0, "annotation_id": "ann_b"}]
    winners = {decided_labels(frame(o))["annotation_id"][0] for o in (rows, list(reversed(rows)))}
    assert winners == {"ann_b"}


# --- labelled failures ----------------------------------------------------------------------------

EVAL_SCHEMA = {"trace_id": pl.String, "check_name": pl.String, "passed": pl.Boolean, "detail": pl.String}


def evaluations(rows):
    return pl.DataFrame([dict(zip(EVAL_SCHEMA, r)) for r in rows], schema=EVAL_SCHEMA)


def test_labelled_failures_combines_assertion_and_human_labels_with_corrections():
    ev = evaluations([
        ("tr_1", "invalid_json", True, ""), ("tr_1", "time_range_not_integer", False, "time_range '2h'"),
        ("tr_2", "invalid_json", True, ""), ("tr_2", "unknown_column", True, ""),
        ("tr_3", "invalid_json", False, "output is not a JSON object"), ("tr_3", "unknown_column", None, "skipped"),
        ("tr_4", "invalid_json", True, ""),
    ])
    ann = frame([
        {"trace_id": "tr_1", "label": "bad", "failure_mode": "time_range_not_integer", "critique": "2h",
         "correction": CORRECTION, "annotated_at": T0},
        {"trace_id": "tr_2", "label": "bad", "failure_mode": "wrong_aggregation", "critique": "should be p99",
         "annotated_at": T0},
        {"trace_id": "tr_4", "label": "good", "annotated_at": T0},
    ])
    out = labelled_failures(ev, ann)
    assert out.schema == pl.Schema(FAILURE_SCHEMA)
    assert out.rows() == [
        ("tr_1", "time_range_not_integer", "assertion", "time_range '2h'", CORRECTION),
        ("tr_1", "time_range_not_integer", "human", "2h", CORRECTION),
        ("tr_2", "wrong_aggregation", "human", "should be p99", None),
        ("tr_3", "invalid_json", "assertion", "output is not a JSON object", None),
    ]


def test_labelled_failures_uses_only_the_latest_decision():
    ev = evaluations([("tr_1", "invalid_json", True, "")])
    ann = frame([
        {"trace_id": "tr_1", "label": "bad", "failure_mode": "wrong_column", "correction": CORRECTION,
         "annotated_at": T0},
        {"trace_id": "tr_1", "label": "good", "annotated_at": T0 + timedelta(minutes=5)},
    ])
    assert labelled_failures(ev, ann).is_empty()
    ann2 = frame([
        {"trace_id": "tr_1", "label": "good", "annotated_at": T0},
        {"trace_id": "tr_1", "label": "bad", "failure_mode": "wrong_column", "correction": CORRECTION,
         "annotated_at": T0 + timedelta(minutes=5)},
    ])
    assert labelled_failures(ev, ann2).rows() == [("tr_1", "wrong_column", "human", None, CORRECTION)]


def test_labelled_failures_never_duplicates():
    # the same evaluation stored twice, and two people agreeing: one row per (trace, mode, source)
    ev = evaluations([("tr_1", "unknown_column", False, "column 'x'"), ("tr_1", "unknown_column", False, "column 'x'"),
                      ("tr_1", "count_with_column", False, "COUNT takes no column")])
    ann = frame([
        {"trace_id": "tr_1", "label": "bad", "failure_mode": "unknown_column", "annotator": "ana",
         "correction": CORRECTION, "annotated_at": T0},
        {"trace_id": "tr_1", "label": "bad", "failure_mode": "unknown_column", "annotator": "bo",
         "correction": CORRECTION, "annotated_at": T0 + timedelta(seconds=1)},
    ])
    out = labelled_failures(ev, ann)
    assert out.select("trace_id", "failure_mode", "label_source").rows() == [
        ("tr_1", "count_with_column", "assertion"), ("tr_1", "unknown_column", "assertion"),
        ("tr_1", "unknown_column", "human")]
    assert out["correction"].to_list() == [CORRECTION] * 3
    assert out.select("trace_id", "failure_mode", "label_source").is_unique().all()


def test_labelled_failures_with_no_annotations():
    ev = evaluations([("tr_1", "unknown_column", False, "column 'x'")])
    out = labelled_failures(ev, pl.DataFrame(schema=ANNOTATION_SCHEMA))
    assert out.rows() == [("tr_1", "unknown_column", "assertion", "column 'x'", None)]


def test_bad_decision_without_failure_mode_is_labelled_unspecified():
    """The annotation app may write a 'bad' decision without a failure mode straight into the table."""
    from datetime import datetime, timezone

    import polars as pl

    from pipeline.engine.label.annotations import ANNOTATION_SCHEMA, labelled_failures

    people = pl.DataFrame([{"annotation_id": "a1", "trace_id": "t1", "label": "bad", "failure_mode": None,
                            "correction": None, "critique": "wrong", "annotator": "dana",
                            "annotated_at": datetime(2026, 11, 1, tzinfo=timezone.utc), "source": "app"}],
                          schema=ANNOTATION_SCHEMA)
    evaluations = pl.DataFrame(schema={"trace_id": pl.String, "check_name": pl.String, "passed": pl.Boolean,
                                       "detail": pl.String})
    failures = labelled_failures(evaluations, people)
    assert failures.select("trace_id", "failure_mode", "label_source").rows() == [("t1", "unspecified", "human")]
