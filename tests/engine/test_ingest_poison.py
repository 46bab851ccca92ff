"""No input stops ingestion: a drop folder holding every poison pill of issue #19 among good
files ingests every good record, quarantines every bad one with a reason, raises nothing (in the
engine and out of the raw_traces asset), and a re-run adds nothing."""

import gzip
import json
import zlib
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from assets.ingest import raw_traces
from pipeline.engine.core import store
from pipeline.engine.ingest import files
from pipeline.engine.ingest.files import ingest_files
from pipeline.engine.tasks import load_task
from pipeline.resources import FlywheelDuckDB, TaskResource, TraceFiles
from tests.engine.test_traces import line

TASK = load_task("nl2query")
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
LIMIT = 4000  # max_record_bytes
POISON_LINES = {  # one line each, in poison.jsonl, and the reason it is refused
    '{"input": ' + "[" * 1500 + "]" * 1500 + ', "output": "o"}': "record is nested too deeply to be read",
    line(trace_id="p_early", ts="0001-01-01T00:00:00+01:00"): "falls outside the years 1-9999 in UTC",
    line(trace_id="p_late", ts="9999-12-31T23:30:00-01:00"): "falls outside the years 1-9999 in UTC",
    '{"trace_id": "p_a", "trace_id": "p_b", "input": {"question": "q", "columns": ["a"]}, "output": "o"}':
        "key 'trace_id' given twice",
    line(trace_id="p_huge", metadata={"x": 1}).replace('"x": 1', '"x": 1e999'): "number 1e999 is out of range",
    line(trace_id="p_model", model=5): "model must be a string, got int",
    line(trace_id="p_task", task=[]): "task must be a string, got list",
}


def gzip_cut(data: bytes, share: float = 0.6) -> bytes:
    """``data`` gzip-compressed, cut short."""
    packed = gzip.compress(data)
    return packed[:int(len(packed) * share)]


def poison_folder(folder: Path) -> dict:
    """Write the poison pills with good files around them; returns what ingestion must find:
    the good trace ids (prefixes for the cut gzip files) and the rejected locations."""
    folder.mkdir()
    good = {f"good_{i}" for i in range(5)}
    (folder / "a_good.jsonl").write_text("".join(line(trace_id=f"good_{i}") + "\n" for i in range(3)))
    (folder / "zz_good.jsonl").write_text("".join(line(trace_id=f"good_{i}") + "\n" for i in range(3, 5)))
    (folder / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + (line(trace_id="bom_1") + "\n" + line(trace_id="bom_2") + "\n").encode())
    good |= {"bom_1", "bom_2"}
    markdown = folder / "a_markdown.jsonl"  # its reason quotes the task name, markup in the UI unless escaped
    markdown.write_text(line(trace_id="md", task="![x](http://evil.example/i.png)") + "\n")
    rejected = {f"{markdown}:1": "record is for task '![x](http://evil.example/i.png)'"}
    latin1 = folder / "latin1.jsonl"
    latin1.write_bytes("".join(line(trace_id=f"l{i}", output="café").replace("\\u00e9", "é") + "\n"
                               for i in range(3)).encode("latin-1"))
    rejected |= {f"{latin1}:{i}": "invalid UTF-8" for i in (1, 2, 3)}
    oversize = folder / "oversize.jsonl"
    oversize.write_text("".join(line(trace_id=f"o{i}", output="x" * LIMIT) + "\n" for i in range(2)))
    rejected |= {f"{oversize}:{i}": "over the 4,000-byte limit" for i in (1, 2)}
    binary = folder / "binary.jsonl"
    binary.write_bytes(b"\x00\xff\xfe\x80binary\n\x89PNG\r\n\x1a\x00\x00\n")
    rejected |= {f"{binary}:1": "invalid UTF-8", f"{binary}:2": "invalid UTF-8", f"{binary}:3": "malformed JSON"}
    poison = folder / "poison.jsonl"
    poison.write_text("".join(text + "\n" for text in POISON_LINES))
    rejected |= {f"{poison}:{i}": reason for i, reason in enumerate(POISON_LINES.values(), 1)}
    (folder / "cut.jsonl.gz").write_bytes(gzip_cut("".join(line(trace_id=f"g{i}") + "\n" for i in range(300)).encode()))
    (folder / "cut.json.gz").write_bytes(gzip_cut(json.dumps([json.loads(line(trace_id=f"j{i}")) for i in range(300)]).encode()))
    (folder / "corrupt.parquet").write_bytes(b"PAR1" + bytes(range(256)) * 4)
    (folder / "not_parquet.parquet").write_text(line(trace_id="np") + "\n")
    for name in ("corrupt.parquet", "not_parquet.parquet"):
        rejected[str(folder / name)] = "the file could not be read: InvalidInputException: "
    return {"good": good, "rejected": rejected, "cut": {"g": folder / "cut.jsonl.gz", "j": folder / "cut.json.gz"}}


def check_found(conn, expected: dict) -> None:
    """Every good record stored, every bad one quarantined with its reason, the cut gzip files
    ingested up to their break and their rest quarantined."""
    ids = {i for (i,) in conn.execute("SELECT trace_id FROM raw_traces").fetchall()}
    reasons = dict(conn.execute("SELECT location, reason FROM rejected_traces").fetchall())
    for prefix, path in expected["cut"].items():
        kept = {i for i in ids if i.startswith(prefix) and i[1:].isdigit()}
        assert kept == {f"{prefix}{n}" for n in range(len(kept))} and 0 < len(kept) < 300
        ids -= kept
        location = f"{path}:{len(kept) + 1}" if prefix == "g" else f"{path}[{len(kept)}]"
        assert "the gzip data is cut short or corrupt" in reasons.pop(location)
    assert ids == expected["good"]
    assert reasons.keys() == expected["rejected"].keys()
    for location, reason in expected["rejected"].items():
        assert reason in reasons[location], (location, reasons[location])


def test_every_poison_pill_is_quarantined_the_good_records_ingested_and_a_rerun_adds_nothing(tmp_path):
    expected = poison_folder(tmp_path / "drop")
    with store.connect(str(tmp_path / "f.duckdb")) as conn:
        report = ingest_files(conn, [str(tmp_path / "drop")], TASK, "drop", max_record_bytes=LIMIT,
                              settle_seconds=0, now=NOW)
        check_found(conn, expected)
        assert sorted(Path(p).name for p in report.files_quarantined) == [
            "corrupt.parquet", "cut.json.gz", "cut.jsonl.gz", "not_parquet.parquet"]
        assert report.rejected == conn.execute("SELECT count(*) FROM rejected_traces").fetchone()[0]
        assert report.records == report.ingested + report.rejected + report.duplicates
        totals = conn.execute("SELECT (SELECT count(*) FROM raw_traces), (SELECT count(*) FROM rejected_traces)").fetchone()
        again = ingest_files(conn, [str(tmp_path / "drop")], TASK, "drop", max_record_bytes=LIMIT,
                             settle_seconds=0, now=NOW)
        assert again.ingested == 0
        assert conn.execute("SELECT (SELECT count(*) FROM raw_traces), (SELECT count(*) FROM rejected_traces)").fetchone() == totals
        check_found(conn, expected)


def test_a_bad_line_appended_to_an_ingested_file_is_quarantined_alone(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(line(trace_id="a1") + "\n")
    with store.connect(":memory:") as conn:
        ingest_files(conn, [str(tmp_path)], TASK, "drop", settle_seconds=0, now=NOW)
        with open(path, "ab") as handle:
            handle.write(b"caf\xe9\n")
        report = ingest_files(conn, [str(tmp_path)], TASK, "drop", settle_seconds=0, now=NOW)
        assert (report.records, report.ingested, report.rejected) == (1, 0, 1)
        assert conn.execute("SELECT location, reason FROM rejected_traces").fetchall() == [
            (f"{path}:2", "invalid UTF-8 at byte 3")]
        assert conn.execute("SELECT lines, ingested, rejected FROM ingested_files").fetchall() == [(2, 1, 1)]


def test_any_error_while_reading_a_file_becomes_one_row_for_it_and_the_others_go_on(tmp_path, monkeypatch):
    for name in ("a.jsonl", "b.jsonl", "c.jsonl"):
        (tmp_path / name).write_text(line(trace_id=name) + "\n")
    real = files.read_lines

    def unreadable(path, *args, **kwargs):
        if path.name == "b.jsonl":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(files, "read_lines", unreadable)
    with store.connect(":memory:") as conn:
        report = ingest_files(conn, [str(tmp_path)], TASK, "drop", settle_seconds=0, now=NOW)
        assert report.ingested == 2 and report.files_quarantined == [str(tmp_path / "b.jsonl")]
        assert conn.execute("SELECT location, reason, raw FROM rejected_traces").fetchall() == [
            (str(tmp_path / "b.jsonl"),
             f"the file could not be read: PermissionError: [Errno 13] Permission denied: '{tmp_path / 'b.jsonl'}'", "")]
        monkeypatch.setattr(files, "read_lines", real)  # readable again: read on the next run, its row gone
        again = ingest_files(conn, [str(tmp_path)], TASK, "drop", settle_seconds=0, now=NOW)
        assert again.ingested == 1 and again.files_quarantined == []
        assert conn.execute("SELECT count(*) FROM rejected_traces").fetchone() == (0,)


def test_a_file_failing_midway_keeps_its_committed_chunks_and_resumes_next_run(tmp_path, monkeypatch):
    path = tmp_path / "a.jsonl"
    path.write_text("".join(line(trace_id=f"t{i}") + "\n" for i in range(40)) + "{bad\n")
    real, calls = files.FileIngest.lines, []

    def failing(self, chunk):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk hiccup")
        return real(self, chunk)

    monkeypatch.setattr(files.FileIngest, "lines", failing)
    with store.connect(":memory:") as conn:
        report = ingest_files(conn, [str(tmp_path)], TASK, "drop", settle_seconds=0, now=NOW, chunk_bytes=2000)
        done = conn.execute("SELECT count(*) FROM raw_traces").fetchone()[0]
        assert 0 < done == report.ingested < 40 and report.files_quarantined == [str(path)]
        assert report.records == report.ingested + report.rejected + report.duplicates
        assert conn.execute("SELECT location, reason FROM rejected_traces").fetchall() == [
            (str(path), "the file could not be read: RuntimeError: disk hiccup")]
        monkeypatch.setattr(files.FileIngest, "lines", real)
        again = ingest_files(conn, [str(tmp_path)], TASK, "drop", settle_seconds=0, now=NOW, chunk_bytes=2000)
        assert again.ingested == 40 - done and again.files_quarantined == []
        assert conn.execute("SELECT location FROM rejected_traces").fetchall() == [(f"{path}:41",)]
        assert conn.execute("SELECT ingested, rejected FROM ingested_files").fetchall() == [(40, 1)]


def test_a_gzip_file_corrupt_in_the_middle_keeps_what_comes_before(tmp_path):
    text = "".join(line(trace_id=f"g{i}") + "\n" for i in range(2000)).encode()
    packed = bytearray(zlib.compress(text, wbits=31))
    packed[len(packed) // 2:len(packed) // 2 + 64] = bytes(64)
    (tmp_path / "t.jsonl.gz").write_bytes(bytes(packed))
    with store.connect(":memory:") as conn:
        report = ingest_files(conn, [str(tmp_path)], TASK, "drop", settle_seconds=0, now=NOW)
        assert 0 < report.ingested < 2000 and report.rejected == 1 and report.files_quarantined
        ((reason,),) = conn.execute("SELECT reason FROM rejected_traces").fetchall()
        assert reason.startswith("the gzip data is cut short or corrupt after")


@pytest.mark.parametrize("settings", [{"max_record_bytes": 0}, {"max_record_bytes": -5}, {"settle_seconds": -1},
                                      {"paths": [""]}, {"paths": ["data/\x00traces"]}])
def test_trace_file_settings_out_of_range_fail_with_a_plain_message(settings):
    with pytest.raises(ValueError, match="TraceFiles"):
        TraceFiles(**settings)


def test_the_raw_traces_asset_quarantines_every_poison_pill_reports_the_files_and_warns(tmp_path):
    expected = poison_folder(tmp_path / "drop")
    resources = {"duckdb": FlywheelDuckDB(database=str(tmp_path / "f.duckdb")), "task": TaskResource(),
                 "trace_files": TraceFiles(paths=[str(tmp_path / "drop")], settle_seconds=0, max_record_bytes=LIMIT)}
    with dg.instance_for_test() as instance:
        first = dg.materialize([raw_traces], resources=resources, instance=instance)
        second = dg.materialize([raw_traces], resources=resources, instance=instance)
    assert first.success and second.success
    metadata = first.get_asset_materialization_events()[0].event_specific_data.materialization.metadata
    assert sorted(Path(p).name for p in metadata["files_quarantined"].value) == [
        "corrupt.parquet", "cut.json.gz", "cut.jsonl.gz", "not_parquet.parquet"]
    shown = metadata["rejections"].value
    assert "![x](" not in shown and r"\!\[x\]\(http\://evil.example/i.png\)" in shown
    (check,) = first.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert "4 files quarantined" in check.description
    again = second.get_asset_materialization_events()[0].event_specific_data.materialization.metadata
    assert again["new_traces"].value == 0 and again["rejected_total"].value == metadata["rejected_total"].value
    with duckdb.connect(str(tmp_path / "f.duckdb"), read_only=True) as conn:
        check_found(conn, expected)
