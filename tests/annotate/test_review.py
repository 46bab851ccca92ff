"""The review engine: queue filters and orderings, validated decisions, saves that survive a busy
database and concurrent annotators, undo, edits that supersede a person's earlier decision, the
canonical form and diff of a correction, the task's guide, second opinions routed to a second
annotator, disagreements and a lead's adjudication, and the analysts' snapshot after writes."""

import json
import threading
from contextlib import contextmanager
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from pipeline.engine.core import store
from pipeline.engine.ingest.records import RecordError
from pipeline.engine.label.annotations import labelled_failures, read_annotation_files, validate_annotation
from pipeline.annotate.app import start_flusher
from pipeline.engine.core.snapshot import snapshot_path
from pipeline.engine.label.agreement import needs_second_opinion
from pipeline.engine.label.review import (
    ADJUDICATION, ANNOTATION, DUPLICATE, QUEUED, SAVED, DatabaseBusy, Decision, FailureMode, QueueFilter, Review, ReviewError,
    editable_output, make_decision, new_annotation_id, output_diff, same_decision, same_output, task_guide,
)
from pipeline.resources.storage import FlywheelDuckDB
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
    assert review.progress("ana") == {"traces": 5, "decided": 1, "mine": 1, "second_opinions": 0, "disagreements": 0}


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


#: With a share of 0.5, four of the five seeded traces are routed to two annotators.
ROUTED = ["t_column", "t_json", "t_slow", "t_html"]


def routed_review(review, share=0.5):
    return Review(review.database, review.outbox.folder, TASK, second_opinion_share=share)


def test_a_routed_trace_one_other_person_decided_is_a_second_opinion_wanted_from_me(review):
    review = routed_review(review)
    frame = review.queue(QueueFilter(status="all"))
    assert dict(zip(ids(frame), frame["second_opinion"])) == {t: needs_second_opinion(t, 0.5) for t in TASK_IDS}
    assert sorted(t for t in TASK_IDS if needs_second_opinion(t, 0.5)) == sorted(ROUTED)  # the SQL is the rule
    review.save(decide("t_json", "ana", correction=None))  # routed: ben's second opinion is wanted
    review.save(decide("t_good", "ana", correction=None))  # not routed: one annotator is enough

    assert ids(review.queue(QueueFilter(status="second_opinion", annotator="ben"))) == ["t_json"]
    assert ids(review.queue(QueueFilter(status="second_opinion", annotator="ana"))) == []  # she decided it
    default = review.queue(QueueFilter(annotator="ben"))  # first the second opinion, then failing first
    assert ids(default) == ["t_json", "t_html", "t_column", "t_slow", "t_good"]
    assert default["second_opinion_wanted"].to_list() == [True, False, False, False, False]
    assert ids(review.queue(QueueFilter(status="all", annotator="ben")))[0] == "t_html"  # only the default reorders
    assert review.progress("ben")["second_opinions"] == 1

    review.save(decide("t_json", "ben", label="good", correction=None))  # two annotators now: nobody else's turn
    assert ids(review.queue(QueueFilter(status="second_opinion", annotator="cy"))) == []
    assert ids(review.queue(QueueFilter(annotator="cy")))[0] == "t_html"
    assert routed_review(review, 0.0).queue(QueueFilter(status="second_opinion", annotator="ben")).is_empty()
    assert ids(routed_review(review, 1.0).queue(QueueFilter(status="second_opinion", annotator="ben"))) == ["t_good"]


def test_a_settled_trace_wants_no_second_opinion_and_the_share_is_checked(review):
    review = routed_review(review)
    review.save(decide("t_json", "ana", correction=None))
    review.save(decide("t_json", "maya", correction=None, role=ADJUDICATION))
    assert review.queue(QueueFilter(status="second_opinion", annotator="ben")).is_empty()
    with pytest.raises(ReviewError, match="between 0 and 1"):
        Review(review.database, review.outbox.folder, TASK, second_opinion_share=1.5)


def test_a_disagreement_waits_for_an_adjudication_that_settles_it(review):
    review = routed_review(review)
    ana, ben = decide("t_json", "ana", correction=None), decide("t_json", "ben", label="good", correction=None)
    assert review.agreement().is_empty()  # nobody decided a trace twice yet
    for d in (ana, ben):
        review.save(d)
    waiting = review.queue(QueueFilter(status="disagreements", annotator="maya"))
    assert ids(waiting) == ["t_json"] and waiting["disagree_on"].to_list() == [["label"]]
    assert review.progress("maya")["disagreements"] == 1
    label = review.agreement().filter(pl.col("aspect") == "label").row(0, named=True)
    assert (label["pairs"], label["traces"], label["agreement"]) == (1, 1, 0.0)

    settle = decide("t_json", "maya", correction=GOOD, critique="not JSON; this is", role=ADJUDICATION)
    assert decide("t_json", "maya", role=ADJUDICATION, previous=ana).supersedes is None  # not hers, not this role
    assert review.save(settle) == SAVED
    assert review.queue(QueueFilter(status="disagreements", annotator="maya")).is_empty()
    found = review.decisions_for("t_json")
    assert found.filter(pl.col("current")).select("annotator", "role").rows() == [
        ("ana", ANNOTATION), ("ben", ANNOTATION), ("maya", ADJUDICATION)]
    assert review.current_decision("t_json", "maya", found, ADJUDICATION) == settle
    assert review.current_decision("t_json", "maya", found) is None  # an adjudication is not her own label
    again = decide("t_json", "maya", label="good", correction=None, role=ADJUDICATION, previous=settle)
    assert again.supersedes == settle.annotation_id  # a lead's second thought replaces her adjudication
    with duckdb.connect(review.database) as conn:
        assert conn.execute("SELECT label, correction, annotator, decided_by FROM decided_labels "
                            "WHERE trace_id = 't_json'").fetchall() == [("bad", GOOD, "maya", "adjudication")]
        assert conn.execute("SELECT role FROM annotations WHERE annotation_id = ?",
                            [ana.annotation_id]).fetchall() == [(ANNOTATION,)]
    with pytest.raises(ReviewError, match="unknown role"):
        decide(role="boss")


def test_an_adjudication_waiting_in_the_outbox_keeps_its_role(review):
    settle = decide("t_json", "maya", correction=None, role=ADJUDICATION)
    with busy(review):
        assert review.save(settle) == QUEUED
    files = sorted(review.outbox.folder.iterdir())
    assert read_annotation_files(files, TASK, {"t_json": INPUT}).annotations["role"].to_list() == [ADJUDICATION]
    record = settle.record()
    del record["role"]  # written before roles: an annotator's decision
    assert Decision.from_record(record).role == ANNOTATION
    assert review.flush() == 1
    with duckdb.connect(review.database) as conn:
        assert conn.execute("SELECT role FROM annotations").fetchall() == [(ADJUDICATION,)]


def snapshot_rows(path: Path) -> list[str]:
    with duckdb.connect(str(path), read_only=True) as conn:
        return sorted(r[0] for r in conn.execute("SELECT annotation_id FROM annotations").fetchall())


def test_the_snapshot_is_published_once_after_a_burst_of_writes(review):
    assert review.snapshot == Path(review.database).with_name("f.snapshot.duckdb")
    assert review.publish_snapshot() is False and not review.snapshot.exists()  # nothing written yet
    burst = [decide(t, correction=None) for t in ("t_column", "t_json", "t_slow")]
    for d in burst:
        review.save(d)
    assert review.publish_snapshot() is True
    assert review.publish_snapshot() is False  # nothing new: no copy
    assert snapshot_rows(review.snapshot) == sorted(d.annotation_id for d in burst)
    review.undo(burst[0].annotation_id)
    assert review.publish_snapshot() is True
    assert snapshot_rows(review.snapshot) == sorted(d.annotation_id for d in burst[1:])
    with busy(review):
        review.save(decide("t_good", correction=None))  # waits in the outbox: not in the database yet
        with pytest.raises(DatabaseBusy):
            review.flush()
    assert review.publish_snapshot() is False
    review.flush()
    assert review.publish_snapshot() is True and len(snapshot_rows(review.snapshot)) == 3


def test_the_flusher_publishes_the_snapshot_within_seconds_of_a_save(review):
    stop = start_flusher(review, interval=0.2)
    try:
        decision = decide(correction=None)
        review.save(decision)
        deadline = time.monotonic() + 30
        while not (review.snapshot.exists() and snapshot_rows(review.snapshot) == [decision.annotation_id]):
            assert time.monotonic() < deadline, "the snapshot did not show the save within 30 s"
            time.sleep(0.1)
    finally:
        stop.set()


def test_one_rule_for_where_the_snapshot_lives(tmp_path):
    database = str(tmp_path / "flywheel.duckdb")
    assert snapshot_path(database) == tmp_path / "flywheel.snapshot.duckdb"
    assert snapshot_path(database, str(tmp_path / "copy.duckdb")) == tmp_path / "copy.duckdb"
    assert snapshot_path(database, "") is None  # turned off
    assert snapshot_path("md:flywheel") is None and snapshot_path(":memory:") is None  # no file to copy
    for setting in (None, "", str(tmp_path / "copy.duckdb")):
        assert FlywheelDuckDB(database=database, snapshot=setting).snapshot_path == snapshot_path(database, setting)
        assert Review(database, tmp_path / "in", TASK, snapshot=setting).snapshot == snapshot_path(database, setting)
    assert Review("md:flywheel", tmp_path / "in", TASK).snapshot is None
