"""The pipeline on DuckLake with a PostgreSQL catalog started here and a temporary data folder:
the whole graph materializes with the same rows as on a DuckDB file; two ingest runs (separate
processes, each a batch of the files, some traces in both) and the annotation app write at once,
and nothing is lost or duplicated; the analysts' views answer during the runs."""

import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from assets.ingest import raw_traces
from pipeline.definitions import ASSET_MODULES
from pipeline.engine.core import lake, store
from pipeline.engine.ingest.files import file_batch
from pipeline.engine.label.review import Review, make_decision, new_annotation_id
from pipeline.resources import FlywheelDuckDB
from tests.annotate.seed import TASK
from tests.assets.tiny import materialize, tiny_resources
from tests.postgres import throwaway_postgres

REPO = Path(__file__).resolve().parents[2]
VIEWS = ("failure_rate_daily", "top_failing_inputs", "training_data_composition", "model_leaderboard",
         "annotator_decisions", "decided_labels")


@pytest.fixture(scope="module")
def postgres():
    with throwaway_postgres(("graph", "concurrent")) as server:
        yield server


def counts(conn) -> dict[str, int]:
    return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in (*store.CONTRACT_TABLES, "model_promotions", "ingested_files")}


def test_whole_graph_materializes_on_ducklake_as_on_a_file(tmp_path, tiny_demo, postgres):
    assets = [*dg.load_assets_from_modules(ASSET_MODULES), *dg.load_asset_checks_from_modules(ASSET_MODULES)]
    on_file, _ = materialize(assets, tiny_resources(tmp_path / "file", tiny_demo))
    resources = tiny_resources(tmp_path / "lake", tiny_demo)
    target = f"ducklake:postgres:{postgres.dsn('graph')}"
    resources["duckdb"] = FlywheelDuckDB(database=target, data_path=str(tmp_path / "lake" / "data"))
    on_lake, events = materialize(assets, resources)
    assert on_file.success and on_lake.success
    assert "eval_report" in events and "promoted_model" in events
    with duckdb.connect(str(tmp_path / "file" / "flywheel.duckdb"), read_only=True) as conn:
        expected = counts(conn)
    with store.connect(target, read_only=True) as conn:
        assert counts(conn) == expected
        assert expected["raw_traces"] > 0 and expected["eval_results"] > 0
        for view in VIEWS:
            conn.execute(f"SELECT * FROM {view}").fetchall()
        days = conn.execute("SELECT count(DISTINCT CAST(ts AS DATE)) FROM raw_traces").fetchone()[0]
    # raw_traces is written into one folder per day of ts (DuckLake's hive-style partition paths)
    day_folders = {p.parent for p in (tmp_path / "lake" / "data").rglob("*.parquet") if "raw_traces" in str(p)}
    assert days > 1 and len(day_folders) == days


def _split_demo(tiny_demo: Path, folder: Path) -> tuple[Path, int]:
    """The tiny demo with its traces split into three files of batch 0 of two, and each of them
    copied to a file of batch 1, so both runs ingest every trace at once; returns the folder and
    the number of trace files."""
    demo = folder / "demo"
    shutil.copytree(tiny_demo, demo, ignore=shutil.ignore_patterns("traces"))
    traces = demo / "traces"
    traces.mkdir()
    lines = [line for log in sorted((tiny_demo / "traces").iterdir())
             for line in log.read_text(encoding="utf-8").splitlines(keepends=True)]
    names, n = {0: [], 1: []}, 0
    while len(names[0]) < 3 or len(names[1]) < 3:  # file names whose batches are known
        name = f"part-{n:03d}.jsonl"
        names[file_batch(traces / name, 2)].append(name)
        n += 1
    for i, (first, second) in enumerate(zip(names[0][:3], names[1][:3])):
        (traces / first).write_text("".join(lines[i::3]), encoding="utf-8")
        shutil.copy(traces / first, traces / second)
    return demo, 6


def _decision(trace_id: str, n: int):
    input = {"question": f"count requests {n}", "columns": ["duration_ms"]}
    return make_decision(TASK, input, annotation_id=new_annotation_id(), trace_id=trace_id, label="bad",
                         annotator=f"annotator-{n % 3}", failure_mode="invalid_json", critique=f"seen {n}")


def test_two_ingest_runs_and_the_app_write_at_once_and_nothing_is_lost_or_doubled(tmp_path, tiny_demo, postgres):
    demo, files = _split_demo(tiny_demo, tmp_path)
    # what one run ingests into a DuckDB file: the expected traces and rejections
    result, _ = materialize([raw_traces], tiny_resources(tmp_path / "file", demo))
    assert result.success
    with duckdb.connect(str(tmp_path / "file" / "flywheel.duckdb"), read_only=True) as conn:
        expected_ids = {r[0] for r in conn.execute("SELECT trace_id FROM raw_traces").fetchall()}
        expected_rejections = {r for r in conn.execute("SELECT source, location FROM rejected_traces").fetchall()}
        assert conn.execute("SELECT count(*) FROM ingested_files").fetchone()[0] == files

    target = f"ducklake:postgres:{postgres.dsn('concurrent')}"
    data_path = str(tmp_path / "lake_data")
    store.connect(target, data_path=data_path).close()  # the lake exists (and is migrated) before the app opens it
    runs = [subprocess.Popen([sys.executable, "-m", "tests.lake.run_assets", str(demo), str(tmp_path / f"run{b}"),
                              target, data_path, str(b), "2", "raw_traces", "trace_evaluations"],
                             cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for b in (0, 1)]
    review = Review(target, tmp_path / "outbox", TASK)
    saved, answers, picks = [], 0, sorted(expected_ids)
    while any(run.poll() is None for run in runs) or len(saved) < 20:
        decision = _decision(picks[len(saved) % len(picks)], len(saved))
        assert review.save(decision) == "saved"  # straight into the table: nothing waits in an outbox
        saved.append(decision.annotation_id)
        with store.connect(target, read_only=True) as reader:  # an analyst, at the lake's latest snapshot
            for view in VIEWS:
                reader.execute(f"SELECT count(*) FROM {view}").fetchone()
            answers += 1
    outputs = [run.communicate()[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    assert review.outbox.count() == 0 and answers == len(saved)

    with store.connect(target, read_only=True) as conn:
        ids = [r[0] for r in conn.execute("SELECT trace_id FROM raw_traces").fetchall()]
        assert len(ids) == len(set(ids)) and set(ids) == expected_ids
        rejections = conn.execute("SELECT source, location FROM rejected_traces").fetchall()
        assert len(rejections) == len(set(rejections)) and set(rejections) == expected_rejections
        assert conn.execute("SELECT count(*), count(DISTINCT path) FROM ingested_files").fetchone() == (files, files)
        stored = [r[0] for r in conn.execute("SELECT annotation_id FROM annotations").fetchall()]
        assert sorted(stored) == sorted(saved)
        evaluated = conn.execute("SELECT count(*), count(DISTINCT (trace_id, check_name)), count(DISTINCT trace_id) "
                                 "FROM trace_evaluations").fetchone()
        assert evaluated[0] == evaluated[1] and evaluated[2] == len(expected_ids)
        assert lake.is_lake_connection(conn)
