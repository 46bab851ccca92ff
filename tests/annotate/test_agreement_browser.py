"""Two annotators, a second opinion and a lead, in headless Chromium at 1600x1000: a trace routed to
two annotators comes first in the second annotator's queue with the first decision hidden; they
disagree; the Agreement tab shows raw agreement and Cohen's kappa; the trace waits under
"disagreements" with both decisions side by side; a non-lead is told why they cannot settle it;
the lead (signed in by the proxy's header) adjudicates, the trace leaves the queue and
decided_labels gives the lead's label. Each save reaches the analysts' snapshot within seconds.

Screenshots go to FLYWHEEL_SCREENSHOTS when it names a folder (else the test's tmp folder)."""

import time

import duckdb
import pytest

from pipeline.engine.core.snapshot import snapshot_path
from pipeline.engine.label.agreement import needs_second_opinion
from tests.annotate.conftest import open_page, serve
from tests.annotate.seed import TRACES, seed_database

expect = pytest.importorskip("playwright.sync_api").expect
SHARE = 0.5
#: Decided before the app starts: both annotators agree on these two routed traces.
AGREED = {"t_column": ("bad", "unknown_column"), "t_slow": ("good", None)}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    assert [t for t in TRACES if needs_second_opinion(t, SHARE)] == ["t_column", "t_json", "t_slow", "t_html"]
    folder = tmp_path_factory.mktemp("annotate_agreement")
    database = seed_database(folder / "flywheel.duckdb")
    with duckdb.connect(database) as conn:
        for n, (trace_id, (label, mode)) in enumerate(AGREED.items()):
            for annotator in ("ana", "ben"):
                conn.execute("INSERT INTO annotations (annotation_id, trace_id, label, failure_mode, annotator, "
                             "annotated_at, source) VALUES (?, ?, ?, ?, ?, TIMESTAMPTZ '2026-10-07 00:00:00+00' "
                             "+ to_minutes(?), 'app')",
                             [f"ann_{annotator}_{trace_id}", trace_id, label, mode, annotator, n])
    with open(folder / "app.log", "wb") as log:
        yield from serve(database, folder, log, "--second-opinion-share", str(SHARE), "--leads", "Maya, Lee")


def load(page, annotator=None, status="not_mine", **selects):
    """Load the queue (as ``annotator`` unless a proxy names the person) and wait for the new view."""
    if annotator is not None:
        page.fill("#annotator", annotator)
    page.select_option("#f_status", status)
    for name, value in selects.items():
        page.select_option(f"#{name}", value)
    key = page.evaluate("document.querySelector('[data-form-key]')?.dataset.formKey ?? null")
    page.click("#load")
    page.wait_for_function(f"(document.querySelector('[data-form-key]')?.dataset.formKey ?? null) !== {key!r}"
                           if key is not None else "document.querySelector('#trace .card') !== null")


def on_trace(page, trace_id):
    expect(page.locator(".trace-facts")).to_contain_text(f"trace: {trace_id}")


def in_snapshot(app, sql, params=(), deadline_s=30.0):
    """Poll the analysts' snapshot until ``sql`` returns rows (the app publishes it every few
    seconds after a save); the rows, or AssertionError at the deadline."""
    snapshot = snapshot_path(app.database)
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if snapshot.exists():
            with duckdb.connect(str(snapshot), read_only=True) as conn:
                rows = conn.execute(sql, list(params)).fetchall()
            if rows:
                return rows
        time.sleep(0.2)
    raise AssertionError(f"{snapshot} did not show {sql!r} within {deadline_s} s")


def test_second_opinion_disagreement_agreement_and_adjudication(chromium, app, screens):
    ana = open_page(chromium, app)
    load(ana, "ana", f_source="langsmith")  # t_json: routed to two annotators, nobody decided it yet
    on_trace(ana, "t_json")
    expect(ana.locator(".decisions-none")).to_be_visible()
    ana.keyboard.press("b")
    ana.fill("textarea[id^='critique_']", "the output is not JSON")
    ana.keyboard.press("Escape")
    ana.keyboard.press("s")
    expect(ana.locator("#notice")).to_contain_text("t_json: bad: saved")

    ben = open_page(chromium, app)
    load(ben, "ben")  # the default queue: the second opinion wanted from ben comes first
    on_trace(ben, "t_json")
    expect(ben.locator("#progress")).to_contain_text("1 second opinion(s) wanted from you")
    expect(ben.locator(".second-opinion")).to_contain_text("1 other annotator(s) decided this trace")
    expect(ben.locator(".decisions")).to_have_count(0)  # ana's decision is hidden: the second opinion is independent
    load(ben, status="second_opinion")  # and the status filter of its own
    on_trace(ben, "t_json")
    expect(ben.locator("#progress")).to_contain_text("Trace 1 of 1 in the queue")
    ben.keyboard.press("g")
    ben.keyboard.press("s")
    expect(ben.locator("#notice")).to_contain_text("t_json: good: saved")
    assert in_snapshot(app, "SELECT label FROM annotations WHERE trace_id = 't_json' AND annotator = 'ben'") \
        == [("good",)]  # the analysts' copy has the new row within seconds

    ben.click("a[data-value=agreement]")  # 3 pairs: agreed twice (bad, good), disagreed once
    headline = ben.locator(".agreement-headline")
    expect(headline).to_contain_text("Cohen's kappa 0.40 (fair), raw agreement 67% over 3 pair(s) of decisions "
                                     "on 3 trace(s)")
    expect(ben.locator(".aspect-label td").nth(4)).to_have_text("67%")
    expect(ben.locator(".disagreements-waiting")).to_contain_text("1 disagreement(s) wait for a lead")
    ben.screenshot(path=str(screens / "agreement-tab.png"))

    ben.click("a[data-value=review]")  # a non-lead sees the dispute side by side, and why they cannot settle it
    load(ben, status="disagreements")
    on_trace(ben, "t_json")
    expect(ben.locator("#side-by-side")).to_contain_text("Disagreement on label")
    expect(ben.locator(".not-a-lead")).to_contain_text("ben is not one: the leads are Maya, Lee")
    expect(ben.locator("[data-action=adjudicate]")).to_have_count(0)

    maya = open_page(chromium, app, extra_http_headers={"X-Forwarded-User": "maya"})  # the proxy names the lead
    load(maya, status="disagreements")
    on_trace(maya, "t_json")
    table = maya.locator("#side-by-side")
    expect(table.locator("thead th")).to_have_text(["", "ana", "ben"])
    expect(table.locator("td.label")).to_have_text(["bad", "good"])
    expect(table.locator("td.failure-mode")).to_have_text(["invalid_json", "(none)"])
    expect(table.locator("td.critique").first).to_have_text("the output is not JSON")
    table.locator("[data-adopt]").first.click()  # ana's decision into the form
    expect(maya.locator("input[type=radio][value=bad]")).to_be_checked()
    expect(maya.locator("select[id^='mode_']")).to_have_value("invalid_json")
    expect(maya.locator("textarea[id^='critique_']")).to_have_value("the output is not JSON")
    maya.screenshot(path=str(screens / "adjudicate-side-by-side.png"))
    maya.click("[data-action=adjudicate]")
    expect(maya.locator("#notice")).to_contain_text("t_json: bad: saved as the adjudication: the trace is settled")
    expect(maya.locator("#progress")).to_contain_text("Trace 0 of 0 in the queue")  # it left the queue
    load(maya, status="disagreements")
    expect(maya.locator("#trace")).to_contain_text("Nothing to review with these filters.")

    assert app.rows("SELECT annotator, label, failure_mode, role FROM annotations WHERE role = 'adjudication'") == [
        ("maya", "bad", "invalid_json", "adjudication")]
    assert app.rows("SELECT label, failure_mode, annotator, decided_by FROM decided_labels WHERE trace_id = 't_json'") \
        == [("bad", "invalid_json", "maya", "adjudication")]
    assert app.rows("SELECT count(*) FROM disagreements") == [(0,)]
    assert in_snapshot(app, "SELECT label FROM decided_labels WHERE trace_id = 't_json' AND decided_by = 'adjudication'") \
        == [("bad",)]

    load(ben, status="all", f_source="langsmith")  # settled, for everyone who opens it
    on_trace(ben, "t_json")
    expect(ben.locator(".settled")).to_contain_text("maya's adjudication, bad (invalid_json)")
    expect(ben.locator(".decisions")).to_contain_text("Adjudication by maya: bad (invalid_json)")
    for page in (ana, ben, maya):
        assert page.errors == []
        page.context.close()
