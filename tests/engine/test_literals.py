import json

import pytest

from pipeline.engine.tasks import hooks, nl2query
from pipeline.engine.tasks.nl2query.literals import LITERALS, MAX_LITERALS, Literal

mask_source, mask_target, unmask = LITERALS.mask_source, LITERALS.mask_target, LITERALS.unmask


def _source(question: str, columns=("duration_ms", "http.status_code", "service.name")) -> str:
    return nl2query.prompt({"question": question, "columns": list(columns)})[-1]["content"]


def _round_trip(question: str, query: dict) -> tuple[str, str]:
    target = nl2query.dump(nl2query.canonical(query))
    masked = mask_source(_source(question))
    masked_target = mask_target(target, masked.literals)
    assert unmask(masked_target, masked.literals) == target
    return masked.text, masked_target


def test_realistic_question_round_trips_with_every_value_masked():
    text, target = _round_trip(
        'p95 duration_ms for service.name "checkout" with http.status_code >= 500 '
        "over the last 2 hours, top 10",
        {"calculations": [{"op": "P95", "column": "duration_ms"}],
         "filters": [{"column": "service.name", "op": "=", "value": "checkout"},
                     {"column": "http.status_code", "op": ">=", "value": 500}],
         "time_range": 7200, "limit": 10},
    )
    assert text.endswith('service.name "<v0>" with http.status_code >= <v1> over the last <v2> hours, top <v3>')
    assert target == ('{"calculations":[{"op":"P95","column":"duration_ms"}],"filters":['
                      '{"column":"http.status_code","op":">=","value":<v1>},'
                      '{"column":"service.name","op":"=","value":"<v0>"}],"time_range":<v2>,"limit":<v3>}')


@pytest.mark.parametrize("phrase, seconds", [
    ("2 hours", 7200), ("30 minutes", 1800), ("1 day", 86400), ("24h", 86400), ("2 weeks", 1209600),
])
def test_durations_stand_for_seconds(phrase, seconds):
    masked = mask_source(f"count over the last {phrase}")
    assert masked.literals == (Literal(str(seconds), is_string=False),)
    assert mask_target(f'{{"time_range":{seconds}}}', masked.literals) == '{"time_range":<v0>}'


def test_numbers_in_identifiers_and_words_are_not_literals():
    text = _source("P95 of duration_ms by http.status_code for 5xx errors on v2, the 95th percentile, it's 3rd")
    masked = mask_source(text)
    assert masked.literals == ()
    assert masked.text == text


@pytest.mark.parametrize("identifier", ["t3", "eu-west-1", "ip-10-0-0-1", "node-3", "3-node", "db-2024-05-01",
                                        "2d-view", "k8s", "v1.2.3", "pod-7f9c"])
def test_identifiers_with_digits_stay_whole(identifier):
    masked = mask_source(f"errors on {identifier} above 500 over the last 2 hours")
    assert masked.text == f"errors on {identifier} above <v0> over the last <v1> hours"
    assert [lit.json() for lit in masked.literals] == ["500", "7200"]


def test_a_quoted_identifier_is_masked_whole_and_restored():
    masked = mask_source("count where region is 'eu-west-1' and host is t3")
    assert masked.text == "count where region is '<v0>' and host is t3"
    target = '{"filters":[{"column":"region","op":"=","value":"eu-west-1"},{"column":"host","op":"=","value":"t3"}]}'
    masked_target = mask_target(target, masked.literals)
    assert masked_target == ('{"filters":[{"column":"region","op":"=","value":"<v0>"},'
                             '{"column":"host","op":"=","value":"t3"}]}')
    assert unmask(masked_target, masked.literals) == target


def test_thousands_separators_decimals_and_dates():
    masked = mask_source("more than 1,000 rows, ratio over 99.5 since 2024-05-01T10:00:00Z")
    assert masked.text == "more than <v0> rows, ratio over <v1> since <v2>"
    assert [lit.json() for lit in masked.literals] == ["1000", "99.5", '"2024-05-01T10:00:00Z"']


def test_equal_values_share_a_placeholder():
    masked = mask_source("top 10 where count > 10")
    assert masked.text == "top <v0> where count > <v0>"
    assert len(masked.literals) == 1


def test_values_keep_their_json_type():
    masked = mask_source("status '500' or 404")
    target = '{"filters":[{"value":"500"},{"value":500},{"value":"404"},{"value":404}]}'
    masked_target = mask_target(target, masked.literals)
    # a number literal may fill a string, but a quoted literal never becomes a number
    assert masked_target == '{"filters":[{"value":"<v0>"},{"value":500},{"value":"<v1>"},{"value":<v1>}]}'
    assert unmask(masked_target, masked.literals) == target


def test_object_keys_are_never_masked():
    masked = mask_source("where 'limit' is set, limit 5")
    target = '{"filters":[{"column":"limit","op":"exists"}],"limit":5}'
    masked_target = mask_target(target, masked.literals)
    assert masked_target == '{"filters":[{"column":"<v0>","op":"exists"}],"limit":<v1>}'
    assert unmask(masked_target, masked.literals) == target


def test_negative_numbers_keep_their_sign():
    masked = mask_source("offset below -5")
    assert mask_target('{"value":-5}', masked.literals) == '{"value":-<v0>}'
    assert unmask('{"value":-<v0>}', masked.literals) == '{"value":-5}'


def test_quotes_and_backslashes_are_escaped_when_restored():
    masked = mask_source(r"""message contains 'say "hi" \ bye'""")
    restored = unmask('{"value":"<v0>","other":"x <v0> y","bare":<v0>}', masked.literals)
    assert json.loads(restored) == {"value": 'say "hi" \\ bye', "other": 'x say "hi" \\ bye y',
                                    "bare": 'say "hi" \\ bye'}


def test_apostrophes_are_not_quotes():
    masked = mask_source("what's the p95 for 'api' and o'brien's rows")
    assert masked.text == "what's the p95 for '<v0>' and o'brien's rows"


def test_every_known_placeholder_is_restored_wherever_it_is():
    masked = mask_source("service 'api' with status 500, limit 5")
    generated = '{"limit":<v2>, "filters":[{"value": <v1>},{"value":"<v0>"}],"note":"<v0>/<v1>","<v2>":1}'
    assert json.loads(unmask(generated, masked.literals)) == {
        "limit": 5, "filters": [{"value": 500}, {"value": "api"}], "note": "api/500", "5": 1}


@pytest.mark.parametrize("generated", [
    '{"limit":<v0>}',  # the base model wrote a placeholder for a source without literals
    '{"limit":<v3>}',  # an index beyond the literals
    '{"value":"<v7>"}',  # a whole string
    '{"value":"x <v7> y"}',  # inside a string
])
def test_unknown_placeholders_leave_an_output_that_is_not_json(generated):
    restored = unmask(generated, mask_source("limit" if "<v0>" in generated else "limit 5").literals)
    assert "<v" in restored
    with pytest.raises(json.JSONDecodeError):
        json.loads(restored)
    assert nl2query.normalise(restored) is None
    assert not all(r.passed for r in nl2query.check({"question": "q", "columns": ["a"]}, restored))


def test_the_task_exposes_its_masker_and_placeholders_are_the_tokenizers():
    assert hooks.literal_masker(nl2query.TASK) is LITERALS
    masked = mask_source(" ".join(str(100 + i) for i in range(MAX_LITERALS)))
    assert {f"<v{i}>" for i in range(MAX_LITERALS)} == set(hooks.PLACEHOLDERS) <= set(masked.text.split())


def test_literals_beyond_the_placeholder_count_stay_as_text():
    numbers = " ".join(str(100 + i) for i in range(MAX_LITERALS + 2))
    masked = mask_source(numbers)
    assert len(masked.literals) == MAX_LITERALS
    assert masked.text.endswith(f"<v{MAX_LITERALS - 1}> {100 + MAX_LITERALS} {101 + MAX_LITERALS}")


def test_column_list_is_left_alone():
    text = _source("count", columns=("a", "b2", "http.status_code", "99th_latency", "p.5"))
    assert mask_source(text).text == text
