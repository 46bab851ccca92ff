"""DuckLake against a DuckDB file at scale: ingest, the assertions, and two ingests at once.

    .venv/bin/python benchmarks/ducklake.py [--traces 1000000] [--repeat 3] [--bad-share 0.03]
                                            [--overlap 0.01] [--no-local-catalog]

Writes N production-like nl2query traces (benchmarks/ingest.py's generator) to a JSONL file, and
the same lines split in two halves to two more files (the second starting with the first 1% of
the lines again: traces logged twice, read by both ingests at once when they run together, so
DuckLake commits both and the ingest must settle them), in a temporary folder under /tmp; starts a
throwaway PostgreSQL server (tests/postgres.py) for the lakes' catalogs; then measures in this
run, each in a fresh process on fresh databases, per repeat:

- ingest: :func:`pipeline.engine.ingest.files.ingest_files` of the file into a new DuckDB file
  (the baseline), a new DuckLake with a PostgreSQL catalog and (unless --no-local-catalog) one
  with a DuckDB-file catalog, their data files in the temporary folder;
- assertions: what the trace_evaluations asset does (assets/label.py), on each database after its
  ingest: unchecked_traces, evaluate_traces, store.upsert into trace_evaluations, check_summary
  and table_version;
- parallel ingest: the two halves into a new lake with a PostgreSQL catalog by one process (one
  file after the other) and, into another new one, by two processes at once (one file each,
  started together), with the end state of both: raw_traces rows, duplicated trace ids, and
  whether the rows are those of the single-file ingest.

and prints the medians, the ratios lake / file and 2 processes / 1, where the ingest's time goes
(parsing chunks, inserting them, settling duplicates, display texts, the rest: commits, the ledger,
waiting for the read-ahead) and the peak resident memory of each ingest process. The temporary
folder and the PostgreSQL server are removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

from ingest import MAX_RECORD_BYTES, generate  # noqa: E402  (benchmarks/ingest.py's trace generator)

NO_DATA_PATH = "-"


def _timed(phases: dict[str, float], returned: dict[str, int], owner, name: str, label: str) -> None:
    """Replace ``owner.name`` by the same function adding its run time to ``phases[label]`` and
    the number it returns (rows inserted, settled, updated) to ``returned[label]``."""
    original = getattr(owner, name)

    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            result = original(*args, **kwargs)
        finally:
            phases[label] = phases.get(label, 0.0) + time.perf_counter() - started
        if isinstance(result, int):
            returned[label] = returned.get(label, 0) + result
        return result

    setattr(owner, name, timed)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _traces_state(conn) -> dict[str, int]:
    rows, distinct = conn.execute("SELECT count(*), count(DISTINCT trace_id) FROM raw_traces").fetchone()
    rejected = conn.execute("SELECT count(*) FROM rejected_traces").fetchone()[0]
    return {"rows": rows, "duplicated": rows - distinct, "rejected": rejected}


def _child(mode: str, database: str, data_path: str, files: list[str], wait: bool) -> None:
    """Run one measurement in this (fresh) process and print it as JSON."""
    from pipeline.engine.core import store
    from pipeline.engine.tasks import load_task

    task = load_task("nl2query")
    data_path = None if data_path == NO_DATA_PATH else data_path
    phases: dict[str, float] = {}
    returned: dict[str, int] = {}
    if mode == "ingest":
        from pipeline.engine.ingest import files as ingest

        _timed(phases, returned, ingest.FileIngest, "lines", "parse")
        _timed(phases, returned, ingest, "insert_records", "insert")
        _timed(phases, returned, ingest, "settle_new_traces", "settle")
        _timed(phases, returned, ingest, "store_display_texts", "display")
    elif mode == "assert":
        from pipeline.automation import table_version
        from pipeline.engine.label.assertions import check_version, evaluate_traces
        from pipeline.engine.label.trace_checks import check_summary, unchecked_traces

        _timed(phases, returned, store, "settle_duplicates", "settle")
    opened = time.perf_counter()
    with store.connect(database, data_path=data_path) as conn:
        opened = time.perf_counter() - opened
        if wait:  # started with another process: both begin together
            print("ready", flush=True)
            sys.stdin.readline()
        began, cpu_before = time.time(), _cpu()
        started = time.perf_counter()
        if mode == "ingest":
            report = ingest.ingest_files(conn, files, task, "benchmark", max_record_bytes=MAX_RECORD_BYTES,
                                         settle_seconds=0)
            phases["parse"] = phases.get("parse", 0.0) - phases.get("insert", 0.0)  # the insert runs in the parse
            counts = report.counts()
        elif mode == "assert":
            version = check_version(task)
            pending = unchecked_traces(conn, version)
            phases["read"] = time.perf_counter() - started
            frame = evaluate_traces(pending, task)
            phases["evaluate"] = time.perf_counter() - started - phases["read"]
            store.upsert(conn, "trace_evaluations", frame, ["trace_id"])
            phases["write"] = time.perf_counter() - started - phases["read"] - phases["evaluate"] - phases.get("settle", 0.0)
            summary_started = time.perf_counter()
            check_summary(conn)
            table_version(conn, "trace_evaluations")
            phases["summary"] = time.perf_counter() - summary_started
            counts = {"evaluated": pending.height, "rows": frame.height}
        else:  # "create": a new database migrated, or the state of one
            counts = {}
        seconds, ended, cpu = time.perf_counter() - started, time.time(), _cpu() - cpu_before
        phases["rest"] = seconds - sum(phases.values())
        state = _traces_state(conn)
        if mode == "assert":
            rows, distinct = conn.execute("SELECT count(*), count(DISTINCT (trace_id, check_name)) "
                                          "FROM trace_evaluations").fetchone()
            state.update(evaluations=rows, evaluations_duplicated=rows - distinct)
    print(json.dumps({"seconds": seconds, "cpu": cpu, "open": opened, "began": began, "ended": ended,
                      "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "phases": phases, "returned": returned, "counts": counts, "state": state}))


def _command(mode: str, database: str, data_path: str | None, files: list[Path], wait: bool = False) -> list[str]:
    return [sys.executable, __file__, "--child", mode, database, data_path or NO_DATA_PATH,
            *map(str, files), *(["--wait"] if wait else [])]


def _result(process: subprocess.Popen, stdout: str, stderr: str) -> dict:
    if process.returncode:
        raise RuntimeError(f"{' '.join(process.args[2:4])} failed ({process.returncode}):\n{stderr[-4000:]}")
    return json.loads(stdout.strip().splitlines()[-1])


def _measure(mode: str, database: str, data_path: str | None, files: list[Path] = ()) -> dict:
    process = subprocess.Popen(_command(mode, database, data_path, list(files)), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    stdout, stderr = process.communicate()
    return _result(process, stdout, stderr)


def _at_once(runs: list[tuple[str, str, str | None, list[Path]]]) -> list[dict]:
    """Run the measurements in parallel processes, each starting its work when all are ready."""
    processes = [subprocess.Popen(_command(*run, wait=True), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for run in runs]
    for process in processes:
        line = process.stdout.readline()
        if line.strip() != "ready":
            _result(process, *process.communicate())
            raise RuntimeError(f"a parallel ingest did not start: {line!r}")
    for process in processes:
        process.stdin.write("go\n")
        process.stdin.flush()
    return [_result(process, *process.communicate()) for process in processes]


def _split(source: Path, halves: tuple[Path, Path], overlap: float) -> int:
    """Write the lines of ``source`` to two files, cut at the first line break after the middle;
    the second starts with the first ``overlap`` share of the lines again (traces logged twice, that
    two ingests at once both read); returns how many lines are repeated."""
    with open(source, "rb") as handle:
        handle.seek(source.stat().st_size // 2)
        handle.readline()
        cut = handle.tell()
        handle.seek(0)
        lines = sum(block.count(b"\n") for block in iter(lambda: handle.read(32 << 20), b""))
        handle.seek(0)
        repeated = [handle.readline() for _ in range(int(lines * overlap))]
        handle.seek(0)
        with open(halves[0], "wb") as out:
            while handle.tell() < cut:
                out.write(handle.read(min(cut - handle.tell(), 32 << 20)))
        with open(halves[1], "wb") as out:
            out.writelines(repeated)
            shutil.copyfileobj(handle, out, 32 << 20)
    return len(repeated)


class Lakes:
    """Fresh databases: DuckDB files, DuckLakes with a PostgreSQL or a DuckDB-file catalog, each in
    its own folder (and PostgreSQL database), removed by :meth:`drop`."""

    def __init__(self, folder: Path, server):
        self.folder, self.server, self.made = folder, server, 0

    def fresh(self, kind: str) -> tuple[str, str | None, Path]:
        """(database setting, data path, folder) of a new, empty database of ``kind``."""
        import psycopg2

        self.made += 1
        home = self.folder / f"db{self.made}-{kind}"
        home.mkdir()
        if kind == "file":
            return str(home / "flywheel.duckdb"), None, home
        if kind == "local":
            return f"ducklake:{home / 'cat.ducklake'}", str(home / "data"), home
        conn = psycopg2.connect(self.server.dsn("postgres"))
        conn.autocommit = True
        conn.cursor().execute(f"CREATE DATABASE lake{self.made}")
        conn.close()
        return f"ducklake:postgres:{self.server.dsn(f'lake{self.made}')}", str(home / "data"), home

    def drop(self, database: str, home: Path) -> None:
        """Remove a database made by :meth:`fresh` (its files, its PostgreSQL database)."""
        import psycopg2

        shutil.rmtree(home, ignore_errors=True)
        if database.startswith("ducklake:postgres:"):
            conn = psycopg2.connect(self.server.dsn("postgres"))
            conn.autocommit = True
            conn.cursor().execute(f"DROP DATABASE IF EXISTS {database.split('dbname=')[1].split()[0]}")
            conn.close()


def _median(runs: list[dict], *keys: str) -> float:
    def value(run: dict) -> float:
        for key in keys:
            run = run.get(key, 0.0) if isinstance(run, dict) else 0.0
        return run

    return statistics.median(value(run) for run in runs)


def _phases(runs: list[dict], names: tuple[str, ...]) -> str:
    return "  ".join(f"{name} {_median(runs, 'phases', name):6.2f}" for name in names)


KINDS = {"file": "DuckDB file", "postgres": "DuckLake, PostgreSQL catalog", "local": "DuckLake, DuckDB-file catalog"}
INGEST_PHASES = ("parse", "insert", "settle", "display", "rest")
ASSERT_PHASES = ("read", "evaluate", "write", "settle", "summary")


def _print(args, size: int, kinds: list[str], ingests: dict, asserts: dict, serial: list[dict],
           parallel: list[dict], reference: list[int]) -> None:
    print(f"\nmedians of {args.repeat} runs, {args.traces:,} traces, {size / 2**20:,.0f} MiB, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} now (cpu: user+system seconds of the process, steadier than wall "
          "time on a shared machine; open: connect and migrate a new database, not counted; phases: wall seconds)")
    file_s, file_cpu = _median(ingests["file"], "seconds"), _median(ingests["file"], "cpu")
    print("ingest")
    for kind in kinds:
        runs = ingests[kind]
        s, cpu = _median(runs, "seconds"), _median(runs, "cpu")
        ratio = "" if kind == "file" else f"   {s / file_s:.2f}x the file (cpu {cpu / file_cpu:.2f}x; target <= 1.5x)"
        print(f"  {KINDS[kind]:30s} {s:8.2f} s  cpu {cpu:7.2f} s  peak {max(r['peak_mib'] for r in runs):6.0f} MiB  "
              f"open {_median(runs, 'open'):5.2f} s{ratio}")
        print(f"  {'':30s} {_phases(runs, INGEST_PHASES)}   state {runs[0]['state']}")
    print(f"  counts {ingests['file'][0]['counts']}")
    file_s, file_cpu = _median(asserts["file"], "seconds"), _median(asserts["file"], "cpu")
    print("assertions (unchecked_traces, evaluate_traces, upsert into trace_evaluations, check_summary, table_version)")
    for kind in kinds:
        runs = asserts[kind]
        s, cpu = _median(runs, "seconds"), _median(runs, "cpu")
        ratio = "" if kind == "file" else f"   {s / file_s:.2f}x the file (cpu {cpu / file_cpu:.2f}x)"
        state = runs[0]["state"]
        print(f"  {KINDS[kind]:30s} {s:8.2f} s  cpu {cpu:7.2f} s  peak {max(r['peak_mib'] for r in runs):6.0f} MiB{ratio}")
        print(f"  {'':30s} {_phases(runs, ASSERT_PHASES)}   {runs[0]['counts']['evaluated']:,} traces -> "
              f"{state['evaluations']:,} rows, {state['evaluations_duplicated']} duplicated")
    one_s, two_s = statistics.median(r["span"] for r in serial), statistics.median(r["span"] for r in parallel)
    print(f"parallel ingest into a DuckLake with a PostgreSQL catalog, the traces split in 2 files "
          f"({os.cpu_count()} cores on this machine)")
    for label, runs, s in (("1 process, both files", serial, one_s), ("2 processes at once", parallel, two_s)):
        cpu = statistics.median(sum(r["cpu"] for r in run["ingests"]) for run in runs)
        peaks = ", ".join(f"{max(run['ingests'][i]['peak_mib'] for run in runs):.0f}" for i in range(len(runs[0]["ingests"])))
        ratio = f"   {two_s / one_s:.2f}x one process" if runs is parallel else ""
        print(f"  {label:30s} {s:8.2f} s  cpu {cpu:7.2f} s  peak {peaks} MiB{ratio}")
        print(f"  {'':30s} {_phases([i for run in runs for i in run['ingests']], INGEST_PHASES)}  (per process)")
    for label, runs in (("1 process", serial), ("2 processes", parallel)):
        for n, run in enumerate(runs):
            state = run["state"]
            print(f"  end state, {label}, run {n + 1}: raw_traces {state['rows']:,} rows, {state['duplicated']} "
                  f"duplicated trace_id, {state['rejected']:,} rejected; the single-file ingest {reference[n]:,} rows "
                  f"({'same' if state['rows'] == reference[n] else 'DIFFERENT'}); duplicates "
                  f"{sum(r['counts']['duplicates'] for r in run['ingests']):,}, of which "
                  f"{sum(r['returned'].get('settle', 0) for r in run['ingests']):,} settled after commit")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--traces", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--bad-share", type=float, default=0.03)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--overlap", type=float, default=0.01,
                        help="share of the lines that the second half repeats from the start of the first")
    parser.add_argument("--no-local-catalog", action="store_true", help="skip the lake with a DuckDB-file catalog")
    parser.add_argument("--child", nargs="+", metavar="ARG", help=argparse.SUPPRESS)
    parser.add_argument("--wait", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], args.child[1], args.child[2], args.child[3:], args.wait)
        return
    from tests.postgres import throwaway_postgres

    kinds = ["file", "postgres"] + ([] if args.no_local_catalog else ["local"])
    folder = Path(tempfile.mkdtemp(prefix="flywheel-ducklake-bench-", dir="/tmp"))
    try:
        traces, halves = folder / "traces.jsonl", (folder / "half-1.jsonl", folder / "half-2.jsonl")
        started = time.perf_counter()
        size = generate(traces, args.traces, args.bad_share, args.seed)
        repeated = _split(traces, halves, args.overlap)
        print(f"load average {os.getloadavg()[0]:.1f} at start; generated {args.traces:,} traces ({size / 2**20:,.0f} MiB; and in 2 halves, the second starting "
              f"with the first {repeated:,} lines again) in "
              f"{time.perf_counter() - started:.0f} s under {folder}", flush=True)
        ingests: dict[str, list] = {kind: [] for kind in kinds}
        asserts: dict[str, list] = {kind: [] for kind in kinds}
        serial, parallel, reference = [], [], []
        with throwaway_postgres() as server:
            lakes = Lakes(folder, server)
            for n in range(args.repeat):
                for kind in kinds:
                    database, data_path, home = lakes.fresh(kind)
                    ingests[kind].append(_measure("ingest", database, data_path, [traces]))
                    asserts[kind].append(_measure("assert", database, data_path))
                    lakes.drop(database, home)
                    print(f"  run {n + 1}: {kind:8s} ingest {ingests[kind][-1]['seconds']:7.2f} s, "
                          f"assertions {asserts[kind][-1]['seconds']:7.2f} s", flush=True)
                reference.append(ingests["file"][-1]["state"]["rows"])
                for runs, split in ((serial, False), (parallel, True)):
                    database, data_path, home = lakes.fresh("postgres")
                    _measure("create", database, data_path)  # the lake and its tables exist before
                    if split:
                        done = _at_once([("ingest", database, data_path, [half]) for half in halves])
                    else:
                        done = [_measure("ingest", database, data_path, list(halves))]
                    runs.append({"ingests": done, "span": max(r["ended"] for r in done) - min(r["began"] for r in done),
                                 "state": _measure("create", database, data_path)["state"]})
                    lakes.drop(database, home)
                print(f"  run {n + 1}: 2 files, 1 process {serial[-1]['span']:7.2f} s, "
                      f"2 processes {parallel[-1]['span']:7.2f} s", flush=True)
        _print(args, size, kinds, ingests, asserts, serial, parallel, reference)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
