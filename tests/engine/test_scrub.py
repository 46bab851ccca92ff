"""PII scrubbing: realistic secrets and personal data are replaced, near misses are left alone."""

import json
import logging

import pytest
import spacy

from pipeline.engine.core import pii
from pipeline.engine.core.scrub import DEFAULT_PATTERNS, pattern, patterns_with, scrub_json_text, scrub_text, scrub_value

FOUND = [
    ("Contact jane.doe+billing@example.co.uk about it", "Contact [EMAIL] about it", "email"),
    ("mail: J.Smith@sub.example-corp.com.", "mail: [EMAIL].", "email"),
    ("call +1 415-555-0132 now", "call [PHONE] now", "phone"),
    ("UK office +44 20 7946 0958", "UK office [PHONE]", "phone"),
    ("cell (415) 555-0132 or 415.555.0132", "cell [PHONE] or [PHONE]", "phone"),
    ("paid with 4111 1111 1111 1111 yesterday", "paid with [CREDIT_CARD] yesterday", "credit_card"),
    ("amex 3782-822463-10005", "amex [CREDIT_CARD]", "credit_card"),
    ("card=5555555555554444", "card=[CREDIT_CARD]", "credit_card"),
    ("client 192.168.10.23 connected", "client [IP_ADDRESS] connected", "ip_address"),
    ("from 2001:db8:85a3::8a2e:370:7334 via proxy", "from [IP_ADDRESS] via proxy", "ip_address"),
    ("OPENAI_API_KEY=sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z", "OPENAI_API_KEY=[API_KEY]", "api_key"),
    ("key sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWx-yz012345", "key [API_KEY]", "api_key"),
    ("langsmith lsv2_pt_0123456789abcdef0123456789abcdef_0123456789", "langsmith [API_KEY]", "api_key"),
    ("aws AKIAIOSFODNN7EXAMPLE", "aws [API_KEY]", "api_key"),
    ("token ghp_0123456789abcdefghijABCDEFGHIJ0123456789", "token [API_KEY]", "api_key"),
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlLXZhbHVl",
     "Authorization: Bearer [API_KEY]", "api_key"),
    ('{"password": "hunter2hunter2"}', '{"password": "[API_KEY]"}', "api_key"),
    ("slack xoxb-123456789012-abcdefghij", "slack [API_KEY]", "api_key"),
    ("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "AWS_SECRET_ACCESS_KEY=[API_KEY]", "api_key"),
    ("client_secret=8f3kLq0vZ2xYp7Rw", "client_secret=[API_KEY]", "api_key"),
    ("DB_PASSWORD=Tr0ub4dor&3", "DB_PASSWORD=[API_KEY]", "api_key"),
    ("DATABASE_URL=postgres://app:hunter2hunter2@db:5432/app", "DATABASE_URL=postgres://app:[API_KEY]@db:5432/app",
     "api_key"),
    ("call (415)555-0100 today", "call [PHONE] today", "phone"),
    ("London office 020 7946 0958", "London office [PHONE]", "phone"),
    ("listening on ::1 and 2606:4700:4700::1111", "listening on [IP_ADDRESS] and [IP_ADDRESS]", "ip_address"),
    ("SSN 219-09-9999 on the form", "SSN [SSN] on the form", "ssn"),
    ("wire it to GB82 WEST 1234 5698 7654 32", "wire it to [IBAN]", "iban"),
]

NEAR_MISSES = [
    "ts 2026-10-16T02:38:21.559Z and date 2026-10-16",
    "app_version web-3.8.2, release 1.2.3",
    "latency 1006 ms over 7200 s, p95 duration_ms",
    "order 4111 1111 1111 1112 (fails the Luhn check)",
    "trace.id is '4bf92f3577b34da6' and session sess_8a9db3eb6a",
    "999.12.1.1 is not an address, nor is 10.0.0",
    "meeting at 10:30:00 in room 12",
    "user@localhost and @handle are not emails",
    "task-sk-tiny and the skeleton key",
    "count 12345678 rows; id 0000000000000000",
    "version 1.2.3.4 and v1.2.3.4",
    "order 4532015112830366 shipped",  # passes the Luhn check, but in one block with no card word
    "buffer sizes 256 512 1024",
    "ISBN 0-306-40615-2",
    "sample SSN 123-45-6789 and 078-05-1120",
]


@pytest.mark.parametrize("text,expected,kind", FOUND, ids=[f[2] + ":" + f[0][:20] for f in FOUND])
def test_realistic_sensitive_text_is_replaced_and_counted(text, expected, kind):
    result = scrub_text(text)
    assert result.text == expected
    assert result.counts.get(kind, 0) >= 1 and sum(result.counts.values()) == expected.count("[")


@pytest.mark.parametrize("text", NEAR_MISSES)
def test_near_misses_are_left_alone(text):
    result = scrub_text(text)
    assert result.text == text and result.counts == {}


def test_configured_patterns_are_added_to_the_defaults():
    patterns = patterns_with({"employee_id": r"\bEMP-\d{6}\b"})
    result = scrub_text("EMP-004211 mailed bob@example.org", patterns)
    assert result.text == "[EMPLOYEE_ID] mailed [EMAIL]"
    assert result.counts == {"employee_id": 1, "email": 1}
    assert scrub_text("EMP-004211").text == "EMP-004211"  # not a default
    only = scrub_text("bob@example.org EMP-004211", [pattern("employee_id", r"EMP-\d+", "<id>")])
    assert only.text == "bob@example.org <id>"


def test_json_values_are_scrubbed_inside_and_stay_valid_json():
    raw = json.dumps({"question": "why did jane@example.com get 500s from 10.1.2.3?",
                      "columns": ["user.email", "client.ip"], "n": 5})
    result = scrub_json_text(raw)
    assert json.loads(result.text) == {"question": "why did [EMAIL] get 500s from [IP_ADDRESS]?",
                                       "columns": ["user.email", "client.ip"], "n": 5}
    assert result.counts == {"email": 1, "ip_address": 1}
    value, counts = scrub_value(["+1 415 555 0132", {"k": None}])
    assert value == ["[PHONE]", {"k": None}] and counts == {"phone": 1}


def test_every_default_pattern_has_a_name_and_a_bracketed_replacement():
    assert {p.name for p in DEFAULT_PATTERNS} == {"api_key", "email", "iban", "credit_card", "ssn", "ip_address",
                                                  "phone", "person", "location"}
    assert all(p.replacement.startswith("[") for p in DEFAULT_PATTERNS)


def test_where_two_patterns_overlap_the_earlier_one_wins():
    patterns = [pattern("first", r"ab"), pattern("second", r"bc"), pattern("third", r"d")]
    assert scrub_text("abcd", patterns).text == "[FIRST]c[THIRD]"
    assert scrub_text("abcd", patterns[1:]).text == "a[SECOND][THIRD]"


@pytest.fixture
def pii_settings(monkeypatch):
    """Sets PII environment variables for one test, re-read by the scrubber."""
    def configure(**variables):
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        pii.settings.cache_clear()

    yield configure
    monkeypatch.undo()
    pii.settings.cache_clear()


def test_phone_regions_are_configurable_and_an_unknown_one_fails_plainly(pii_settings):
    pii_settings(FLYWHEEL_PII_PHONE_REGIONS="US")
    assert scrub_text("London 020 7946 0958, NY (212) 555-0147, +44 20 7946 0958").text == \
        "London 020 7946 0958, NY [PHONE], [PHONE]"
    pii_settings(FLYWHEEL_PII_PHONE_REGIONS="US, XX")
    with pytest.raises(ValueError, match="FLYWHEEL_PII_PHONE_REGIONS: XX not a region"):
        scrub_text("call (212) 555-0147")


def test_without_an_ner_model_names_and_addresses_are_left_and_a_warning_says_so(pii_settings, caplog):
    pii_settings(FLYWHEEL_PII_PHONE_REGIONS="GB,US")  # a new configuration: its analyzer is built now
    with caplog.at_level(logging.WARNING, logger=pii.__name__):
        result = scrub_text("Jane Doe lives at 742 Evergreen Terrace, Springfield; jane@example.com")
    assert result.text == "Jane Doe lives at 742 Evergreen Terrace, Springfield; [EMAIL]"
    assert "finds no person names or postal addresses: no NER model is configured" in caplog.text


def test_with_an_ner_model_names_and_places_are_replaced(pii_settings, tmp_path):
    nlp = spacy.blank("en")  # a stand-in for an installed pipeline such as en_core_web_lg
    nlp.add_pipe("entity_ruler").add_patterns([
        {"label": "PERSON", "pattern": "Jane Doe"}, {"label": "GPE", "pattern": "Springfield"},
        {"label": "FAC", "pattern": "742 Evergreen Terrace"}, {"label": "ORG", "pattern": "Acme"}])
    nlp.to_disk(tmp_path / "ner")
    pii_settings(FLYWHEEL_PII_NER_MODEL=str(tmp_path / "ner"))
    result = scrub_text("Jane Doe of Acme lives at 742 Evergreen Terrace, Springfield; call her on 020 7946 0958")
    assert result.text == "[PERSON] of Acme lives at [LOCATION], [LOCATION]; call her on [PHONE]"
    assert result.counts == {"person": 1, "location": 2, "phone": 1}


def test_an_ner_model_that_is_not_installed_fails_plainly(pii_settings):
    pii_settings(FLYWHEEL_PII_NER_MODEL="en_core_web_nonexistent")
    with pytest.raises(ValueError, match="neither an installed spaCy pipeline nor a folder"):
        scrub_text("Jane Doe")
