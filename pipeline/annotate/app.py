"""The annotation app (Shiny for Python): a review queue, one trace at a time beside its decision
form (a correction validated and diffed live), the task's failure modes and guidelines; an
Agreement tab (annotators' agreement, Cohen's kappa); disputed traces side by side for a lead to
adjudicate. All data work is :mod:`pipeline.engine.label.review`; this module is layout and
session state only.

Who decides: the name a proxy puts in a header (``user_header``, X-Forwarded-User by default),
else the name typed in the sidebar (remembered in the browser). A save without one is refused.
Who adjudicates: the ``leads`` (names compared without case), under the same identity.

A trace routed to two annotators that I have not decided shows no other annotator's decision
(the second opinion is independent) unless it is in dispute: then everyone's is side by side.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

import duckdb
from htmltools import HTML
from shiny import App, reactive, render, ui

from pipeline.annotate import views
from pipeline.engine.label.heal import failed_checks
from pipeline.engine.label.review import (
    ADJUDICATION, ANNOTATION, DUPLICATE, ORDERINGS, QUEUED, STATUSES, DatabaseBusy, Decision, Guide, QueueFilter,
    Review, ReviewError, editable_output, make_decision, new_annotation_id, output_diff, same_decision, same_output,
)
from pipeline.engine.tasks import Task, hooks

log = logging.getLogger(__name__)
QUEUE_SIZE = 500
#: The header a proxy in front of the app names the signed-in person in (``--user-header``).
PROXY_HEADER = "X-Forwarded-User"
NO_NAME = ("Not saved: say who you are first. Enter your name under \"Your name\" in the sidebar "
           "(this browser remembers it); decisions are recorded under it.")
SHORTCUTS = ("g good · b bad · Ctrl+Enter or s save · n/j next · p/k previous · u undo · "
             "e edit correction · c critique · Esc leave a field")
STYLE = """
.trace-input dt { font-weight: 600; } .trace-input dd { margin-left: 1em; white-space: pre-wrap; }
.fact { margin-right: 1.2em; } pre.output { background: #f6f8fa; padding: .6em; white-space: pre-wrap; max-height: 22em; overflow: auto; }
.notice-saved { color: #146c2e; } .notice-queued { color: #8a5a00; } .notice-error { color: #b02a37; }
.correction textarea { font-family: monospace; font-size: .85em; }
.review-columns { align-items: start; }
/* the form stays in view while a long trace scrolls by (the grid cell holding it sticks) */
.review-columns > :has(> .form-column) { position: sticky; top: 0; align-self: start; }
.form-column { max-height: calc(100vh - 5rem); overflow-y: auto; }
.form-column .card-body { padding: .6rem .9rem; } .form-column .form-group { margin-bottom: .4rem; }
pre.diff { background: #f6f8fa; padding: .4em; font-size: .8em; max-height: 16em; overflow: auto; margin: 0; }
.diff-added { background: #dafbe1; display: block; } .diff-removed { background: #ffebe9; display: block; }
.diff-hunk { color: #6e7781; display: block; } .diff-same { display: block; }
.mode-definition { font-size: .85em; margin: -.8em 0 .4em; } #notice { margin-bottom: .4em; }
.failure-modes dt { font-weight: normal; } .failure-modes dd { font-size: .9em; margin-left: 1em; }
.guidelines { font-size: .9em; } .guidelines h1 { font-size: 1.15rem; } .guidelines h2 { font-size: 1rem; margin-top: .8em; }
.side-by-side th { white-space: nowrap; } .side-by-side td { white-space: pre-wrap; vertical-align: top; }
.side-by-side pre.output { max-height: 14em; font-size: .8em; } #agreement { max-width: 70rem; }
.agreement-table td:nth-child(n+3) { font-variant-numeric: tabular-nums; }
"""


def _any(label: str, values: list[str]) -> dict[str, str]:
    return {"": label, **{v: v for v in values}}


def _options(review: Review) -> dict[str, list[str]]:
    try:
        return review.options()
    except DatabaseBusy:
        checks = list(review.task.check_names)
        return {"sources": [], "checks": checks,
                "failure_modes": list(dict.fromkeys(checks + [m.name for m in review.guide.failure_modes]))}


def _row(raw: dict[str, Any], task: Task) -> dict[str, Any]:
    """A queue row with its input parsed and its one-line ``summary`` (the task's display text)."""
    input = json.loads(raw["input"])
    return {**raw, "input": input, "summary": hooks.display_text(task, input)}


def is_lead(name: str, leads: list[str]) -> bool:
    """Whether ``name`` is one of the ``leads`` (compared without case or surrounding space)."""
    return bool(name.strip()) and name.strip().casefold() in {lead.strip().casefold() for lead in leads}


def proxy_user(headers: Any, header: str | None) -> str:
    """The person a proxy names in ``header`` of a request ('' when there is none, or no header
    is trusted)."""
    return (headers.get(header) or "").strip() if header else ""


def _identity(proxied: str, header: str | None, default: str):
    if proxied:
        return ui.div(ui.tags.b("Annotator: "), ui.tags.span(proxied, id="annotator-name"), ui.br(),
                      ui.tags.small(f"signed in by the proxy ({header})", class_="text-muted"),
                      id="identity", class_="mb-2")
    return ui.input_text("annotator", "Your name (remembered in this browser)", value=default,
                         placeholder="who is deciding?")


def _sidebar(options: dict[str, list[str]], identity):
    return ui.sidebar(
        identity,
        ui.input_select("f_mode", "Failure mode", _any("any", options["failure_modes"])),
        ui.input_select("f_check", "Failing check", _any("any", options["checks"])),
        ui.input_select("f_source", "Source", _any("any", options["sources"])),
        ui.input_checkbox("f_use_dates", "Only traces between", False),
        ui.input_date_range("f_dates", None),
        ui.input_select("f_status", "Label status", STATUSES),
        ui.input_select("order", "Order", {k: v[0] for k, v in ORDERINGS.items()}),
        ui.input_text("seed", "Random seed", value="0"),
        ui.input_action_button("load", "Load queue", class_="btn-secondary"),
        ui.output_ui("outbox"),
        ui.tags.small(SHORTCUTS, class_="text-muted"),
        width=300,
    )


def _guide(guide: Guide):
    """The task's failure modes and the team's guidelines, folded away until opened."""
    panels = [ui.accordion_panel(f"Failure modes ({len(guide.failure_modes)})",
                                 views.failure_modes(guide.failure_modes), value="modes")]
    if guide.guidelines:
        panels.insert(0, ui.accordion_panel("Team guidelines", views.guidelines(guide.guidelines), value="guidelines"))
    return ui.accordion(*panels, id="guide", open=False, class_="mt-2")


def _form(shown: dict[str, Any], modes: list[str], task: Task) -> ui.Tag:
    """The decision form of one trace view; its inputs are named after the view's key. It shows
    the person's own current decision when they have one (``prefill``)."""
    key, row, prefill = shown["key"], shown["row"], shown["prefill"]
    failing = [f["check_name"] for f in row["failed"] or []]
    mode = prefill.get("failure_mode") or (failing[0] if failing else "")
    known = mode in modes or not mode
    correction = (editable_output(task, row["input"], prefill["correction"]) if prefill.get("correction")
                  else shown["baseline"])
    return ui.div(
        views.my_decision(shown["mine"]),
        ui.input_radio_buttons(f"label_{key}", "Decision", {"good": "Good (g)", "bad": "Bad (b)"},
                               selected=prefill.get("label", ""), inline=True),
        ui.layout_columns(
            ui.input_select(f"mode_{key}", "Failure mode (if bad)", _any("(none)", modes),
                            selected=mode if known else ""),
            ui.input_text(f"newmode_{key}", "or a new failure mode", value="" if known else mode),
        ),
        ui.output_ui("mode_definition"),
        ui.input_text_area(f"critique_{key}", "Critique", value=prefill.get("critique") or "", rows=2, width="100%"),
        ui.input_text_area(f"correction_{key}", "Corrected output (edit to correct; validated as you type)",
                           value=correction, rows=10, width="100%", resize="vertical").add_class("correction"),
        ui.div(ui.output_ui("correction_status"),
               ui.tags.button("Reset to the output", type="button", class_="btn btn-link btn-sm p-0 ms-2 text-nowrap",
                              data_reset="correction", title="put the model's output back in the correction box"),
               class_="d-flex justify-content-between align-items-start"),
        ui.output_ui("identity_warning"),
        ui.output_ui("adjudication"),
        ui.div(
            ui.tags.button("Save (Ctrl+Enter)", type="button", class_="btn btn-sm btn-primary me-2", data_action="save"),
            ui.tags.button("Skip (n)", type="button", class_="btn btn-sm btn-outline-secondary me-2", data_action="next"),
            ui.tags.button("Back (p)", type="button", class_="btn btn-sm btn-outline-secondary me-2", data_action="previous"),
            ui.tags.button("Undo (u)", type="button", class_="btn btn-sm btn-outline-warning", data_action="undo",
                           title="undo the last decision saved in this session"),
            class_="my-2 text-nowrap"),
        ui.tags.small("Changes against the model's output (normalised):", class_="text-muted"),
        ui.output_ui("correction_diff"),
        data_form_key=str(key), data_baseline=shown["baseline"], id="decision-form",
    )


def create_app(review: Review, default_annotator: str = "", user_header: str | None = PROXY_HEADER,
               leads: list[str] | None = None) -> App:
    """The app over ``review`` (one per process; each browser session has its own state).
    ``default_annotator`` fills the name field of a browser that remembers none; ``user_header``
    is the request header a proxy names the person in (None: trust no header); ``leads`` may
    adjudicate disagreements."""
    leads = [lead.strip() for lead in leads or [] if lead.strip()]
    options = _options(review)
    task, guide = review.task, review.guide
    head = ui.head_content(ui.tags.style(STYLE),
                           ui.tags.script(HTML((Path(__file__).parent / "shortcuts.js").read_text("utf-8"))))

    def app_ui(request):
        return ui.page_sidebar(
            _sidebar(options, _identity(proxy_user(request.headers, user_header), user_header, default_annotator)),
            ui.output_ui("status"),
            ui.navset_tab(
                ui.nav_panel("Review", ui.layout_columns(
                    ui.div(ui.output_ui("trace"), ui.card(ui.card_header("Next in the queue"), ui.output_ui("upcoming"))),
                    ui.div(ui.output_ui("notice_box"), ui.output_ui("form"), _guide(guide), class_="form-column"),
                    col_widths=(7, 5), class_="review-columns mt-2"), value="review"),
                ui.nav_panel("Agreement", ui.div(ui.output_ui("agreement"), class_="mt-3"), value="agreement"),
                id="tab"),
            head,
            title="Flywheel: review traces",
        )

    def server(input, output, session):
        queue: reactive.Value[list[dict[str, Any]]] = reactive.value([])
        position = reactive.value(0)
        shown: reactive.Value[dict[str, Any] | None] = reactive.value(None)
        current_decisions: reactive.Value[list[dict[str, Any]] | None] = reactive.value(None)
        notice = reactive.value(("", ""))
        read_notice = reactive.value("")
        progress = reactive.value(None)
        modes = reactive.value(options["failure_modes"])
        decided_here = reactive.value(0)
        loaded_status = reactive.value("")
        history: list[tuple[Decision, dict[str, Any]]] = []
        keys = itertools.count(1)
        proxied = proxy_user(session.http_conn.headers, user_header)

        def me() -> str:
            return proxied or (input.annotator() or "").strip()

        async def refresh_progress():
            try:
                progress.set(await asyncio.to_thread(review.progress, me()))
            except DatabaseBusy:
                pass

        async def read_decisions(trace_id: str):
            try:
                return await asyncio.to_thread(review.decisions_for, trace_id)
            except DatabaseBusy:
                return None

        async def show(index: int, prefill: Decision | None = None):
            """Show the trace at ``index`` from its top, the form holding ``prefill`` or else my
            current decision on it."""
            rows = queue.get()
            index = max(0, min(index, len(rows)))
            position.set(index)
            await session.send_custom_message("flywheel-scroll-top", {})
            if index == len(rows):
                shown.set(None)
                return
            row = rows[index]
            found = await read_decisions(row["trace_id"])
            who = me()
            mine = review.current_decision(row["trace_id"], who, found) if who else None
            current_decisions.set(found.to_dicts() if found is not None else None)
            source = prefill or mine
            shown.set({"row": row, "annotation_id": new_annotation_id(), "key": next(keys),
                       "baseline": editable_output(task, row["input"], row["output"]), "mine": mine,
                       "prefill": asdict(source) if source else {}})

        async def load():
            dates = input.f_dates() if input.f_use_dates() else (None, None)
            filters = QueueFilter(failure_mode=input.f_mode() or None, check=input.f_check() or None,
                                  source=input.f_source() or None, since=dates[0], until=dates[1],
                                  status=input.f_status(), annotator=me())
            try:
                frame = await asyncio.to_thread(review.queue, filters, input.order(), QUEUE_SIZE, input.seed())
            except DatabaseBusy:
                read_notice.set("Database busy (a run is writing): showing the queue loaded before. "
                                "Load it again in a moment.")
                return
            except ReviewError as exc:
                notice.set(("error", str(exc)))
                return
            read_notice.set("")
            loaded_status.set(filters.status)
            try:  # failure modes people added since
                modes.set((await asyncio.to_thread(review.options))["failure_modes"])
            except DatabaseBusy:
                pass
            queue.set([_row(r, task) for r in frame.to_dicts()])
            await show(0)
            await refresh_progress()

        async def save(fields: dict[str, Any], role: str = ANNOTATION):
            view = shown.get()
            row, who = view["row"], me()
            if not who:
                notice.set(("error", NO_NAME))
                return
            if role == ADJUDICATION and not is_lead(who, leads):
                notice.set(("error", f"Not saved: only a lead can adjudicate ({who} is not one)."))
                return
            correction = fields.get("correction") or ""
            edited = bool(correction.strip()) and not same_output(task, row["input"], correction, row["output"])
            # the decision to supersede is my current one now (another tab of mine may have saved)
            found = await read_decisions(row["trace_id"])
            candidates = [d for d in (review.current_decision(row["trace_id"], who, found, role),
                                      view["mine"] if role == ANNOTATION else None)
                          if d is not None and d.annotator == who]
            previous = max(candidates, key=lambda d: (d.annotated_at, d.annotation_id)) if candidates else None
            try:
                decision = make_decision(
                    task, row["input"], annotation_id=view["annotation_id"], trace_id=row["trace_id"],
                    label=fields.get("label") or "", annotator=who,
                    failure_mode=(fields.get("newmode") or "").strip() or fields.get("mode"),
                    correction=correction if edited else None, critique=fields.get("critique"), previous=previous,
                    role=role)
            except ReviewError as exc:
                notice.set(("error", f"Not saved: {exc}"))
                return
            if previous is not None and same_decision(task, row["input"], previous, decision):
                notice.set(("saved", f"{row['trace_id']}: unchanged: your decision stays as it was"))
                await show(position.get() + 1)
                return
            try:
                status = await asyncio.to_thread(review.save, decision)
            except duckdb.Error as exc:
                notice.set(("error", f"Not saved: the database failed: {exc}"))
                return
            if status != DUPLICATE:
                history.append((decision, row))
                decided_here.set(decided_here.get() + 1)
            kind = "queued" if status == QUEUED else "saved"
            edit = ", replacing your earlier decision" if decision.supersedes else ""
            settles = "" if role != ADJUDICATION else (
                " as the adjudication: the trace is settled" if status != QUEUED else " (the adjudication: it settles "
                                                                                        "the trace once written)")
            notice.set((kind, f"{row['trace_id']}: {decision.label}: {status}{settles}{edit}"))
            if role == ADJUDICATION and loaded_status.get() == "disagreements":  # it leaves this queue
                queue.set([r for r in queue.get() if r["trace_id"] != row["trace_id"]])
                await show(position.get())
            else:
                await show(position.get() + 1)
            await refresh_progress()

        async def undo():
            if not history:
                notice.set(("error", "Nothing to undo in this session."))
                return
            decision, row = history.pop()
            result = await asyncio.to_thread(review.undo, decision.annotation_id)
            decided_here.set(decided_here.get() - 1)
            rows = queue.get()
            index = next((i for i, r in enumerate(rows) if r["trace_id"] == row["trace_id"]), None)
            if index is None:
                index = position.get()
                queue.set(rows[:index] + [row] + rows[index:])
            notice.set(("saved" if result == "undone" else "queued",
                        f"{decision.trace_id}: {decision.label} {result}"))
            await show(index, prefill=decision)
            await refresh_progress()

        @reactive.effect
        @reactive.event(input.load, ignore_none=False)
        async def _load():
            await load()

        @reactive.effect
        @reactive.event(input.action)
        async def _act():
            message = input.action()
            view = shown.get()
            action = message.get("action")
            if action in ("next", "previous"):
                await show(position.get() + (1 if action == "next" else -1))
                return
            # a save or undo belongs to the view it was made in: once that view is gone (the first
            # of a double submit was handled), a repeat is ignored
            stale = view is not None and str(view["key"]) != str(message.get("key"))
            if action in ("save", "adjudicate") and view is not None and not stale:
                await save(message.get("fields") or {}, ADJUDICATION if action == "adjudicate" else ANNOTATION)
            elif action == "undo" and not stale:
                await undo()

        @render.ui
        def status():
            rows, index, counts = queue.get(), position.get(), progress.get()
            parts = [f"Trace {min(index + 1, len(rows))} of {len(rows)} in the queue",
                     f"{decided_here.get()} decided in this session"]
            if rows and rows[0]["matching"] > len(rows):
                parts[0] += f" (first {len(rows)} of {rows[0]['matching']} matching)"
            if counts:
                parts.append(f"{counts['decided']} of {counts['traces']} traces decided ({counts['mine']} by you)")
                if counts["second_opinions"]:
                    parts.append(f"{counts['second_opinions']} second opinion(s) wanted from you")
                if counts["disagreements"]:
                    parts.append(f"{counts['disagreements']} disagreement(s) to adjudicate")
            return ui.div(
                ui.p(" · ".join(parts), id="progress", class_="mb-2"),
                (ui.div(read_notice.get(), class_="alert alert-warning", id="read-notice")
                 if read_notice.get() else None))

        @render.ui
        def notice_box():
            kind, text = notice.get()
            return ui.p(text, id="notice", class_=f"notice-{kind} fw-semibold") if text else None

        @render.ui
        def trace():
            view = shown.get()
            if view is None:
                return ui.card(ui.p("Nothing to review with these filters." if not queue.get()
                                    else "End of the queue. Load it again for more."))
            row = view["row"]
            failed, computed = row["failed"], False
            if not row["evaluated"]:
                failed = failed_checks(task, row["input"], row["output"])
                computed = True
            found, who = current_decisions.get(), me()
            dispute = None
            if found is None:
                decisions = ui.p("Decisions could not be read (database busy).")
            elif blinded(row, found, who):
                others = {r["annotator"] for r in found if r["current"] and r["role"] == ANNOTATION}
                decisions = views.hidden_decisions(len(others))
            else:
                decisions = views.decisions(found, set(row["decision_ids"]), who)
                dispute = disputed(row, found)
            side_by_side = None
            if dispute:  # first: what the lead settles
                corrections = {r["annotation_id"]: editable_output(task, row["input"], r["correction"])
                               for r in dispute if r["correction"]}
                side_by_side = views.side_by_side(dispute, corrections, row["disagree_on"], who)
            settlement = next((r for r in reversed(found or []) if r["current"] and r["role"] == ADJUDICATION), None)
            return ui.card(
                ui.card_header(views.trace_facts(row)),
                side_by_side,
                views.trace_input(row["input"]),
                ui.h6("Output"), ui.tags.pre(views.readable(row["output"]), class_="output"),
                ui.h6("Assertions"), views.failed_checks(failed, computed),
                ui.h6("Judge"), views.judge(row["judge_critique"], row["judge_outcome"]),
                ui.h6("Decisions so far"), decisions,
                views.settled(settlement) if settlement else None,
            )

        def blinded(row: dict[str, Any], found: list[dict[str, Any]], who: str) -> bool:
            """Whether others' decisions are hidden: a trace routed to two annotators, not in
            dispute, that I have not decided (my second opinion is to be independent)."""
            current = [r for r in found if r["current"] and r["role"] == ANNOTATION]
            return (bool(row["second_opinion"]) and not row["disagree_on"] and bool(current)
                    and all(r["annotator"] != who for r in current))

        def disputed(row: dict[str, Any], found: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
            """The annotators' current decisions on a trace in dispute that no lead settled yet
            (as the queue loaded it), else None."""
            current = [r for r in found if r["current"]]
            if not row["disagree_on"] or any(r["role"] == ADJUDICATION for r in current):
                return None
            return [r for r in current if r["role"] == ANNOTATION]

        @render.ui
        def form():
            view = shown.get()
            return ui.card(_form(view, modes.get(), task)) if view else None

        def field(prefix: str) -> str | None:
            """The current value of the shown form's input ``prefix``_key, None before it exists."""
            view = shown.get()
            name = f"{prefix}_{view['key']}" if view else None
            return input[name]() if name is not None and name in input else None

        @render.ui
        def mode_definition():
            new, chosen = field("newmode"), field("mode")
            return views.mode_definition((new or "").strip() or chosen or "", guide)

        @render.ui
        def adjudication():
            view, found = shown.get(), current_decisions.get()
            if view is None or found is None or not disputed(view["row"], found):
                return None
            return views.adjudication_control(is_lead(me(), leads), leads, me())

        @render.ui
        async def agreement():
            decided_here.get()  # again after each save
            if input.tab() != "agreement":
                return None
            try:
                frame = await asyncio.to_thread(review.agreement)
            except DatabaseBusy:
                return ui.p("Agreement could not be read (database busy): open this tab again in a moment.")
            counts = progress.get()
            return views.agreement(frame.to_dicts(), review.second_opinion_share,
                                   counts["disagreements"] if counts else None)

        @render.ui
        def identity_warning():
            return None if me() else ui.div(
                "Enter your name in the sidebar before saving: decisions are recorded under it.",
                class_="alert alert-warning py-1 px-2 mb-1 no-identity")

        @render.ui
        def correction_status():
            text = field("correction")
            if text is None:
                return None
            row = shown.get()["row"]
            edited = bool(text.strip()) and not same_output(task, row["input"], text, row["output"])
            failures = failed_checks(task, row["input"], text) if edited else []
            return views.correction_status(edited, failures, len(task.check_names))

        @render.ui
        def correction_diff():
            text = field("correction")
            return None if text is None else views.diff(output_diff(shown.get()["baseline"], text))

        @render.ui
        def upcoming():
            return views.upcoming(queue.get(), position.get())

        @reactive.poll(review.outbox.count, 1.0)
        def waiting() -> int:
            return review.outbox.count()

        @render.ui
        def outbox():
            n = waiting()
            return ui.p(f"{n} decision(s) waiting for the database (written when it is free).",
                        class_="notice-queued", id="outbox-count") if n else None

    return App(app_ui, server)


def start_flusher(review: Review, interval: float = 2.0) -> threading.Event:
    """A background thread that, every ``interval`` seconds, writes the outbox into the database
    when it is free and then publishes the analysts' snapshot if this process wrote since the
    last one (so a burst of saves makes one copy); set the returned event to stop it."""
    stop = threading.Event()

    def loop():
        while not stop.wait(interval):
            for work, failed in ((review.flush, "writing the outbox"),
                                 (review.publish_snapshot, "publishing the snapshot")):
                try:
                    work()
                except DatabaseBusy:
                    break  # a run holds the database: next round
                except Exception:  # keep going: one bad round must not stop the outbox or the copy for good
                    log.exception("%s failed; retrying", failed)

    threading.Thread(target=loop, name="outbox-flusher", daemon=True).start()
    return stop
