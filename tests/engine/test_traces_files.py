"""Ingesting trace files into DuckDB: the fast SQL path agrees with the reference validator,
files are read once (appends only their new lines), half-written files wait, nothing is lost."""

import gzip
import json
import os
import time
from datetime import datetime, timezone

import duckdb
import pytest

from pipeline.engine.core import store
from pipeline.engine.ingest.files import parse_text
from pipeline.engine.ingest.records import RecordError
from pipeline.engine.tasks import load_task
from pipeline.engine.ingest.files import ingest_files, read_trace_files
from tests.engine.test_traces import INPUT, OUTPUT, line, record

TASK = load_task("nl2query")
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def conn(tmp_path_factory):
    with store.connect(str(tmp_path_factory.mktemp("db") / "t.duckdb")) as c:
        yield c


def ingest(conn, folder, **kwargs):
    kwargs.setdefault("settle_seconds", 0)
    return ingest_files(conn, [str(folder)], TASK, "drop", now=NOW, **kwargs)


def settle(path, seconds_ago=3600):
    past = time.time() - seconds_ago
    os.utime(path, (past, past))


def rows(conn, sql):
    return conn.execute(sql).fetchall()


# --- the fast path and the reference validator agree -------------------------------------------------

TRICKY = [
    line(), line(trace_id=...), line(ts="2026-10-16T04:38:21.5+02:00"), line(ts="2026-10-16 02:38:21"),
    line(ts="2026-10-16T02:38:21-05:30"), line(ts="2026-02-30T00:00:00Z"), line(ts="2026-10-16T24:00:00Z"),
    line(latency_ms=0), line(latency_ms=12.75), line(latency_ms=1e308), line(latency_ms=-0.0),
    line(prompt_tokens=276.0), line(prompt_tokens=2**63), line(prompt_tokens=2**64 + 1), line(completion_tokens=0),
    line(output="tab\tnew\nline \"quoted\" \\ back é ✓ \u2028"), line(output="", error="boom"),
    line(output=None, error=""), line(model=42), line(model=""), line(metadata=[]), line(metadata=0),
    line(metadata={"nested": {"a": [1, 2.5, None, True]}, "emoji": "🚀"}), line(trace_id="  "),
    line(trace_id="-"), line(trace_id="tr\u00e9 1"), line(task=""), line(task=None), line(task=5),
    line(input={**INPUT, "question": "\t"}), line(input={**INPUT, "question": "\u00e9"}),
    line(input={**INPUT, "question": " \u3000 "}), line(input={**INPUT, "columns": ["a", ""]}),
    line(input={**INPUT, "columns": ["a\"b", "c\\d"]}), line(input={**INPUT, "columns": ["a", 1]}),
    line(input={"columns": INPUT["columns"], "question": "q", "question2": "x"}),
    '{"trace_id": "x", "input": {"question": "q", "columns": ["a"]}, "output": "o",}',
    '{"trace_id": "x", "input": {"question": "q", "columns": ["a"]}, "output": "o", "latency_ms": NaN}',
    '{"trace_id": "x", "input": {"question": "q", "columns": ["a"]}, "output": "o", "latency_ms": 1e999}',
    '{"trace_id": "x", "input": {"question": "q", "columns": ["a"]}, "output": "\\ud800"}',
    '  {"trace_id": "lead", "input": {"question": "q", "columns": ["a"]}, "output": "o"}',
    '{"trace_id": "x", "input": {"question": "q", "columns": ["a"]}, "output": "o"} trailing',
]


@pytest.mark.parametrize("text", TRICKY)
def test_sql_fast_path_accepts_exactly_what_the_reference_validator_accepts_with_the_same_values(tmp_path, text):
    path = tmp_path / "t.jsonl"
    path.write_text(text + "\n", encoding="utf-8")
    batch = read_trace_files([path], TASK, "drop", now=NOW)
    try:
        expected = parse_text(text, TASK)
    except RecordError as exc:
        assert batch.traces.is_empty()
        assert batch.rejected["reason"].to_list() == [str(exc)]
        return
    assert batch.rejected.is_empty(), batch.rejected["reason"].to_list()
    got = batch.traces.row(0, named=True)
    for key in ("task", "ts", "output", "model", "latency_ms", "prompt_tokens", "completion_tokens", "error"):
        assert got[key] == expected[key] or (got[key] != got[key] and expected[key] != expected[key]), key
    assert json.loads(got["input"]) == json.loads(expected["input"])
    assert json.loads(got["metadata"]) == json.loads(expected["metadata"])
    assert got["trace_id"] == (expected["trace_id"] or got["trace_id"])


def test_chunk_size_does_not_change_results_or_line_numbers(tmp_path, conn):
    lines = [line(trace_id=f"t{i}") if i % 7 else "{bad" for i in range(1, 60)]
    path = tmp_path / "in" / "t.jsonl"
    path.parent.mkdir()
    path.write_text("\n".join(lines) + "\n")
    ingest(conn, path.parent, chunk_bytes=300)
    small = rows(conn, "SELECT trace_id FROM raw_traces ORDER BY trace_id")
    rejected = rows(conn, "SELECT location FROM rejected_traces ORDER BY location")
    with store.connect(":memory:") as other:
        ingest(other, path.parent)
        assert rows(other, "SELECT trace_id FROM raw_traces ORDER BY trace_id") == small
        assert rows(other, "SELECT location FROM rejected_traces ORDER BY location") == rejected
    assert sorted(r[0] for r in rejected) == sorted(f"{path}:{i}" for i in range(7, 60, 7))


# --- incremental: read once, appends only, rewrites safely ------------------------------------------

def test_an_unchanged_file_is_not_read_again_and_adds_nothing(tmp_path, conn):
    (tmp_path / "a.jsonl").write_text(line(trace_id="a1") + "\n{bad\n")
    first = ingest(conn, tmp_path)
    assert (first.ingested, first.rejected, first.records) == (1, 1, 2)
    again = ingest(conn, tmp_path)
    assert again.files_read == [] and again.files_unchanged == 1 and again.records == 0
    assert rows(conn, "SELECT count(*) FROM raw_traces") == [(1,)]
    assert rows(conn, "SELECT count(*) FROM rejected_traces") == [(1,)]


def test_appended_lines_are_read_alone_with_their_own_line_numbers(tmp_path, conn):
    path = tmp_path / "a.jsonl"
    path.write_text(line(trace_id="a1") + "\n" + line(trace_id="a2") + "\n")
    ingest(conn, tmp_path)
    with open(path, "a") as handle:
        handle.write("\n" + line(trace_id="a3") + "\nnot json\n" + line(trace_id="a1") + "\n")
    report = ingest(conn, tmp_path)
    assert report.records == 3  # the blank line is not a record; the first two lines are not read again
    assert (report.ingested, report.rejected, report.duplicates) == (1, 1, 1)
    assert rows(conn, "SELECT location FROM rejected_traces") == [(f"{path}:5",)]
    assert rows(conn, "SELECT lines, offset_bytes FROM ingested_files") == [(6, path.stat().st_size)]
    assert rows(conn, "SELECT ingested, rejected FROM ingested_files") == [(3, 1)]


def test_a_rewritten_file_is_read_again_without_duplicates_and_its_old_rejections_go(tmp_path, conn):
    path = tmp_path / "a.jsonl"
    path.write_text("{bad\n" + line(trace_id="a1") + "\n")
    ingest(conn, tmp_path)
    path.write_text(line(trace_id="a1") + "\n" + line(trace_id="a2") + "\n")  # same size class, new content
    report = ingest(conn, tmp_path)
    assert report.files_read == [str(path)] and report.ingested == 1 and report.duplicates == 1
    assert rows(conn, "SELECT count(*) FROM rejected_traces") == [(0,)]
    assert rows(conn, "SELECT trace_id FROM raw_traces ORDER BY 1") == [("a1",), ("a2",)]
    # the ledger counts what the file has added in all, and the rejections it has now
    assert rows(conn, "SELECT ingested, rejected FROM ingested_files") == [(2, 0)]


def test_a_file_being_written_has_only_its_complete_lines_read_until_it_settles(tmp_path, conn):
    path = tmp_path / "a.jsonl"
    half = line(trace_id="a2")
    path.write_text(line(trace_id="a1") + "\n" + half[: len(half) // 2])
    report = ingest(conn, tmp_path, settle_seconds=60)
    assert report.ingested == 1 and report.rejected == 0
    with open(path, "a") as handle:
        handle.write(half[len(half) // 2:])  # the writer finishes the line, without a newline
    assert ingest(conn, tmp_path, settle_seconds=60).records == 0  # still unsettled: the last line waits
    settle(path)
    report = ingest(conn, tmp_path, settle_seconds=60)
    assert report.ingested == 1 and report.rejected == 0
    assert rows(conn, "SELECT trace_id FROM raw_traces ORDER BY 1") == [("a1",), ("a2",)]


def test_gzip_and_parquet_wait_until_settled_and_partial_names_are_skipped(tmp_path, conn):
    with gzip.open(tmp_path / "a.jsonl.gz", "wt") as handle:
        handle.write(line(trace_id="g1") + "\n")
    (tmp_path / "b.jsonl.part").write_text(line(trace_id="p1") + "\n")
    (tmp_path / ".c.jsonl").write_text(line(trace_id="p2") + "\n")
    (tmp_path / "d.jsonl.tmp").write_text(line(trace_id="p3") + "\n")
    report = ingest(conn, tmp_path, settle_seconds=60)
    assert report.files_waiting == [str(tmp_path / "a.jsonl.gz")] and report.ingested == 0
    settle(tmp_path / "a.jsonl.gz")
    assert ingest(conn, tmp_path, settle_seconds=60).ingested == 1
    assert rows(conn, "SELECT trace_id FROM raw_traces") == [("g1",)]


def test_a_file_of_unknown_format_is_rejected_once_with_the_reason(tmp_path, conn):
    (tmp_path / "export.csv").write_text("trace_id,output\nx,y\n")
    first = ingest(conn, tmp_path)
    assert first.rejected == 1
    ((location, reason, raw),) = rows(conn, "SELECT location, reason, raw FROM rejected_traces")
    assert location == str(tmp_path / "export.csv") and reason.startswith("unknown format")
    assert raw.startswith("trace_id,output")
    assert ingest(conn, tmp_path).rejected == 0


def test_parquet_in_the_trace_format_is_ingested_with_row_locations(tmp_path, conn):
    path = tmp_path / "t.parquet"
    with duckdb.connect() as c:
        c.execute(f"""COPY (SELECT * FROM (VALUES
            ('p1', TIMESTAMPTZ '2026-10-16 04:38:21+02', '{json.dumps(INPUT)}', '{OUTPUT}', 1006, 276),
            ('p2', NULL, 'not json', '{OUTPUT}', 5, 1),
            (NULL, NULL, '{json.dumps(INPUT)}', '{OUTPUT}', -1, 1))
            t(trace_id, ts, input, output, latency_ms, prompt_tokens)) TO '{path}' (FORMAT parquet)""")
    settle(path)
    report = ingest(conn, tmp_path)
    assert (report.records, report.ingested, report.rejected) == (3, 1, 2)
    ((trace_id, ts, question),) = rows(conn, "SELECT trace_id, ts, input->>'$.question' FROM raw_traces")
    assert trace_id == "p1" and question == INPUT["question"]
    assert ts == datetime(2026, 10, 16, 2, 38, 21, tzinfo=timezone.utc)
    assert dict(rows(conn, "SELECT location, reason FROM rejected_traces")) == {
        f"{path}:2": "input must be an object, got str", f"{path}:3": "latency_ms must not be negative, got -1"}


def test_records_without_ids_are_not_duplicated_across_files_and_runs(tmp_path, conn):
    text = json.dumps(record(trace_id=...))
    (tmp_path / "a.jsonl").write_text(text + "\n")
    ingest(conn, tmp_path)
    (tmp_path / "b.jsonl").write_text(text + "\n" + text + "\n")
    report = ingest(conn, tmp_path)
    assert report.duplicates == 2 and report.ingested == 0
    ((trace_id, content_hash),) = rows(conn, "SELECT trace_id, content_hash FROM raw_traces")
    assert trace_id == "h_" + content_hash[:24]
