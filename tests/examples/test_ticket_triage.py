"""The ticket_triage example: its checks, its generator, its data files and its definitions module."""

from __future__ import annotations

import importlib.util
import json
import random
from collections import Counter
from pathlib import Path

import pytest
import yaml

from examples.ticket_triage import make_data
from examples.ticket_triage.task import CHECK_NAMES, MAX_SUMMARY, PRODUCTS, ROUTING, TASK, swap_product
from pipeline.engine.curate.dedup import NearDuplicateIndex
from pipeline.engine.ingest.records import normalise_record
from pipeline.engine.label.annotations import validate_annotation
from pipeline.engine.tasks import Example, Task, hooks, load_task, task_file

DATA = Path(make_data.__file__).parent / "data"
FILES = ("traces.jsonl", "annotations.jsonl", "base_corpus.jsonl")
TICKET = {"subject": "Charged twice for October", "product": "Atlas CRM",
          "body": "I was charged twice for my Atlas CRM subscription in October (invoice INV-20419)."}
GOOD = {"category": "billing", "priority": "P2", "team": "billing-ops",
        "summary": "Duplicate October charge on Atlas CRM invoice INV-20419; refund requested"}


def results(output) -> dict[str, tuple[bool | None, str]]:
    text = output if isinstance(output, str) else json.dumps(output)
    return {r.check_name: (r.passed, r.detail) for r in TASK.check(TICKET, text)}


def failed(output) -> set[str]:
    return {name for name, (passed, _) in results(output).items() if passed is False}


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_the_module_path_loads_a_task_with_its_prompt_files():
    task = load_task("examples.ticket_triage.task")
    assert isinstance(task, Task) and task.name == "ticket_triage"
    for name in ("judge.v1.md", "synth/rewrite.v1.md", "synth/dimensions_spec.v1.md",
                 "synth/dimensions_question.v1.md", "synth/dimensions.v1.json"):
        assert task_file("examples.ticket_triage.task", name).read_text(encoding="utf-8").strip()


def test_a_good_triage_passes_every_check():
    assert [r.check_name for r in TASK.check(TICKET, json.dumps(GOOD))] == list(CHECK_NAMES)
    assert failed(GOOD) == set()
    assert failed("```json\n" + json.dumps(GOOD, indent=2) + "\n```") == set()


@pytest.mark.parametrize("output", ["Route this to billing-ops as P2.", json.dumps(GOOD)[:40], "[1, 2]", ""])
def test_not_json_fails_and_skips_the_rest(output):
    checked = results(output)
    assert checked["not_json"][0] is False
    assert all(passed is None for name, (passed, _) in checked.items() if name != "not_json")


@pytest.mark.parametrize("field", ["category", "priority", "team", "summary"])
def test_missing_field_is_reported_once(field):
    for broken in ({k: v for k, v in GOOD.items() if k != field}, {**GOOD, field: " "}, {**GOOD, field: 3}):
        checked = results(broken)
        assert failed(broken) == {"missing_field"} and field in checked["missing_field"][1]


@pytest.mark.parametrize("category", ["payments", "Billing", "BILLING"])
def test_unknown_category_fails_and_leaves_the_team_unchecked(category):
    checked = results({**GOOD, "category": category})
    assert checked["unknown_category"][0] is False and category in checked["unknown_category"][1]
    assert checked["wrong_team_for_category"][0] is None
    assert results(GOOD)["unknown_category"] == (True, "")


@pytest.mark.parametrize("priority", ["high", "P0", "p2", "P5"])
def test_invalid_priority(priority):
    assert failed({**GOOD, "priority": priority}) == {"invalid_priority"}
    assert all(results({**GOOD, "priority": p})["invalid_priority"][0] for p in ("P1", "P2", "P3", "P4"))


def test_wrong_team_for_category_follows_the_routing_table():
    for category, team in ROUTING.items():
        assert failed({**GOOD, "category": category, "team": team}) == set()
    checked = results({**GOOD, "team": "identity"})
    assert checked["wrong_team_for_category"][0] is False and "billing-ops" in checked["wrong_team_for_category"][1]
    assert failed({**GOOD, "team": "finance"}) == {"wrong_team_for_category"}


def test_summary_too_long_at_141_characters():
    assert failed({**GOOD, "summary": "x" * MAX_SUMMARY}) == set()
    assert failed({**GOOD, "summary": "x" * (MAX_SUMMARY + 1)}) == {"summary_too_long"}


def test_exact_match_compares_the_decision_and_training_keeps_the_summary():
    reworded = {**GOOD, "summary": "Customer double-billed in October, wants a refund"}
    assert hooks.match_key(TASK, json.dumps(reworded)) == hooks.match_key(TASK, json.dumps(GOOD, indent=2))
    assert hooks.match_key(TASK, json.dumps({**GOOD, "priority": "P3"})) != hooks.match_key(TASK, json.dumps(GOOD))
    assert json.loads(TASK.normalise(json.dumps(reworded))) == reworded
    assert TASK.normalise("not json") is None and hooks.match_key(TASK, "not json") is None


def test_the_prompt_and_chat_logs_are_inverse():
    messages = TASK.prompt(TICKET)
    assert TASK.input_from_messages(messages) == TICKET
    assert TASK.input_from_messages([{"role": "user", "content": "hello"}]) is None


@pytest.mark.parametrize("bad", [None, [], {"subject": "s", "body": "b"}, {"subject": "", "body": "b", "product": "p"},
                                 {"subject": "s", "body": "b", "product": 3}])
def test_validate_input_says_what_is_wrong(bad):
    assert TASK.validate_input(bad)
    assert TASK.validate_input(TICKET) is None


def test_hooks_group_the_same_ticket_for_another_product_and_slice_by_product():
    other = swap_product(Example(TICKET, json.dumps(GOOD)), random.Random(0))
    assert other is not None and other.input["product"] != "Atlas CRM"
    assert hooks.group_id(TASK, other.input) == hooks.group_id(TASK, TICKET)
    assert hooks.group_id(TASK, {**TICKET, "body": "Another problem entirely."}) != hooks.group_id(TASK, TICKET)
    assert hooks.slice_name(TASK) == "product" and hooks.slice_of(TASK, TICKET) == "Atlas CRM"
    assert hooks.dedup_text(TASK, TICKET)[0] != hooks.dedup_text(TASK, other.input)[0]
    assert hooks.display_text(TASK, TICKET) == "[Atlas CRM] Charged twice for October"


def test_swap_product_changes_the_product_everywhere_and_the_decision_nowhere():
    swapped = swap_product(Example(TICKET, json.dumps(GOOD)), random.Random(1))
    new = swapped.input["product"]
    assert "Atlas CRM" not in json.dumps(swapped.input) + swapped.output
    assert new in swapped.input["body"]
    decision = json.loads(swapped.output)
    decided = ("category", "priority", "team")
    assert {k: decision[k] for k in decided} == {k: GOOD[k] for k in decided}
    assert new in decision["summary"]


@pytest.mark.parametrize("body", ["The Atlas CRM app crashes on my iPhone.",
                                  "We are moving from Atlas CRM to Beacon Analytics; merge the invoices."])
def test_swap_product_leaves_tickets_tied_to_their_product_alone(body):
    assert swap_product(Example({**TICKET, "body": body}, json.dumps(GOOD)), random.Random(0)) is None
    assert swap_product(Example({**TICKET, "product": "Zephyr"}, json.dumps(GOOD)), random.Random(0)) is None


def test_synthesized_examples_pass_every_check_and_are_new():
    seeds = [Example(r["input"], r["output"]) for r in lines(DATA / "base_corpus.jsonl")[:80]]
    made = TASK.synthesize(seeds, 60, random.Random(7))
    assert 0 < len(made) <= 60
    inputs = {json.dumps(s.input, sort_keys=True) for s in made}
    assert len(inputs) == len(made)
    assert not inputs & {json.dumps(e.input, sort_keys=True) for e in seeds}
    for s in made:
        assert TASK.validate_input(s.input) is None
        assert all(r.passed for r in TASK.check(s.input, s.output)), s
        assert s.generator == "swap_product" and s.input["product"] != seeds[s.parent_index].input["product"]
    assert TASK.synthesize(seeds, 60, random.Random(7)) == made


def test_make_data_reproduces_the_committed_files_byte_for_byte(tmp_path):
    counts = make_data.write(tmp_path)
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), f"{name} differs: run make_data"
    assert counts == {"traces.jsonl": 200, "annotations.jsonl": 40, "base_corpus.jsonl": 600}
    assert sum((DATA / name).stat().st_size for name in FILES) < 1_000_000


def test_every_committed_trace_validates_and_about_a_quarter_fail_of_every_kind():
    records = lines(DATA / "traces.jsonl")
    rows = [normalise_record(r, TASK) for r in records]
    assert len({r["trace_id"] for r in rows}) == len(records)
    kinds: Counter = Counter()
    failing = 0
    for record in records:
        if record["error"]:
            assert record["output"] == ""
            continue
        names = {r.check_name for r in TASK.check(record["input"], record["output"]) if r.passed is False}
        kinds.update(names)
        failing += bool(names)
    assert set(kinds) == set(CHECK_NAMES)
    assert 0.18 <= failing / len(records) <= 0.32
    assert {r["input"]["product"] for r in records} == set(PRODUCTS)


def test_committed_annotations_and_base_corpus_are_usable():
    inputs = {r["trace_id"]: r["input"] for r in lines(DATA / "traces.jsonl")}
    decisions = [validate_annotation(a, TASK, inputs) for a in lines(DATA / "annotations.jsonl")]
    assert {d["label"] for d in decisions} == {"good", "bad"}
    assert all(d["correction"] for d in decisions if d["label"] == "bad")
    # people catch what no assertion can: well-formed but wrong decisions
    assert {"wrong_category", "wrong_priority"} <= {d["failure_mode"] for d in decisions}
    corpus = lines(DATA / "base_corpus.jsonl")
    assert all(set(row) == {"input", "output"} for row in corpus)
    assert all(all(r.passed for r in TASK.check(row["input"], row["output"])) for row in corpus)
    assert make_data.NEW_PRODUCT not in {row["input"]["product"] for row in corpus}


def test_the_definitions_module_runs_the_example():
    from examples.ticket_triage.definitions import defs

    assert defs.resolve_job_def("flywheel") is not None
    resources = defs.resources
    assert resources["task"].load() is load_task("examples.ticket_triage.task")
    assert resources["trace_files"].paths[0].endswith("examples/ticket_triage/data/traces.jsonl")
    assert Path(resources["trainer"].base_corpus).resolve() == (DATA / "base_corpus.jsonl").resolve()
    assert resources["duckdb"].database != "data/flywheel.duckdb"


def test_the_task_s_demo_data_is_the_committed_files():
    demo = hooks.demo_data(TASK)
    assert [Path(p).resolve() for p in (demo.traces, demo.annotations, demo.base_corpus)] == [
        (DATA / name).resolve() for name in FILES]


def test_near_duplicates_are_looked_for_within_one_product():
    index = NearDuplicateIndex(TASK)
    index.add(json.dumps(TICKET), "original")
    signed = {**TICKET, "body": TICKET["body"] + "\nThanks"}
    assert index.find(json.dumps(signed)) == "original"
    assert index.find(json.dumps({**signed, "product": "Beacon Analytics"})) is None


def test_the_workspace_file_loads_the_definitions_module():
    workspace = yaml.safe_load((Path(make_data.__file__).parent / "workspace.yaml").read_text(encoding="utf-8"))
    [location] = workspace["load_from"]
    assert location["python_module"]["module_name"] == "examples.ticket_triage.definitions"
    assert importlib.util.find_spec(location["python_module"]["module_name"]) is not None
