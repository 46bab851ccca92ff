"""How a trace and its review state look: pure htmltools, and trace content is only ever passed
as text (htmltools escapes it), never as HTML."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from htmltools import HTML, Tag, TagList, tags
from markdown_it import MarkdownIt

from pipeline.engine.label.review import Decision, FailureMode, Guide
from pipeline.engine.tasks import CheckResult

#: Markdown for the team's guidelines: CommonMark with tables, raw HTML in the file shown as text.
_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")


def readable(output: str | None) -> str:
    """An output for reading: indented JSON when it parses as JSON, else the text as it is."""
    if not output:
        return "(no output)"
    try:
        return json.dumps(json.loads(output), indent=2, ensure_ascii=False)
    except (json.JSONDecodeError, RecursionError):
        return output


def _value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ", ".join(value)
    return json.dumps(value, ensure_ascii=False)


def trace_input(input: dict[str, Any]) -> Tag:
    """The task input, one field per row."""
    return tags.dl(*[part for key, value in input.items()
                     for part in (tags.dt(key), tags.dd(_value(value), class_=f"input-{key}"))],
                   class_="trace-input")


def trace_facts(row: dict[str, Any]) -> Tag:
    """Where the trace came from and how it went: source, time, model, latency, feedback."""
    facts = [("trace", row["trace_id"]), ("source", row["source"]), ("time", row["ts"]), ("model", row["model"]),
             ("latency", f"{row['latency_ms']:.0f} ms" if row["latency_ms"] is not None else None),
             ("user feedback", row["user_feedback"]), ("error", row["error"])]
    return tags.div(*[tags.span(tags.b(f"{name}: "), str(value), class_="fact") for name, value in facts
                      if value is not None], class_="trace-facts")


def failed_checks(failed: list[dict[str, Any]] | list[CheckResult] | None, computed_now: bool) -> Tag:
    """The assertions the output fails, each with why."""
    items = [(f.check_name, f.detail) if isinstance(f, CheckResult) else (f["check_name"], f["detail"])
             for f in failed or []]
    note = " (computed now: the pipeline has not evaluated this trace yet)" if computed_now else ""
    if not items:
        return tags.p(f"Passes every assertion{note}.", class_="checks-ok")
    return tags.div(tags.p(f"Fails {len(items)} assertion(s){note}:"),
                    tags.ul(*[tags.li(tags.code(name), ": ", detail or "") for name, detail in items]),
                    class_="checks-failed")


def judge(critique: str | None, outcome: str | None) -> Tag:
    if not critique and not outcome:
        return tags.p("No judge critique.", class_="judge-none")
    return tags.div(tags.b(f"Judge: {outcome or 'no outcome'}. "), critique or "", class_="judge")


def decisions(rows: list[dict[str, Any]], known_ids: set[str], annotator: str) -> TagList:
    """Each annotator's current decision on the trace (rows of ``Review.decisions_for``, history
    included), with how many earlier versions it replaced; a decision by someone else made since
    the queue loaded is flagged."""
    current = [r for r in rows if r["current"]]
    if not current:
        return TagList(tags.p("No decisions yet.", class_="decisions-none"))
    new = [r for r in current if r["annotation_id"] not in known_ids and r["annotator"] != annotator]
    banner = (tags.div(f"Decided by {', '.join(sorted({r['annotator'] for r in new}))} since your queue loaded.",
                       class_="alert alert-warning decided-elsewhere") if new else None)
    versions = {r["annotator"]: sum(1 for x in rows if x["annotator"] == r["annotator"]) for r in current}
    return TagList(banner, tags.ul(*[
        tags.li(f"{r['annotator']}" + (" (you)" if r["annotator"] == annotator else "") + f": {r['label']}"
                + (f" ({r['failure_mode']})" if r["failure_mode"] else "") + f", {_when(r['annotated_at'])}"
                + (f", edited: {versions[r['annotator']] - 1} earlier version(s) kept"
                   if versions[r["annotator"]] > 1 else "")) for r in current], class_="decisions"))


def my_decision(decision: Decision | None) -> Tag | None:
    """The note over the form when it shows the person's own current decision on the trace."""
    if decision is None:
        return None
    return tags.div(f"Your decision of {_when(decision.annotated_at)}: {decision.label}"
                    + (f" ({decision.failure_mode})" if decision.failure_mode else "")
                    + ". Saving replaces it; the earlier one stays in the history.",
                    class_="alert alert-info py-1 px-2 mb-2 my-decision")


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if isinstance(value, datetime) else str(value)


def correction_status(edited: bool, failures: list[CheckResult], n_checks: int) -> Tag:
    """Live validation of the corrected output."""
    if not edited:
        return tags.p("Unchanged: no correction will be saved. Edit the output to correct it.",
                      class_="correction-unchanged text-muted")
    if not failures:
        return tags.p(f"Correction passes all {n_checks} assertions.", class_="correction-ok text-success")
    return tags.div(tags.b("Correction fails assertions; it cannot be saved until they pass:"),
                    tags.ul(*[tags.li(tags.code(f.check_name), ": ", f.detail) for f in failures]),
                    class_="correction-invalid text-danger")


def diff(lines: list[tuple[str, str]]) -> Tag:
    """A correction's line diff against the output (``review.output_diff``), line by line."""
    if not lines:
        return tags.p("No changes against the model's output.", class_="diff-none text-muted")
    marks = {"hunk": "", "removed": "- ", "added": "+ ", "same": "  "}
    return tags.pre(*[tags.span(marks[kind] + text + "\n", class_=f"diff-{kind}") for kind, text in lines],
                    class_="diff", id="correction-diff")


def mode_definition(mode: str, guide: Guide) -> Tag | None:
    """The definition of the failure mode chosen in the form, or how to describe a new one."""
    if not mode:
        return None
    found = next((m for m in guide.failure_modes if m.name == mode), None)
    if found is None:
        return tags.p("A mode not in the task's list: describe it in the critique.",
                      class_="mode-definition text-muted")
    return tags.p(tags.code(found.name), ": ", found.definition or "(the task gives no definition)",
                  class_="mode-definition text-muted")


def failure_modes(modes: tuple[FailureMode, ...]) -> Tag:
    """The task's failure modes with their definitions: the assertions, then those only people see."""
    sections = []
    for kind, title in (("assertion", "Checked by the assertions"), ("people", "Only a person can tell")):
        chosen = [m for m in modes if m.detected_by == kind]
        if chosen:
            sections += [tags.h6(title), tags.dl(*[part for m in chosen for part in (
                tags.dt(tags.code(m.name)), tags.dd(m.definition, class_="mb-1") if m.definition else None)],
                class_="failure-modes")]
    return tags.div(*sections, id="failure-modes")


def guidelines(markdown: str) -> Tag:
    """The team's guidelines (markdown; any HTML in it is shown as text)."""
    return tags.div(HTML(_MARKDOWN.render(markdown)), id="guidelines", class_="guidelines")


def upcoming(rows: list[dict[str, Any]], position: int, n: int = 8) -> Tag:
    """The next traces in the queue, each by its one-line ``summary``."""
    following = rows[position + 1:position + 1 + n]
    if not following:
        return tags.p("Nothing after this one.")
    return tags.table(tags.tbody(*[
        tags.tr(tags.td(str(position + 2 + i)), tags.td(r["trace_id"]), tags.td(f"{r['n_failed']} failed"),
                tags.td(_short(r.get("summary") or ""))) for i, r in enumerate(following)]),
        class_="table table-sm upcoming")


def _short(text: str, n: int = 70) -> str:
    return text if len(text) <= n else text[:n - 1] + "…"
