"""The annotation app as a labeller sees it, in headless Chromium at 1600x1000: the trace and the
form side by side, each new trace from its top, going back to edit my own decision (one current
row, the history kept), the correction pre-filled in one indented form with a live diff, the
task's failure modes and guidelines, and who is deciding (a remembered name, or a proxy's header;
never nobody).

Screenshots go to FLYWHEEL_SCREENSHOTS when it names a folder (else the test's tmp folder)."""

import json

import pytest

from pipeline.engine.label.review import editable_output
from tests.annotate.conftest import VIEWPORT, open_page, serve
from tests.annotate.seed import COLUMNS, GOOD, TASK, TRACES, UNKNOWN_COLUMN, seed_database

expect = pytest.importorskip("playwright.sync_api").expect
CORRECTION = "textarea[id^='correction_']"
#: A dataset with 400 columns: the trace is far taller than the window.
WIDE = COLUMNS + [f"attribute.custom_field_{n:03d}" for n in range(400)]
#: t_wide comes first when the queue is newest first, then t_html, t_slow, t_json, ...
LAYOUT_TRACES = {**TRACES, "t_wide": ("demo", 6, "p95 duration by service on the wide dataset", GOOD, 900, None)}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    folder = tmp_path_factory.mktemp("annotate_layout")
    database = seed_database(folder / "flywheel.duckdb", LAYOUT_TRACES, {"t_wide": WIDE})
    with open(folder / "app.log", "wb") as log:
        yield from serve(database, folder, log)


@pytest.fixture
def page(chromium, app):
    page = open_page(chromium, app)
    yield page
    page.context.close()
    assert page.errors == []


FORM_KEY = "document.querySelector('[data-form-key]')?.dataset.formKey ?? null"


def next_view(page, act):
    """Do ``act`` and wait until the page shows another trace view (or the end of the queue)."""
    key = page.evaluate(FORM_KEY)
    act()
    page.wait_for_function(f"({FORM_KEY}) !== {json.dumps(key)}")


def open_queue(page, annotator="ana", order="newest", **selects):
    if annotator is not None:
        page.fill("#annotator", annotator)
    page.select_option("#f_status", "all")
    page.select_option("#order", order)
    for name, value in selects.items():
        page.select_option(f"#{name}", value)
    next_view(page, lambda: page.click("#load"))


def on_trace(page, trace_id):
    expect(page.locator(".trace-facts")).to_contain_text(f"trace: {trace_id}")


def in_viewport(page, selector) -> bool:
    box = page.locator(selector).bounding_box()
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= VIEWPORT["height"] \
        and box["x"] >= 0 and box["x"] + box["width"] <= VIEWPORT["width"]


def scroll_main(page, pixels: int) -> None:
    page.evaluate(f"document.querySelector('.main').scrollTop = {pixels}")


def rows(app, trace_id, annotator):
    return app.rows("SELECT annotation_id, label, failure_mode, correction, supersedes FROM annotations "
                    "WHERE trace_id = ? AND annotator = ? ORDER BY annotated_at", [trace_id, annotator])


def current(app, trace_id, annotator):
    return app.rows("""SELECT annotation_id, label FROM annotations WHERE trace_id = ? AND annotator = ?
                       QUALIFY row_number() OVER (PARTITION BY trace_id, annotator
                                                  ORDER BY annotated_at DESC, annotation_id DESC) = 1""",
                    [trace_id, annotator])


def test_trace_and_form_side_by_side_without_scrolling(page, screens):
    open_queue(page, order="failing")
    on_trace(page, "t_html")
    assert page.evaluate("document.querySelector('.main').scrollTop") == 0
    assert in_viewport(page, ".trace-facts") and in_viewport(page, "[data-action=save]")
    assert in_viewport(page, CORRECTION) and in_viewport(page, "input[type=radio][value=bad]")
    trace, form = page.locator("#trace > .card").bounding_box(), page.locator("#decision-form").bounding_box()
    assert form["x"] >= trace["x"] + trace["width"] and form["y"] < trace["y"] + 200  # beside, not below
    page.screenshot(path=str(screens / "layout-1600x1000.png"))


def test_each_new_trace_is_shown_from_its_top(page, screens):
    open_queue(page)
    on_trace(page, "t_wide")
    scroll_main(page, 1200)  # reading the end of a long trace
    assert not in_viewport(page, ".trace-facts")
    page.screenshot(path=str(screens / "scrolled-down-before-save.png"))
    page.keyboard.press("g")
    next_view(page, lambda: page.keyboard.press("s"))
    on_trace(page, "t_html")
    expect(page.locator("#notice")).to_contain_text("t_wide: good: saved")
    page.wait_for_function("document.querySelector('.main').scrollTop === 0")
    assert in_viewport(page, ".trace-facts") and in_viewport(page, "[data-action=save]")
    page.screenshot(path=str(screens / "after-save-from-the-top.png"))
    for key, trace_id in (("p", "t_wide"), ("n", "t_html")):  # previous and skip too
        scroll_main(page, 1200)
        next_view(page, lambda: page.keyboard.press(key))
        on_trace(page, trace_id)
        page.wait_for_function("document.querySelector('.main').scrollTop === 0")
        assert in_viewport(page, ".trace-facts")


def test_going_back_shows_and_edits_my_decision_keeping_the_history(page, app, screens):
    open_queue(page, f_check="unknown_column")
    on_trace(page, "t_column")
    page.keyboard.press("b")
    page.fill("textarea[id^='critique_']", "latency is not a column")
    page.fill(CORRECTION, GOOD)
    next_view(page, lambda: page.click("[data-action=save]"))
    expect(page.locator("#notice")).to_contain_text("t_column: bad: saved")
    first = rows(app, "t_column", "ana")[0][0]

    next_view(page, lambda: page.keyboard.press("p"))  # back: the form holds my decision
    on_trace(page, "t_column")
    expect(page.locator(".my-decision")).to_contain_text("Your decision of")
    expect(page.locator(".my-decision")).to_contain_text("bad (unknown_column)")
    expect(page.locator("input[type=radio][value=bad]")).to_be_checked()
    expect(page.locator("select[id^='mode_']")).to_have_value("unknown_column")
    expect(page.locator("textarea[id^='critique_']")).to_have_value("latency is not a column")
    expect(page.locator(CORRECTION)).to_have_value(editable_output(TASK, {"columns": COLUMNS}, GOOD))
    expect(page.locator(".decisions")).to_contain_text("ana (you): bad (unknown_column)")
    page.screenshot(path=str(screens / "revisit-my-decision.png"))

    page.keyboard.press("g")  # I change my mind: good after all, no correction
    page.click("[data-reset]")
    expect(page.locator(".correction-unchanged")).to_be_visible()
    next_view(page, lambda: page.keyboard.press("s"))
    expect(page.locator("#notice")).to_contain_text("t_column: good: saved, replacing your earlier decision")
    history = rows(app, "t_column", "ana")
    assert [(label, mode, correction) for _, label, mode, correction, _ in history] == [
        ("bad", "unknown_column", GOOD), ("good", None, None)]
    assert history[1][4] == first  # the edit names the decision it supersedes
    assert current(app, "t_column", "ana") == [(history[1][0], "good")]

    next_view(page, lambda: page.keyboard.press("p"))  # the edit is what I see now
    expect(page.locator("input[type=radio][value=good]")).to_be_checked()
    expect(page.locator(".decisions")).to_contain_text("ana (you): good")
    expect(page.locator(".decisions")).to_contain_text("1 earlier version(s) kept")
    next_view(page, lambda: page.keyboard.press("s"))  # saving it unchanged adds nothing
    expect(page.locator("#notice")).to_contain_text("t_column: unchanged")
    assert len(rows(app, "t_column", "ana")) == 2


def test_the_correction_is_indented_and_diffed_live(page):
    open_queue(page, "eve", f_check="unknown_column")
    on_trace(page, "t_column")
    indented = editable_output(TASK, {"columns": COLUMNS}, UNKNOWN_COLUMN)
    assert "\n" not in UNKNOWN_COLUMN and indented == json.dumps(json.loads(UNKNOWN_COLUMN), indent=2)
    expect(page.locator(CORRECTION)).to_have_value(indented)
    expect(page.locator("#correction-diff")).to_have_count(0)
    expect(page.locator(".diff-none")).to_contain_text("No changes")
    page.locator(CORRECTION).fill(indented.replace('"latency"', '"duration_ms"'))
    expect(page.locator(".diff-removed")).to_contain_text('"column": "latency"')
    expect(page.locator(".diff-added")).to_contain_text('"column": "duration_ms"')
    expect(page.locator(".correction-ok")).to_be_visible()
    page.locator(CORRECTION).fill(  # editing on keeps the diff current
        indented.replace('"AVG"', '"P95"').replace('"latency"', '"duration_ms"'))
    expect(page.locator(".diff-added")).to_have_count(2)
    page.click("[data-reset]")
    expect(page.locator(".diff-none")).to_be_visible()


def test_failure_modes_with_definitions_and_the_guidelines_are_on_the_page(page, screens):
    open_queue(page, "fay", f_check="unknown_column")
    expect(page.locator(".mode-definition")).to_contain_text("unknown_column: The query names a column")
    page.select_option("select[id^='mode_']", "wrong_time_range")  # a mode only people detect
    expect(page.locator(".mode-definition")).to_contain_text("The time window does not match the question")
    page.click("text=Team guidelines")
    expect(page.locator("#guidelines h1")).to_have_text("Reviewing nl2query traces")
    expect(page.locator("#guidelines")).to_contain_text("Pick the first thing a person would fix")
    page.click("text=Failure modes (20)")
    modes = page.locator("#failure-modes")
    expect(modes.locator("dt")).to_have_count(20)
    expect(modes.locator("dt").first).to_have_text("invalid_json")
    expect(modes).to_contain_text("Only a person can tell")
    expect(modes.locator("dt", has_text="missing_filter").locator("xpath=following-sibling::dd[1]")) \
        .to_contain_text("A condition the question states")
    page.locator("#failure-modes").scroll_into_view_if_needed()
    page.screenshot(path=str(screens / "guide-open.png"))


def test_saving_without_a_name_is_refused_and_a_name_is_remembered(chromium, app, screens):
    page = open_page(chromium, app)
    expect(page.locator("#annotator")).to_have_value("")  # never the OS user
    open_queue(page, annotator=None, f_check="invalid_json")
    on_trace(page, "t_html")
    expect(page.locator(".no-identity")).to_be_visible()
    page.keyboard.press("b")
    page.keyboard.press("s")
    expect(page.locator("#notice")).to_contain_text("Not saved: say who you are first")
    on_trace(page, "t_html")
    assert app.rows("SELECT count(*) FROM annotations WHERE trace_id = 't_html'") == [(0,)]
    page.screenshot(path=str(screens / "refused-without-a-name.png"))

    page.fill("#annotator", "dora")
    page.keyboard.press("Escape")  # out of the name field: keys are shortcuts again
    expect(page.locator(".no-identity")).to_have_count(0)
    next_view(page, lambda: page.keyboard.press("s"))
    expect(page.locator("#notice")).to_contain_text("t_html: bad: saved")
    assert [r[1] for r in rows(app, "t_html", "dora")] == ["bad"]
    page.reload()  # the browser remembers who I am
    page.wait_for_selector("[data-form-key]")
    expect(page.locator("#annotator")).to_have_value("dora")
    expect(page.locator("#progress")).to_contain_text("(1 by you)")
    assert page.errors == []
    page.context.close()


def test_a_proxy_header_names_the_annotator(chromium, app, screens):
    page = open_page(chromium, app, extra_http_headers={"X-Forwarded-User": "pat@example.com"})
    expect(page.locator("#identity")).to_contain_text("pat@example.com")
    expect(page.locator("#identity")).to_contain_text("X-Forwarded-User")
    expect(page.locator("#annotator")).to_have_count(0)  # nothing to type, nothing to get wrong
    open_queue(page, annotator=None, f_source="langsmith")
    on_trace(page, "t_json")
    expect(page.locator(".no-identity")).to_have_count(0)
    page.screenshot(path=str(screens / "proxy-identity.png"))
    page.keyboard.press("g")
    next_view(page, lambda: page.keyboard.press("s"))
    expect(page.locator("#notice")).to_contain_text("t_json: good: saved")
    assert [r[1] for r in rows(app, "t_json", "pat@example.com")] == ["good"]
    assert page.errors == []
    page.context.close()
