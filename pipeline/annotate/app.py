"""The annotation app (Shiny for Python): a review queue, one trace at a time, and a decision form
with a live-validated correction. All data work is :mod:`pipeline.engine.label.review`; this module is
layout and session state only."""

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
    DUPLICATE, ORDERINGS, QUEUED, STATUSES, DatabaseBusy, Decision, QueueFilter, Review, ReviewError,
    make_decision, new_annotation_id,
)
from pipeline.engine.tasks import Task, hooks

log = logging.getLogger(__name__)
QUEUE_SIZE = 500
SHORTCUTS = ("g good · b bad · Ctrl+Enter or s save · n/j next · p/k previous · u undo · "
             "e edit correction · c critique · Esc leave a field")
STYLE = """
.trace-input dt { font-weight: 600; } .trace-input dd { margin-left: 1em; white-space: pre-wrap; }
.fact { margin-right: 1.2em; } pre.output { background: #f6f8fa; padding: .6em; white-space: pre-wrap; max-height: 22em; overflow: auto; }
.notice-saved { color: #146c2e; } .notice-queued { color: #8a5a00; } .notice-error { color: #b02a37; }
.correction textarea { font-family: monospace; }
"""


def _any(label: str, values: list[str]) -> dict[str, str]:
    return {"": label, **{v: v for v in values}}


def _options(review: Review) -> dict[str, list[str]]:
    try:
        return review.options()
    except DatabaseBusy:
        checks = list(review.task.check_names)
        return {"sources": [], "checks": checks, "failure_modes": checks}


def _row(raw: dict[str, Any], task: Task) -> dict[str, Any]:
    """A queue row with its input parsed and its one-line ``summary`` (the task's display text)."""
    input = json.loads(raw["input"])
    return {**raw, "input": input, "summary": hooks.display_text(task, input)}


def _sidebar(options: dict[str, list[str]], annotator: str):
    return ui.sidebar(
        ui.input_text("annotator", "Annotator", value=annotator),
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


def _form(shown: dict[str, Any], modes: list[str]) -> ui.Tag:
    """The decision form of one trace view; its inputs are named after the view's key."""
    key, row, prefill = shown["key"], shown["row"], shown["prefill"]
    failing = [f["check_name"] for f in row["failed"] or []]
    mode = prefill.get("failure_mode") or (failing[0] if failing else "")
    known = mode in modes or not mode
    return ui.div(
        ui.input_radio_buttons(f"label_{key}", "Decision", {"good": "Good (g)", "bad": "Bad (b)"},
                               selected=prefill.get("label", ""), inline=True),
        ui.layout_columns(
            ui.input_select(f"mode_{key}", "Failure mode (if bad)", _any("(none)", modes),
                            selected=mode if known else ""),
            ui.input_text(f"newmode_{key}", "or a new failure mode", value="" if known else mode),
        ),
        ui.input_text_area(f"critique_{key}", "Critique", value=prefill.get("critique") or "", rows=3, width="100%"),
        ui.input_text_area(f"correction_{key}", "Corrected output (edit to correct; validated as you type)",
                           value=prefill.get("correction") or row["output"] or "", rows=8, width="100%",
                           resize="vertical").add_class("correction"),
        ui.output_ui("correction_status"),
        ui.div(
            ui.tags.button("Save (Ctrl+Enter)", type="button", class_="btn btn-primary me-2", data_action="save"),
            ui.tags.button("Skip (n)", type="button", class_="btn btn-outline-secondary me-2", data_action="next"),
            ui.tags.button("Back (p)", type="button", class_="btn btn-outline-secondary me-2", data_action="previous"),
            ui.tags.button("Undo last (u)", type="button", class_="btn btn-outline-warning", data_action="undo"),
            class_="mt-2"),
        data_form_key=str(key), id="decision-form",
    )


def create_app(review: Review, annotator: str) -> App:
    """The app over ``review`` (one per process; each browser session has its own state)."""
    options = _options(review)
    app_ui = ui.page_sidebar(
        _sidebar(options, annotator),
        ui.output_ui("status"),
        ui.output_ui("trace"),
        ui.output_ui("form"),
        ui.output_ui("notice_box"),
        ui.card(ui.card_header("Next in the queue"), ui.output_ui("upcoming")),
        ui.head_content(ui.tags.style(STYLE),
                        ui.tags.script(HTML((Path(__file__).parent / "shortcuts.js").read_text("utf-8")))),
        title="Flywheel: review traces",
    )
    task = review.task

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
        history: list[tuple[Decision, dict[str, Any]]] = []
        keys = itertools.count(1)

        def me() -> str:
            return (input.annotator() or "").strip()

        async def refresh_progress():
            try:
                progress.set(await asyncio.to_thread(review.progress, me()))
            except DatabaseBusy:
                pass

        async def show(index: int, prefill: Decision | None = None):
            rows = queue.get()
            index = max(0, min(index, len(rows)))
            position.set(index)
            if index == len(rows):
                shown.set(None)
                return
            row = rows[index]
            shown.set({"row": row, "annotation_id": new_annotation_id(), "key": next(keys),
                       "prefill": asdict(prefill) if prefill else {}})
            try:
                found = await asyncio.to_thread(review.decisions_for, row["trace_id"])
                current_decisions.set(found.to_dicts())
            except DatabaseBusy:
                current_decisions.set(None)

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
            try:  # failure modes people added since
                modes.set((await asyncio.to_thread(review.options))["failure_modes"])
            except DatabaseBusy:
                pass
            queue.set([_row(r, task) for r in frame.to_dicts()])
            await show(0)
            await refresh_progress()

        async def save(fields: dict[str, Any]):
            view = shown.get()
            row = view["row"]
            correction = fields.get("correction") or ""
            edited = correction.strip() != (row["output"] or "").strip()
            try:
                decision = make_decision(
                    task, row["input"], annotation_id=view["annotation_id"], trace_id=row["trace_id"],
                    label=fields.get("label") or "", annotator=me(),
                    failure_mode=(fields.get("newmode") or "").strip() or fields.get("mode"),
                    correction=correction if edited else None, critique=fields.get("critique"))
            except ReviewError as exc:
                notice.set(("error", f"Not saved: {exc}"))
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
            notice.set((kind, f"{row['trace_id']}: {decision.label}: {status}"))
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
            if action == "save" and view is not None and not stale:
                await save(message.get("fields") or {})
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
            return ui.div(
                ui.p(" · ".join(parts), id="progress"),
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
            found = current_decisions.get()
            decisions = (views.decisions(found, set(row["decision_ids"]), me()) if found is not None
                         else ui.p("Decisions could not be read (database busy)."))
            return ui.card(
                ui.card_header(views.trace_facts(row)),
                views.trace_input(row["input"]),
                ui.h6("Output"), ui.tags.pre(views.readable(row["output"]), class_="output"),
                ui.h6("Assertions"), views.failed_checks(failed, computed),
                ui.h6("Judge"), views.judge(row["judge_critique"], row["judge_outcome"]),
                ui.h6("Decisions so far"), decisions,
            )

        @render.ui
        def form():
            view = shown.get()
            return ui.card(_form(view, modes.get())) if view else None

        @render.ui
        def correction_status():
            view = shown.get()
            name = f"correction_{view['key']}" if view else None
            if view is None or name not in input:
                return None
            text, original = input[name]() or "", view["row"]["output"] or ""
            edited = text.strip() != original.strip()
            failures = failed_checks(task, view["row"]["input"], text) if edited and text.strip() else []
            return views.correction_status(edited and bool(text.strip()), failures, len(task.check_names))

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
    """A background thread writing the outbox into the database whenever it is free; set the
    returned event to stop it."""
    stop = threading.Event()

    def loop():
        while not stop.wait(interval):
            try:
                review.flush()
            except DatabaseBusy:
                continue
            except Exception:  # keep flushing: one bad round must not stop the outbox for good
                log.exception("writing the outbox failed; retrying")

    threading.Thread(target=loop, name="outbox-flusher", daemon=True).start()
    return stop
