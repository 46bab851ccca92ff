"""The annotation app in headless Chromium: the queue, filters, a bad label with a correction saved
into DuckDB, a refused correction, escaping, two annotators, double submits and a busy database."""

import time

import pytest

from pipeline.engine.label.review import editable_output
from tests.annotate.seed import COLUMNS, GOOD, HOSTILE, TASK, held_database
from tests.browser import browser

expect = pytest.importorskip("playwright.sync_api").expect
CORRECTION = "textarea[id^='correction_']"


@pytest.fixture(scope="module")
def chromium():
    with browser() as instance:
        yield instance


@pytest.fixture
def page(chromium, app):
    context = chromium.new_context()
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(app.url)
    page.wait_for_selector("[data-form-key]")
    yield page
    context.close()
    assert errors == []


def open_queue(page, annotator="ana", status="all", order="failing", **selects):
    """Set the annotator and filters, load the queue and wait for its first trace."""
    page.fill("#annotator", annotator)
    page.select_option("#f_status", status)
    page.select_option("#order", order)
    for name, value in selects.items():
        page.select_option(f"#{name}", value)
    key = page.get_attribute("[data-form-key]", "data-form-key")
    page.click("#load")
    page.wait_for_function(f"document.querySelector('[data-form-key]')?.dataset.formKey !== '{key}'")


def on_trace(page, trace_id):
    expect(page.locator(".trace-facts")).to_contain_text(f"trace: {trace_id}")


def test_filter_label_bad_with_correction_and_undo(page, app):
    open_queue(page, f_check="unknown_column")
    on_trace(page, "t_column")
    expect(page.locator("#progress")).to_contain_text("Trace 1 of 1 in the queue")
    expect(page.locator(".checks-failed")).to_contain_text("column 'latency' is not in the dataset's columns")
    page.keyboard.press("b")
    page.fill("textarea[id^='critique_']", "latency is not a column; duration_ms is")
    page.fill(CORRECTION, GOOD)
    expect(page.locator(".correction-ok")).to_contain_text(f"passes all {len(TASK.check_names)} assertions")
    page.press(CORRECTION, "Control+Enter")
    expect(page.locator("#notice")).to_contain_text("t_column: bad: saved")
    expect(page.locator("#progress")).to_contain_text("1 decided in this session")
    rows = app.rows("SELECT label, failure_mode, correction, critique, annotator, source FROM annotations "
                    "WHERE trace_id = 't_column'")
    assert rows == [("bad", "unknown_column", GOOD, "latency is not a column; duration_ms is", "ana", "app")]

    page.keyboard.press("u")  # undo: the row goes and the form comes back as it was (the correction indented)
    expect(page.locator("#notice")).to_contain_text("undone")
    on_trace(page, "t_column")
    expect(page.locator(CORRECTION)).to_have_value(editable_output(TASK, {"columns": COLUMNS}, GOOD))
    assert app.rows("SELECT count(*) FROM annotations WHERE trace_id = 't_column'") == [(0,)]
    page.click("[data-action=save]")
    expect(page.locator("#notice")).to_contain_text("t_column: bad: saved")
    assert app.rows("SELECT count(*) FROM annotations WHERE trace_id = 't_column'") == [(1,)]


def test_invalid_correction_is_refused_with_the_reason(page, app):
    open_queue(page, f_source="langsmith")
    on_trace(page, "t_json")
    page.keyboard.press("b")
    page.fill(CORRECTION, '{"calculations": [{"op": "AVG", "column": "nope"}]}')
    expect(page.locator(".correction-invalid")).to_contain_text("unknown_column: column 'nope' is not in")
    page.click("[data-action=save]")
    expect(page.locator("#notice")).to_contain_text("Not saved: correction fails assertions: unknown_column")
    on_trace(page, "t_json")
    assert app.rows("SELECT count(*) FROM annotations WHERE trace_id = 't_json'") == [(0,)]


def test_trace_content_renders_as_text(page):
    open_queue(page, order="newest")
    on_trace(page, "t_html")
    expect(page.locator(".input-question")).to_have_text(f"show {HOSTILE}")
    expect(page.locator("pre.output")).to_have_text(HOSTILE)
    expect(page.locator(CORRECTION)).to_have_value(HOSTILE)
    expect(page.locator("select[id^='mode_'] option", has_text="onerror")).to_have_text(HOSTILE)
    assert page.locator("#decision-form img, .card img").count() == 0
    assert page.evaluate("window.__pwned") is None


def test_two_annotators_and_a_double_submit(chromium, app):
    pages = []
    for _ in range(2):
        p = chromium.new_context().new_page()
        p.goto(app.url)
        p.wait_for_selector("[data-form-key]")
        pages.append(p)
    ana, ben = pages
    open_queue(ana, "ana", order="latency")
    open_queue(ben, "ben", order="latency")
    on_trace(ana, "t_slow")
    on_trace(ben, "t_slow")
    ana.keyboard.press("g")
    ana.dblclick("[data-action=save]")  # a double submit records one decision
    expect(ana.locator("#notice")).to_contain_text("t_slow: good: saved")
    ben.keyboard.press("n")
    ben.keyboard.press("p")  # shown again: marked as decided by someone else meanwhile
    expect(ben.locator(".decided-elsewhere")).to_contain_text("Decided by ana since your queue loaded")
    ben.keyboard.press("b")
    ben.keyboard.press("s")
    expect(ben.locator("#notice")).to_contain_text("t_slow: bad: saved")
    assert sorted(app.rows("SELECT annotator, label FROM annotations WHERE trace_id = 't_slow'")) == [
        ("ana", "good"), ("ben", "bad")]
    for p in pages:
        p.context.close()


def test_saving_while_a_run_holds_the_database(page, app):
    open_queue(page, "cy", f_check="invalid_json", order="newest")
    on_trace(page, "t_html")
    page.keyboard.press("b")
    with held_database(app.database, 3.0):
        page.keyboard.press("s")
        expect(page.locator("#notice")).to_contain_text("t_html: bad: queued: database busy")
        expect(page.locator("#outbox-count")).to_contain_text("1 decision(s) waiting")
        page.click("#load")  # reads fall back to the queue loaded before
        expect(page.locator("#read-notice")).to_contain_text("Database busy")
        on_trace(page, "t_json")
    expect(page.locator("#outbox-count")).to_have_count(0, timeout=10_000)  # the flusher wrote it
    deadline = time.monotonic() + 5
    while not (rows := app.rows("SELECT annotator FROM annotations WHERE trace_id = 't_html'")) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert rows == [("cy",)]
    assert list(app.outbox.glob("*.jsonl")) == []
