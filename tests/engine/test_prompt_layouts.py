"""Production prompt layouts: chat logs written by prompts that are not the task's own, recovered exactly."""

import json
from datetime import datetime, timezone

import dagster as dg
import duckdb
import pytest

from assets.ingest import raw_traces
from pipeline.engine.core import store
from pipeline.engine.ingest.files import ingest_files
from pipeline.engine.ingest.formats import to_trace
from pipeline.engine.ingest.langsmith_source import ingest_runs
from pipeline.engine.ingest.layouts import (
    SlotError, as_layout, compile_template, live_layouts, load_layout_file, with_prompt_layouts,
)
from pipeline.engine.ingest.records import RecordError
from pipeline.engine.tasks import load_task
from pipeline.engine.tasks.nl2query.prompting import input_from_messages
from pipeline.resources import FlywheelDuckDB, TaskResource, TraceFiles

TASK = load_task("nl2query")
NOW = datetime(2026, 11, 20, tzinfo=timezone.utc)
OUTPUT = '{"calculations": [{"op": "COUNT"}]}'
BUILT_IN = "nlq_columns_pylist, honeycomb_query_assistant, nl2query"

#: Column names a production schema holds: spaces, dots, emoji, parentheses, a dollar sign.
ODD_NAMES = ["duration_ms", "http.status_code", "Context Keys", "http.response_length 🐝", "Duration (min)",
             "$query", "trace.parent_id", "service.name"]
#: 89 columns, the size of a large Honeycomb dataset's schema.
MANY = [f"app.field_{i}.value" for i in range(80)] + ODD_NAMES + ["name"]
QUESTIONS = ["what are my errors?", 'this query, but only where "message" contains `org:1`',
             "slow requests  by route", "p95 of Duration (min) for 🐝 users"]

#: The fixed middle of the Honeycomb prompt (written for these tests): instructions with few-shot
#: examples, whose own "NLQ:" lines must be passed over.
HONEYCOMB_SPEC = """All top-level keys are optional.

```json
"calculations":[{"op": "COUNT"}, {"op": "HEATMAP", "column": "name"}],
"filters":[{"column": "name", "op": "exists"}],
```

TIPS:
COUNT counts events/spans.

NLQ: Error count
EXISTING QUERY:
{"breakdowns":["error"],"calculations":[{"op":"COUNT"}]}

NLQ:slow db queries
EXISTING QUERY:{"breakdowns":["db.statement"]}
"""
HONEYCOMB_SYSTEM = "Honeycomb AI suggests queries based on user input."


def nlq_message(input):
    return f'NLQ: "{input["question"]}"\nColumns: {input["columns"]!r}'


def honeycomb_message(input):
    return f"COLUMNS:{','.join(input['columns'])}\n\nQUERY SPEC:\n{HONEYCOMB_SPEC}\nNLQ:{input['question']}\nEXISTING QUERY:"


def own_message(input):
    """The task's own prompt as text content parts (its inverse reads plain text only), with
    white space at line ends and \\r\\n line ends."""
    return [{"type": "text", "text": f"Columns: {', '.join(input['columns'])}  \r\n"},
            {"type": "text", "text": f"Question: {input['question']}\r\n"}]


def inputs(columns_sets):
    return [{"question": q, "columns": cols} for q in QUESTIONS for cols in columns_sets]


def chat(user, system=None, n=0):
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": user}, {"role": "assistant", "content": OUTPUT}]
    return {"id": f"chatcmpl-{n}", "created": 1763600000 + n, "messages": messages}


def ingest(tmp_path, name, records, task=TASK):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    with store.connect(str(tmp_path / "flywheel.duckdb")) as conn:
        report = ingest_files(conn, [str(path)], task, "drop", settle_seconds=0, now=NOW)
        rows = conn.execute("SELECT trace_id, input FROM raw_traces ORDER BY trace_id").fetchall()
        reasons = conn.execute("SELECT location, reason FROM rejected_traces ORDER BY location").fetchall()
    return report, {trace_id: json.loads(text) for trace_id, text in rows}, reasons


# --- templates and parsers -----------------------------------------------------------------------

@pytest.mark.parametrize("parser, text, expected", [
    ("list", "a, b c, d.e", ["a", "b c", "d.e"]),
    ("list", "a, , b", ["a", "", "b"]),
    ("csv", "error,Context Keys,http.response_length 🐝,Duration (min)",
     ["error", "Context Keys", "http.response_length 🐝", "Duration (min)"]),
    ("csv", "a,,b", ["a", "", "b"]),
    ("csv", "", []),
    ("pylist", "['a, b', \"it's\", '🐝', '']", ["a, b", "it's", "🐝", ""]),
    ("pylist", '["x.y", "a,b"]', ["x.y", "a,b"]),
    ("text", "  keeps  inner   spacing", "  keeps  inner   spacing"),
])
def test_each_parser_reads_its_slot_text(parser, text, expected):
    template = compile_template(f"Columns: {{columns:{parser}}}\nEnd")
    assert template.match(f"Columns: {text}\nEnd") == {"columns": expected}


def test_matching_is_anchored_and_tolerates_white_space_at_line_ends_only():
    template = compile_template("Columns: {columns:list}\nQuestion: {question}")
    assert template.match("  Columns: a, b \t\r\nQuestion: why?  \n") == {"columns": ["a", "b"], "question": "why?"}
    assert template.match("Hi\nColumns: a\nQuestion: q") is None  # text before
    assert template.match("Columns:a\nQuestion: q") is None  # a literal's inner space is required
    assert template.match("Columns: a\nQuestion q") is None
    assert template.match("Columns: a\n\nQuestion: q") == {"columns": ["a"], "question": "q"}  # a blank line is white space


def test_slots_take_as_little_as_they_can_except_the_last_which_takes_as_much():
    template = compile_template("{a} | {b} | {c}")
    assert template.match("x | y | z | w") == {"a": "x", "b": "y", "c": "z | w"}
    quoted = compile_template('Q: "{question}"')
    assert quoted.match('Q: "say "hi" twice"') == {"question": 'say "hi" twice'}


def test_a_skip_passes_over_few_shot_examples_to_the_last_occurrence():
    template = compile_template("COLUMNS:{columns:csv}\n{...}\nNLQ:{question}\nEXISTING QUERY:")
    message = "COLUMNS:a,b\nintro\nNLQ: one\nEXISTING QUERY:{}\nNLQ: two\nEXISTING QUERY:\nNLQ:the real one\nEXISTING QUERY:"
    assert template.match(message) == {"columns": ["a", "b"], "question": "the real one"}


def test_literal_braces_and_a_system_template():
    layout = as_layout({"name": "json_ask", "system": "Dataset: {dataset}", "user": "{{\"q\": {question}}}"})
    assert layout.match('{"q": how many?}', "Dataset: checkout") == {"dataset": "checkout", "question": "how many?"}
    assert layout.match('{"q": how many?}', None) is None  # the layout needs its system message
    assert layout.match('{"q": how many?}', "You are helpful.") is None


def test_a_slot_text_its_parser_cannot_read_is_an_error_naming_the_slot():
    template = compile_template("Columns: {columns:pylist}")
    with pytest.raises(SlotError, match=r"slot 'columns' \(pylist\) is not a Python or JSON list literal"):
        template.match("Columns: [a, b")
    with pytest.raises(SlotError, match="is a dict literal, not a list"):
        template.match('Columns: {"a": 1}')


@pytest.mark.parametrize("template, error", [
    ("Columns: {columns:yaml}", "names the parser 'yaml'; known parsers: text, list, csv, pylist"),
    ("Columns: {columns} {columns}", "slot 'columns' appears twice"),
    ("{a}{b}", "stand next to each other"),
    ("JSON: {", "stray '{' at character 6"),
    ("{1st}", "is not a slot"),
    ("   ", "non-empty string"),
])
def test_a_template_that_cannot_be_used_is_refused_saying_why(template, error):
    with pytest.raises(ValueError, match=error):
        compile_template(template)


# --- nl2query's built-in layouts through the real ingestion path ------------------------------------------

@pytest.mark.parametrize("render, columns_sets", [
    (nlq_message, [ODD_NAMES, MANY, ["a, b", "it's", "back\\slash", "x"]]),  # commas inside quotes
    (honeycomb_message, [ODD_NAMES, MANY]),
    (own_message, [ODD_NAMES, MANY]),
])
def test_chat_logs_in_each_built_in_layout_are_ingested_with_every_input_recovered_exactly(tmp_path, render,
                                                                                         columns_sets):
    expected = inputs(columns_sets)
    system = HONEYCOMB_SYSTEM if render is honeycomb_message else None
    report, rows, reasons = ingest(tmp_path, "chat.jsonl", [chat(render(x), system, n) for n, x in enumerate(expected)])
    assert reasons == [] and report.ingested == len(expected)
    assert [rows[f"chatcmpl-{n}"] for n in range(len(expected))] == expected


def test_an_empty_column_name_is_dropped_as_the_task_s_own_inverse_drops_it(tmp_path):
    honeycomb = chat(honeycomb_message({"question": "errors", "columns": ["error", "", "name"]}))
    own = [{"role": "user", "content": "Columns: error, , name\nQuestion: errors"}]
    row = to_trace(honeycomb, TASK)
    assert row["input"] == {"question": "errors", "columns": ["error", "name"]} == input_from_messages(own)


def test_a_honeycomb_log_modifying_an_existing_query_is_not_taken_for_a_new_question():
    modifies = honeycomb_message({"question": "add count", "columns": ["name"]}) + ' {"breakdowns":["name"]}'
    with pytest.raises(RecordError, match=f"matches none of the 3 production prompt layouts \\({BUILT_IN}\\)"):
        to_trace(chat(modifies), TASK)


def langchain_run(n, user, system):
    return {"id": f"0b5e7c7a-0000-4000-8000-{n:012d}", "run_type": "llm", "name": "ChatOpenAI",
            "start_time": "2026-11-19T08:00:00+00:00", "end_time": "2026-11-19T08:00:01+00:00",
            "inputs": {"messages": [[
                {"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", "SystemMessage"],
                 "kwargs": {"content": system, "type": "system"}},
                {"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", "HumanMessage"],
                 "kwargs": {"content": user, "type": "human"}}]]},
            "outputs": {"generations": [[{"text": OUTPUT, "type": "ChatGeneration"}]]}}


def test_langsmith_run_exports_in_a_production_layout_are_ingested_with_their_inputs(tmp_path):
    expected = inputs([ODD_NAMES, MANY])
    runs = [langchain_run(n, honeycomb_message(x), HONEYCOMB_SYSTEM) for n, x in enumerate(expected)]
    path = tmp_path / "runs.json"
    path.write_text(json.dumps(runs, ensure_ascii=False), encoding="utf-8")
    with store.connect(str(tmp_path / "flywheel.duckdb")) as conn:
        report = ingest_files(conn, [str(path)], TASK, "drop", settle_seconds=0, now=NOW)
        rows = dict(conn.execute("SELECT trace_id, input FROM raw_traces").fetchall())
    assert report.rejected == 0 and report.ingested == len(expected)
    assert [json.loads(rows[f"ls_{run['id']}"]) for run in runs] == expected


# --- configured layout files -----------------------------------------------------------------------

TEAM_LAYOUTS = """\
# the support team's prompt: v1 until March, v2 since (both still in the logs)
- name: team_v1
  user: |
    Dataset: {dataset}
    Fields: {columns:csv}
    Ask: {question}
- name: team_v2
  system: "You write queries for the {dataset} dataset."
  user: |-
    <question>{question}</question>
    <fields>{columns:pylist}</fields>
"""


def test_a_configured_layout_file_recovers_inputs_of_two_live_layouts(tmp_path):
    layouts = tmp_path / "layouts.yaml"
    layouts.write_text(TEAM_LAYOUTS, encoding="utf-8")
    task = with_prompt_layouts(TASK, [str(layouts)])
    v1 = {"question": "errors by route", "columns": ["http.route", "error"], "dataset": "checkout"}
    v2 = {"question": "p99 latency?", "columns": ["duration_ms", "a, b"], "dataset": "search api"}
    records = [chat(f"Dataset: {v1['dataset']}\nFields: {','.join(v1['columns'])}\nAsk: {v1['question']}", n=0),
               chat(f"<question>{v2['question']}</question>\n<fields>{json.dumps(v2['columns'])}</fields>",
                    f"You write queries for the {v2['dataset']} dataset.", n=1)]
    report, rows, reasons = ingest(tmp_path, "chat.jsonl", records, task)
    assert reasons == [] and rows == {"chatcmpl-0": v1, "chatcmpl-1": v2}
    with pytest.raises(RecordError, match="matches none of the 3 production prompt layouts"):
        to_trace(records[0], TASK)  # the same log without the file configured


def test_the_order_is_own_prompt_then_configured_then_built_in_layouts(tmp_path):
    layouts = tmp_path / "layouts.json"
    layouts.write_text(json.dumps([
        {"name": "own_lookalike", "user": "Columns: {columns:csv}\nQuestion: {question}"},
        {"name": "nlq_with_dataset", "system": "Dataset: {dataset}", "user": 'NLQ: "{question}"\nColumns: {columns:pylist}'},
    ]), encoding="utf-8")
    task = with_prompt_layouts(TASK, [str(layouts)])
    assert [layout.name for layout in live_layouts(task)] == ["own_lookalike", "nlq_with_dataset", *BUILT_IN.split(", ")]
    own = to_trace(chat("Columns: a, b\nQuestion: q"), task)["input"]
    assert own == {"question": "q", "columns": ["a", "b"]}  # the task's own inverse, not ["a", " b"]
    nlq = to_trace(chat('NLQ: "q"\nColumns: ["a"]', "Dataset: shop"), task)["input"]
    assert nlq == {"question": "q", "columns": ["a"], "dataset": "shop"}  # configured before built-in
    assert to_trace(chat('NLQ: "q"\nColumns: ["a"]'), task)["input"] == {"question": "q", "columns": ["a"]}


def test_a_message_matching_no_layout_is_rejected_naming_every_layout_tried(tmp_path):
    layouts = tmp_path / "layouts.yaml"
    layouts.write_text(TEAM_LAYOUTS, encoding="utf-8")
    task = with_prompt_layouts(TASK, [str(layouts)])
    records = [chat("Schema: a, b\n\nWhat is slow?\nthird line", n=0),
               chat('NLQ: "q"\nColumns: [a, b', n=1), chat('NLQ: ""\nColumns: ["a"]', n=2)]
    report, rows, reasons = ingest(tmp_path, "chat.jsonl", records, task)
    path = tmp_path / "chat.jsonl"
    prefix = "task 'nl2query' cannot recover its input from chat messages: the user message"
    assert rows == {} and report.rejected == 3
    assert reasons == [
        (f"{path}:1", f"{prefix} matches none of the 5 production prompt layouts (team_v1, team_v2, {BUILT_IN}) "
                      "nor the task's own prompt; first lines: 'Schema: a, b\\nWhat is slow?'"),
        (f"{path}:2", f"{prefix} matches none of the 5 production prompt layouts (team_v1, team_v2, {BUILT_IN}) "
                      "nor the task's own prompt; layout 'nlq_columns_pylist': slot 'columns' (pylist) is not a "
                      "Python or JSON list literal (SyntaxError): '[a, b'; first lines: 'NLQ: \"q\"\\nColumns: [a, b'"),
        (f"{path}:3", f"{prefix} matches the production prompt layout 'nlq_columns_pylist', but the input it gives "
                      "is invalid: input.question must be a non-empty string"),
    ]


class _LayoutsOnly:
    """A task without an inverse of its prompt, recovering its input from one layout's slots."""

    name = "ticket"
    prompt_layouts = ({"name": "ticket_v1", "user": "Ticket: {title}\nBody: {body}"},)

    @staticmethod
    def validate_input(input):
        return None if isinstance(input, dict) and input.get("title") else "input.title is missing"


def test_a_task_with_layouts_but_no_inverse_takes_the_slots_as_its_input():
    assert to_trace(chat("Ticket: Login fails\nBody: since 9:00\nfor everyone"), _LayoutsOnly())["input"] == {
        "title": "Login fails", "body": "since 9:00\nfor everyone"}
    with pytest.raises(RecordError) as raised:
        to_trace(chat("Subject: hi"), _LayoutsOnly())
    assert str(raised.value) == ("task 'ticket' cannot recover its input from chat messages: the user message "
                                 "matches none of the 1 production prompt layouts (ticket_v1); first lines: 'Subject: hi'")


@pytest.mark.parametrize("text, error", [
    ("- name: a\n  user: 'Q: {q:yaml}'\n", r"layouts.yaml, layout 1: layout 'a': slot '\{q:yaml\}' names the parser"),
    ("- name: a\n  user: 'Q: {q}'\n- name: a\n  user: 'R: {q}'\n", "the name 'a' is given to two layouts"),
    ("- name: a\n  usr: 'Q: {q}'\n", "layout 1: unknown key 'usr'"),
    ("name: a\n", "must hold a non-empty list of layouts"),
    ("- [unclosed\n", "cannot be read: "),
])
def test_a_layout_file_that_cannot_be_used_is_refused_naming_file_and_layout(tmp_path, text, error):
    path = tmp_path / "layouts.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=error):
        load_layout_file(path)


def test_a_langsmith_pull_uses_the_configured_layouts(tmp_path):
    layouts = tmp_path / "layouts.yaml"
    layouts.write_text(TEAM_LAYOUTS, encoding="utf-8")
    v2 = {"question": "errors?", "columns": ["error"], "dataset": "web"}
    run = langchain_run(1, "<question>errors?</question>\n<fields>['error']</fields>", "You write queries for the web dataset.")
    with store.connect(str(tmp_path / "flywheel.duckdb")) as conn:
        report = ingest_runs(conn, iter([run]), with_prompt_layouts(TASK, [str(layouts)]), "langsmith", now=NOW)
        stored = conn.execute("SELECT input FROM raw_traces").fetchall()
    assert report.rejected == 0 and [json.loads(text) for (text,) in stored] == [v2]


def test_the_raw_traces_asset_passes_the_trace_files_layouts(tmp_path):
    layouts = tmp_path / "layouts.yaml"
    layouts.write_text(TEAM_LAYOUTS, encoding="utf-8")
    folder = tmp_path / "incoming"
    folder.mkdir()
    (folder / "chat.jsonl").write_text(json.dumps(chat("Dataset: d\nFields: a,b\nAsk: why?")) + "\n", encoding="utf-8")
    files = TraceFiles(paths=[str(folder)], settle_seconds=0, prompt_layouts=[str(layouts)])
    database = str(tmp_path / "f.duckdb")
    with dg.instance_for_test() as instance:
        result = dg.materialize([raw_traces], instance=instance, resources={
            "duckdb": FlywheelDuckDB(database=database), "task": TaskResource(), "trace_files": files})
    assert result.success
    with duckdb.connect(database, read_only=True) as conn:
        assert [json.loads(t) for (t,) in conn.execute("SELECT input FROM raw_traces").fetchall()] == [
            {"question": "why?", "columns": ["a", "b"], "dataset": "d"}]
