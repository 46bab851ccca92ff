"""A model trained less than planned is recorded so: the completeness rule and its sentence, the
registry columns (migration 7), interrupted runs reconciled, and the report and summary lines."""

import json
import socket
import subprocess
import sys
from contextlib import closing

import pytest
from openai.types.fine_tuning import FineTuningJob

from pipeline.engine.core import store
from pipeline.engine.evaluate import report, report_html
from pipeline.engine.train import registry
from pipeline.engine.train.hosted.jobs import JobSpec
from pipeline.engine.train.registry import INTERRUPTED, Training
from pipeline.summary import summary

PLAN = {"planned_steps": 40, "planned_epochs": 2.0, "tokens": 5120, "processes": 1, "seconds": 3.0, "train_loss": 0.5,
        "validation_loss": None, "tokens_per_second": 1706.7, "loss_history": [[10, 0.9]]}
COMPLETE = {**PLAN, "steps": 40, "epochs": 2.0, "stopped_early": False}
STOPPED = {**PLAN, "steps": 12, "epochs": 0.6, "stopped_early": True}
SHORT = {**PLAN, "steps": 30, "epochs": 1.5, "stopped_early": False}
UNDER_ONE_EPOCH = {**PLAN, "planned_steps": 8, "steps": 8, "epochs": 0.42, "planned_epochs": 11.0,
                   "stopped_early": False}
COLUMNS = ("planned_steps", "trained_steps", "planned_epochs", "trained_epochs", "trained_tokens", "stopped_early",
           "complete", "incomplete_reason", "run_owner")


# --- the rule and its sentence ---------------------------------------------------------------------------

@pytest.mark.parametrize("result, reason", [
    (COMPLETE, None),
    (STOPPED, "stopped early by max_seconds at step 12 of 40 (0.6 of 2 epochs)"),
    (SHORT, "stopped before the planned steps, at step 30 of 40 (1.5 of 2 epochs)"),
    (UNDER_ONE_EPOCH, "under one epoch of the data: max_steps ends it at step 8 of 8 (0.42 of 11 epochs)"),
    ({**UNDER_ONE_EPOCH, "planned_epochs": 0.25, "epochs": 0.25}, None),  # a fraction of an epoch was the plan
])
def test_a_run_is_complete_when_it_trained_all_it_planned_and_says_why_not(result, reason):
    training = Training.of_result(result)
    assert training.reason == reason and training.complete is (reason is None)
    assert training.state == ("complete" if reason is None else f"under-trained: {reason}")


def test_a_result_without_a_plan_has_nothing_to_check():
    training = Training.of_result({"steps": 0, "parameters": 1000, "source": "tiny"})  # a registered pretrained model
    assert (training.complete, training.reason, training.stopped_early, training.steps) == (None, None, None, 0)
    assert Training.of_result({"steps": 0, "epochs": 0.0, "seconds": 0.0, "train_loss": 0.0, "validation_loss": None,
                               "tokens_per_second": 0.0, "planned_steps": 0, "planned_epochs": 0.0}).complete is True
    assert training.state == "n/a" and training.steps_text == "0" and training.epochs_text == "n/a"


def test_planned_vs_actual_as_people_read_it():
    training = Training.of_result({**STOPPED, "tokens": 1234567})
    assert (training.steps_text, training.epochs_text, training.tokens_text) == ("12 of 40", "0.6 of 2", "1,234,567")
    assert training.figures == "12 of 40 steps, 0.6 of 2 epochs, 1,234,567 tokens"
    assert Training(steps=6).figures == "6 steps" and Training().figures == "nothing recorded"


# --- the registry ---------------------------------------------------------------------------------------

@pytest.fixture
def connect(tmp_path):
    path = str(tmp_path / "flywheel.duckdb")
    return lambda: closing(store.connect(path))


def stored(connect, model_id):
    with connect() as conn:
        return dict(zip(("status", "error", *COLUMNS), conn.execute(
            f"SELECT status, error, {', '.join(COLUMNS)} FROM fine_tuned_models WHERE model_id = ?",
            [model_id]).fetchone()))


def test_migration_7_adds_the_training_columns(connect):
    with connect() as conn:
        types = dict(conn.execute("SELECT column_name, data_type FROM information_schema.columns "
                                  "WHERE table_name = 'fine_tuned_models'").fetchall())
        applied = [r[0] for r in conn.execute("SELECT name FROM schema_migrations WHERE version = 7").fetchall()]
    assert applied == ["training planned vs actual, run owner"]
    assert {c: types[c] for c in COLUMNS} == {
        "planned_steps": "BIGINT", "trained_steps": "BIGINT", "planned_epochs": "DOUBLE", "trained_epochs": "DOUBLE",
        "trained_tokens": "BIGINT", "stopped_early": "BOOLEAN", "complete": "BOOLEAN", "incomplete_reason": "VARCHAR",
        "run_owner": "VARCHAR"}


def test_an_under_trained_run_succeeds_with_complete_false_and_the_reason(connect, tmp_path):
    logged = []
    registry.run_training(connect, "ft-1", tmp_path / "m", "base-1", "v1", {}, lambda log: STOPPED, logged.append)
    row = stored(connect, "ft-1")
    reason = "stopped early by max_seconds at step 12 of 40 (0.6 of 2 epochs)"
    assert row == {"status": "succeeded", "error": None, "planned_steps": 40, "trained_steps": 12,
                   "planned_epochs": 2.0, "trained_epochs": 0.6, "trained_tokens": 5120, "stopped_early": True,
                   "complete": False, "incomplete_reason": reason, "run_owner": registry.run_owner()}
    assert logged == [f"ft-1 is under-trained: {reason}"]
    registry.run_training(connect, "ft-2", tmp_path / "m2", "base-1", "v1", {}, lambda log: COMPLETE, print)
    assert stored(connect, "ft-2")["complete"] is True and stored(connect, "ft-2")["incomplete_reason"] is None
    with connect() as conn:
        assert conn.execute("SELECT model_id FROM fine_tuned_models WHERE NOT complete").fetchall() == [("ft-1",)]
        assert registry.trainings(conn, ["ft-1", "ft-2", "unknown"]) == {
            "ft-1": Training(40, 12, 2.0, 0.6, 5120, True, False, reason, "v1"),
            "ft-2": Training(40, 40, 2.0, 2.0, 5120, False, True, None, "v1")}


def test_a_succeeded_hosted_job_is_complete_with_its_tokens_steps_and_epochs():
    spec = JobSpec(backend="openai", base_model="gpt-base", data_version="v1")
    job = FineTuningJob.model_validate({
        "id": "ftjob-1", "object": "fine_tuning.job", "created_at": 1, "finished_at": 2, "error": None,
        "fine_tuned_model": "ft:gpt-base:x", "hyperparameters": {"n_epochs": 3}, "model": "gpt-base",
        "organization_id": "org", "result_files": [], "seed": 1, "status": "succeeded", "trained_tokens": 900,
        "training_file": "file-1", "validation_file": None})
    row = registry.hosted_row(job, spec, 0.1, {"steps": 6})
    assert {c: row[c] for c in COLUMNS} == {
        "planned_steps": None, "trained_steps": 6, "planned_epochs": 3, "trained_epochs": 3, "trained_tokens": 900,
        "stopped_early": False, "complete": True, "incomplete_reason": None, "run_owner": None}
    running = registry.hosted_row(job.model_copy(update={"status": "running", "trained_tokens": None}), spec, 0.1, {})
    assert (running["complete"], running["trained_epochs"], running["planned_epochs"]) == (None, None, 3)


# --- interrupted runs -----------------------------------------------------------------------------------

def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_runs_whose_process_is_gone_are_marked_failed_by_the_next_run(connect, tmp_path):
    host = socket.gethostname()
    owners = {"killed": f"{host}:{dead_pid()}", "alive": registry.run_owner(), "elsewhere": "other-host:1",
              "unknown": None}
    with connect() as conn:
        for model_id, owner in owners.items():
            registry.write_run(conn, {**registry.local_row(model_id, tmp_path / model_id, None, "v1", {}),
                                      "run_owner": owner})
    logged = []
    registry.run_training(connect, "next", tmp_path / "next", None, "v1", {}, lambda log: COMPLETE, logged.append)
    killed = stored(connect, "killed")
    assert (killed["status"], killed["error"]) == ("failed", INTERRUPTED)
    assert [stored(connect, m)["status"] for m in ("alive", "elsewhere", "unknown", "next")] == [
        "running", "running", "running", "succeeded"]
    assert logged == [f"killed was marked failed: {INTERRUPTED}"]
    with connect() as conn:
        assert registry.reconcile_interrupted(conn) == []  # once


def test_an_interrupt_while_training_is_recorded_as_failed(connect, tmp_path):
    def train(log):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        registry.run_training(connect, "ft-1", tmp_path / "m", None, "v1", {}, train, print)
    assert stored(connect, "ft-1")["status"] == "failed" and stored(connect, "ft-1")["error"] == "KeyboardInterrupt: "


# --- the report and the summary -------------------------------------------------------------------------

TRAINING = {"ft-1": Training(40, 12, 2.0, 0.6, 5120, True, False,
                             "stopped early by max_seconds at step 12 of 40 (0.6 of 2 epochs)", "v1"),
            "base-1": Training(8, 8, 11.0, 11.0, 90000, False, True, None, "corpus-9")}
SUMMARY = {"n_examples": 2, "passed_checks": 0.5, "exact_match": 0.5, "failure_rates": {}}


def test_the_markdown_report_flags_the_under_trained_model_first_and_shows_planned_vs_actual():
    labels = {"ft-1": "fine-tuned", "base-1": "base"}
    text = report.render_models({"ft-1": SUMMARY, "base-1": SUMMARY}, labels, {"status": "off"}, "t1", TRAINING)
    lines = text.splitlines()
    assert lines[2] == ("**Under-trained: fine-tuned (`ft-1`): stopped early by max\\_seconds at step 12 of 40 "
                        "\\(0.6 of 2 epochs\\).**")
    assert lines[4:6] == ["## Models", ""] and lines[6].startswith("| model | model id | data version | steps")
    assert "| fine-tuned | `ft-1` | `v1` | 12 of 40 | 0.6 of 2 | 5,120 | under\\-trained: stopped early by max\\_seconds" in text
    assert "| base | `base-1` | `corpus-9` | 8 of 8 | 11 of 11 | 90,000 | complete |" in text
    complete = report.render_models({"base-1": SUMMARY}, labels, {"status": "off"}, "t1", TRAINING)
    assert "Under-trained" not in complete and complete.splitlines()[2] == "## Models"


def test_the_html_report_flags_the_under_trained_model_and_shows_planned_vs_actual():
    document = report_html.render_html("ft-1", {"ft-1": SUMMARY, "base-1": SUMMARY}, {"base-1": "base"},
                                       {"status": "off"}, {}, [], "t1", TRAINING)
    flag = ("<p class='bad'>Under-trained: <code>ft-1</code>: stopped early by max_seconds at step 12 of 40 "
            "(0.6 of 2 epochs).</p>")
    assert flag in document and document.index(flag) < document.index("<h2>Models</h2>")
    assert ("<tr><td>base</td><td><code>base-1</code></td><td><code>corpus-9</code></td><td>8 of 8</td>"
            "<td>11 of 11</td><td>90,000</td><td>complete</td></tr>") in document
    assert "<td>12 of 40</td><td>0.6 of 2</td><td>5,120</td><td class=bad>under-trained: stopped early" in document


def test_the_summary_flags_the_under_trained_model_and_lists_both_trainings(connect, tmp_path):
    registry.run_training(connect, "base-1", tmp_path / "b", None, "corpus-9", {}, lambda log: COMPLETE, print)
    registry.run_training(connect, "ft-1", tmp_path / "f", "base-1", "v1", {}, lambda log: STOPPED, print)
    comparison = {m: {"baseline": 0.5, "candidate": 0.5, "p_value": 1.0} for m in ("passed_checks", "exact_match")}
    with connect() as conn:
        conn.execute("INSERT INTO eval_reports VALUES ('ft-1', 'base-1', 't1', 2, ?, 'worse', '', now())",
                     [json.dumps({"comparison": comparison})])
    database = str(tmp_path / "flywheel.duckdb")
    lines = summary(database).splitlines()
    reason = "stopped early by max_seconds at step 12 of 40 (0.6 of 2 epochs)"
    assert lines[:2] == [f"Flywheel database: {database}", f"Under-trained: ft-1: {reason}"]
    assert "    base: 40 of 40 steps, 2 of 2 epochs, 5,120 tokens, data corpus-9; complete" in lines
    assert f"    fine-tuned: 12 of 40 steps, 0.6 of 2 epochs, 5,120 tokens, data v1; under-trained: {reason}" in lines
