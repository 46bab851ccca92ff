"""One redaction for every client that holds a key: its own keys, and anything shaped like a key."""

from pipeline.engine.core.secrets import redact


def test_the_given_secrets_and_key_like_strings_are_replaced():
    text = ("HTTP 403 for x-api-key dummy-key-1; also sk-proj-AbC123_x, lsv2_pt_0123abcd_99, ls__abcdef012 and "
            "Authorization: Bearer eyJhbGciOi.payload")
    assert redact(text, ["dummy-key-1"]) == (
        "HTTP 403 for x-api-key ***; also ***, ***, *** and Authorization: ***")


def test_empty_secrets_are_skipped_and_plain_words_kept():
    text = "skip this: risk-free ls_files and lsv2 stay; task-id 42"
    assert redact(text, [None, ""]) == text
