"""The whole graph on every kind of task: the built-in sql and chat tasks, a declarative task file
and a team's own Python module, each on its bundled sample, through the task interface alone.
(nl2query, the demo task, is tests/assets/test_pipeline.py.)"""

import json
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from pipeline.annotate.app import _row
from pipeline.annotate.views import trace_input
from pipeline.definitions import ASSET_MODULES
from pipeline.engine.label.review import QueueFilter, Review
from pipeline.engine.tasks import load_task
from pipeline.engine.tasks import hooks
from tests.assets.tiny import materialize, tiny_resources

ROOT = Path(__file__).resolve().parents[2]
TASKS = {
    "sql": ("sql", ROOT / "data/demo/sql"),
    "chat": ("chat", ROOT / "data/demo/chat"),
    "declarative": (str(ROOT / "examples/crm_assistant/task.yaml"), ROOT / "examples/crm_assistant/data"),
    "python_module": ("examples.ticket_triage.task", ROOT / "examples/ticket_triage/data"),
}


@pytest.fixture(scope="module", params=sorted(TASKS))
def run(request, tmp_path_factory):
    name, data = TASKS[request.param]
    folder = tmp_path_factory.mktemp(request.param)
    resources = tiny_resources(folder, data, task=name, max_source_tokens=None)
    assets = dg.load_assets_from_modules(ASSET_MODULES)
    result, events = materialize([*assets, *dg.load_asset_checks_from_modules(ASSET_MODULES)], resources)
    return load_task(name), folder, result, events


def query(folder, sql):
    with duckdb.connect(str(folder / "flywheel.duckdb"), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def test_the_graph_materializes_up_to_the_eval_report(run):
    task, folder, result, events = run
    assert result.success
    assert {"raw_traces", "training_examples", "fine_tuned_model", "eval_report"} <= set(events)
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["no_group_in_two_splits"] and checks["test_split_is_real"]
    assert query(folder, "SELECT count(*) FROM raw_traces")[0][0] > 0


def test_every_split_holds_examples_grouped_by_the_tasks_own_key(run):
    task, folder, _, _ = run
    sizes = dict(query(folder, "SELECT split, count(*) FROM training_examples GROUP BY split"))
    assert set(sizes) == {"train", "validation", "test"} and min(sizes.values()) > 0
    real = query(folder, "SELECT group_id, input FROM training_examples WHERE source <> 'synthetic'")
    assert all(group == hooks.group_id(task, json.loads(input)) for group, input in real)
    groups = {group for group, _ in real}
    assert 1 < len(groups) <= len(real)
    assert query(folder, """SELECT count(*) FROM training_examples a JOIN training_examples b USING (group_id)
                            WHERE a.split <> b.split""") == [(0,)]


def test_the_report_slices_by_the_tasks_slice_key(run):
    task, folder, _, _ = run
    report, metrics = query(folder, "SELECT report_markdown, metrics FROM eval_reports")[0]
    candidate = json.loads(metrics)["candidate"]
    name = hooks.slice_name(task)
    if name is None:
        assert not candidate.get("slices") and "\n## By " not in report
    else:
        assert candidate["slices"]["name"] == name and f"\n## By {name}\n" in report
        test_inputs = query(folder, "SELECT input FROM training_examples WHERE split = 'test'")
        expected = {hooks.slice_of(task, json.loads(i)) for (i,) in test_inputs}
        assert set(candidate["slices"]["values"]) == {s if s is not None else "(none)" for s in expected}


def test_the_annotation_app_shows_the_tasks_input(run):
    task, folder, _, _ = run
    review = Review(str(folder / "flywheel.duckdb"), folder / "outbox", task)
    queue = review.queue(QueueFilter(status="all"))
    assert queue.height > 0
    row = _row(queue.row(0, named=True), task)
    assert row["summary"] == hooks.display_text(task, row["input"]) and row["summary"].strip()
    shown = str(trace_input(row["input"]))
    assert all(f"<dt>{key}</dt>" in shown for key in row["input"])
