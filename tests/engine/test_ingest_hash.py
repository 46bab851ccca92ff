"""The content hash keeps its definition: the per-key-list fast canonical input equals the general
one, and the hashes stored by earlier versions are the ones computed now."""

import itertools
import json

import duckdb
import pytest

from pipeline.engine.ingest.sql import _canonical_input, with_canonical_input
from pipeline.engine.tasks import load_task
from pipeline.engine.ingest.files import read_trace_files
from tests.engine.test_traces import INPUT, NOW, record

#: raw_traces.content_hash of ``record(trace_id=...)`` as ingested before the fast path existed.
PINNED = "bbaaa38c9f067aa8a240d55f7bf3642ffd6a30477480c21a16ddc245426a302c"

VALUES = ["q", "é \u2028 \\u00e9 / \\/ \"x\" \t", None, 1.5e10, 1e400, -0.0, 7, True, [], {}, [None, 1.0, "a"],
          {"z": 1, "a": None, "m": {"b": [1, {"c": None}]}}, "🚀"]


def _inputs():
    keys = ["question", "columns", "dataset", "Zeta", "_x", "a1", "A1"]
    for n in range(1, 5):
        for order in itertools.permutations(keys, n):
            yield "{" + ", ".join(f'"{k}": {json.dumps(VALUES[(i * 5 + len(k)) % len(VALUES)])}'
                                  for i, k in enumerate(order)) + "}"
    # key lists that take the general path: odd characters, duplicates, empty; and non-objects
    yield from ['{"b": 1, "a.b": 2}', '{"b": 1, "a b": 2, "é": 3}', '{"b": 1, "a": 2, "b": 3}', "{}",
                '["a", {"b": 1}]', '"text"', "12", '{"q\\"k": 1, "a": 2}']


def test_the_fast_canonical_input_is_the_general_one_for_every_key_list():
    with duckdb.connect() as conn:
        conn.execute("CREATE TABLE t AS SELECT json(unnest(?::VARCHAR[]))::VARCHAR AS input", [list(_inputs())])
        conn.execute("ALTER TABLE t ADD COLUMN input_keys VARCHAR[]")
        conn.execute("UPDATE t SET input_keys = CASE WHEN starts_with(input, '{') THEN json_keys(input) END")
        key_lists = [k for (k,) in conn.execute("SELECT DISTINCT input_keys FROM t WHERE input_keys IS NOT NULL").fetchall()]
        fast = with_canonical_input("t", key_lists)
        assert fast.count("WHEN _keys") > 300  # the fast path is taken
        rows = conn.execute(f"SELECT input, {_canonical_input('input')}, canonical_input FROM {fast}").fetchall()
    assert len(rows) > 1000
    for text, general, got in rows:
        assert got == general, text


def test_stored_hashes_stay_valid(tmp_path):
    path = tmp_path / "t.jsonl"
    rec = record(trace_id=...)
    reordered = {**{k: rec[k] for k in reversed(list(rec))}, "input": {k: INPUT[k] for k in reversed(list(INPUT))}}
    path.write_text(json.dumps(rec) + "\n" + json.dumps({**reordered, "input": {**reordered["input"], "x": None}}) + "\n")
    batch = read_trace_files([path], load_task("nl2query"), "drop", now=NOW)
    assert batch.traces["content_hash"].to_list() == [PINNED] and batch.duplicates_in_batch == 1


@pytest.mark.parametrize("keys", [["b", "a"], ["a", "b", "c"]])
def test_key_lists_are_matched_exactly_not_by_prefix(keys):
    with duckdb.connect() as conn:
        relation = "(SELECT ?::VARCHAR AS input, json_keys(?) AS input_keys)"
        got = conn.execute(f"SELECT canonical_input FROM {with_canonical_input(relation, [keys])}",
                           ['{"b":1,"a":2,"c":3}'] * 2).fetchone()[0]
    assert got == '{"a":2,"b":1,"c":3}'
