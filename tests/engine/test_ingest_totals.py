"""What the ingest assets report and observe: stored totals, the rejection rate, the files' stamp,
and the stored decisions (inputs they are checked against, labels, the app's decisions)."""

import os
from datetime import datetime, timezone

import pytest

from pipeline.engine.core import store
from pipeline.engine.ingest.files import files_stamp
from pipeline.engine.ingest.summary import rejection_rate, stored_totals
from pipeline.engine.label.annotations import app_decisions, decisions_version, label_counts, trace_inputs

NOW = datetime(2026, 10, 20, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def conn():
    with store.connect(":memory:") as connection:
        yield connection


def add_trace(conn, trace_id, question):
    conn.execute("INSERT INTO raw_traces (trace_id, source, task, input, content_hash, ingested_at) "
                 "VALUES (?, 'test', 'nl2query', ?, ?, ?)", [trace_id, f'{{"question": "{question}"}}', trace_id, NOW])


def add_decision(conn, annotation_id, label, source, at=NOW):
    conn.execute("INSERT INTO annotations (annotation_id, trace_id, label, annotator, annotated_at, source) "
                 "VALUES (?, 't1', ?, 'ana', ?, ?)", [annotation_id, label, at, source])


def test_stored_totals_count_traces_and_rejections(conn):
    assert stored_totals(conn) == (0, 0)
    add_trace(conn, "t1", "a")
    add_trace(conn, "t2", "b")
    conn.execute("INSERT INTO rejected_traces VALUES ('test', 'f.jsonl:3', 'not JSON', '{', ?)", [NOW])
    assert stored_totals(conn) == (2, 1)


def test_rejection_rate_is_a_share_of_what_was_read():
    assert rejection_rate(1, 4) == 0.25
    assert rejection_rate(0, 0) == 0.0


def test_files_stamp_changes_when_a_file_grows_or_is_added(tmp_path):
    first = tmp_path / "a.jsonl"
    first.write_text("{}\n")
    stamp, n = files_stamp([first])
    assert n == 1 and len(stamp) == 16 and files_stamp([first]) == (stamp, 1)
    first.write_text("{}\n{}\n")
    grown, _ = files_stamp([first])
    assert grown != stamp
    second = tmp_path / "b.jsonl"
    second.write_text("")
    assert files_stamp([first, second])[1] == 2 and files_stamp([first, second])[0] != grown
    os.utime(first, ns=(1, 1))
    assert files_stamp([first])[0] != grown  # touched: the modification time counts


def test_trace_inputs_and_label_counts(conn):
    add_trace(conn, "t1", "count by region")
    add_decision(conn, "a1", "bad", None)
    add_decision(conn, "a2", "bad", "file:x.jsonl")
    add_decision(conn, "a3", "good", "app")
    assert trace_inputs(conn) == {"t1": {"question": "count by region"}}
    assert label_counts(conn) == {"bad": 2, "good": 1}


def test_app_decisions_leave_out_imported_files_and_change_the_version(conn):
    assert app_decisions(conn) == (0, None, None)
    add_decision(conn, "a1", "bad", "file:x.jsonl")
    assert app_decisions(conn) == (0, None, None)
    add_decision(conn, "a2", "good", None, datetime(2026, 10, 18, tzinfo=timezone.utc))
    add_decision(conn, "a3", "bad", "app")
    count, latest, ids = app_decisions(conn)
    assert count == 2 and ids is not None
    assert latest == conn.execute("SELECT ?::TIMESTAMPTZ::VARCHAR", [NOW]).fetchone()[0]  # the later one
    version = decisions_version("stamp", (count, latest, ids))
    assert len(version) == 16 and version == decisions_version("stamp", (count, latest, ids))
    assert version != decisions_version("other", (count, latest, ids))
    conn.execute("DELETE FROM annotations WHERE annotation_id = 'a3'")  # an undone decision
    assert decisions_version("stamp", app_decisions(conn)) != version
