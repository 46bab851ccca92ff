"""Assertions at scale: the task's checks over N traces, against the plain per-row loop.

Builds N traces from the demo traces (every trace id unique), then measures, as medians over
repeats in the same run:

- the baseline: the plain per-row Python loop (one tuple per trace and check) on a sample,
  scaled to N;
- ``evaluate_traces`` on all N traces (worker processes, columnar rows);
- the cost of each check per trace (parse once, then each check alone) on the sample;
- once, writing the rows into trace_evaluations (an in-memory DuckDB, the asset's upsert).

Run from the repository root::

    .venv/bin/python benchmarks/evals.py                      # 1,000,000 traces, 3 repeats
    .venv/bin/python benchmarks/evals.py --traces 100000 --sample 10000 --repeats 1   # a smoke test
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import polars as pl  # noqa: E402

from pipeline.engine.core import store  # noqa: E402
from pipeline.engine.label.assertions import evaluate_traces  # noqa: E402
from pipeline.engine.tasks import load_task  # noqa: E402
from pipeline.engine.tasks.nl2query import QUERY_CHECKS, QueryParts, parse  # noqa: E402
from pipeline.demo.generate import read_demo_traces  # noqa: E402

def traces_frame(n: int) -> pl.DataFrame:
    seeds = read_demo_traces()
    base = pl.DataFrame({"input": [json.dumps(r["input"]) for r in seeds],
                         "output": [r.get("output") for r in seeds], "error": [r.get("error") for r in seeds]},
                        schema={"input": pl.String, "output": pl.String, "error": pl.String})
    frame = pl.concat([base] * (n // base.height + 1)).head(n)
    return frame.with_columns(trace_id=pl.format("t{}", pl.int_range(n))).select("trace_id", "input", "output", "error")


def baseline_loop(traces: pl.DataFrame, task) -> pl.DataFrame:
    """The straightforward version: one Python tuple per (trace, check), one frame at the end."""
    rows = []
    for trace_id, input_json, output, error in traces.iter_rows():
        if error and not output:
            rows += [(trace_id, name, None, f"skipped: call failed: {error}") for name in task.check_names]
            continue
        for result in task.check(json.loads(input_json), output):
            rows.append((trace_id, result.check_name, result.passed, result.detail))
    return pl.DataFrame(rows, schema=["trace_id", "check_name", "passed", "detail"], orient="row")


def median_seconds(fn, repeats: int, without_gc: bool = False) -> float:
    """Median wall time of ``fn``; ``without_gc`` pauses the cyclic collector, as timeit does."""
    times = []
    for _ in range(repeats):
        gc.collect()
        if without_gc:
            gc.disable()
        started = time.perf_counter()
        try:
            fn()
        finally:
            times.append(time.perf_counter() - started)
            gc.enable()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=50_000, help="traces for the baseline and per-check costs")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    task = load_task("nl2query")
    traces = traces_frame(args.traces)
    sample = traces.head(args.sample)
    print(f"{traces.height:,} traces, {len(task.check_names)} checks, {os.cpu_count()} cores "
          f"(load average {os.getloadavg()[0]:.1f} at start), median of {args.repeats}")

    base_s = median_seconds(lambda: baseline_loop(sample, task), args.repeats) * traces.height / sample.height
    print(f"baseline per-row loop : {base_s:7.1f} s for {traces.height:,} (measured on {sample.height:,}, scaled)")
    rows = {}
    fast_s = median_seconds(lambda: rows.update(frame=evaluate_traces(traces, task, workers=args.workers)), args.repeats)
    print(f"evaluate_traces       : {fast_s:7.1f} s for {traces.height:,} -> {rows['frame'].height:,} rows "
          f"({traces.height / fast_s:,.0f} traces/s, {base_s / fast_s:.1f}x the baseline)")
    print(f"target                : {'met' if fast_s <= 60 * traces.height / 1_000_000 else 'MISSED'} "
          f"(60 s per 1,000,000 traces)")
    conn = store.connect(":memory:")
    started = time.perf_counter()
    store.upsert(conn, "trace_evaluations", rows["frame"], ["trace_id"])
    print(f"write to DuckDB       : {time.perf_counter() - started:7.1f} s (once, upsert into an empty table)")
    print(f"load average now      : {os.getloadavg()[0]:.1f} (the machine is shared: figures are slower under load)")

    pairs = [(json.loads(i), o) for i, o, e in sample.select("input", "output", "error").iter_rows() if o]
    parse_s = median_seconds(lambda: [parse(o) for _, o in pairs], args.repeats, without_gc=True)
    parsed = [(inp, QueryParts(q)) for inp, q in ((inp, parse(o)) for inp, o in pairs) if q is not None]
    print(f"\nper-check cost (single core, {len(pairs):,} outputs, garbage collector paused):")
    print(f"  {'invalid_json (parse)':28s} {1e6 * parse_s / len(pairs):6.2f} us/trace")
    parts_s = median_seconds(lambda: [QueryParts(q.query) for _, q in parsed], args.repeats, without_gc=True)
    print(f"  {'(query parts, shared)':28s} {1e6 * parts_s / len(parsed):6.2f} us/trace")
    for name, find in QUERY_CHECKS.items():
        seconds = median_seconds(lambda find=find: [find(q, inp) for inp, q in parsed], args.repeats, without_gc=True)
        print(f"  {name:28s} {1e6 * seconds / len(parsed):6.2f} us/trace")


if __name__ == "__main__":
    main()
