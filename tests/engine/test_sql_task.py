"""The built-in sql task: input validation, the prompt and its inverse, the sqlglot checks, the
canonical form, the hooks, the offline generators and the bundled sample."""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from collections import Counter
from pathlib import Path

import pytest

from pipeline.engine.tasks import hooks, load_task, task_file
from pipeline.engine.tasks.base import Example
from pipeline.engine.tasks.sql import CHECK_NAMES, TASK, GENERATORS

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "demo" / "sql"

SCHEMA = {"tables": [
    {"name": "authors", "columns": ["author_id", "name", "country"]},
    {"name": "books", "columns": ["book_id", "title", "author_id", "genre", "pages"]},
    {"name": "loans", "columns": ["loan_id", "book_id", "member_id"]},
]}


def make_input(dialect: str = "sqlite", question: str = "Which books are long?") -> dict:
    return {"question": question, "schema": SCHEMA, "dialect": dialect, "db_id": "library"}


def results(sql: str, dialect: str = "sqlite") -> dict:
    return {r.check_name: r for r in TASK.check(make_input(dialect), sql)}


def passed(sql: str, dialect: str = "sqlite") -> dict:
    return {name: r.passed for name, r in results(sql, dialect).items()}


# --- the task and its files -------------------------------------------------------------------------

def test_sql_is_a_builtin_task_with_its_prompts():
    assert load_task("sql") is TASK
    assert "$examples" in task_file("sql", "judge.v1.md").read_text(encoding="utf-8")
    for name in ("rewrite.v1.md", "dimensions_spec.v1.md", "dimensions_question.v1.md", "dimensions.v1.json"):
        assert task_file("sql", f"synth/{name}").is_file()


def test_check_returns_one_result_per_name_in_order():
    assert [r.check_name for r in TASK.check(make_input(), "SELECT title FROM books")] == list(CHECK_NAMES)
    assert TASK.check_values(make_input(), "SELECT 1; SELECT 2")[0] == tuple(
        r.passed for r in TASK.check(make_input(), "SELECT 1; SELECT 2"))


# --- input validation ---------------------------------------------------------------------------------

@pytest.mark.parametrize("change, reason", [
    ({"question": "  "}, "input.question"),
    ({"db_id": ""}, "input.db_id"),
    ({"db_id": "a\nb"}, "input.db_id"),
    ({"dialect": "postgresql"}, "input.dialect must be one of"),
    ({"schema": {"tables": []}}, "input.schema must be an object with a non-empty list of tables"),
    ({"schema": {"tables": [{"name": "t", "columns": []}]}}, "input.schema.tables[0].columns (t)"),
    ({"schema": {"tables": [{"name": "t", "columns": ["a", "A"]}]}}, "more than once"),
    ({"schema": {"tables": [{"name": "t", "columns": ["a"]}, {"name": "T", "columns": ["b"]}]}}, "more than once"),
    ({"schema": {"tables": [{"columns": ["a"]}]}}, "input.schema.tables[0].name"),
])
def test_validate_input_says_what_is_wrong(change, reason):
    assert TASK.validate_input(make_input()) is None
    assert reason in TASK.validate_input({**make_input(), **change})


def test_validate_input_rejects_a_non_object():
    assert "must be an object" in TASK.validate_input(["question"])


# --- the prompt ----------------------------------------------------------------------------------------

def test_prompt_renders_schema_as_create_table_lines_and_names_the_dialect():
    system, user = TASK.prompt(make_input("duckdb"))
    assert system["role"] == "system" and user["role"] == "user"
    assert "Dialect: duckdb" in user["content"]
    assert "CREATE TABLE books (book_id, title, author_id, genre, pages);" in user["content"]
    assert user["content"].endswith("Question: Which books are long?")


def test_input_from_messages_inverts_the_prompt_even_for_odd_names():
    odd = {"question": "Multi-line\nQuestion: with a colon?", "dialect": "postgres", "db_id": "shop db",
           "schema": {"tables": [{"name": "Order Items", "columns": ['unit "price"', "qty, total", "x"]},
                                 {"name": "t", "columns": ["a"]}]}}
    for input in (make_input(), odd):
        assert TASK.input_from_messages(TASK.prompt(input)) == input


def test_input_from_messages_is_none_for_other_messages():
    assert TASK.input_from_messages([{"role": "user", "content": "Columns: a\nQuestion: q"}]) is None
    assert TASK.input_from_messages([{"role": "system", "content": "hi"}]) is None


# --- each check, passing and failing -------------------------------------------------------------------

@pytest.mark.parametrize("sql", [
    "Here is the query:\nSELECT title FROM books",
    "SELECT title FROM books WHERE",
    "SELEC title FROM books",
    "hello world",
    "",
    "Sure!\n```sql\nSELECT title FROM books\n```\nAnything else?",
])
def test_not_sql_fails_and_skips_the_other_checks(sql):
    found = results(sql)
    assert found["not_sql"].passed is False and found["not_sql"].detail
    assert all(found[name].passed is None and found[name].detail.startswith("skipped") for name in CHECK_NAMES[1:])


def test_a_fenced_query_is_sql():
    assert all(passed("```sql\nselect title from books;\n```").values())


def test_multiple_statements():
    assert passed("SELECT title FROM books;")["multiple_statements"] is True
    found = results("SELECT title FROM books; SELECT COUNT(*) FROM books;")
    assert found["multiple_statements"].passed is False and "2 statements" in found["multiple_statements"].detail


@pytest.mark.parametrize("sql", [
    "SELECT title FROM books",
    "WITH long AS (SELECT title FROM books WHERE pages > 500) SELECT title FROM long",
    "SELECT title FROM books UNION ALL SELECT name FROM authors",
])
def test_read_only_queries_pass(sql):
    assert all(passed(sql).values())


@pytest.mark.parametrize("sql, dialect, says", [
    ("UPDATE books SET genre = 'Poetry' WHERE pages < 50", "sqlite", "UPDATE"),
    ("DELETE FROM loans", "sqlite", "DELETE"),
    ("DROP TABLE books", "sqlite", "DROP"),
    ("WITH gone AS (DELETE FROM loans RETURNING *) SELECT * FROM gone", "postgres", "DELETE"),
    ("SELECT title INTO long_books FROM books", "postgres", "INTO"),
])
def test_writes_are_not_read_only(sql, dialect, says):
    found = results(sql, dialect)
    assert found["not_read_only"].passed is False and says in found["not_read_only"].detail


def test_column_checks_are_skipped_for_a_statement_that_is_no_query():
    found = results("UPDATE books SET genre = 'Poetry'")
    assert [found[n].passed for n in ("unknown_table", "unknown_column", "ambiguous_column")] == [None] * 3


@pytest.mark.parametrize("sql", [
    "WITH counts AS (SELECT author_id, COUNT(*) AS n FROM books GROUP BY author_id) "
    "SELECT a.name, c.n FROM authors AS a JOIN counts AS c ON c.author_id = a.author_id",
    "SELECT b.title FROM books b",
    "SELECT t.title FROM (SELECT title FROM books) AS t",
    'SELECT "title" FROM "books"',
    "SELECT title FROM main.books",
])
def test_known_tables_pass(sql):
    assert passed(sql)["unknown_table"] is True


@pytest.mark.parametrize("sql", ["SELECT title FROM book", "SELECT b.title FROM books b JOIN writers w ON 1 = 1",
                                 "SELECT title FROM books WHERE author_id IN (SELECT author_id FROM author)"])
def test_unknown_tables_fail(sql):
    found = results(sql)
    assert found["unknown_table"].passed is False and "not in the schema" in found["unknown_table"].detail


@pytest.mark.parametrize("sql", [
    "SELECT genre, COUNT(*) AS n FROM books GROUP BY genre ORDER BY n DESC",
    "SELECT genre, COUNT(*) AS n FROM books GROUP BY genre HAVING n > 2",
    "SELECT name FROM authors AS a WHERE EXISTS (SELECT 1 FROM books AS b WHERE b.author_id = a.author_id "
    "AND country = 'FR')",
    "SELECT t.total FROM (SELECT SUM(pages) AS total FROM books) AS t",
    "SELECT t.title FROM (SELECT * FROM books) AS t",
    "WITH c(who, how_many) AS (SELECT author_id, COUNT(*) FROM books GROUP BY author_id) SELECT who FROM c",
    'SELECT "Title" FROM books',
    "SELECT b.* FROM books AS b",
])
def test_known_columns_pass(sql):
    assert passed(sql)["unknown_column"] is True, results(sql)["unknown_column"].detail


@pytest.mark.parametrize("sql, says", [
    ("SELECT titel FROM books", "'titel' is in none of the tables"),
    ("SELECT x.title FROM books AS b", "no table or alias 'x'"),
    ("SELECT books.title FROM books AS b", "no table or alias 'books'"),
    ("SELECT t.pages FROM (SELECT title FROM books) AS t", "t has no column 'pages'"),
    ("WITH c AS (SELECT author_id FROM books) SELECT c.title FROM c", "c has no column 'title'"),
    ("SELECT name FROM authors WHERE author_id IN (SELECT author_id FROM books WHERE colour = 'red')", "'colour'"),
    ("SELECT b.nme FROM books b JOIN authors a ON a.author_id = b.author_id", "books (b) has no column 'nme'"),
])
def test_unknown_columns_fail(sql, says):
    found = results(sql)
    assert found["unknown_column"].passed is False and says in found["unknown_column"].detail


@pytest.mark.parametrize("sql", [
    "SELECT b.title, a.name FROM books AS b JOIN authors AS a ON a.author_id = b.author_id WHERE b.author_id = 3",
    "SELECT title, name FROM books JOIN authors USING (author_id) WHERE author_id = 3",
    "SELECT title, name FROM books NATURAL JOIN authors WHERE author_id = 3",
    "SELECT title, name FROM books AS b JOIN authors AS a ON a.author_id = b.author_id",
    "SELECT b.author_id AS author_id, COUNT(*) AS n FROM books b JOIN authors a ON a.author_id = b.author_id "
    "GROUP BY b.author_id ORDER BY author_id",
])
def test_unambiguous_columns_pass(sql):
    assert passed(sql)["ambiguous_column"] is True, results(sql)["ambiguous_column"].detail


@pytest.mark.parametrize("sql", [
    "SELECT b.title FROM books AS b JOIN authors AS a ON a.author_id = b.author_id WHERE author_id = 3",
    "SELECT a.author_id, COUNT(*) AS n FROM authors a JOIN books b ON b.author_id = a.author_id GROUP BY author_id",
    "SELECT l.loan_id FROM loans l JOIN books b ON book_id = b.book_id",
])
def test_unqualified_shared_columns_are_ambiguous(sql):
    found = results(sql, "postgres")
    assert found["ambiguous_column"].passed is False and "qualify it" in found["ambiguous_column"].detail


def test_dialects_differ_on_backticks_and_quoted_case():
    assert passed("SELECT `title` FROM books", "sqlite")["not_sql"] is True
    assert passed("SELECT `title` FROM books", "postgres")["not_sql"] is False
    assert passed('SELECT "Title" FROM books', "sqlite")["unknown_column"] is True
    assert passed('SELECT "Title" FROM books', "postgres")["unknown_column"] is False
    # WHERE may name a SELECT alias in SQLite, not in Postgres
    assert passed("SELECT pages * 2 AS double FROM books WHERE double > 10", "sqlite")["unknown_column"] is True
    assert passed("SELECT pages * 2 AS double FROM books WHERE double > 10", "postgres")["unknown_column"] is False


# --- the canonical form -----------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", [
    "select title from books where genre = 'Poetry' order by pages desc limit 5;",
    "SELECT Title\nFROM BOOKS\nWHERE genre='Poetry'\nORDER BY pages DESC\nLIMIT 5",
    '```sql\nSELECT "title" FROM "books" WHERE "genre" = \'Poetry\' ORDER BY "pages" DESC LIMIT 5\n```',
])
def test_normalise_equates_formatting_variants(variant):
    reference = "SELECT title FROM books WHERE genre = 'Poetry' ORDER BY pages DESC LIMIT 5"
    assert TASK.normalise(variant, make_input()) == TASK.normalise(reference, make_input()) == reference


@pytest.mark.parametrize("other", [
    "SELECT title FROM books WHERE genre = 'poetry' ORDER BY pages DESC LIMIT 5",
    "SELECT title FROM books WHERE genre = 'Poetry' ORDER BY pages ASC LIMIT 5",
    "SELECT title FROM books WHERE genre = 'Poetry' ORDER BY pages DESC LIMIT 10",
    "SELECT name FROM books WHERE genre = 'Poetry' ORDER BY pages DESC LIMIT 5",
])
def test_normalise_keeps_semantic_differences(other):
    reference = "SELECT title FROM books WHERE genre = 'Poetry' ORDER BY pages DESC LIMIT 5"
    assert TASK.normalise(other, make_input()) != TASK.normalise(reference, make_input())


def test_normalise_follows_the_dialect_through_the_hook():
    assert hooks.normalise(TASK, "SELECT `title` FROM books", make_input("sqlite")) == "SELECT title FROM books"
    assert hooks.normalise(TASK, "SELECT `title` FROM books", make_input("postgres")) is None
    # a quoted mixed-case name is another column in Postgres, the same one in SQLite
    assert TASK.normalise('SELECT "Title" FROM books', make_input("postgres")) != "SELECT title FROM books"
    assert TASK.normalise('SELECT "Title" FROM books', make_input("sqlite")) == "SELECT title FROM books"
    assert TASK.normalise("SELECT title FROM") is None


def test_normalise_quotes_a_reserved_word_so_the_result_parses():
    canonical = TASK.normalise('SELECT "order", "group" FROM books', make_input("postgres"))
    assert canonical == 'SELECT "order", "group" FROM books'
    assert TASK.normalise(canonical, make_input("postgres")) == canonical


# --- the hooks -----------------------------------------------------------------------------------------------

def test_hooks_group_slice_dedup_and_display_by_database_and_question():
    a = make_input(question="Which  books are LONG?")
    b = make_input(question="which books are long?")
    assert hooks.group_id(TASK, a) == hooks.group_id(TASK, b)
    assert hooks.group_id(TASK, a) != hooks.group_id(TASK, {**b, "db_id": "other"})
    assert hooks.slice_name(TASK) == "database" and hooks.slice_of(TASK, a) == "library"
    scope, text = hooks.dedup_text(TASK, a)
    assert text == a["question"]
    assert scope == hooks.dedup_text(TASK, b)[0] != hooks.dedup_text(TASK, {**a, "db_id": "x"})[0]
    assert hooks.display_text(TASK, a) == a["question"]
    assert hooks.literal_masker(TASK) is None
    assert hooks.demo_data(TASK).traces == "data/demo/sql/traces.jsonl"


def test_complexity_grows_with_the_query_and_is_unbounded():
    simple = hooks.complexity(TASK, "SELECT title FROM books")
    joined = hooks.complexity(TASK, "SELECT b.title FROM books b JOIN authors a ON a.author_id = b.author_id "
                                    "WHERE a.country = 'FR'")
    nested = hooks.complexity(TASK, "WITH c AS (SELECT author_id, COUNT(*) AS n FROM books GROUP BY author_id) "
                                    "SELECT a.name FROM authors a JOIN c ON c.author_id = a.author_id "
                                    "WHERE c.n > (SELECT AVG(n) FROM c) ORDER BY a.name")
    assert simple < joined < nested
    assert hooks.complexity_bounds(TASK) == (None, None)


# --- offline generators -----------------------------------------------------------------------------------

def _corpus() -> list[Example]:
    rows = [json.loads(line) for line in (SAMPLE / "base_corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    return [Example(r["input"], r["output"]) for r in rows[:300]]


def test_synthesize_outputs_pass_every_check_and_are_new():
    seeds = _corpus()
    made = TASK.synthesize(seeds, 150, random.Random(5))
    assert len(made) == 150
    by_generator = Counter(s.generator for s in made)
    assert set(by_generator) <= set(GENERATORS) and len(by_generator) >= 3
    seen = {(json.dumps(e.input, sort_keys=True), TASK.normalise(e.output, e.input)) for e in seeds}
    for s in made:
        assert all(r.passed is True for r in TASK.check(s.input, s.output)), (s, TASK.check(s.input, s.output))
        assert TASK.validate_input(s.input) is None
        key = (json.dumps(s.input, sort_keys=True), TASK.normalise(s.output, s.input))
        assert key not in seen
        seen.add(key)
        parent = seeds[s.parent_index]
        assert s.input["question"] != parent.input["question"] and s.input["db_id"] == parent.input["db_id"]


def test_swap_literal_changes_question_and_query_together():
    seed = Example(make_input(question="Which books are in the Poetry genre?"),
                   "SELECT title FROM books WHERE genre = 'Poetry'")
    other = Example(make_input(question="Titles of Fantasy books"), "SELECT title FROM books WHERE genre = 'Fantasy'")
    made = [s for s in TASK.synthesize([seed, other], 10, random.Random(1)) if s.generator == "swap_literal"]
    assert {(s.input["question"], s.output) for s in made} == {
        ("Which books are in the Fantasy genre?", "SELECT title FROM books WHERE genre = 'Fantasy'"),
        ("Titles of Poetry books", "SELECT title FROM books WHERE genre = 'Poetry'")}


def test_limit_generators_keep_question_and_limit_in_step():
    seeds = [Example(make_input(question="Show the 5 longest books."),
                     "SELECT title FROM books ORDER BY pages DESC LIMIT 5"),
             Example(make_input(question="Books by length, longest first"),
                     "SELECT title FROM books ORDER BY pages DESC")]
    made = {s.generator: s for s in TASK.synthesize(seeds, 10, random.Random(2))}
    varied = made["vary_limit"]
    n = varied.output.rsplit(" ", 1)[-1]
    assert varied.input["question"] == f"Show the {n} longest books." and n != "5"
    added = made["add_limit"]
    assert added.input["question"].endswith(f"Show only the first {added.output.rsplit(' ', 1)[-1]}.")


# --- the bundled sample ------------------------------------------------------------------------------------

def _load_script(monkeypatch):
    spec = importlib.util.spec_from_file_location("make_sql_demo", ROOT / "scripts" / "make_sql_demo.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_bundled_sample_is_what_the_script_writes(tmp_path, monkeypatch):
    assert _load_script(monkeypatch).main(["--out", str(tmp_path)]) == 0
    for name in ("traces.jsonl", "annotations.jsonl", "base_corpus.jsonl"):
        assert (tmp_path / name).read_bytes() == (SAMPLE / name).read_bytes(), name
    assert sum((SAMPLE / n).stat().st_size for n in ("traces.jsonl", "annotations.jsonl", "base_corpus.jsonl")) < 2e6


def _rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (SAMPLE / name).read_text(encoding="utf-8").splitlines()]


def test_every_sample_trace_validates_and_fails_the_check_its_metadata_names():
    traces = _rows("traces.jsonl")
    assert len(traces) >= 250 and len({t["input"]["db_id"] for t in traces}) >= 5
    modes = Counter()
    for trace in traces:
        assert trace["task"] == "sql" and TASK.validate_input(trace["input"]) is None
        mode = trace["metadata"]["injected_failure"]
        if trace["error"]:
            assert trace["output"] == "" and mode is None
            continue
        found = {r.check_name: r.passed for r in TASK.check(trace["input"], trace["output"])}
        if mode in CHECK_NAMES:
            assert found[mode] is False, (trace["trace_id"], mode, trace["output"])
        else:  # correct outputs, and mistakes only a reviewer catches, pass every check
            assert all(v is True for v in found.values()), (trace["trace_id"], mode, trace["output"], found)
        modes[mode] += 1
    failing = sum(n for m, n in modes.items() if m in CHECK_NAMES) / len(traces)
    assert 0.2 <= failing <= 0.35
    assert {"unknown_column", "ambiguous_column", "not_read_only", "multiple_statements", "not_sql"} <= set(modes)


def test_sample_annotations_and_corpus_are_usable():
    traces = {t["trace_id"]: t for t in _rows("traces.jsonl")}
    annotations = _rows("annotations.jsonl")
    assert len(annotations) >= 50 and {a["label"] for a in annotations} == {"good", "bad"}
    for a in annotations:
        trace = traces[a["trace_id"]]
        assert a["annotated_at"] > trace["ts"]
        if a["label"] == "bad":
            assert a["failure_mode"] == trace["metadata"]["injected_failure"]
            assert all(r.passed is True for r in TASK.check(trace["input"], a["correction"]))
        else:
            assert a["failure_mode"] is None and a["correction"] is None
    corpus = _rows("base_corpus.jsonl")
    assert len(corpus) >= 1000
    asked = {(t["input"]["db_id"], t["input"]["question"]) for t in traces.values()}
    assert not asked & {(r["input"]["db_id"], r["input"]["question"]) for r in corpus}
    assert len({r["input"]["db_id"] for r in corpus}) >= 3
    for row in corpus[::10]:
        assert TASK.validate_input(row["input"]) is None
        assert all(r.passed is True for r in TASK.check(row["input"], row["output"]))
