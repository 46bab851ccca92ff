"""PII scrubbing benchmark: time to scrub 1,000 typical training examples.

    .venv/bin/python benchmarks/scrub.py [--examples 1000] [--repeat 3]

Builds chat records (the nl2query prompt and the output) from the bundled demo traces, as
curation exports them, then times :func:`pipeline.engine.curate.export.scrub_records` over them
(the analyzer is built once before timing; its build time is printed apart) and prints the
median seconds per 1,000 examples and what was replaced.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import polars as pl

from pipeline.engine.curate.export import chat_records, scrub_records
from pipeline.engine.core.scrub import scrub_text
from pipeline.engine.tasks import load_task
from pipeline.demo.generate import read_demo_traces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    traces = [t for t in read_demo_traces() if t["output"]]
    rows = [traces[i % len(traces)] for i in range(args.examples)]
    frame = pl.DataFrame({"input": [json.dumps(t["input"]) for t in rows], "output": [t["output"] for t in rows]})
    records = chat_records(frame, load_task("nl2query"))
    started = time.perf_counter()
    scrub_text("warm-up: jane@example.com, +1 415 555 0100")
    print(f"first call (builds the analyzer): {time.perf_counter() - started:.2f} s")
    times, counts = [], {}
    for _ in range(args.repeat):
        started = time.perf_counter()
        _, counts = scrub_records(records)
        times.append(time.perf_counter() - started)
    per_1000 = statistics.median(times) / args.examples * 1000
    print(f"{args.examples} examples, median of {args.repeat}: {per_1000:.2f} s per 1,000 examples; replaced {counts}")


if __name__ == "__main__":
    main()
