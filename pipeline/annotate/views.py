"""How a trace and its review state look: pure htmltools, and trace content is only ever passed
as text (htmltools escapes it), never as HTML."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from typing import Any

from htmltools import HTML, Tag, TagList, tags
from markdown_it import MarkdownIt

from pipeline.engine.label.review import ADJUDICATION, Decision, FailureMode, Guide
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
    included), and a lead's adjudication, with how many earlier versions each replaced; a
    decision by someone else made since the queue loaded is flagged."""
    current = [r for r in rows if r["current"]]
    if not current:
        return TagList(tags.p("No decisions yet.", class_="decisions-none"))
    new = [r for r in current if r["annotation_id"] not in known_ids and r["annotator"] != annotator]
    banner = (tags.div(f"Decided by {', '.join(sorted({r['annotator'] for r in new}))} since your queue loaded.",
                       class_="alert alert-warning decided-elsewhere") if new else None)
    versions = Counter((r["annotator"], r["role"]) for r in rows)

    def line(r: dict[str, Any]) -> str:
        kept = versions[(r["annotator"], r["role"])] - 1
        return ((f"Adjudication by {r['annotator']}" if r["role"] == ADJUDICATION else r["annotator"])
                + (" (you)" if r["annotator"] == annotator else "") + f": {r['label']}"
                + (f" ({r['failure_mode']})" if r["failure_mode"] else "") + f", {_when(r['annotated_at'])}"
                + (f", edited: {kept} earlier version(s) kept" if kept else ""))

    return TagList(banner, tags.ul(*[tags.li(line(r), class_="adjudication" if r["role"] == ADJUDICATION else None)
                                     for r in current], class_="decisions"))


def hidden_decisions(n: int) -> Tag:
    """What a second annotator reads instead of the first one's decision: it stays hidden until
    they decide, so the second opinion is independent (and the agreement measured honest)."""
    return tags.div(tags.b("Second opinion wanted. "),
                    f"{n} other annotator(s) decided this trace; their decision is hidden until you save yours, "
                    "so the two are independent (the agreement between annotators is measured on them).",
                    class_="alert alert-info py-1 px-2 second-opinion")


def side_by_side(rows: list[dict[str, Any]], corrections: dict[str, str], disagree_on: list[str],
                 annotator: str) -> Tag:
    """The annotators' current decisions on a disputed trace, one column each (label, failure
    mode, critique, correction), each with a button that puts it into the form; ``corrections``
    maps an annotation_id to its correction in the form's editable shape."""
    def cell(value: str | None, kind: str) -> Tag:
        return tags.td(value, class_=kind) if value else tags.td("(none)", class_=f"{kind} text-muted")

    adopt = [tags.td(tags.button("Use in the form", type="button", class_="btn btn-sm btn-outline-primary py-0",
                                 data_adopt=r["annotation_id"], data_label=r["label"],
                                 data_mode=r["failure_mode"] or "", data_critique=r["critique"] or "",
                                 data_correction=corrections.get(r["annotation_id"], ""),
                                 title=f"fill the form with {r['annotator']}'s decision")) for r in rows]
    return tags.div(
        tags.p(tags.b("Disagreement on " + ", ".join(a.replace("_", " ") for a in disagree_on) + ". "),
               "Each annotator's current decision, side by side:", class_="mb-1"),
        tags.table(
            tags.thead(tags.tr(tags.th(""), *[tags.th(r["annotator"] + (" (you)" if r["annotator"] == annotator else ""))
                                             for r in rows])),
            tags.tbody(
                tags.tr(tags.th("Label"), *[cell(r["label"], "label") for r in rows]),
                tags.tr(tags.th("Failure mode"), *[cell(r["failure_mode"], "failure-mode") for r in rows]),
                tags.tr(tags.th("Critique"), *[cell(r["critique"], "critique") for r in rows]),
                tags.tr(tags.th("Correction"), *[tags.td(tags.pre(readable(r["correction"]), class_="output m-0"))
                                                 if r["correction"] else cell(None, "correction") for r in rows]),
                tags.tr(tags.th(""), *adopt)),
            class_="table table-sm side-by-side"),
        id="side-by-side", class_="border-bottom mb-3")


def adjudication_control(lead: bool, leads: list[str], annotator: str) -> Tag:
    """Under a disputed trace's form: a lead's button that saves the form as the adjudication,
    or why there is none."""
    if lead:
        return tags.div(
            tags.button("Adjudicate: save as the settled decision", type="button", class_="btn btn-sm btn-success",
                        data_action="adjudicate", title="record the form as the lead's adjudication: it settles the trace"),
            tags.small(" Settles the disagreement: training and the judge's alignment use this decision.",
                       class_="text-muted"),
            class_="my-2 adjudicate")
    who = (f"the leads are {', '.join(leads)}" if leads
           else "no lead is configured (--leads or FLYWHEEL_LEADS)")
    name = f"{annotator} is" if annotator else "you are"
    return tags.div(f"Only a lead can adjudicate this disagreement, and {name} not one: {who}. "
                    "Saving records your own decision.", class_="alert alert-secondary py-1 px-2 not-a-lead")


def settled(row: dict[str, Any]) -> Tag:
    """The note on a trace a lead has adjudicated."""
    return tags.p(tags.b("Settled: "), f"{row['annotator']}'s adjudication, {row['label']}"
                  + (f" ({row['failure_mode']})" if row["failure_mode"] else "")
                  + ", is the label training and the judge's alignment use.", class_="settled")


#: Landis and Koch's words for a kappa: (lower bound, word), highest first.
_STRENGTH = ((0.81, "almost perfect"), (0.61, "substantial"), (0.41, "moderate"), (0.21, "fair"), (0.0, "slight"))


def kappa_words(kappa: float | None) -> str:
    """A kappa for people: two decimals and Landis and Koch's word for it."""
    if kappa is None:
        return "n/a (every rating the same)"
    word = next((w for bound, w in _STRENGTH if kappa >= bound), "worse than chance")
    return f"{kappa:.2f} ({word})"


def agreement(rows: list[dict[str, Any]], share: float, waiting: int | None) -> Tag:
    """The agreement between annotators (rows of the ``annotator_agreement`` view), rounded for
    people, with the share routed to two annotators and the disagreements waiting for a lead."""
    routing = tags.p(f"{share:.0%} of traces are routed to two annotators (second opinions come first in the queue).",
                     class_="text-muted routing")
    pending = (tags.p(f"{waiting} disagreement(s) wait for a lead's adjudication (label status "
                      "\"disagreements to adjudicate\").", class_="disagreements-waiting") if waiting else None)
    if not rows:
        return tags.div(tags.p("No trace has two annotators yet: agreement is measured once a second person "
                               "decides a trace someone else decided.", class_="agreement-none"),
                        routing, id="agreement")
    label = next((r for r in rows if r["aspect"] == "label"), None)
    headline = (tags.p(tags.b("Label (good/bad): "),
                       f"Cohen's kappa {kappa_words(label['kappa'])}, raw agreement {label['agreement']:.0%} "
                       f"over {label['pairs']} pair(s) of decisions on {label['traces']} trace(s).",
                       class_="agreement-headline") if label else None)
    body = [tags.tr(tags.td("label" if r["aspect"] == "label" else "failure mode named"),
                    tags.td(r["failure_mode"] or ""), tags.td(str(r["pairs"])), tags.td(str(r["traces"])),
                    tags.td(f"{r['agreement']:.0%}"), tags.td(kappa_words(r["kappa"])),
                    class_=f"aspect-{r['aspect']}") for r in rows]
    return tags.div(
        headline, pending,
        tags.table(tags.thead(tags.tr(*[tags.th(h) for h in ("Aspect", "Failure mode", "Pairs", "Traces",
                                                            "Raw agreement", "Cohen's kappa")])),
                   tags.tbody(*body), class_="table table-sm agreement-table"),
        tags.small("Each pair of two annotators' current decisions on a trace counts once. A failure mode row asks "
                   "whether both named that mode. Kappa corrects raw agreement for chance: 1 is perfect, 0 chance "
                   "level.", class_="text-muted"),
        routing, id="agreement")


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
