"""The whole loop on every kind of task, each on its bundled sample: what the splits, the groups
and the eval report come to.

For each task (the built-in nl2query, sql and chat, the declarative examples/crm_assistant/task.yaml
and the Python module examples.ticket_triage.task) the ``flywheel`` job runs once in a temporary
folder with the project's default resources, the task's demo data and a shorter training
(``--base-steps``, ``--finetune-steps``), then prints the traces ingested and rejected, the split
sizes, the number of groups (the task's ``group_key``), the report's slices (its ``slice_name``)
and the headline figures of the base and the fine-tuned model. Run from the repository root::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/tasks.py                  # every task
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/tasks.py --tasks sql chat
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)

import dagster as dg  # noqa: E402
import duckdb  # noqa: E402

from pipeline.definitions import build_defs, default_resources  # noqa: E402
from pipeline.engine.tasks import load_task  # noqa: E402
from pipeline.engine.tasks.hooks import demo_data, slice_name  # noqa: E402
from pipeline.resources import (  # noqa: E402
    AnnotationFiles, FlywheelDuckDB, FlywheelPaths, LocalTrainer, TaskResource, TraceFiles,
)

TASKS = ["nl2query", "sql", "chat", "examples/crm_assistant/task.yaml", "examples.ticket_triage.task"]


def run_task(name: str, folder: Path, base_steps: int, finetune_steps: int) -> dict:
    """Run the flywheel job for task ``name`` on its demo data in ``folder``; its figures."""
    demo = demo_data(load_task(name))
    resources = {
        **default_resources(),
        "task": TaskResource(name=name),
        "duckdb": FlywheelDuckDB(database=str(folder / "flywheel.duckdb")),
        "paths": FlywheelPaths(data_dir=str(folder)),
        "trace_files": TraceFiles(paths=[demo.traces]),
        "annotation_files": AnnotationFiles(paths=[demo.annotations]),
        "trainer": LocalTrainer(base_corpus=demo.base_corpus, base_max_steps=base_steps,
                                finetune_max_steps=finetune_steps),
    }
    started = time.monotonic()
    with dg.instance_for_test() as instance:
        result = build_defs(resources).resolve_job_def("flywheel").execute_in_process(instance=instance)
    seconds = time.monotonic() - started
    if not result.success:
        raise SystemExit(f"{name}: the flywheel job failed")
    with duckdb.connect(str(folder / "flywheel.duckdb"), read_only=True) as conn:
        one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        splits = dict(conn.execute("SELECT split, count(*) FROM training_examples GROUP BY split").fetchall())
        report = conn.execute("SELECT metrics FROM eval_reports ORDER BY created_at DESC LIMIT 1").fetchone()
        figures = {
            "traces": one("SELECT count(*) FROM raw_traces"), "rejected": one("SELECT count(*) FROM rejected_traces"),
            "splits": splits, "groups": one("SELECT count(DISTINCT group_id) FROM training_examples"),
            "synthetic": one("SELECT count(*) FROM training_examples WHERE source = 'synthetic'"),
            "seconds": seconds,
        }
    metrics = json.loads(report[0])
    figures["slices"] = (slice_name(load_task(name)), len((metrics["candidate"].get("slices") or {}).get("values", {})))
    figures["models"] = {role: (metrics[role]["passed_checks"], metrics[role]["exact_match"])
                         for role in ("baseline", "candidate")}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=TASKS, help="tasks to run (default: all five)")
    parser.add_argument("--base-steps", type=int, default=1000, help="base model training steps")
    parser.add_argument("--finetune-steps", type=int, default=500, help="fine-tuning steps")
    args = parser.parse_args()
    print("| task | traces (rejected) | train / validation / test | groups | synthetic | slices | "
          "base: passes / exact | fine-tuned: passes / exact | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.tasks:
        with tempfile.TemporaryDirectory(prefix="flywheel-task-") as folder:
            f = run_task(name, Path(folder), args.base_steps, args.finetune_steps)
        s, (base, tuned) = f["splits"], (f["models"]["baseline"], f["models"]["candidate"])
        slices = f"{f['slices'][1]} by {f['slices'][0]}" if f["slices"][0] else "none"
        print(f"| {name} | {f['traces']} ({f['rejected']}) | {s.get('train', 0)} / {s.get('validation', 0)} / "
              f"{s.get('test', 0)} | {f['groups']} | {f['synthetic']} | {slices} | {base[0]:.1%} / {base[1]:.1%} | "
              f"{tuned[0]:.1%} / {tuned[1]:.1%} | {f['seconds']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
