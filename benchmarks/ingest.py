"""Trace ingestion benchmark: full ingest against DuckDB's own read_json, peak memory, +1% incremental.

    .venv/bin/python benchmarks/ingest.py [--traces 1000000] [--repeat 3] [--bad-share 0.03]

Writes N production-like nl2query traces (the bundled demo traces as templates, unique ids, 10%
without a trace id, 1% re-logged duplicates, a few percent bad lines of every kind: truncated
JSON, wrong types, missing fields, invalid UTF-8, oversize records, blank lines) to a JSONL file
in a temporary folder under /tmp, then measures in this run, each in a fresh process:

- floor: DuckDB's ``CREATE TABLE AS SELECT * FROM read_json(file)`` (ignore_errors) into a new
  database file, checkpointed
- full ingest: :func:`pipeline.engine.ingest.files.ingest_files` of the file into a new database
- incremental: the same database after appending 1% new lines to the file (the ledger resumes)
- reader: the ingest's line reader alone (numbered lines as Arrow, UTF-8 and size checks) against
  plainly reading the file's bytes, to see what reading costs before any validation

and prints the medians, the ratios (full / floor, incremental / full) and the peak resident
memory of the ingest process. The temporary folder is deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MAX_RECORD_BYTES = 1_000_000


def _templates() -> list[dict]:
    """The demo's traces in the project's format (read from its chat logs and LangSmith runs)."""
    sys.path.insert(0, str(REPO))
    from pipeline.demo.generate import read_demo_traces

    return read_demo_traces()


def _bad_line(rng: random.Random, record: dict) -> bytes:
    kind = rng.randrange(7)
    text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    if kind == 0:
        return text[: len(text) * 2 // 3].encode()
    if kind == 1:
        return json.dumps({**record, "latency_ms": "1.2s"}, separators=(",", ":")).encode()
    if kind == 2:
        return json.dumps({k: v for k, v in record.items() if k != "input"}, separators=(",", ":")).encode()
    if kind == 3:
        return json.dumps({**record, "input": record["input"]["question"]}, separators=(",", ":")).encode()
    if kind == 4:
        return text.encode().replace(b"duration", b"dur\xffation", 1) or text.encode() + b"\xff"
    if kind == 5:
        return json.dumps({**record, "prompt_tokens": -3}, separators=(",", ":")).encode()
    return b"[" + text.encode() + b"]"


def generate(path: Path, n: int, bad_share: float, seed: int, start: int = 0) -> int:
    """Write ``n`` lines (traces, duplicates, bad lines) to ``path`` (appending); returns bytes written."""
    rng = random.Random(seed)
    templates = _templates()
    written = 0
    recent: list[bytes] = []
    with open(path, "ab") as out:
        buffer = []
        for i in range(start, start + n):
            record = dict(rng.choice(templates))
            record["trace_id"] = f"tr_bench_{i:09d}"
            record["ts"] = f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:{(i // 60) % 60:02d}.{i % 1000:03d}Z"
            roll = rng.random()
            if roll < bad_share:
                line = _bad_line(rng, record)
            elif roll < bad_share + 0.01 and recent:
                line = rng.choice(recent)  # re-logged duplicate
            elif i % 50_000 == 7:
                record["input"] = {**record["input"], "question": "x" * (MAX_RECORD_BYTES + 10)}
                line = json.dumps(record, separators=(",", ":")).encode()
            else:
                if roll > 0.9:
                    del record["trace_id"]  # identified by content hash
                line = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()
                if len(recent) < 1000:
                    recent.append(line)
            buffer.append(line + b"\n" + (b"\n" if i % 10_000 == 3 else b""))
            if len(buffer) >= 10_000:
                data = b"".join(buffer)
                out.write(data)
                written += len(data)
                buffer = []
        data = b"".join(buffer)
        out.write(data)
        written += len(data)
    return written


def _child(mode: str, file: str, database: str) -> None:
    """Run one measurement in this (fresh) process and print it as JSON."""
    sys.path.insert(0, str(REPO))
    import duckdb

    started = time.perf_counter()
    cpu_before = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    if mode in ("read", "reader"):
        from pipeline.engine.ingest.lines import ReadState, read_lines

        started = time.perf_counter()
        cpu_before = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
        if mode == "read":
            with open(file, "rb") as handle:
                while handle.read(32 * 1024 * 1024):
                    pass
            counts = {}
        else:
            state = ReadState()
            lines = sum(len(chunk.lines) for chunk in read_lines(Path(file), state, final=True,
                                                                 max_record_bytes=MAX_RECORD_BYTES))
            counts = {"lines": lines}
    elif mode == "floor":
        with duckdb.connect(database) as conn:
            conn.execute("CREATE TABLE floor AS SELECT * FROM read_json(?, format = 'newline_delimited', "
                         "ignore_errors = true, maximum_object_size = 16777216)", [file])
            conn.execute("CHECKPOINT")  # on disk, as the ingest's commits are
            counts = {"rows": conn.execute("SELECT count(*) FROM floor").fetchone()[0]}
    else:
        from pipeline.engine.core import store
        from pipeline.engine.tasks import load_task
        from pipeline.engine.ingest.files import ingest_files

        with store.connect(database) as conn:
            started = time.perf_counter()
            cpu_before = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
            report = ingest_files(conn, [file], load_task("nl2query"), "benchmark",
                                  max_record_bytes=MAX_RECORD_BYTES, settle_seconds=0)
            counts = report.counts()
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - cpu_before
    print(json.dumps({"seconds": seconds, "cpu": cpu, "peak_mib": usage.ru_maxrss / 1024, "counts": counts}))


def _measure(mode: str, file: Path, database: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(file), str(database)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _fresh(database: Path) -> None:
    for extra in ("", ".wal"):
        Path(str(database) + extra).unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--traces", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--bad-share", type=float, default=0.03)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--child", nargs=3, metavar=("MODE", "FILE", "DATABASE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    folder = Path(tempfile.mkdtemp(prefix="flywheel-ingest-bench-", dir="/tmp"))
    try:
        traces = folder / "traces.jsonl"
        started = time.perf_counter()
        size = generate(traces, args.traces, args.bad_share, args.seed)
        extra = max(1, args.traces // 100)
        delta_file = folder / "delta.jsonl"
        generate(delta_file, extra, args.bad_share, args.seed + 1, start=args.traces)
        delta = delta_file.read_bytes()
        delta_file.unlink()
        print(f"generated {args.traces:,} traces ({size / 2**20:,.0f} MiB) + {extra:,} for the increment "
              f"in {time.perf_counter() - started:.0f} s under {folder}")
        floor, full, incremental, read, reader = [], [], [], [], []
        for _ in range(args.repeat):
            os.truncate(traces, size)
            read.append(_measure("read", traces, folder / "unused.duckdb"))
            reader.append(_measure("reader", traces, folder / "unused.duckdb"))
            database = folder / "floor.duckdb"
            _fresh(database)
            floor.append(_measure("floor", traces, database))
            _fresh(database)
            database = folder / "flywheel.duckdb"
            _fresh(database)
            full.append(_measure("ingest", traces, database))
            with open(traces, "ab") as out:
                out.write(delta)
            incremental.append(_measure("ingest", traces, database))
            _fresh(database)
        median = lambda runs, key="seconds": statistics.median(r[key] for r in runs)  # noqa: E731
        f, i, d = median(floor), median(full), median(incremental)
        fc, ic, dc = median(floor, "cpu"), median(full, "cpu"), median(incremental, "cpu")
        print(f"\nmedians of {args.repeat} runs, {args.traces:,} traces, {size / 2**20:,.0f} MiB (cpu: user+system "
              f"seconds of the process, steadier than wall time on a shared machine)")
        print(f"  DuckDB read_json floor    {f:8.2f} s  cpu {fc:7.2f} s   peak {max(r['peak_mib'] for r in floor):6.0f} MiB   "
              f"rows {floor[0]['counts']['rows']:,}")
        print(f"  full ingest               {i:8.2f} s  cpu {ic:7.2f} s   peak {max(r['peak_mib'] for r in full):6.0f} MiB   "
              f"ratio to floor {i / f:.2f}x (cpu {ic / fc:.2f}x; target <= 2x)")
        print(f"  +1% incremental ingest    {d:8.2f} s  cpu {dc:7.2f} s   peak {max(r['peak_mib'] for r in incremental):6.0f} MiB   "
              f"{d / i:.1%} of full (target <= 5%)")
        r, rr = median(read, "cpu"), median(reader, "cpu")
        print(f"  reading the file's bytes  {median(read):8.2f} s  cpu {r:7.2f} s")
        print(f"  ingest's line reader      {median(reader):8.2f} s  cpu {rr:7.2f} s   "
              f"{reader[0]['counts']['lines']:,} lines; cpu = {rr / ic:.0%} of the full ingest's")
        print(f"  full ingest counts        {full[0]['counts']}")
        print(f"  incremental counts        {incremental[0]['counts']}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
