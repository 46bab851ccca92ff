"""Declarative tasks: a Task from a YAML or JSON file, each check a named failure mode, clear loading errors."""

import json
import pickle
import textwrap
from pathlib import Path

import pytest
import yaml

from pipeline.engine.ingest.files import read_trace_files
from pipeline.engine.ingest.formats import to_trace
from pipeline.engine.ingest.records import RecordError
from pipeline.engine.label.assertions import check_version
from pipeline.engine.tasks import CheckResult, hooks, load_task, task_file
from pipeline.engine.tasks.declarative import TaskSpecError, load_declarative

CRM_FILE = "examples/crm_assistant/task.yaml"
CRM = load_task(CRM_FILE)
INPUT = {"account_id": "acc_001", "segment": "smb", "today": "2026-10-20", "message": "who handles the renewal?",
         "contacts": [{"id": "c_1", "name": "Ana Lopez", "title": "CFO"}],
         "deals": [{"id": "d_1", "title": "Acme renewal", "stage": "proposal", "amount": 1200}]}
GOOD = {"reply": "Ana Lopez (CFO) handles the renewal.", "widgets": [{"type": "contact_card", "id": "c_1"}]}


def failed(output, task=CRM, input=INPUT):
    text = output if isinstance(output, str) else json.dumps(output)
    return {r.check_name: r.detail for r in task.check(input, text) if r.passed is False}


def with_(**changes):
    return {**GOOD, **changes}


def test_the_example_loads_with_its_checks_named_after_failure_modes():
    assert (CRM.name, CRM.version) == ("crm_assistant", "1")
    assert CRM.check_names == (
        "not_json", "schema_additional_properties", "schema_enum", "schema_max_items", "schema_max_length",
        "schema_min_length", "schema_pattern", "schema_required", "schema_type",
        "email_in_reply", "phone_in_reply", "markdown_in_reply", "placeholder_in_reply", "unknown_record")
    results = CRM.check(INPUT, json.dumps(GOOD))
    assert [r.check_name for r in results] == list(CRM.check_names) and all(r.passed for r in results)


@pytest.mark.parametrize("check, output, detail", [
    ("not_json", "Ana handles it.", "output is not JSON"),
    ("not_json", "```json\n" + json.dumps(GOOD) + "\n```", "(it is wrapped in a code fence)"),
    ("schema_additional_properties", with_(mood="happy"), "$: Additional properties are not allowed ('mood'"),
    ("schema_enum", with_(widgets=[{"type": "note", "id": "t_new"}]), "$.widgets[0].type: 'note' is not one of"),
    ("schema_max_items", with_(widgets=[{"type": "contact_card", "id": "c_1"}] * 4), "$.widgets: "),
    ("schema_max_length", with_(reply="x" * 601), "$.reply: "),
    ("schema_min_length", with_(reply=""), "$.reply: '' should be non-empty"),
    ("schema_pattern", with_(widgets=[{"type": "task", "id": "task-1", "title": "Call"}]),
     "$.widgets[0].id: 'task-1' does not match"),
    ("schema_required", {"reply": "Ana."}, "$: 'widgets' is a required property"),
    ("schema_type", with_(widgets={"type": "deal"}), "$.widgets: {'type': 'deal'} is not of type 'array'"),
    ("email_in_reply", with_(reply="Write to ana.lopez@acme.example today."), "$.reply: matches 'ana.lopez@acme.example'"),
    ("phone_in_reply", with_(reply="Call +1 415 555 0134 now."), "$.reply: matches '+1 415 555 0134'"),
    ("markdown_in_reply", with_(reply="**Ana** handles it."), "$.reply: matches '**'"),
    ("placeholder_in_reply", with_(reply="Hi [Name], Ana handles it."), "$.reply: matches '[Name]'"),
    ("unknown_record", with_(widgets=[{"type": "contact_card", "id": "c_9"}]), "contact_card 'c_9' is not one"),
    ("unknown_record", with_(widgets=[{"type": "task", "id": "t_new", "title": "Call", "due": "2026-10-19"}]),
     "task due 2026-10-19 is before today (2026-10-20)"),
])
def test_each_failure_mode_fails_with_its_detail_and_only_it(check, output, detail):
    found = failed(output)
    assert detail in found[check]
    assert set(found) == {check}


def test_a_good_task_widget_and_deal_pass():
    output = with_(widgets=[{"type": "deal", "id": "d_1"},
                            {"type": "task", "id": "t_new", "title": "Call Ana", "due": "2026-10-20"}])
    assert failed(output) == {}


def test_checks_after_not_json_are_skipped_when_the_output_is_not_json():
    results = {r.check_name: r for r in CRM.check(INPUT, "not json")}
    assert results["not_json"].passed is False
    assert all(results[n].passed is None for n in CRM.check_names if n.startswith("schema_") or n.endswith("_in_reply"))
    assert results["unknown_record"].passed is None  # the Python check says it had nothing to look at


def write(tmp_path, spec, name="task.yaml"):
    path = tmp_path / name
    path.write_text(spec if isinstance(spec, str) else (json.dumps(spec) if name.endswith(".json") else yaml.safe_dump(spec)))
    return path


def minimal(**changes):
    spec = {"name": "t", "version": 1, "input": [{"name": "text", "type": "string"}],
            "prompt": {"system": "Classify.", "user": "Text: {text}"}, "output": {"format": "text"}}
    spec.update(changes)
    return spec


def test_schema_checks_come_from_the_keywords_that_can_fail(tmp_path):
    schema = {"type": "object", "properties": {"label": {"anyOf": [{"const": "a"}, {"const": "b"}]},
                                               "legacy": False, "score": {"minimum": 0}}}
    task = load_declarative(write(tmp_path, minimal(output={"schema": schema})))
    assert task.check_names == ("not_json", "schema_any_of", "schema_forbidden", "schema_minimum", "schema_type")
    assert set(failed('{"label": "c"}', task, {"text": "x"})) == {"schema_any_of"}
    assert set(failed('{"legacy": 1}', task, {"text": "x"})) == {"schema_forbidden"}
    assert set(failed('{"score": -1}', task, {"text": "x"})) == {"schema_minimum"}
    assert failed('{"label": "a", "score": 2}', task, {"text": "x"}) == {}
    assert task.normalise('{ "score": 2,\n "label": "a" }') == '{"label":"a","score":2}'
    assert task.normalise("nope") is None


def test_rules_on_the_raw_output_must_match_and_must_not_match(tmp_path):
    rules = [{"name": "starts_with_label", "must_match": "^(spam|ham)\\b"},
             {"name": "no_shouting", "must_not_match": "[A-Z]{5,}"}]
    task = load_declarative(write(tmp_path, minimal(rules=rules)))
    assert task.check_names == ("starts_with_label", "no_shouting")
    assert failed("ham, because it is polite", task, {"text": "x"}) == {}
    assert failed("maybe HELLO", task, {"text": "x"}) == {
        "starts_with_label": "output: 'maybe HELLO' does not match /^(spam|ham)\\b/", "no_shouting": "output: matches 'HELLO'"}
    assert task.normalise("  ham \n ok ") == "ham ok" and task.normalise(" ") is None


def test_a_must_match_rule_on_a_path_that_finds_nothing_fails(tmp_path):
    spec = minimal(output={"format": "json"}, rules=[{"name": "tagged", "must_match": "^#", "path": "$.tags[*]"}])
    task = load_declarative(write(tmp_path, spec))
    assert failed('{"tags": ["#a", "#b"]}', task, {"text": "x"}) == {}
    assert failed('{"tags": ["#a", "b"]}', task, {"text": "x"}) == {"tagged": "$.tags[*]: 'b' does not match /^#/"}
    assert failed('{"tags": []}', task, {"text": "x"}) == {"tagged": "$.tags[*]: no value to match /^#/"}


def test_a_python_check_may_return_a_check_result_and_its_errors_are_contained(tmp_path, monkeypatch):
    module = tmp_path / "team_checks_h3.py"
    module.write_text(textwrap.dedent("""
        from pipeline.engine.tasks import CheckResult
        def short(input, output):
            return CheckResult("ignored", len(output) < 5, "too long" if len(output) >= 5 else "")
        def broken(input, output):
            raise KeyError("label")
        def odd(input, output):
            return 3
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    checks = [{"name": "short", "function": "team_checks_h3:short"}, {"function": "team_checks_h3:broken"},
              {"function": "team_checks_h3:odd"}]
    task = load_declarative(write(tmp_path, minimal(checks=checks)))
    results = {r.check_name: r for r in task.check({"text": "x"}, "long output")}
    assert results["short"] == CheckResult("short", False, "too long")
    assert results["broken"].passed is None and results["broken"].detail == "could not check: KeyError: 'label'"
    assert results["odd"].passed is None and "returned 3, expected a CheckResult or (passed, detail)" in results["odd"].detail
    assert task.check({"text": "x"}, "ok")[0].passed is True


@pytest.mark.parametrize("spec, message", [
    ("name: t\ninput: [\n", "not valid YAML at line"),
    ("- just a list", "must hold a mapping of settings, got list"),
    (minimal(inputs=[]), "the file has unknown key 'inputs'"),
    (minimal(input=[{"name": "text", "type": "str"}]), "input field 'text' has unknown type 'str' (types: string, integer"),
    (minimal(input=[{"name": "text", "type": "string"}, {"name": "text", "type": "string"}]), "declared twice"),
    (minimal(prompt={"user": "Text: {txt}"}), "prompt.user has slot {txt}, which is not an input field"),
    (minimal(output={"schema": {"type": "objekt"}}), "output.schema is not a valid JSON Schema at type"),
    (minimal(output={"schema": {"type": "object", "requird": ["a"]}}), "unknown JSON Schema keyword 'requird' at #"),
    (minimal(output={"schema": {"type": "string", "format": "date-time"}}), "format 'date-time' at # cannot be checked"),
    (minimal(output={"schema": {"$ref": "https://example.com/s.json"}}), "only references within the schema"),
    (minimal(rules=[{"name": "r", "must_match": "("}]), "rule 'r': the pattern does not compile"),
    (minimal(rules=[{"name": "r", "must_match": "a", "must_not_match": "b"}]), "exactly one of must_match or must_not_match"),
    (minimal(rules=[{"name": "r", "must_match": "a", "path": "$.x"}]), "rule 'r' has a path, but the output is text"),
    (minimal(checks=[{"function": "no_such_module_h3.checks:f"}]),
     "check 'f': cannot import 'no_such_module_h3.checks' (ModuleNotFoundError"),
    (minimal(checks=[{"function": "json:no_such_function"}]), "module 'json' has no function 'no_such_function'"),
    (minimal(checks=[{"function": "json.loads"}]), "must be an import path 'package.module:function'"),
    (minimal(rules=[{"name": "text_rule", "must_match": "a"}, {"name": "text_rule", "must_match": "b"}]), "used twice"),
    (minimal(hooks={"group_by": ["nope"]}), "hooks.group_by: 'nope' is not an input field"),
])
def test_loading_errors_name_the_file_and_the_problem(tmp_path, spec, message):
    path = write(tmp_path, spec)
    with pytest.raises(TaskSpecError) as raised:
        load_task(str(path))
    assert str(raised.value).startswith(f"task file {path}") and message in str(raised.value)


def test_a_json_task_file_loads_too(tmp_path):
    task = load_task(str(write(tmp_path, minimal(), "task.json")))
    assert task.name == "t" and task.version == "1" and task.check_names == ()


def test_validate_input_names_missing_unknown_and_mistyped_fields():
    assert CRM.validate_input(INPUT) is None
    assert CRM.validate_input({k: v for k, v in INPUT.items() if k not in ("contacts", "deals")}) is None
    assert CRM.validate_input({**INPUT, "message": None}) == "input.message is required"
    assert CRM.validate_input({**INPUT, "message": "  "}) == "input.message must not be empty"
    assert CRM.validate_input({**INPUT, "mood": "x"}).startswith("input has unknown field 'mood' (fields: account_id")
    assert CRM.validate_input({**INPUT, "contacts": "Ana"}) == "input.contacts must be a list, got string"
    assert CRM.validate_input({**INPUT, "deals": [1]}) == "input.deals[0] must be an object, got integer"
    assert CRM.validate_input([INPUT]) == "input must be an object, got list"


def test_the_prompt_fills_slots_and_input_from_messages_inverts_it(tmp_path):
    messages = CRM.prompt(INPUT)
    assert messages[0]["role"] == "system" and messages[1]["content"].startswith("Account: acc_001 (smb)\nToday: 2026-10-20")
    assert '"name":"Ana Lopez"' in messages[1]["content"]
    assert CRM.input_from_messages(messages) == INPUT
    assert CRM.input_from_messages([{"role": "user", "content": "who handles the renewal?"}]) is None
    spec = minimal(input=[{"name": "tags", "type": "list", "items": "string"}, {"name": "n", "type": "integer"},
                          {"name": "urgent", "type": "boolean", "required": False}],
                   prompt={"user": "Tags: {tags}\nN: {n}\nUrgent: {urgent}"})
    task = load_declarative(write(tmp_path, spec))
    value = {"tags": ["a", "b c"], "n": 3, "urgent": True}
    assert task.prompt(value)[-1]["content"] == "Tags: a, b c\nN: 3\nUrgent: true"
    assert task.input_from_messages(task.prompt(value)) == value
    assert task.input_from_messages(task.prompt({"tags": [], "n": 1})) == {"tags": [], "n": 1}
    assert task.input_from_messages([{"role": "user", "content": "Tags: a\nN: three\nUrgent: "}]) is None


def test_a_chat_log_the_prompt_did_not_write_is_rejected_with_the_reason():
    record = {"id": "x", "messages": [{"role": "user", "content": "hello\nthere"}, {"role": "assistant", "content": "{}"}]}
    with pytest.raises(RecordError) as raised:
        to_trace(record, CRM)
    assert str(raised.value) == ("task 'crm_assistant' cannot recover its input from chat messages: the user message "
                                 "does not match its prompt (first line: 'hello')")


def test_hooks_come_from_the_file_and_defaults_apply_without_them(tmp_path):
    other_message = {**INPUT, "message": "what's Ana's title?"}
    assert hooks.group_id(CRM, INPUT) == hooks.group_id(CRM, other_message)
    assert hooks.group_id(CRM, INPUT) != hooks.group_id(CRM, {**INPUT, "account_id": "acc_002"})
    assert hooks.slice_name(CRM) == "segment" and hooks.slice_of(CRM, INPUT) == "smb"
    assert hooks.display_text(CRM, INPUT) == "who handles the renewal?"
    assert hooks.dedup_text(CRM, INPUT) == ('["acc_001"]', "who handles the renewal?")
    plain = load_declarative(write(tmp_path, minimal()))
    assert hooks.slice_name(plain) is None and hooks.group_key(plain, {"text": "a"}) == '{"text":"a"}'
    assert hooks.demo_data(plain) == hooks.DemoData()


def test_prompts_are_found_next_to_the_task_file(tmp_path):
    assert "CRM" in task_file(CRM_FILE, "judge.v1.md").read_text()
    assert "$message" in task_file(CRM_FILE, "synth/rewrite.v1.md").read_text()
    path = write(tmp_path, minimal())
    (tmp_path / "prompts" / "synth").mkdir(parents=True)
    (tmp_path / "prompts" / "judge.v1.md").write_text("judge me")
    assert task_file(str(path), "judge.v1.md").read_text() == "judge me"
    with pytest.raises(ValueError, match="has no file prompts/synth/rewrite.v1.md"):
        task_file(str(path), "synth/rewrite.v1.md")
    with pytest.raises(ValueError, match="there is no task file at"):
        task_file(str(tmp_path / "missing.yaml"), "judge.v1.md")


def test_the_check_version_changes_when_the_file_changes(tmp_path):
    path = write(tmp_path, minimal(rules=[{"name": "r", "must_match": "a"}]))
    before = check_version(load_task(str(path)))
    assert check_version(load_task(str(path))) == before
    path.write_text(path.read_text().replace("must_match: a", "must_match: b"))
    assert check_version(load_task(str(path))) != before


def test_the_task_survives_pickling_for_worker_processes():
    again = pickle.loads(pickle.dumps(CRM))
    assert again.check_names == CRM.check_names and check_version(again) == check_version(CRM)
    assert again.check(INPUT, json.dumps(GOOD)) == CRM.check(INPUT, json.dumps(GOOD))


def test_the_bundled_sample_ingests_and_holds_failing_outputs():
    demo = hooks.demo_data(CRM)
    batch = read_trace_files([Path(demo.traces)], CRM, "demo")
    assert batch.rejected.is_empty() and batch.traces.height == 150
    assert (batch.traces["trace_id"].str.starts_with("chatcmpl-")).sum() == 30  # chat logs, input recovered
    failing = {r.check_name for row in batch.traces.iter_rows(named=True)
               for r in CRM.check(json.loads(row["input"]), row["output"]) if r.passed is False}
    assert {"not_json", "schema_required", "email_in_reply", "unknown_record"} <= failing
    decisions = [json.loads(line) for line in Path(demo.annotations).read_text().splitlines()]
    assert len(decisions) == 30 and {d["trace_id"] for d in decisions} <= set(batch.traces["trace_id"])
    corpus = [json.loads(line) for line in Path(demo.base_corpus).read_text().splitlines()]
    assert len(corpus) == 500 and all(CRM.validate_input(r["input"]) is None for r in corpus)
