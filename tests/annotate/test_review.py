"""The review engine: queue filters and orderings, validated decisions, saves that survive a busy
database and concurrent annotators, and undo."""

import json
import threading
from contextlib import contextmanager
from datetime import date

import duckdb
import pytest

from pipeline.engine.core import store
from pipeline.engine.label.annotations import read_annotation_files
from pipeline.engine.label.review import (
    DUPLICATE, QUEUED, SAVED, QueueFilter, Review, ReviewError, make_decision, new_annotation_id,
)
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
