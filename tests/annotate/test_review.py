"""The review engine: queue filters and orderings, validated decisions, saves that survive a busy
database and concurrent annotators, undo, edits that supersede a person's earlier decision, the
canonical form and diff of a correction, and the task's guide."""

import json
import threading
from contextlib import contextmanager
from datetime import date, timedelta

import duckdb
import polars as pl
import pytest

from pipeline.engine.core import store
from pipeline.engine.ingest.records import RecordError
from pipeline.engine.label.annotations import labelled_failures, read_annotation_files, validate_annotation
from pipeline.engine.label.review import (
    DUPLICATE, QUEUED, SAVED, FailureMode, QueueFilter, Review, ReviewError, editable_output, make_decision,
    new_annotation_id, output_diff, same_decision, same_output, task_guide,
)
from pipeline.engine.tasks import load_task
from tests.annotate.seed import COLUMNS, GOOD, TASK, UNKNOWN_COLUMN, held_database, seed_database

INPUT = {"question": "q", "columns": COLUMNS}
TASK_IDS = ["t_good", "t_column", "t_json", "t_slow", "t_html"]


@pytest.fixture
def review(tmp_path):
    database = seed_database(tmp_path / "f.duckdb")
    return Review(database, tmp_path / "incoming", TASK, busy_seconds=2.0)


def decide(trace_id="t_column", annotator="ana", label="bad", correction=GOOD, **kw):
    return make_decision(TASK, INPUT, annotation_id=new_annotation_id(), trace_id=trace_id, label=label,
                         annotator=annotator, correction=correction, **kw)


def rows(review, where="true"):
    with duckdb.connect(review.database) as conn:
        return conn.execute(f"SELECT annotation_id, trace_id, annotator, source FROM annotations WHERE {where}").fetchall()


def ids(frame):
    return frame["trace_id"].to_list()


@contextmanager
def busy(review):
    """The database held by a materialization for 1 s while the app waits at most 0.2 s for it."""
    review.busy_seconds = 0.2
    try:
        with held_database(review.database, 1.0):
            yield
    finally:
        review.busy_seconds = 2.0


def test_failing_first_and_filters(review):
    everything = review.queue(QueueFilter(status="all"))
    assert everything["matching"][0] == 5
    # failing first, ties newest first
    assert ids(everything) == ["t_html", "t_json", "t_column", "t_slow", "t_good"]
    assert everything["n_failed"].to_list() == [1, 1, 1, 0, 0]
    assert ids(review.queue(QueueFilter(status="all", check="unknown_column"))) == ["t_column"]
    assert ids(review.queue(QueueFilter(status="all", source="langsmith"))) == ["t_json"]
    days = review.queue(QueueFilter(status="all", since=date(2026, 10, 2), until=date(2026, 10, 3)))
    assert sorted(ids(days)) == ["t_column", "t_json"]
    failed = everything.row(2, named=True)["failed"]
    assert failed == [{"check_name": "unknown_column", "detail": "column 'latency' is not in the dataset's columns"}]


def test_orderings(review):
    assert ids(review.queue(QueueFilter(status="all"), "feedback"))[0] == "t_json"
    assert ids(review.queue(QueueFilter(status="all"), "latency"))[0] == "t_slow"
    assert ids(review.queue(QueueFilter(status="all"), "newest"))[0] == "t_html"
    first = ids(review.queue(QueueFilter(status="all"), "random", seed="1"))
    assert first == ids(review.queue(QueueFilter(status="all"), "random", seed="1"))
    assert sorted(first) == sorted(TASK_IDS)
    assert any(ids(review.queue(QueueFilter(status="all"), "random", seed=str(s))) != first for s in range(2, 8))


def test_filters_are_parameters_never_sql(review):
    hostile = "x' OR 1=1 --"
    assert review.queue(QueueFilter(status="all", source=hostile)).is_empty()
    assert review.queue(QueueFilter(status="all", check=hostile, failure_mode=hostile)).is_empty()
    assert review.queue(QueueFilter(status="mine", annotator=hostile)).is_empty()
    with pytest.raises(ReviewError, match="unknown ordering"):
        review.queue(QueueFilter(), order="t.trace_id; DROP TABLE annotations")
    with pytest.raises(ReviewError, match="unknown label status"):
        review.queue(QueueFilter(status="1=1"))


def test_label_status_and_failure_mode_from_people(review):
    review.save(decide("t_good", "ana", failure_mode="wrong_time_range", correction=None))
    assert "t_good" not in ids(review.queue(QueueFilter(annotator="ana")))  # default: not decided by me
    assert "t_good" in ids(review.queue(QueueFilter(annotator="ben")))
    assert ids(review.queue(QueueFilter(status="mine", annotator="ana"))) == ["t_good"]
    assert "t_good" not in ids(review.queue(QueueFilter(status="undecided")))
    assert ids(review.queue(QueueFilter(status="all", failure_mode="wrong_time_range"))) == ["t_good"]
    assert "wrong_time_range" in review.options()["failure_modes"]
    assert review.progress("ana") == {"traces": 5, "decided": 1, "mine": 1}


def test_decisions_are_validated():
    with pytest.raises(ReviewError, match="unknown_column: column 'latency'"):
        decide(correction=UNKNOWN_COLUMN)
    with pytest.raises(ReviewError, match="invalid_json"):
        decide(correction="{not json")
    with pytest.raises(ReviewError, match="choose a label"):
        decide(label="meh")
    with pytest.raises(ReviewError, match="annotator"):
        decide(annotator="  ")
    assert decide(failure_mode="").failure_mode == "unspecified"
    good = decide(label="good", failure_mode="unknown_column", correction="  ", critique=" ")
    assert (good.failure_mode, good.correction, good.critique) == (None, None, None)


def test_same_decision_twice_is_one_row(review):
    decision = decide()
    assert review.save(decision) == SAVED
    assert review.save(decision) == DUPLICATE
    assert rows(review) == [(decision.annotation_id, "t_column", "ana", "app")]


def test_two_annotators_at_once_lose_nothing(review):
    other = Review(review.database, review.outbox.folder, TASK)
    decisions = {name: [decide(tid, name) for tid in TASK_IDS for _ in range(4)] for name in ("ana", "ben")}
    results = []

    def work(session, mine):
        for d in mine + mine[:5]:  # and a few double submits
            results.append(session.save(d))

    threads = [threading.Thread(target=work, args=(s, decisions[n])) for s, n in ((review, "ana"), (other, "ben"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(SAVED) == 40 and results.count(DUPLICATE) == 10
    saved = rows(review)
    assert sorted(r[0] for r in saved) == sorted(d.annotation_id for ds in decisions.values() for d in ds)


def test_save_waits_for_a_short_materialization(review):
    decision = decide()
    with held_database(review.database, 1.0):
        assert review.save(decision) == SAVED
    assert len(rows(review)) == 1


def test_save_during_a_long_materialization_goes_to_the_outbox_and_lands_once(review, tmp_path):
    review.busy_seconds = 0.3
    decision = decide(critique="wrong column")
    with held_database(review.database, 2.0):
        assert review.save(decision) == QUEUED
        assert review.save(decision) == QUEUED  # a retry while still busy: the same file
        files = sorted(review.outbox.folder.iterdir())
        assert [f.name for f in files] == [f"app-{decision.annotation_id}.jsonl"]
        # the annotations asset imports the outbox file with the same id
        batch = read_annotation_files(files, TASK, {"t_column": INPUT})
        assert batch.rejected.is_empty()
        assert batch.annotations["annotation_id"].to_list() == [decision.annotation_id]
    with duckdb.connect(review.database) as conn:  # the asset got there first
        assert store.insert_new(conn, "annotations", batch.annotations, ["annotation_id"]) == 1
    assert review.flush() == 0
    assert review.outbox.count() == 0
    assert [r[0] for r in rows(review)] == [decision.annotation_id]


def test_flush_writes_what_waited(review):
    decision = decide()
    with busy(review):
        assert review.save(decision) == QUEUED
    assert review.flush() == 1
    assert review.flush() == 0
    assert rows(review) == [(decision.annotation_id, "t_column", "ana", "app")]
    record = json.loads(json.dumps(decision.record()))
    assert record["annotated_at"].endswith("+00:00")


def test_undo_removes_the_decision_wherever_it_is(review):
    saved, queued = decide(), decide("t_json")
    review.save(saved)
    assert review.undo(saved.annotation_id) == "undone"
    assert rows(review) == []
    with busy(review):
        assert review.save(queued) == QUEUED
        assert review.undo(queued.annotation_id) == "undo queued: database busy"
        assert review.outbox.count() == 0
    assert review.flush() == 0
    assert rows(review) == []


def test_undo_while_busy_is_applied_later(review):
    decision = decide()
    review.save(decision)
    with busy(review):
        assert review.undo(decision.annotation_id) == "undo queued: database busy"
    review.flush()
    assert rows(review) == []


def test_a_foreign_outbox_file_does_not_block_the_others(review):
    review.outbox.folder.mkdir()
    (review.outbox.folder / "app-broken.jsonl").write_text("{not json\n")
    decision = decide()
    with busy(review):
        assert review.save(decision) == QUEUED
    assert review.flush() == 1
    assert [f.name for f in review.outbox.folder.iterdir()] == ["app-broken.jsonl"]


def stored_annotations(review):
    with duckdb.connect(review.database) as conn:
        return store.read(conn, "SELECT * FROM annotations"), store.read(
            conn, "SELECT trace_id, check_name, passed, detail FROM trace_evaluations")


def test_an_edit_supersedes_my_decision_and_the_history_stays(review):
    first = decide(failure_mode="wrong_breakdown", critique="grouped wrong")
    assert review.save(first) == SAVED
    assert review.current_decision("t_column", "ana", review.decisions_for("t_column")) == first
    people, evaluations = stored_annotations(review)
    assert "wrong_breakdown" in labelled_failures(evaluations, people)["failure_mode"].to_list()

    # my edit is dated after what it replaces even when this clock is behind
    edit = decide(label="good", correction=None, previous=first, now=first.annotated_at - timedelta(hours=1))
    assert edit.supersedes == first.annotation_id and edit.annotated_at > first.annotated_at
    assert decide(annotator="ben", previous=edit).supersedes is None  # only my own decision is replaced
    assert review.save(edit) == SAVED
    found = review.decisions_for("t_column")
    assert found.select("annotation_id", "supersedes", "current").rows() == [
        (first.annotation_id, None, False), (edit.annotation_id, first.annotation_id, True)]
    assert review.current_decision("t_column", "ana", found) == edit
    assert review.current_decision("t_column", "ben", found) is None

    people, evaluations = stored_annotations(review)  # downstream, only the current decision counts
    human = labelled_failures(evaluations, people).filter(pl.col("label_source") == "human")
    assert human.is_empty()
    assert review.queue(QueueFilter(status="all", failure_mode="wrong_breakdown")).is_empty()
    queued = review.queue(QueueFilter(status="all", check="unknown_column")).row(0, named=True)
    assert queued["decision_ids"] == [edit.annotation_id]


def test_my_decision_waiting_in_the_outbox_is_my_current_one(review):
    saved = decide()
    review.save(saved)
    with busy(review):
        edit = decide(label="good", correction=None, previous=saved)
        assert review.save(edit) == QUEUED
        assert review.current_decision("t_column", "ana", None) == edit  # the table busy: the outbox
    assert review.current_decision("t_column", "ana", review.decisions_for("t_column")) == edit
    files = sorted(review.outbox.folder.iterdir())
    batch = read_annotation_files(files, TASK, {"t_column": INPUT})  # the asset keeps the link too
    assert batch.annotations["supersedes"].to_list() == [saved.annotation_id]
    assert review.flush() == 1
    assert [r[0] for r in rows(review)] == [saved.annotation_id, edit.annotation_id]


def test_a_decision_file_record_may_name_what_it_supersedes():
    record = {"trace_id": "t1", "label": "good", "annotator": "ana", "annotated_at": "2026-10-07T00:00:00+00:00"}
    assert validate_annotation(record, TASK, {"t1": INPUT})["supersedes"] is None
    assert validate_annotation({**record, "supersedes": "ann_1"}, TASK, {"t1": INPUT})["supersedes"] == "ann_1"
    with pytest.raises(RecordError, match="supersedes"):
        validate_annotation({**record, "supersedes": 3}, TASK, {"t1": INPUT})


def test_one_canonical_indented_form_to_edit_and_equal_outputs():
    fenced = '```json\n{"breakdowns": ["service.name"], "calculations": [{"column": "duration_ms", "op": "P95"}]}\n```'
    canonical = editable_output(TASK, INPUT, GOOD)
    assert canonical == json.dumps(json.loads(GOOD), indent=2)
    assert editable_output(TASK, INPUT, fenced) == canonical  # key order and fences do not matter
    assert editable_output(TASK, INPUT, canonical) == canonical
    assert editable_output(TASK, INPUT, "  not json at all ") == "not json at all"
    assert editable_output(TASK, INPUT, "[1, 2]") == "[\n  1,\n  2\n]"  # JSON the task does not parse
    assert editable_output(TASK, INPUT, None) == ""
    assert same_output(TASK, INPUT, fenced, GOOD) and same_output(TASK, INPUT, " x ", "x")
    assert not same_output(TASK, INPUT, UNKNOWN_COLUMN, GOOD) and not same_output(TASK, INPUT, "", GOOD)
    a = decide(correction=GOOD)
    assert same_decision(TASK, INPUT, a, decide(correction=canonical))
    assert not same_decision(TASK, INPUT, a, decide(correction=None))
    assert not same_decision(TASK, INPUT, a, decide(correction=GOOD, critique="other"))


def test_the_diff_of_a_correction_against_the_output():
    before = editable_output(TASK, INPUT, UNKNOWN_COLUMN)
    assert output_diff(before, before) == []
    lines = output_diff(before, before.replace('"latency"', '"duration_ms"'))
    assert lines[0][0] == "hunk"
    assert [(k, t.strip()) for k, t in lines if k in ("removed", "added")] == [
        ("removed", '"column": "latency"'), ("added", '"column": "duration_ms"')]
    assert output_diff("a", "a\nb")[-1] == ("added", "b")


def test_the_guide_of_a_task_defines_its_failure_modes(review):
    guide = task_guide(TASK)
    checks = [m for m in guide.failure_modes if m.detected_by == "assertion"]
    assert [m.name for m in checks] == list(TASK.check_names) and all(m.definition for m in checks)
    people = [m for m in guide.failure_modes if m.detected_by == "people"]
    assert [m.name for m in people] == ["wrong_breakdown", "wrong_time_range", "wrong_calculation", "missing_filter"]
    assert all(m.definition for m in people)
    assert guide.guidelines.startswith("# Reviewing nl2query traces")
    assert review.options()["failure_modes"][len(TASK.check_names):] == [m.name for m in people]


def test_a_task_without_a_guide_shows_its_check_names_and_a_team_may_ship_its_own(tmp_path, monkeypatch):
    sql = load_task("sql")
    bare = task_guide(sql)
    assert [m.name for m in bare.failure_modes] == list(sql.check_names)
    assert all(m.definition is None for m in bare.failure_modes) and bare.guidelines is None
    monkeypatch.setenv("FLYWHEEL_TASK_PROMPTS", str(tmp_path))
    (tmp_path / "guidelines.md").write_text("# Ours\n")
    (tmp_path / "failure_modes.json").write_text(json.dumps({sql.check_names[0]: "ours", "slow_query": "too slow"}))
    ours = task_guide(sql)
    assert ours.guidelines == "# Ours\n" and ours.failure_modes[0].definition == "ours"
    assert ours.failure_modes[-1] == FailureMode("slow_query", "people", "too slow")
    (tmp_path / "failure_modes.json").write_text('["a list"]')
    with pytest.raises(ValueError, match="must map failure mode names to definitions"):
        task_guide(sql)


def test_migration_10_adds_supersedes_to_an_existing_database(tmp_path, monkeypatch):
    path = str(tmp_path / "old.duckdb")
    monkeypatch.setattr(store, "MIGRATIONS", [m for m in store.MIGRATIONS if m[0] < 10])
    with store.connect(path) as conn:
        conn.execute("INSERT INTO annotations (annotation_id, trace_id, label, annotator, annotated_at) "
                     "VALUES ('ann_old', 't1', 'good', 'ana', now())")
    monkeypatch.undo()
    with store.connect(path) as conn:
        assert conn.execute("SELECT annotation_id, supersedes FROM annotations").fetchall() == [("ann_old", None)]
        assert 10 in {v for (v,) in conn.execute("SELECT version FROM schema_migrations").fetchall()}
