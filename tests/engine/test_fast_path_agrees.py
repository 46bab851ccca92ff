"""The SQL fast path and the Python reference validator agree on every record: generated lines,
valid and invalid (keys given twice, numbers beyond a double, NaN in any spelling, odd and
overflowing timestamps, nested and deep values, wrong types, BOMs, unicode, column lists with
empty, odd and 100-character names, 89 and more of them), ingested once with the fast path and
once through Python alone, give the same rows and the same rejections."""

import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.engine.core import store
from pipeline.engine.ingest.files import ingest_file
from pipeline.engine.ingest.sql import parse_sql
from pipeline.engine.tasks import load_task

TASK = load_task("nl2query")
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


class PythonOnly:
    """The task without its SQL input check: every line takes the Python path."""

    input_sql_check = None

    def __getattr__(self, name):
        return getattr(TASK, name)


def token(value) -> st.SearchStrategy[str]:
    return st.just(json.dumps(value))


def dumped(strategy) -> st.SearchStrategy[str]:
    """JSON text of the values of ``strategy``, unicode written raw or escaped."""
    return st.tuples(strategy, st.booleans()).map(lambda v: json.dumps(v[0], ensure_ascii=v[1]))


def mostly(usual: st.SearchStrategy[str], odd: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """``usual`` 39 times in 40, else ``odd`` (so that many generated records are valid)."""
    return st.integers(0, 39).flatmap(lambda n: usual if n else odd)


NUMBERS = st.sampled_from(["1e999", "-1e999", "2e308", "1e308", "1.7976931348623157e308", "-0", "-0.0", "1E5",
                           "1e+2", "0.1e1", "NaN", "Infinity", "-Infinity", "inf", "nan", "INF", "1e-999", "5e-324",
                           "123456789012345678901234567890", "18446744073709551615", "18446744073709551616",
                           "9223372036854775807", "9223372036854775808", "1" + "0" * 120, "true", '"5"'])
STRINGS = st.sampled_from(['"\\ud800"', '"\\udc00x"', '"\\u0000"', '"a\\u2028b"', '"\\/"', '"\\u00e9"', '"e123"',
                           '""', '"  "', '" \u3000 "', '"{"'])
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=8)
DEEP = st.sampled_from(["[" * 3000 + "]" * 3000, "[" * 40 + "]" * 40, '{"k": 1, "k": 2}', '{"a": {"k": 1, "k": 2}}'])
ODD = dumped(VALUES) | NUMBERS | STRINGS | DEEP


@st.composite
def objects(draw, fields: dict[str, st.SearchStrategy[str]], required: tuple[str, ...] = (), extra: bool = False) -> str:
    """An object's JSON text built from raw member texts: the ``required`` fields nearly always
    there, the others often, a key given twice now and then, maybe ``extra`` keys, in any order,
    with or without spaces."""
    pairs = [(key, draw(values)) for key, values in fields.items() if draw(mostly(st.just(1), st.just(0)))
             or key not in required and draw(st.booleans())]
    if pairs and not draw(st.integers(0, 19)):
        key = draw(st.sampled_from([k for k, _ in pairs]))
        pairs.append((key, draw(fields[key])))
    pairs += draw(st.lists(st.tuples(st.text(min_size=1, max_size=5), dumped(VALUES)), max_size=2 if extra else 0))
    pairs = draw(st.permutations(pairs))
    comma, colon = draw(st.sampled_from([(", ", ": "), (",", ":"), (" ,\t", " : ")]))
    return "{" + comma.join(f"{json.dumps(k)}{colon}{v}" for k, v in pairs) + "}"


TEXT = dumped(st.text(max_size=12))
QUESTION = mostly(dumped(st.text(max_size=30).map(lambda t: "p95 " + t)), ODD)
#: Column names as they come: empty, with spaces, dots, tabs, quotes, emoji, 100+ characters.
ODD_NAMES = st.sampled_from(["", " ", "a b", "http.request.method", "tab\there", "quote\"d", "back\\slash",
                             "app.\U0001f525.score", "\u00fcn\u00efc\u00f6d\u00e9", "x" * 120, "\u3000", "new\nline"])
NAMES = st.text(min_size=1, max_size=6) | ODD_NAMES | st.text(min_size=100, max_size=130)
COLUMNS = mostly(dumped(st.lists(NAMES, min_size=1, max_size=3) | st.lists(NAMES, min_size=89, max_size=120)), ODD)
INPUTS = mostly(objects({"question": QUESTION, "columns": COLUMNS, "dataset": mostly(TEXT, ODD)},
                        required=("question", "columns")), ODD)


@st.composite
def timestamps(draw, first_year: int = 1) -> str:
    moment = draw(st.datetimes(min_value=datetime(first_year, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)))
    text = moment.isoformat(sep=draw(st.sampled_from(["T", " "])), timespec=draw(
        st.sampled_from(["seconds", "milliseconds", "microseconds"])))
    minutes = draw(st.integers(-24 * 60, 24 * 60))
    offset = draw(st.sampled_from(["", "Z", f"{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"]))
    return json.dumps(text + offset)


TIMESTAMPS = mostly(timestamps(first_year=1000), timestamps() | st.sampled_from([
    '"0001-01-01T00:00:00+01:00"', '"9999-12-31T23:59:59-00:01"', '"9999-12-31T23:59:59Z"', '"10000-01-01T00:00:00Z"',
    '"2026-02-30T00:00:00Z"', '"2026-10-16T24:00:00Z"', '"2026-10-16"', '"2026-10-16T02:38:21.1234567Z"',
    '"yesterday"', '""', "1697420301", "null"]) | ODD)
COUNT = mostly(dumped(st.integers(0, 2**63 - 1)), dumped(st.integers(0, 10**6).map(float)) | ODD)
LATENCY = mostly(dumped(st.floats(0, 1e9) | st.integers(0, 2**40)),
                 dumped(st.floats(min_value=0, allow_infinity=False) | st.integers(0, 2**70)) | ODD)
METADATA = mostly(objects({"session_id": TEXT, "n": LATENCY, "tags": dumped(st.lists(st.text(max_size=4)))}), ODD)
RECORD = objects({
    "trace_id": mostly(dumped(st.text(max_size=8).map(lambda t: "tr_" + t)), ODD),
    "task": mostly(st.sampled_from(['"nl2query"', '""', "null"]), st.sampled_from(['"summarize"', "[]", "5"]) | ODD),
    "ts": TIMESTAMPS, "input": INPUTS, "output": mostly(TEXT, ODD), "model": mostly(TEXT, ODD),
    "latency_ms": LATENCY, "prompt_tokens": COUNT, "completion_tokens": COUNT,
    "error": mostly(token(None) | TEXT, ODD), "metadata": METADATA,
}, required=("input", "output"), extra=True)
LINES = mostly(RECORD, st.tuples(st.sampled_from(["\ufeff", " "]), RECORD).map("".join)
               | st.tuples(RECORD, st.sampled_from([" ", ",", " x"])).map("".join) | ODD | st.text(max_size=20))


@pytest.fixture(scope="module")
def connections():
    with store.connect(":memory:") as fast, store.connect(":memory:") as python:
        for conn in (fast, python):
            conn.execute("SET threads = 1")
        yield fast, python


def stored(conn, path: Path, task) -> tuple[list, list]:
    conn.execute("DELETE FROM raw_traces; DELETE FROM rejected_traces; DELETE FROM ingested_files")
    ingest_file(conn, path, task, "drop", max_record_bytes=1_000_000, now=NOW, ordered=True)
    return (conn.execute("SELECT * FROM raw_traces ORDER BY trace_id").fetchall(),
            conn.execute("SELECT location, reason, raw FROM rejected_traces ORDER BY location").fetchall())


def fast_path_accepts(lines: list[str]) -> list[bool]:
    with store.connect(":memory:") as conn:
        conn.register("chunk", pa.table({"line_no": list(range(1, len(lines) + 1)), "line": lines}))
        conn.execute(parse_sql(TASK))
        return [ok for (ok,) in conn.execute("SELECT ok FROM _parsed ORDER BY line_no").fetchall()]


@SETTINGS
@given(lines=st.lists(LINES, min_size=1, max_size=8))
def test_the_fast_path_and_python_alone_store_the_same_rows_and_rejections(connections, lines):
    fast, python = connections
    text = "\n".join(line.replace("\n", " ").replace("\r", " ") for line in lines) + "\n"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "t.jsonl"
        path.write_text(text, encoding="utf-8")
        assert stored(fast, path, TASK) == stored(python, path, PythonOnly())


def test_ordinary_records_with_odd_but_safe_values_do_take_the_fast_path():
    ordinary = ['{"trace_id": "t1", "input": {"question": "p95 latency", "columns": ["a", "b"]}, "output": "o", '
                '"ts": "2026-10-16T04:38:21.5+02:00", "latency_ms": 1E5, "prompt_tokens": 9223372036854775807, '
                '"metadata": {"n": -0, "s": "\\u00e9"}, "model": "m"}',
                '{"input": {"question": "q", "columns": ["a"], "dataset": "d"}, "error": "e", "ts": "9999-12-31T23:59:59Z"}']
    assert fast_path_accepts(ordinary) == [True, True]


ODD_INPUTS = [
    {"question": "q", "columns": ["", "a"]},
    {"question": "q", "columns": ["a", "", ""]},
    {"question": "q", "columns": [f"attr.{i}" for i in range(89)]},
    {"question": "q", "columns": ["a b", "x.y.z", "app.\U0001f525.score", "\u00e9" * 120, " "]},
    {"question": "q", "columns": ["tab\there"]},
    {"question": "q", "columns": ['quote"d', "a"]},
    {"question": "q", "columns": [""]},
    {"question": "q", "columns": ["", ""]},
    {"question": "q", "columns": []},
    {"question": "q", "columns": ["a", 3]},
]


@pytest.mark.parametrize("ensure_ascii", [True, False])
def test_the_fast_path_accepts_only_what_validate_input_accepts_for_odd_column_lists(ensure_ascii):
    lines = [json.dumps({"trace_id": f"t{i}", "input": given, "output": "o"}, ensure_ascii=ensure_ascii)
             for i, given in enumerate(ODD_INPUTS)]
    accepted = fast_path_accepts(lines)
    valid = [TASK.validate_input(given) is None for given in ODD_INPUTS]
    assert valid == [True, True, True, True, True, True, False, False, False, False]
    assert all(ok <= is_valid for ok, is_valid in zip(accepted, valid)), list(zip(accepted, valid))
    # empty, long, spaced, dotted, emoji and long names need no Python (escapes do: a tab, a quote)
    assert accepted[:4] == [True] * 4 and accepted[4:6] == [False, False]


def test_odd_column_lists_are_stored_alike_by_the_fast_path_and_python(connections, tmp_path):
    fast, python = connections
    path = tmp_path / "odd.jsonl"
    path.write_text("".join(json.dumps({"trace_id": f"t{i}", "input": given, "output": "o"}) + "\n"
                            for i, given in enumerate(ODD_INPUTS)), encoding="utf-8")
    rows, rejections = stored(fast, path, TASK)
    assert (rows, rejections) == stored(python, path, PythonOnly())
    assert len(rows) == 6 and len(rejections) == 4
