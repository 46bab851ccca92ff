"""The SQL fast path takes ordinary records (the Python path only sees suspects), sends records it
could read differently from Python to the Python path, and bulk ingestion keeps its guarantees:
one checkpoint at the end with the setting restored, and an interrupted file resumes."""

import json
from datetime import datetime, timezone

import pyarrow as pa
import pytest

from pipeline.engine.core import store
from pipeline.engine.ingest import files
from pipeline.engine.ingest.files import parse_text
from pipeline.engine.ingest.records import RecordError
from pipeline.engine.ingest.sql import parse_sql
from pipeline.engine.tasks import load_task
from pipeline.engine.ingest.files import ingest_files, read_trace_files
from tests.engine.test_traces import INPUT, line

TASK = load_task("nl2query")
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)


def fast_path_accepts(texts):
    with store.connect(":memory:") as conn:
        conn.register("chunk", pa.table({"line_no": list(range(1, len(texts) + 1)), "line": texts}))
        conn.execute(parse_sql(TASK))
        return [ok for (ok,) in conn.execute("SELECT ok FROM _parsed ORDER BY line_no").fetchall()]


def test_ordinary_records_take_the_fast_path():
    ordinary = [line(), line(trace_id=...), line(metadata=...), line(output=None, error="timeout"),
                line(input={**INPUT, "question": 'say "hi" \\ é'}), line(ts="2026-10-16T04:38:21+02:00")]
    assert fast_path_accepts(ordinary) == [True] * len(ordinary)
    assert fast_path_accepts([line(input={"columns": ["a"], "question": "q", "dataset": "d"})]) == [True]


def test_a_tasks_own_sql_input_check_is_used_and_without_one_every_record_goes_to_python():
    assert getattr(TASK, "input_sql_check", None)
    plain = type("Plain", (), {"name": TASK.name})()
    with store.connect(":memory:") as conn:
        conn.register("chunk", pa.table({"line_no": [1], "line": [line()]}))
        conn.execute(parse_sql(plain))
        assert conn.execute("SELECT ok FROM _parsed").fetchall() == [(False,)]


DUPLICATE_INPUT_KEYS = [
    '{"trace_id": "d1", "input": {"question": "q", "columns": ["a"], "question": "  "}, "output": "o"}',
    '{"trace_id": "d2", "input": {"question": "  ", "columns": ["a"], "question": "q"}, "output": "o"}',
]


@pytest.mark.parametrize("text", DUPLICATE_INPUT_KEYS)
def test_an_input_key_given_twice_is_read_as_python_reads_it(tmp_path, text):
    assert fast_path_accepts([text]) == [False]
    path = tmp_path / "t.jsonl"
    path.write_text(text + "\n")
    batch = read_trace_files([path], TASK, "drop", now=NOW)
    try:
        expected = parse_text(text, TASK)
    except RecordError as exc:
        assert batch.rejected["reason"].to_list() == [str(exc)]
        return
    assert json.loads(batch.traces["input"][0]) == json.loads(expected["input"])


def test_ingesting_checkpoints_once_and_restores_the_setting(tmp_path, monkeypatch):
    (tmp_path / "a.jsonl").write_text("".join(line(trace_id=f"t{i}") + "\n" for i in range(50)))
    with store.connect(str(tmp_path / "db.duckdb")) as conn:
        conn.execute("SET checkpoint_threshold = '64MiB'")
        seen = []
        real = files.ingest_file

        def spy(c, *args, **kwargs):
            seen.append(c.execute("SELECT current_setting('checkpoint_threshold')").fetchone()[0])
            return real(c, *args, **kwargs)

        monkeypatch.setattr(files, "ingest_file", spy)
        report = ingest_files(conn, [str(tmp_path)], TASK, "drop", settle_seconds=0, now=NOW, chunk_bytes=500)
        assert report.ingested == 50
        assert seen == ["953.6 MiB"]  # files.WAL_LIMIT while ingesting
        assert conn.execute("SELECT current_setting('checkpoint_threshold')").fetchone()[0] == "64.0 MiB"
        wal = tmp_path / "db.duckdb.wal"
        assert not wal.exists() or wal.stat().st_size == 0  # checkpointed at the end, before closing


def test_an_interrupted_file_resumes_after_its_last_committed_chunk(tmp_path, monkeypatch):
    path = tmp_path / "a.jsonl"
    path.write_text("".join(line(trace_id=f"t{i}") + "\n" for i in range(40)) + "{bad\n")
    calls = {"n": 0}
    real = files.FileIngest.lines

    def failing(self, chunk):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, chunk)

    with store.connect(str(tmp_path / "db.duckdb")) as conn:
        monkeypatch.setattr(files.FileIngest, "lines", failing)
        with pytest.raises(KeyboardInterrupt):
            ingest_files(conn, [str(path)], TASK, "drop", settle_seconds=0, now=NOW, chunk_bytes=2000)
        done = conn.execute("SELECT count(*) FROM raw_traces").fetchone()[0]
        ((lines,),) = conn.execute("SELECT lines FROM ingested_files").fetchall()
        assert 0 < done == lines < 40
        monkeypatch.setattr(files.FileIngest, "lines", real)
        report = ingest_files(conn, [str(path)], TASK, "drop", settle_seconds=0, now=NOW, chunk_bytes=2000)
        assert (report.records, report.ingested, report.rejected, report.duplicates) == (41 - lines, 40 - lines, 1, 0)
        assert conn.execute("SELECT count(DISTINCT trace_id), count(*) FROM raw_traces").fetchone() == (40, 40)


def test_the_first_of_records_sharing_an_id_wins_whichever_path_read_it(tmp_path):
    python_path = line(trace_id="same", output="first", prompt_tokens=5.0)  # 5.0: only Python reads it
    assert fast_path_accepts([python_path, line(trace_id="same", output="second")]) == [False, True]
    path = tmp_path / "t.jsonl"
    path.write_text(python_path + "\n" + line(trace_id="same", output="second") + "\n")
    batch = read_trace_files([path], TASK, "drop", now=NOW)
    assert batch.traces["output"].to_list() == ["first"] and batch.duplicates_in_batch == 1
