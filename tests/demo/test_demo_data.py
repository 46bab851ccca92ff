"""The bundled demo data generator: gold correctness, determinism, failure-mode rates, files."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
import yaml

from pipeline.demo import assistant, production_logs
from pipeline.demo.annotations import LEAD
from pipeline.demo.columns import LONGEST, SHORTEST
from pipeline.demo.datasets import BASE_DATASETS, DATASETS, TEAM_DATASETS, get_dataset
from pipeline.demo.generate import DEFAULT_SEED, write_demo_data
from pipeline.demo.questions import sample_example, sample_query
from pipeline.demo.traces import PROVIDER_ERROR, generate_traces, parse_ts
from pipeline.engine.ingest.files import read_trace_files
from pipeline.engine.ingest.layouts import with_prompt_layouts
from pipeline.engine.label.agreement import (ADJUDICATION, SECOND_OPINION_SHARE, annotator_agreement, decided_labels,
                                             disagreements, needs_second_opinion)
from pipeline.engine.label.annotations import ANNOTATION_SCHEMA, annotation_id, read_annotation_files
from pipeline.engine.tasks import nl2query

REPO = Path(__file__).resolve().parents[2]
LOGS = ("traces/chat_logs.jsonl", "traces/langsmith_runs.jsonl")
FILES = (*LOGS, "prompt_layouts.yaml", "annotations.jsonl", "base_corpus.jsonl")
HUMAN_MODES = set(assistant.SEMANTIC_MODES)


def _failed(task_input, output) -> list[str]:
    return [r.check_name for r in nl2query.check(task_input, output) if r.passed is False]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    write_demo_data(out, DEFAULT_SEED)
    return out


@pytest.fixture(scope="module")
def generated():
    return generate_traces(DEFAULT_SEED)


@pytest.fixture(scope="module")
def traces(generated) -> list[dict]:
    """The good traces in the project's format, as the generator made them."""
    return [t.record for t in generated]


@pytest.fixture(scope="module")
def ingested(demo_dir):
    """The demo's log files read by ingestion, with the layouts of the prompts that wrote them."""
    task = with_prompt_layouts(nl2query.TASK, [demo_dir / "prompt_layouts.yaml"])
    return read_trace_files([demo_dir / name for name in LOGS], task, "demo")


def test_datasets_have_distinct_vocabularies_and_kinds():
    assert len(DATASETS) == 8 and len(BASE_DATASETS) == 5 and len(TEAM_DATASETS) == 3
    assert set(BASE_DATASETS) | set(TEAM_DATASETS) == {d.name for d in DATASETS}
    for d in DATASETS:
        assert 10 <= len(d.columns) <= 18 and len(set(d.column_names)) == len(d.columns)
        assert {c.kind for c in d.columns} >= {"numeric", "string", "bool"}
        others = {c for o in DATASETS if o is not d for c in o.column_names}
        assert len(set(d.column_names) - others) >= 5, d.name


def test_gold_always_passes_checks_and_literals_appear_in_question():
    rng = random.Random(123)
    for _ in range(3000):
        dataset = rng.choice(DATASETS)
        task_input, output = sample_example(dataset, rng)
        assert _failed(task_input, output) == []
        assert nl2query.normalise(output) == output
        query = json.loads(output)
        question = task_input["question"]
        assert 2 <= len(question.split()) <= 45, question
        for f in query.get("filters", []):
            values = f.get("value") if isinstance(f.get("value"), list) else [f.get("value")]
            for v in values:
                if v is not None and not isinstance(v, bool):
                    assert str(v) in question, (v, question)
        if "limit" in query:
            assert str(query["limit"]) in question, question


def test_a_few_gold_queries_use_absolute_windows_and_granularity():
    rng = random.Random(11)
    shapes = Counter()
    n = 3000
    for _ in range(n):
        gold, question = sample_query(rng.choice(DATASETS), rng)
        if "end_time" in gold:
            shapes["time_range+end_time" if "time_range" in gold else "start_time+end_time"] += 1
            assert "UTC" in question, question
        if "start_time" in gold:
            assert "time_range" not in gold and gold["start_time"] < gold["end_time"]
        if "granularity" in gold:
            shapes["granularity"] += 1
            assert any(w in question for w in ("buckets", "granularity", "resolution")), question
    for shape in ("time_range+end_time", "start_time+end_time", "granularity"):
        assert 0.002 <= shapes[shape] / n <= 0.08, (shape, shapes)


def test_some_correct_counts_leave_out_their_calculations(traces):
    implied = [t for t in traces if t["error"] is None and (q := nl2query.parse(t["output"])) is not None
               and "calculations" not in q]
    assert 0.005 <= len(implied) / len(traces) <= 0.1
    passing = [t for t in implied if not _failed(t["input"], t["output"])]
    assert len(passing) >= len(implied) / 2
    for t in passing:
        assert json.loads(nl2query.normalise(t["output"]))["calculations"] == [{"op": "COUNT"}]


def test_injected_modes_fail_exactly_their_assertion():
    rng = random.Random(5)
    modes = [assistant.CORRECT, assistant.FENCED, *assistant.mode_rates(True)]
    produced = Counter()
    for i in range(3000):
        dataset = rng.choice(DATASETS)
        gold, _ = sample_query(dataset, rng)
        mode = modes[i % len(modes)]
        if not assistant.applicable(mode, gold):
            continue
        try:
            output = assistant.respond(gold, dataset, mode, rng)
        except ValueError:
            continue
        produced[mode] += 1
        failed = _failed({"columns": dataset.column_names}, output)
        assert failed == ([mode] if mode in nl2query.CHECK_NAMES else []), (mode, output)
        if mode in assistant.SEMANTIC_MODES:
            assert nl2query.normalise(output) != nl2query.dump(gold)
        if mode == assistant.FENCED:
            assert output.startswith("```json")
    assert set(produced) == set(modes)


def test_same_seed_same_bytes_different_seed_different(demo_dir, tmp_path):
    write_demo_data(tmp_path / "again", DEFAULT_SEED)
    for name in FILES:
        assert (tmp_path / "again" / name).read_bytes() == (demo_dir / name).read_bytes(), name
    other = generate_traces(DEFAULT_SEED + 1, n=200)
    assert [t.record for t in other] != [t.record for t in generate_traces(DEFAULT_SEED, n=200)]


def test_committed_files_are_what_the_script_writes(demo_dir):
    for name in FILES:
        committed = REPO / "data" / "demo" / name
        assert committed.exists(), f"{committed} missing: run scripts/make_demo_data.py"
        assert committed.read_bytes() == (demo_dir / name).read_bytes(), (
            f"{committed} is stale: run python scripts/make_demo_data.py")
    # each LangSmith run carries the whole second prompt (its query spec and examples)
    assert sum((REPO / "data" / "demo" / n).stat().st_size for n in FILES) < 16e6


def test_every_logged_trace_is_ingested_with_the_input_it_was_asked_with(ingested, traces):
    rows = {r["trace_id"]: r for r in ingested.traces.iter_rows(named=True)}
    assert set(rows) == {t["trace_id"] for t in traces}
    for t in traces:
        row = rows[t["trace_id"]]
        assert json.loads(row["input"]) == t["input"], t["trace_id"]
        assert (row["output"], row["error"], row["model"]) == (t["output"], t["error"], t["model"])
        assert json.loads(row["metadata"])["app_version"] == t["metadata"]["app_version"]
        assert row["latency_ms"] == pytest.approx(t["latency_ms"])
        assert row["ts"].replace(microsecond=0) == parse_ts(t["ts"]).replace(microsecond=0)
    formats = Counter(json.loads(r["metadata"])["format"] for r in rows.values())
    assert formats["openai_chat"] > 500 and formats["langsmith_run"] > 500


def test_the_two_production_prompts_differ_from_the_training_prompt_and_overlap_in_time(generated, demo_dir):
    assert nl2query.input_from_messages(production_logs.messages(
        production_logs.V1, "checkout-api", "p95 latency", ["duration_ms"])) is None
    by_version = {v: [t for t in generated if t.version == v] for v in (production_logs.V1, production_logs.V2)}
    assert all(len(ts) > 600 for ts in by_version.values())
    first_v2 = min(t.ts for t in by_version[production_logs.V2])
    assert sum(t.ts > first_v2 for t in by_version[production_logs.V1]) > 50, "both prompts live at once"
    assert all(t.record["trace_id"].startswith("ls_") for t in by_version[production_logs.V2])
    layouts = yaml.safe_load((demo_dir / "prompt_layouts.yaml").read_text(encoding="utf-8"))
    assert [layout["name"] for layout in layouts] == [production_logs.V1, production_logs.V2]


def test_column_lists_are_as_long_and_odd_as_real_ones(generated):
    lengths = sorted(len(t.listed) for t in generated)
    assert SHORTEST <= lengths[0] and lengths[-1] <= LONGEST + 1
    assert 48 <= lengths[len(lengths) // 2] <= 60
    names = {c for t in generated for c in t.listed}
    assert any(" " in c for c in names) and any("\t" in c for c in names) and any(len(c) > 100 for c in names)
    assert any(ord(ch) > 0x1F000 for c in names for ch in c)
    with_empty = [t for t in generated if "" in t.listed]
    assert 0.01 <= len(with_empty) / len(generated) <= 0.06
    for t in generated:
        assert "" not in t.record["input"]["columns"]
        assert t.record["input"]["columns"] == [c for c in t.listed if c]
        assert set(nl2query.columns_used(t.gold)) <= set(t.listed), "the answer's columns are always listed"


def test_traces_are_well_formed(traces):
    assert 2300 <= len(traces) <= 2500
    end = parse_ts("2026-11-15T00:00:00.000Z")
    times = [parse_ts(t["ts"]) for t in traces]
    assert times == sorted(times)
    assert max(times) <= end and (end - min(times)).days >= 28 and (end - min(times)).days <= 30
    for t in traces:
        assert set(t) == {"trace_id", "ts", "input", "output", "model", "latency_ms",
                          "prompt_tokens", "completion_tokens", "error", "metadata"}
        assert t["model"] in ("prod-assistant-v3", "prod-assistant-v2")
        assert t["latency_ms"] > 0 and t["prompt_tokens"] > 0
        assert set(t["metadata"]) == {"session_id", "user_feedback", "app_version"}
        assert t["metadata"]["user_feedback"] in ("thumbs_up", "thumbs_down", None)
        assert (t["error"] is None) == (t["output"] != "")
    errors = [t for t in traces if t["error"]]
    assert 2 <= len(errors) <= 20
    team = sum(t["input"]["dataset"] in TEAM_DATASETS for t in traces) / len(traces)
    assert 0.35 <= team <= 0.45
    assert 0.03 <= Counter(t["model"] for t in traces)["prod-assistant-v2"] / len(traces) <= 0.25


def test_every_failure_mode_occurs_at_a_plausible_rate(traces):
    ok = [t for t in traces if t["error"] is None]
    counts = Counter()
    failing_feedback = Counter()
    for t in ok:
        failed = _failed(t["input"], t["output"])
        counts.update(failed)
        counts["(pass)"] += not failed
        failing_feedback[(bool(failed), t["metadata"]["user_feedback"])] += 1
    rate = {k: v / len(ok) for k, v in counts.items()}
    assert set(nl2query.CHECK_NAMES) <= set(counts), counts
    assert 0.75 <= rate["(pass)"] <= 0.90
    assert 0.03 <= rate["unknown_column"] <= 0.08
    assert 0.015 <= rate["invalid_json"] <= 0.05
    for name in nl2query.CHECK_NAMES:
        assert rate[name] <= 0.08, name
    for name in ("having_not_in_calculations", "invalid_shape"):
        assert rate[name] < 0.015
    fenced = sum(t["output"].startswith("```") and not _failed(t["input"], t["output"]) for t in ok)
    assert 0.015 <= fenced / len(ok) <= 0.05
    # hallucinated columns are much more common on datasets the base model never saw
    by_group = Counter()
    sizes = Counter()
    for t in ok:
        group = "team" if t["input"]["dataset"] in TEAM_DATASETS else "base"
        sizes[group] += 1
        by_group[group] += "unknown_column" in _failed(t["input"], t["output"])
    assert by_group["team"] / sizes["team"] > 2.5 * by_group["base"] / sizes["base"]
    # people thumb down failing outputs far more often than passing ones
    down = lambda f: failing_feedback[(f, "thumbs_down")] / sum(v for (g, _), v in failing_feedback.items() if g == f)
    assert down(True) > 5 * down(False)


def test_semantic_errors_pass_assertions_at_about_seven_percent():
    traces = generate_traces(DEFAULT_SEED)
    semantic = [t for t in traces if t.mode in assistant.SEMANTIC_MODES]
    assert 0.04 <= len(semantic) / len(traces) <= 0.10
    assert {t.mode for t in semantic} == set(assistant.SEMANTIC_MODES)
    for t in semantic:
        assert _failed(t.record["input"], t.record["output"]) == []
        assert nl2query.normalise(t.record["output"]) != nl2query.dump(t.gold)
    assert sum(t.mode == PROVIDER_ERROR for t in traces) >= 2


def test_bad_lines_are_rejected_with_precise_reasons_and_duplicates_dropped(ingested, demo_dir):
    reasons = ingested.rejected["reason"].to_list()
    assert len(reasons) == 8, reasons
    expected = ("Unterminated string", "latency_ms must be a number", "messages must be a list",
                "record must be a JSON object, got list", "LangSmith run has no id",
                "input.columns must be a list of column names",
                "matches none of the 5 production prompt layouts (observa_v1, observa_v2, nlq_columns_pylist, "
                "honeycomb_query_assistant, nl2query) nor the task's own prompt; first lines: 'Question: ",
                "matches the production prompt layout 'observa_v1', but the input it gives is invalid: "
                "input.columns must name at least one column")
    for part in expected:
        assert sum(part in r for r in reasons) == 1, (part, reasons)
    assert ingested.duplicates_in_batch == 30
    for name in LOGS:
        locations = [loc for loc in ingested.rejected["location"] if loc.startswith(str(demo_dir / name))]
        lines = [int(loc.rsplit(":", 1)[1]) for loc in locations]
        assert lines and min(lines) < 1000, (name, locations)  # scattered, not all at the end


def test_base_corpus_covers_only_base_datasets_and_is_correct(demo_dir):
    rows = [json.loads(line) for line in (demo_dir / "base_corpus.jsonl").read_text().splitlines()]
    assert 4500 <= len(rows) <= 5500
    assert {r["input"]["dataset"] for r in rows} == set(BASE_DATASETS)
    assert 40 <= sorted(len(r["input"]["columns"]) for r in rows)[len(rows) // 2] <= 65
    for r in rows:
        assert set(get_dataset(r["input"]["dataset"]).column_names) & set(r["input"]["columns"])
        assert "" not in r["input"]["columns"]
        assert _failed(r["input"], r["output"]) == []
        assert nl2query.normalise(r["output"]) == r["output"]


def _decisions(demo_dir) -> list[dict]:
    return [json.loads(line) for line in (demo_dir / "annotations.jsonl").read_text().splitlines()]


def _by_trace(rows: list[dict]) -> dict[str, list[dict]]:
    """Each trace's annotators' decisions (adjudications left out), in file order (by time)."""
    out: dict[str, list[dict]] = {}
    for r in rows:
        if r.get("role") != ADJUDICATION:
            out.setdefault(r["trace_id"], []).append(r)
    return out


def _assert_right(r: dict, trace: dict) -> None:
    """``r`` is the right decision on ``trace``: good on an output that passes, else the gold."""
    failed = _failed(trace["input"], trace["output"])
    if r["label"] == "good":
        assert r["failure_mode"] is None and r["correction"] is None and not failed
    else:
        assert r["failure_mode"] in set(nl2query.CHECK_NAMES) | HUMAN_MODES
        assert _failed(trace["input"], r["correction"]) == []
        assert nl2query.normalise(r["correction"]) == r["correction"]
        if r["failure_mode"] in nl2query.CHECK_NAMES:
            assert r["failure_mode"] in failed
        else:
            assert not failed and nl2query.normalise(trace["output"]) != r["correction"]


def test_annotations_reference_traces_and_corrections_pass(demo_dir, traces):
    by_id = {t["trace_id"]: t for t in traces}
    rows = _decisions(demo_dir)
    assert [r["annotated_at"] for r in rows] == sorted(r["annotated_at"] for r in rows)
    firsts = [decided[0] for decided in _by_trace(rows).values()]  # the reviewer who went looking: right
    assert 350 <= len(firsts) <= 450
    labels = Counter(r["label"] for r in firsts)
    assert 0.5 <= labels["bad"] / len(firsts) <= 0.8 and labels["good"] >= 80
    assert len({r["annotator"] for r in rows}) >= 3
    assert len({r["critique"] for r in rows}) >= 30
    keys = {"trace_id", "label", "failure_mode", "correction", "critique", "annotator", "annotated_at"}
    for r in rows:
        assert set(r) == (keys | {"role"} if r.get("role") == ADJUDICATION else keys)
        assert parse_ts(r["annotated_at"]) > parse_ts(by_id[r["trace_id"]]["ts"])
    for r in firsts:
        _assert_right(r, by_id[r["trace_id"]])
    assert {r["failure_mode"] for r in firsts} >= set(nl2query.CHECK_NAMES[:5]) | HUMAN_MODES


def test_routed_traces_have_a_second_annotator_and_some_disagreements_are_adjudicated(demo_dir, traces):
    by_id = {t["trace_id"]: t for t in traces}
    rows = _decisions(demo_dir)
    decided = _by_trace(rows)
    doubly = {t: d for t, d in decided.items() if len(d) > 1}
    assert set(doubly) == {t for t in decided if needs_second_opinion(t, SECOND_OPINION_SHARE)}
    assert 0.05 <= len(doubly) / len(decided) <= 0.15
    for first, second in doubly.values():
        assert first["annotator"] != second["annotator"]
        if second["correction"] is not None:  # when both call it bad, the same fix
            assert second["correction"] == first["correction"]
    same_label = sum(a["label"] == b["label"] for a, b in doubly.values()) / len(doubly)
    both_bad = [(a, b) for a, b in doubly.values() if a["label"] == b["label"] == "bad"]
    same_mode = sum(a["failure_mode"] == b["failure_mode"] for a, b in both_bad) / len(both_bad)
    assert 0.75 <= same_label <= 0.95 and same_mode < same_label
    disagreeing = {t for t, (a, b) in doubly.items() if (a["label"], a["failure_mode"]) != (b["label"], b["failure_mode"])}
    adjudications = [r for r in rows if r.get("role") == ADJUDICATION]
    assert 1 <= len(adjudications) < len(disagreeing)  # a few settled, the rest wait in the queue
    for r in adjudications:
        first, second = doubly[r["trace_id"]]
        assert r["annotator"] == LEAD not in (first["annotator"], second["annotator"])
        assert r["annotated_at"] > second["annotated_at"]
        assert (r["label"], r["failure_mode"], r["correction"]) == (first["label"], first["failure_mode"],
                                                                   first["correction"])
        _assert_right(r, by_id[r["trace_id"]])


def test_demo_decisions_are_imported_and_give_an_agreement_figure_and_a_queue(demo_dir, traces):
    rows = _decisions(demo_dir)
    batch = read_annotation_files([demo_dir / "annotations.jsonl"], nl2query.TASK,
                                  {t["trace_id"]: t["input"] for t in traces})
    assert batch.rejected.is_empty() and batch.annotations.height == len(rows)
    people = pl.DataFrame([{**r, "annotated_at": parse_ts(r["annotated_at"]), "role": r.get("role"),
                            "annotation_id": annotation_id(r["trace_id"], r["annotator"], parse_ts(r["annotated_at"]))}
                           for r in rows], schema={**ANNOTATION_SCHEMA, "role": pl.String})
    figure = annotator_agreement(people)
    with pl.Config(tbl_rows=-1, tbl_width_chars=120):
        print(figure)
    label = figure.row(0, named=True)
    doubly = sum(len(d) > 1 for d in _by_trace(rows).values())
    assert (label["aspect"], label["pairs"], label["traces"]) == ("label", doubly, doubly)
    assert 0.75 <= label["agreement"] <= 0.95 and 0.4 <= label["kappa"] < label["agreement"]
    assert figure.filter(pl.col("aspect") == "failure_mode").height >= 5
    queue = disagreements(people)
    adjudicated = {r["trace_id"] for r in rows if r.get("role") == ADJUDICATION}
    assert not queue.is_empty() and adjudicated.isdisjoint(queue["trace_id"].to_list())
    settled = decided_labels(people)
    assert set(settled.filter(pl.col("decided_by") == "adjudication")["trace_id"]) == adjudicated
    assert settled.height == len(_by_trace(rows)) - queue.height
