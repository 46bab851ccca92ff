"""Trace ingestion: good records in, every kind of bad record quarantined with location and reason."""

import gzip
import json
from datetime import datetime, timezone

import pytest

from pipeline.engine.tasks import load_task
from pipeline.engine.ingest.files import discover, read_trace_files
from pipeline.engine.ingest.sql import content_hash

TASK = load_task("nl2query")
NOW = datetime(2026, 10, 20, 12, 0, tzinfo=timezone.utc)
INPUT = {"question": "p95 duration_ms by service.name last 2 hours",
         "columns": ["duration_ms", "service.name", "http.status_code"], "dataset": "checkout-api"}
OUTPUT = json.dumps({"calculations": [{"op": "P95", "column": "duration_ms"}], "breakdowns": ["service.name"],
                     "time_range": 7200})


def record(**changes):
    rec = {"trace_id": "tr_00001", "source": "demo", "task": "nl2query", "ts": "2026-10-16T02:38:21.559Z",
           "input": INPUT, "output": OUTPUT, "model": "prod-assistant-v3", "latency_ms": 1006,
           "prompt_tokens": 276, "completion_tokens": 52, "error": None,
           "metadata": {"session_id": "sess_8a9db3eb6a", "app_version": "web-3.8.2"}}
    for key, value in changes.items():
        if value is ...:
            rec.pop(key, None)
        else:
            rec[key] = value
    return rec


def line(**changes):
    return json.dumps(record(**changes))


def write(path, lines):
    path.write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    return path


def read(files, **kwargs):
    return read_trace_files(files, TASK, "drop", now=NOW, **kwargs)


# --- good records ------------------------------------------------------------------------------------

def test_good_jsonl_is_ingested_with_normalised_columns(tmp_path):
    path = write(tmp_path / "traces.jsonl", [line(), line(trace_id="tr_00002", ts="2026-10-16T04:38:21+02:00",
                                                       latency_ms=12.5, metadata=..., model=...)])
    batch = read([path])
    assert batch.rejected.is_empty()
    assert batch.lines == 2 and batch.duplicates_in_batch == 0 and batch.files == [str(path)]
    rows = {r["trace_id"]: r for r in batch.traces.to_dicts()}
    first, second = rows["tr_00001"], rows["tr_00002"]
    assert first["source"] == "drop" and first["task"] == "nl2query"
    assert first["ts"] == datetime(2026, 10, 16, 2, 38, 21, 559000, tzinfo=timezone.utc)
    assert second["ts"] == datetime(2026, 10, 16, 2, 38, 21, tzinfo=timezone.utc)  # +02:00 converted to UTC
    assert json.loads(first["input"]) == INPUT
    assert first["output"] == OUTPUT
    assert first["model"] == "prod-assistant-v3" and second["model"] is None
    assert first["latency_ms"] == 1006.0 and second["latency_ms"] == 12.5
    assert first["prompt_tokens"] == 276 and first["completion_tokens"] == 52
    assert json.loads(first["metadata"]) == {"session_id": "sess_8a9db3eb6a", "app_version": "web-3.8.2"}
    assert json.loads(second["metadata"]) == {}
    assert first["ingested_at"] == NOW
    assert len(first["content_hash"]) == 64


def test_gzip_is_read(tmp_path):
    path = tmp_path / "traces.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(line() + "\n" + "{broken\n" + line(trace_id="tr_2") + "\n")
    batch = read([path])
    assert sorted(batch.traces["trace_id"]) == ["tr_00001", "tr_2"]
    assert batch.rejected["location"].to_list() == [f"{path}:2"]


def test_naive_timestamp_is_utc_and_missing_timestamp_is_null(tmp_path):
    path = write(tmp_path / "t.jsonl", [line(ts="2026-10-16T02:38:21"), line(trace_id="b", ts=...)])
    batch = read([path])
    ts = dict(zip(batch.traces["trace_id"], batch.traces["ts"]))
    assert ts["tr_00001"] == datetime(2026, 10, 16, 2, 38, 21, tzinfo=timezone.utc)
    assert ts["b"] is None


def test_failed_call_with_error_and_no_output_is_kept(tmp_path):
    path = write(tmp_path / "t.jsonl", [line(output=None, error="upstream timeout after 30s")])
    batch = read([path])
    assert batch.rejected.is_empty()
    row = batch.traces.row(0, named=True)
    assert row["error"] == "upstream timeout after 30s" and row["output"] == ""


def test_integral_float_tokens_and_task_defaulting(tmp_path):
    path = write(tmp_path / "t.jsonl", [line(prompt_tokens=276.0, task=...)])
    batch = read([path])
    assert batch.rejected.is_empty()
    assert batch.traces["prompt_tokens"].to_list() == [276]
    assert batch.traces["task"].to_list() == ["nl2query"]


def test_blank_lines_and_crlf_do_not_shift_line_numbers(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(("\r\n".join([line(), "", "   ", "not json", line(trace_id="x")]) + "\r\n").encode())
    batch = read([path])
    assert batch.lines == 3
    assert batch.rejected["location"].to_list() == [f"{path}:4"]
    assert batch.rejected["raw"].to_list() == ["not json"]
    assert sorted(batch.traces["trace_id"]) == ["tr_00001", "x"]


# --- bad records -------------------------------------------------------------------------------------------

BAD = [
    ('{"trace_id": "tr_9", "input": {', "malformed JSON"),
    ("[1, 2, 3]", "record must be a JSON object, got list"),
    ('"just a string"', "record must be a JSON object, got str"),
    ("42", "record must be a JSON object, got int"),
    ("null", "record must be a JSON object, got null"),
    (line(input=...), "input is missing"),
    (line(input=None), "input is null"),
    (line(input="p95 duration_ms"), "input must be an object, got str"),
    (line(input={"columns": INPUT["columns"]}), "input.question must be a non-empty string"),
    (line(input={**INPUT, "question": "  "}), "input.question must be a non-empty string"),
    (line(input={**INPUT, "columns": []}), "input.columns must name at least one column"),
    (line(latency_ms="1006"), "latency_ms must be a number, got '1006'"),
    (line(latency_ms=True), "latency_ms must be a number"),
    (line(latency_ms=-3), "latency_ms must not be negative"),
    (line(prompt_tokens=27.5), "prompt_tokens must be an integer, got 27.5"),
    (line(completion_tokens=-1), "completion_tokens must not be negative"),
    (line(completion_tokens="52"), "completion_tokens must be an integer"),
    (line(output={"calculations": []}), "output must be a string, got dict"),
    (line(output=None), "output is missing and no error is recorded"),
    (line(output=""), "output is missing and no error is recorded"),
    (line(error={"code": 500}), "error must be a string, got dict"),
    (line(metadata=["a"]), "metadata must be an object, got list"),
    (line(trace_id=""), "trace_id must be a non-empty string"),
    (line(trace_id=17), "trace_id must be a non-empty string"),
    (line(task="summarize"), "record is for task 'summarize', this pipeline runs 'nl2query'"),
    (line(ts="yesterday"), "ts 'yesterday' is not an ISO-8601 timestamp"),
    (line(ts="2026-13-45T00:00:00Z"), "is not an ISO-8601 timestamp"),
    (line(ts=1697420301), "ts must be an ISO-8601 string, got int"),
    (line(ts="0001-01-01T00:00:00+01:00"), "ts '0001-01-01T00:00:00+01:00' falls outside the years 1-9999 in UTC"),
    (line(ts="9999-12-31T23:30:00-01:00"), "falls outside the years 1-9999 in UTC"),
    (line(task=[]), "task must be a string, got list"),
    (line(task=5), "task must be a string, got int"),
    (line(model=5), "model must be a string, got int"),
    (line(model=["m"]), "model must be a string, got list"),
    (line(latency_ms=10**400), "latency_ms is too large"),
    (line(prompt_tokens=10**400), "prompt_tokens is too large"),
    ('{"trace_id": "a", "trace_id": "b", "input": {"question": "q", "columns": ["a"]}, "output": "o"}',
     "key 'trace_id' given twice"),
    ('{"input": {"question": "q", "columns": ["a"]}, "output": "o", "metadata": {"x": 1e999}}',
     "malformed JSON: number 1e999 is out of range"),
    ('{"input": {"question": "q\tx", "columns": ["a"]}, "output": "o"}',
     "malformed JSON: Invalid control character at column 26"),
    ('{"input": "p95', "malformed JSON: Unterminated string starting at column 11"),
    ('{"input": ' + "[" * 100_000 + "]" * 100_000 + ', "output": "o"}', "record is nested too deeply to be read"),
]


@pytest.mark.parametrize("bad,reason", BAD, ids=[r for _, r in BAD])
def test_bad_record_is_rejected_with_location_reason_and_raw_while_good_ones_are_read(tmp_path, bad, reason):
    path = write(tmp_path / "mixed.jsonl", [line(trace_id="good_1"), bad, line(trace_id="good_2")])
    batch = read([path])
    assert sorted(batch.traces["trace_id"]) == ["good_1", "good_2"]
    assert batch.rejected.height == 1
    rejected = batch.rejected.row(0, named=True)
    assert rejected["location"] == f"{path}:2"
    assert reason in rejected["reason"], rejected["reason"]
    assert rejected["raw"] == bad
    assert rejected["source"] == "drop" and rejected["rejected_at"] == NOW


def test_invalid_utf8_is_rejected_with_raw_text(tmp_path):
    path = tmp_path / "t.jsonl"
    bad = line(trace_id="bad").replace("p95", "p\udcff95").encode("utf-8", errors="surrogateescape")
    path.write_bytes(line().encode() + b"\n" + bad + b"\n")
    batch = read([path])
    assert batch.traces["trace_id"].to_list() == ["tr_00001"]
    rejected = batch.rejected.row(0, named=True)
    assert rejected["location"] == f"{path}:2"
    assert rejected["reason"].startswith("invalid UTF-8 at byte")
    assert "p\ufffd95" in rejected["raw"] and '"trace_id": "bad"' in rejected["raw"]


def test_oversize_record_is_rejected_and_small_ones_kept(tmp_path):
    big = line(trace_id="big", input={**INPUT, "question": "p95 duration_ms " + "x" * 5000})
    small = line()
    path = write(tmp_path / "t.jsonl", [small, big])
    batch = read([path], max_record_bytes=2000)
    assert batch.traces["trace_id"].to_list() == ["tr_00001"]
    rejected = batch.rejected.row(0, named=True)
    assert rejected["location"] == f"{path}:2"
    assert f"{len(big.encode()):,} bytes" in rejected["reason"] and "2,000-byte limit" in rejected["reason"]
    assert big.startswith(rejected["raw"]) and len(rejected["raw"]) == 2000
    # the same record is fine under the default limit
    assert read([path]).rejected.is_empty()


def test_rejections_across_files_name_their_own_file(tmp_path):
    a = write(tmp_path / "a.jsonl", ["oops", line()])
    b = write(tmp_path / "b.jsonl", [line(trace_id="b1"), line(trace_id="b2"), "[]"])
    batch = read([a, b])
    assert batch.rejected["location"].to_list() == [f"{a}:1", f"{b}:3"]
    assert batch.lines == 5 and batch.traces.height == 3


# --- duplicates and ids ----------------------------------------------------------------------------------

def test_duplicates_within_a_batch_are_counted_and_dropped(tmp_path):
    a = write(tmp_path / "a.jsonl", [line(), line(), line(trace_id="tr_2")])
    b = write(tmp_path / "b.jsonl", [line(trace_id="tr_2"), line(trace_id="tr_3")])
    batch = read([a, b])
    assert batch.duplicates_in_batch == 2
    assert batch.traces["trace_id"].to_list() == ["tr_00001", "tr_2", "tr_3"]
    assert batch.rejected.is_empty()


def test_records_without_trace_id_get_a_stable_content_hash_id(tmp_path):
    rec = record(trace_id=...)
    reordered = {k: rec[k] for k in reversed(list(rec))}
    reordered["input"] = {k: INPUT[k] for k in reversed(list(INPUT))}
    a = write(tmp_path / "a.jsonl", [json.dumps(rec)])
    b = write(tmp_path / "sub_b.jsonl", [json.dumps(reordered, indent=None)])
    id_a = read([a]).traces["trace_id"].to_list()
    id_a_again = read([a]).traces["trace_id"].to_list()
    id_b = read_trace_files([b], TASK, "other-source", now=datetime(2027, 1, 1, tzinfo=timezone.utc)).traces["trace_id"].to_list()
    assert id_a == id_a_again == id_b
    assert id_a[0].startswith("h_") and len(id_a[0]) == 2 + 24
    both = read([a, b])
    assert both.traces.height == 1 and both.duplicates_in_batch == 1


@pytest.mark.parametrize("change", [
    {"output": OUTPUT.replace("7200", "3600")},
    {"input": {**INPUT, "question": "p99 duration_ms by service.name last 2 hours"}},
    {"model": "prod-assistant-v4"},
    {"ts": "2026-10-16T02:38:22.559Z"},
])
def test_different_content_gets_a_different_id(tmp_path, change):
    path = write(tmp_path / "t.jsonl", [json.dumps(record(trace_id=...)), json.dumps(record(trace_id=..., **change))])
    batch = read([path])
    assert batch.traces.height == 2 and batch.duplicates_in_batch == 0


def test_content_hash_ignores_operational_fields():
    base = record()
    assert content_hash(base) == content_hash({**base, "latency_ms": 5, "metadata": {"x": 1}, "trace_id": "other"})
    assert content_hash(base) != content_hash({**base, "output": "{}"})


# --- discover -----------------------------------------------------------------------------------------

def test_discover_finds_trace_files_recursively_and_skips_partial_and_hidden(tmp_path):
    names = ["a.jsonl", "b.jsonl.gz", "c.json", "d.json.gz", ".hidden.jsonl", "e.jsonl.tmp", "f.jsonl.part",
             "notes.txt", "g.csv", "h.jsonl.bak", "jsonl", "sub/i.jsonl", "sub/deeper/j.jsonl.gz",
             "sub/.k.jsonl", "sub/l.jsonl.part"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}\n")
    (tmp_path / "dir.jsonl").mkdir()  # a folder with a trace suffix is not a file
    found = discover([str(tmp_path)])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "a.jsonl", "b.jsonl.gz", "c.json", "d.json.gz", "sub/deeper/j.jsonl.gz", "sub/i.jsonl"]


def test_discover_accepts_files_dedups_and_ignores_missing(tmp_path):
    (tmp_path / "x").mkdir()
    a = tmp_path / "x" / "a.jsonl"
    a.write_text("{}\n")
    assert discover([str(a), str(tmp_path), str(tmp_path / "missing")]) == [a]
    assert discover([str(tmp_path / "x" / ".a.jsonl")]) == []
    assert discover([]) == []


def test_discover_skips_files_inside_hidden_folders(tmp_path):
    from pipeline.engine.ingest.files import discover

    (tmp_path / ".staging").mkdir()
    (tmp_path / ".staging" / "a.jsonl").write_text("{}\n")
    (tmp_path / "day1").mkdir()
    (tmp_path / "day1" / "b.jsonl").write_text("{}\n")
    assert discover([str(tmp_path)]) == [tmp_path / "day1" / "b.jsonl"]
