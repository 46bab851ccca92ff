"""Evaluate group: the eval report, the judge through a served fake OpenAI API, and the blocking
promotion gate on prepared eval results (no training needed)."""

import json
import logging
from datetime import datetime, timedelta, timezone

import dagster as dg
import duckdb
import polars as pl
import pytest

from assets.evaluate import eval_report, promoted_model
from assets.label import trace_judgements
from pipeline.definitions import ASSET_MODULES
from pipeline.engine.core import store
from pipeline.engine.evaluate.scoring import score
from pipeline.engine.tasks import load_task
from pipeline.resources import EvalServing, FineTuning, FlywheelDuckDB, FlywheelPaths, JudgeResource, TaskResource
from pipeline.resources.incumbent import IncumbentResource
from tests.assets.tiny import tiny_resources
from tests.fakes import FakeOpenAI

TASK = load_task("nl2query")
KEY = "sk-flywheel-judge-SECRET-4242"
T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
GOOD = '{"calculations":[{"op":"COUNT"}],"time_range":7200}'


def judge_like_the_checks(request):
    """A deterministic judge: good when the output passes the task's assertions."""
    text = request["messages"][-1]["content"]
    input_json, output = text.removeprefix("Input:\n").split("\n\nOutput:\n", 1)
    ok = all(r.passed is not False for r in TASK.check(json.loads(input_json), output))
    return json.dumps({"critique": "passes" if ok else "fails an assertion", "outcome": "good" if ok else "bad"})


# --- the gate, on prepared results ----------------------------------------------------------------------

def prepare(folder, n=60, candidate_fails=20, candidate_good=GOOD, candidate_ms=5.0):
    """A test split of ``n`` examples and stored eval results: the promoted model passes all, the
    candidate fails ``candidate_fails`` (writing ``candidate_good`` elsewhere), the base fails all;
    each item took 5 ms, the candidate's ``candidate_ms``."""
    test = pl.DataFrame({"example_id": [f"trace:e{i:03d}" for i in range(n)], "source": "trace",
                         "group_id": [f"g{i}" for i in range(n)], "split": "test",
                         "input": [json.dumps({"question": f"count {i}", "columns": ["duration_ms"]}) for i in range(n)],
                         "output": GOOD, "created_at": T0})
    models = pl.DataFrame([
        {"model_id": "base-1", "backend": "local", "base_model": None, "status": "succeeded", "finished_at": T0},
        {"model_id": "ft-old", "backend": "local", "base_model": "base-1", "status": "succeeded",
         "finished_at": T0 + timedelta(days=1)},
        {"model_id": "ft-new", "backend": "local", "base_model": "base-1", "status": "succeeded",
         "finished_at": T0 + timedelta(days=2)},
    ]).with_columns(created_at=pl.lit(T0), artifact_path=pl.lit("/nonexistent"))
    with store.connect(str(folder / "flywheel.duckdb")) as conn:
        store.upsert(conn, "training_examples", test, ["example_id"])
        store.upsert(conn, "fine_tuned_models", models, ["model_id"])
        conn.execute("INSERT INTO model_promotions VALUES ('ft-old', NULL, 'test', ?)", [T0])
        stored = store.read(conn, "SELECT example_id, input::VARCHAR AS input, output FROM training_examples "
                                  "WHERE split = 'test' ORDER BY example_id")
        outputs = {"ft-old": [GOOD] * n, "ft-new": ["nope"] * candidate_fails + [candidate_good] * (n - candidate_fails),
                   "base-1": ["nope"] * n}
        for model_id, out in outputs.items():
            latency = candidate_ms if model_id == "ft-new" else 5.0
            store.upsert(conn, "eval_results", score(stored, out, TASK, model_id, latencies_ms=[latency] * n),
                         ["model_id"])


def run_gate(folder, judge=None, config=None, logs=None):
    """eval_report and promoted_model in one run; ``logs`` (a list) gets the run's log messages."""
    resources = {"duckdb": FlywheelDuckDB(database=str(folder / "flywheel.duckdb")), "task": TaskResource(),
                 "judge": judge or JudgeResource(), "paths": FlywheelPaths(data_dir=str(folder)),
                 "fine_tuning": FineTuning(), "eval_serving": EvalServing(), "incumbent": IncumbentResource()}
    with dg.instance_for_test() as instance:
        result = dg.materialize([eval_report, promoted_model], resources=resources, instance=instance,
                                raise_on_error=False,
                                run_config={"ops": {"eval_report": {"config": config or {}}}})
        if logs is not None:
            logs += [(entry.level, entry.user_message) for entry in instance.all_logs(result.run_id)]
        return result


def metadata(result, asset):
    return next(e for e in result.get_asset_materialization_events()
                if e.asset_key.to_user_string() == asset).event_specific_data.materialization.metadata


REASON = "Not promoted: the model in use stays, the cheapest candidate significantly better than its base"
LOST = ("fine-tuned: passes all assertions 33.3 pts below the promoted model (lower bound -43.3 < -2); exact match "
        "33.3 pts below the promoted model (lower bound -43.3 < -2)")


def test_gate_blocks_a_candidate_below_the_promoted_model_beyond_the_margin_and_says_by_how_much(tmp_path):
    prepare(tmp_path)
    logs = []
    result = run_gate(tmp_path, logs=logs)
    assert result.success  # a candidate not promoted is an expected outcome, not a failed run
    assert not any(event.is_failure for event in result.all_events)
    check = next(e for e in result.get_asset_check_evaluations() if e.check_name == "no_regression")
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.description == LOST
    assert check.metadata["decision"].value == REASON and check.metadata["blocking"].value == 1
    # constant settings are JSON, not numbers Dagster would plot
    assert check.metadata["thresholds"].value == {"alpha": 0.05, "min_regression": 0.0, "judge_gates": True,
                                                  "margin": 0.02}
    assert not any(isinstance(v, (dg.FloatMetadataValue, dg.IntMetadataValue)) for k, v in check.metadata.items()
                   if k != "blocking")
    report = metadata(result, "eval_report")
    assert report["decision"].value == REASON and report["winner"].value == "promoted"
    assert (report["verdict_vs_base"].value, report["verdict_vs_promoted"].value) == ("better", "worse")
    assert (report["base_passed_checks_pct"].value, report["candidate_passed_checks_pct"].value) == (0.0, 66.7)
    assert report["report"].value.splitlines()[2] == f"**{REASON}.**"
    assert "| fine-tuned | `ft-new` | 66.7% (54.1 to 77.3%) |" in report["candidates"].value
    promotion = metadata(result, "promoted_model")
    assert promotion["decision"].value == REASON and promotion["promoted_model"].value == "ft-old"
    assert promotion["promoted_now"].value is False
    # the decision in one sentence in the run log of both steps, as a warning; why the others lost beside it
    assert logs.count((logging.WARNING, f"Promotion gate: {REASON}")) == 1 and logs.count((logging.WARNING, REASON)) == 1
    assert (logging.INFO, f"Lost: {LOST}") in logs
    with duckdb.connect(str(tmp_path / "flywheel.duckdb"), read_only=True) as conn:
        verdicts = set(conn.execute("SELECT model_id, baseline_model_id, verdict FROM eval_reports").fetchall())
        promotions = conn.execute("SELECT model_id FROM model_promotions").fetchall()
    assert verdicts == {("ft-new", "ft-old", "worse"), ("ft-new", "base-1", "better"), ("ft-old", "base-1", "better")}
    assert promotions == [("ft-old",)]


def test_a_candidate_better_than_its_base_and_non_inferior_to_the_promoted_model_is_promoted_and_says_why(tmp_path):
    prepare(tmp_path, candidate_fails=0)
    logs = []
    result = run_gate(tmp_path, logs=logs)
    check = next(e for e in result.get_asset_check_evaluations())
    assert result.success and check.passed
    promotion = metadata(result, "promoted_model")
    assert promotion["promoted_model"].value == "ft-new" and promotion["promoted_now"].value is True
    reason = ("Promoted: fine-tuned is the cheapest candidate significantly better than its base on passes all "
              "assertions (+100.0 pts, p=1.7e-18) and exact match (+100.0 pts, p=1.7e-18) and non-inferior to the "
              "promoted model within 2 pts on every gated metric")
    assert promotion["decision"].value == reason and (logging.INFO, reason) in logs and check.description == reason
    assert metadata(result, "eval_report")["verdict_vs_promoted"].value == "no_significant_difference"


def test_the_margin_is_configurable(tmp_path):
    prepare(tmp_path, candidate_fails=3, candidate_ms=2.0)  # 5 points below the promoted model, and cheaper
    strict = run_gate(tmp_path)
    assert not next(e for e in strict.get_asset_check_evaluations()).passed
    lenient = run_gate(tmp_path, config={"margin": 0.2})
    check = next(e for e in lenient.get_asset_check_evaluations())
    assert check.passed and check.metadata["thresholds"].value["margin"] == 0.2
    assert check.description.endswith("non-inferior to the promoted model within 20 pts on every gated metric")


def test_report_with_the_judge_off_says_so_and_writes_html(tmp_path):
    prepare(tmp_path)
    result = run_gate(tmp_path)
    event = next(e for e in result.get_asset_materialization_events()).event_specific_data.materialization
    markdown = event.metadata["report"].value
    assert "The judge was off" in markdown and event.metadata["judge"].value == "off"
    for needle in ("| fine-tuned | `ft-new` |", "| promoted | `ft-old` |", "| base | `base-1` |",
                   "| fine-tuned | 66.7% (54.1 to 77.3%) |", "| promoted | 100.0% (94.0 to 100.0%) |",
                   "| base | 0.0% (0.0 to 6.0%) |", "5.0 ms", "95% CI (paired bootstrap)", "## Definitions"):
        assert needle in markdown, needle
    html_path = event.metadata["report_html"].value
    assert html_path.startswith(str(tmp_path / "reports")) and html_path.endswith(".html")
    document = open(html_path, encoding="utf-8").read()
    assert "data:image/png;base64," in document and "The judge was off" in document
    assert f"Promotion gate: {REASON}." in document and "<script" not in document


def test_an_unaligned_judge_is_reported_but_does_not_gate(tmp_path, monkeypatch):
    spaced = GOOD.replace(",", ", ")  # the same query spelled differently: passes, exact match
    prepare(tmp_path, n=30, candidate_fails=0, candidate_good=spaced)
    fake = FakeOpenAI(api_key=KEY)
    # a judge that calls the candidate's outputs bad: a big drop, but no labelled traces to trust it on
    fake.chat_responder = lambda request: json.dumps(
        {"critique": "meh", "outcome": "bad" if ", " in request["messages"][-1]["content"].split("Output:")[1] else "good"})
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with fake.serve() as url:
        result = run_gate(tmp_path, judge=JudgeResource(model="judge-test", base_url=url))
        # 3 models x 30 examples: each distinct (input, output) judged once; a re-run judges nothing
        assert len(fake.requests) == 90
        run_gate(tmp_path, judge=JudgeResource(model="judge-test", base_url=url))
        assert len(fake.requests) == 90
    check = next(e for e in result.get_asset_check_evaluations())
    assert check.passed and check.metadata["judge_gates"].value is False
    markdown = next(e for e in result.get_asset_materialization_events()).event_specific_data.materialization.metadata["report"].value
    assert "not aligned with people" in markdown and "do not gate promotion" in markdown
    assert "| judge pass (observed) | 30 | 100.0% (88.6 to 100.0%) | 0.0% (0.0 to 11.4%) | -100.0 pts |" in markdown


# --- the whole graph with a judge ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def judged_graph(tmp_path_factory, tiny_demo):
    folder = tmp_path_factory.mktemp("judged")
    fake = FakeOpenAI(api_key=KEY)
    fake.chat_responder = judge_like_the_checks
    assets = dg.load_assets_from_modules(ASSET_MODULES)
    checks = dg.load_asset_checks_from_modules(ASSET_MODULES)
    with pytest.MonkeyPatch.context() as patch, fake.serve() as url:
        patch.setenv("OPENAI_API_KEY", KEY)
        resources = {**tiny_resources(folder, tiny_demo),
                     "judge": JudgeResource(model="judge-test", base_url=url, max_traces_per_run=40,
                                            min_agreement=0.5)}
        runs = []
        # the whole graph, then only the judge and the report again
        for selection in ([*assets, *checks], [trace_judgements, eval_report]):
            with dg.instance_for_test() as instance:
                result = dg.materialize(selection, resources=resources, instance=instance)
                logs = "\n".join(str(entry.dagster_event or entry.user_message) for entry in instance.all_logs(result.run_id))
            runs.append((result, logs, len(fake.requests)))
    return folder, fake, runs


def test_judge_runs_on_labelled_traces_first_and_on_every_model_output(judged_graph):
    folder, fake, runs = judged_graph
    assert runs[0][0].success
    with duckdb.connect(str(folder / "flywheel.duckdb"), read_only=True) as conn:
        q = lambda sql: conn.execute(sql).fetchall()  # noqa: E731
        traces = q("SELECT trace_id FROM trace_judgements WHERE subject = 'trace'")
        assert len(traces) == 80  # two runs of 40
        labelled = {r[0] for r in q("""SELECT DISTINCT trace_id FROM annotations JOIN raw_traces USING (trace_id)
                                       WHERE output IS NOT NULL AND output <> ''""")}
        few_shot = 4
        assert sum(t in labelled for (t,) in traces) == min(80, len(labelled) - few_shot)
        distinct_outputs = q("""SELECT count(DISTINCT (e.output, r.output)) FROM eval_results r
                                JOIN training_examples e USING (example_id) WHERE e.split = 'test'""")[0][0]
        assert q("SELECT count(*) FROM trace_judgements WHERE subject = 'eval_output'")[0][0] <= distinct_outputs
        assert {r[0] for r in q("SELECT DISTINCT label_source FROM labelled_failures")} == {"assertion", "human", "judge"}
        metrics = json.loads(q("SELECT metrics FROM eval_reports")[0][0])
    assert metrics["judge"]["status"] == "on" and metrics["judge"]["alignment"]["n_labelled"] > 0
    assert metrics["candidate"]["judge"]["observed"] is not None
    assert "judge_pass" in metrics["comparison"]


def test_a_rerun_pays_the_judge_nothing(judged_graph):
    _, _, runs = judged_graph
    assert runs[1][0].success
    assert runs[1][2] == runs[0][2] + 40  # only the next 40 unjudged traces; no eval output judged twice


def test_the_key_never_reaches_tables_or_logs(judged_graph):
    folder, fake, runs = judged_graph
    with duckdb.connect(str(folder / "flywheel.duckdb"), read_only=True) as conn:
        for (table,) in conn.execute("SELECT table_name FROM information_schema.tables").fetchall():
            dump = json.dumps(conn.execute(f"SELECT * FROM {table}").fetchall(), default=str)
            assert KEY not in dump, table
    assert all(KEY not in logs for _, logs, _ in runs)
    assert all(KEY not in json.dumps(body) for body in fake.requests)
