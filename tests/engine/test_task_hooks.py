"""What the engine asks a task (pipeline.engine.tasks.hooks): the defaults for a task that defines
no hook, run through curation and evaluation, and nl2query's hooks, which must reproduce the
group ids, duplicate keys and near-duplicate words the engine computed from nl2query's keys
before the hooks existed (so stored splits do not move)."""

import hashlib
import json
import re
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest

from pipeline.engine.curate.dedup import NearDuplicateIndex, input_key, words
from pipeline.engine.curate.examples import CurationConfig, curate
from pipeline.engine.curate.splits import group_id
from pipeline.engine.evaluate import report
from pipeline.engine.evaluate.scoring import compare, examples_won_and_lost, score, summarize, verdict
from pipeline.engine.tasks import CheckResult, hooks, load_task

NL2QUERY = load_task("nl2query")
NOW = datetime(2026, 10, 20, tzinfo=timezone.utc)
REPO = Path(__file__).resolve().parents[2]
DEMO_CORPUS = REPO / "data" / "demo" / "base_corpus.jsonl"


class Minimal:
    """A task with no hook: inputs {"text", "lang"}, any non-empty output passes."""

    name = "minimal"
    version = "1"
    check_names = ("non_empty",)

    def prompt(self, input):
        return [{"role": "user", "content": input["text"]}]

    def validate_input(self, input):
        return None if isinstance(input, dict) and isinstance(input.get("text"), str) else "needs text"

    def check(self, input, output):
        return [CheckResult("non_empty", bool(output.strip()))]

    def normalise(self, output):
        return output.strip() or None

    def synthesize(self, examples, n, rng):
        return []


MINIMAL = Minimal()


def text(value, lang="en"):
    return {"text": value, "lang": lang}


# --- defaults ------------------------------------------------------------------------------------------

def test_a_task_without_hooks_groups_by_the_whole_input():
    a = text("Summarise this ticket")
    assert hooks.group_key(MINIMAL, a) == hooks.canonical_json(a)
    assert hooks.group_id(MINIMAL, a) == hooks.group_id(MINIMAL, {"lang": "en", "text": "Summarise this ticket"})
    assert hooks.group_id(MINIMAL, a) != hooks.group_id(MINIMAL, text("Summarise this ticket", "de"))
    assert hooks.group_id(MINIMAL, a) != hooks.group_id(MINIMAL, text("summarise this ticket"))
    assert re.fullmatch(r"g_[0-9a-f]{20}", hooks.group_id(MINIMAL, a))


def test_a_task_without_hooks_has_no_slices_one_dedup_scope_no_filler_and_no_bounds():
    a = text("Show me the ticket")
    assert hooks.slice_name(MINIMAL) is None and hooks.slice_of(MINIMAL, a) is None
    assert hooks.dedup_text(MINIMAL, a) == ("", hooks.canonical_json(a))
    assert hooks.filler_words(MINIMAL) == frozenset()
    assert hooks.complexity_bounds(MINIMAL) == (None, None)
    assert CurationConfig().complexity_bounds(MINIMAL) == (None, None)
    assert CurationConfig(min_complexity=3).complexity_bounds(MINIMAL) == (3, None)
    assert hooks.demo_data(MINIMAL) == hooks.DemoData()


def test_a_task_without_hooks_shows_the_longest_text_of_an_input():
    assert hooks.display_text(MINIMAL, text("Summarise this long ticket please", "en")) == \
        "Summarise this long ticket please"
    assert hooks.display_text(MINIMAL, {"meta": {"note": "a longer nested note"}, "id": "x"}) == "a longer nested note"
    assert hooks.display_text(MINIMAL, {"messages": [{"role": "user", "content": "hi"},
                                                     {"role": "assistant", "content": "a much longer reply"},
                                                     {"role": "user", "content": "thanks"}]}) == "thanks"
    assert hooks.display_text(MINIMAL, {"n": 3}) == '{"n":3}'


def test_a_task_without_hooks_dedups_on_the_whole_input_in_one_scope():
    index = NearDuplicateIndex(MINIMAL, 0.9)
    index.add(json.dumps(text("reset my password now")), "a")
    assert index.find(json.dumps(text("Reset my password NOW"))) == "a"
    assert index.find(json.dumps(text("reset my password now", "de"))) is None  # "lang" is part of the text
    assert index.find(json.dumps(text("the reset my password now"))) is None    # no filler words
    assert input_key(MINIMAL, json.dumps(text("A  b"))) == input_key(MINIMAL, json.dumps(text("a b")))


def test_curation_and_evaluation_run_on_a_task_without_hooks():
    schema = {"example_id": pl.String, "source": pl.String, "parent_id": pl.String, "input": pl.String,
              "output": pl.String, "failure_mode": pl.String}
    inputs = [text(f"ticket {i} about billing") for i in range(40)] + [text("ticket 0 about billing", "de")]
    real = pl.DataFrame([(f"trace:{i}", "trace", str(i), json.dumps(x), "yes", None) for i, x in enumerate(inputs)]
                        + [("correction:0", "correction", "0", json.dumps(inputs[0]), "no", "non_empty")],
                        schema=schema, orient="row")
    synthetic = pl.DataFrame(schema={"example_id": pl.String, "parent_id": pl.String, "generator": pl.String,
                                     "input": pl.String, "output": pl.String})
    result, curation = curate(real, synthetic, MINIMAL, CurationConfig(max_per_output=100), now=NOW)
    groups = dict(zip(result["example_id"], result["group_id"]))
    assert curation["dropped"] == {"duplicate_input": 1}  # the trace its correction replaced; no complexity bounds
    assert groups["trace:40"] != groups["correction:0"]  # another language is another group
    assert groups["correction:0"] == hooks.group_id(MINIMAL, inputs[0])
    test = result.filter(pl.col("split") == "test").select("example_id", "input", "output")
    assert test.height > 2
    cand = score(test, test["output"].to_list(), MINIMAL, "cand", now=NOW)
    base = score(test, ["nope"] * test.height, MINIMAL, "base", now=NOW)
    summaries = {"cand": summarize(cand, test, MINIMAL), "base": summarize(base, test, MINIMAL)}
    assert "slices" not in summaries["cand"]
    comparison = compare(cand, base)
    examples = examples_won_and_lost(cand, base, test, MINIMAL)
    markdown = report.render("cand", "base", summaries, comparison, verdict(comparison), examples, "v")
    assert "## By" not in markdown
    shown = json.loads(examples["won"]["input"][0])["text"]  # the longest text of the input, not its JSON
    assert shown.startswith("ticket ") and f"- **{shown}**" in markdown


# --- nl2query reproduces what the engine computed from its keys ------------------------------------------

OLD_FILLER = frozenset({"a", "an", "the", "me", "show", "give", "what", "what's", "whats", "is", "was", "of", "in",
                        "over", "for", "can", "you", "i", "need", "please", "chart", "graph", "get"})


def old_group_id(input_json):
    value = json.loads(input_json)
    question = re.sub(r"\s+", " ", str(value.get("question", "")).strip().lower())
    key = f"{value.get('dataset', '')}\x1f{question}"
    return "g_" + hashlib.sha256(key.encode()).hexdigest()[:20]


def old_scope_and_question(input_json):
    value = json.loads(input_json)
    question = str(value.get("question", ""))
    return json.dumps({k: v for k, v in value.items() if k != "question"}, sort_keys=True), question


def old_input_key(input_json):
    scope, question = old_scope_and_question(input_json)
    return json.dumps([scope, re.sub(r"\s+", " ", question.strip().lower())], ensure_ascii=False)


def old_words(question):
    tokens = (t.strip(".'") for t in re.findall(r"[\w./'-]+", question.lower()))
    return frozenset(t for t in tokens if t and t not in OLD_FILLER)


@pytest.fixture(scope="module")
def demo_inputs():
    inputs = []
    with open(DEMO_CORPUS, encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            assert NL2QUERY.validate_input(record["input"]) is None
            inputs.append(json.dumps(record["input"], ensure_ascii=False))
    assert len(inputs) > 1000
    return inputs


def test_nl2query_group_ids_are_the_ones_stored_before_the_hooks(demo_inputs):
    assert [group_id(NL2QUERY, i) for i in demo_inputs] == [old_group_id(i) for i in demo_inputs]
    assert len({group_id(NL2QUERY, i) for i in demo_inputs}) > 100


def test_nl2query_duplicate_keys_and_near_duplicate_words_are_unchanged(demo_inputs):
    filler = hooks.filler_words(NL2QUERY)
    for input_json in demo_inputs:
        scope, question = hooks.dedup_text(NL2QUERY, json.loads(input_json))
        assert (scope, question) == old_scope_and_question(input_json)
        assert words(question, filler) == old_words(question)
        assert input_key(NL2QUERY, input_json) == old_input_key(input_json)


def test_nl2query_slices_bounds_display_and_demo_files():
    input = {"question": "p95 duration_ms by service.name", "columns": ["duration_ms"], "dataset": "checkout-api"}
    assert hooks.slice_name(NL2QUERY) == "dataset" and hooks.slice_of(NL2QUERY, input) == "checkout-api"
    assert hooks.complexity_bounds(NL2QUERY) == (2, 30)
    assert hooks.display_text(NL2QUERY, input) == "p95 duration_ms by service.name"
    demo = hooks.demo_data(NL2QUERY)
    assert all((REPO / path).is_file() for path in (demo.annotations, demo.base_corpus, demo.prompt_layouts))
    assert len(list((REPO / demo.traces).glob("*.jsonl"))) == 2
