"""The ticket_triage example's data, written deterministically (seeded): the same files every run.

``python -m examples.ticket_triage.make_data [--out FOLDER]`` (from the repository root) writes

- ``traces.jsonl``: logged calls of the production triage assistant in the project's trace format,
  about a quarter failing an assertion (of every kind), a few upstream errors, and a few wrong
  decisions that pass every assertion (only people catch those);
- ``annotations.jsonl``: support leads' decisions on some of those traces, with corrections;
- ``base_corpus.jsonl``: correctly triaged tickets the local base model is first trained on. It
  covers four of the five products: Ember API is new, and the traces are where the model meets it.

Tickets are templates (each a category, a priority, wordings of a subject and a body, and a
summary) filled with a product and details (amounts, invoice numbers, e-mail addresses, dates).
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from examples.ticket_triage.task import NAME, PRODUCTS, ROUTING, TASK

OUT = Path(__file__).resolve().parent / "data"
SEED = 20261015
N_TRACES = 200
N_ANNOTATIONS = 40
N_BASE_CORPUS = 600
#: The base model has not seen this product (it is new); the traces have.
NEW_PRODUCT = "Ember API"
START = datetime(2026, 10, 15, 8, 0, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Template:
    """One kind of ticket: its right triage, ways it is written, and the summary a lead writes."""

    category: str
    priority: str
    subjects: tuple[str, ...]
    bodies: tuple[str, ...]
    summary: str
    #: The products that get this ticket (None: any).
    products: tuple[str, ...] | None = None


TEMPLATES: tuple[Template, ...] = (
    Template("billing", "P2", ("Charged twice for {month}", "Double charge on my card", "Duplicate payment"),
             ("I was charged twice for my {product} subscription in {month}: two payments of ${amount} on the same "
              "day (invoice {invoice}). Please refund the duplicate.",
              "Our card was billed ${amount} twice for {product} this {month}. Invoice {invoice}. Refund one, please."),
             "Duplicate {month} charge of ${amount} on {product} invoice {invoice}; refund requested"),
    Template("billing", "P3", ("Question about invoice {invoice}", "Seat count on our bill looks off"),
             ("Our {product} invoice {invoice} bills {seats} seats but we only have {used} active users. Can you "
              "explain the difference?",
              "Why does invoice {invoice} charge us for {seats} {product} seats? Only {used} people log in."),
             "Invoice {invoice} bills {seats} {product} seats for {used} active users"),
    Template("billing", "P3", ("Change billing address", "New address for invoices"),
             ("We moved offices. How do I change the billing address on our {product} account before the next "
              "invoice on {date}?",),
             "Billing address change for {product} before the {date} invoice"),
    Template("account_access", "P2", ("Locked out after password reset", "Account locked", "Can't sign in"),
             ("I reset my password for {product} this morning and now I get 'account locked' every time I sign in "
              "as {email}. I can't get any work done.",
              "Signing in to {product} as {email} says my account is locked since the password reset. Please help."),
             "{email} locked out of {product} after a password reset"),
    Template("account_access", "P2", ("2FA codes not accepted", "Two-factor login fails"),
             ("My two-factor codes for {product} are rejected since {weekday}. The clock on my phone is right. "
              "User: {email}.",),
             "{product} rejects 2FA codes for {email} since {weekday}"),
    Template("account_access", "P3", ("Make a colleague admin", "Transfer admin rights"),
             ("Please make {email} an admin of our {product} workspace; our previous admin left the company.",),
             "Make {email} an admin of the {product} workspace"),
    Template("bug", "P2", ("Export fails with error {code}", "Report export broken"),
             ("Exporting reports from {product} fails with error {code} every time since {weekday}. We need the "
              "export for a board meeting on {date}.",
              "Error {code} when I export anything from {product}. Started {weekday}; no workaround found."),
             "{product} report export fails with error {code} since {weekday}"),
    Template("bug", "P3", ("Dates shown in the wrong time zone", "Timestamps are off"),
             ("In {product} all timestamps show UTC although my profile is set to {tz}. Minor, but confusing.",),
             "{product} shows UTC timestamps instead of the profile's {tz}"),
    Template("bug", "P3", ("Search misses recent records", "Search results are stale"),
             ("Searching in {product} doesn't find records created in the last {hours} hours. Older ones show up, "
              "and browsing the list works.",),
             "{product} search misses records from the last {hours} hours"),
    Template("bug", "P2", ("App crashes on launch", "Crash after the {version} update"),
             ("Since the {version} update, {product} crashes on launch on my iPhone. Reinstalling from the App "
              "Store did not help.",),
             "{product} {version} crashes on launch on iPhone", products=("Drift Mobile",)),
    Template("bug", "P3", ("Webhooks deliver duplicates", "Same webhook event several times"),
             ("{product} webhooks deliver the same event up to {n} times to our endpoint when it answers slowly.",),
             "{product} webhooks redeliver events up to {n} times to slow endpoints", products=("Ember API",)),
    Template("outage", "P1", ("{product} is down", "Nothing loads", "502 errors for everyone"),
             ("Nobody at {company} can load {product} since {time} UTC; we get a 502 error page. {seats} people "
              "are blocked.",
              "{product} has been down for our whole team ({company}) since {time} UTC. Status page says green."),
             "{product} down for everyone at {company} since {time} UTC"),
    Template("outage", "P1", ("Everything is timing out", "Requests time out"),
             ("Since {time} UTC every request to {product} times out for us and for our customers.",),
             "All {product} requests time out since {time} UTC"),
    Template("feature_request", "P4", ("Dark mode?", "Feature idea: dark mode"),
             ("Would love a dark mode in {product}. Many of us work late.",),
             "Request: dark mode in {product}"),
    Template("feature_request", "P4", ("Bulk edit", "Edit many records at once"),
             ("It would save us hours if {product} let us edit {n} records at once instead of one by one.",),
             "Request: bulk edit in {product}"),
    Template("data_privacy", "P2", ("Delete my personal data", "GDPR erasure request"),
             ("Under the GDPR I ask you to delete all personal data {product} holds about me ({email}) and to "
              "confirm by {date}.",),
             "GDPR erasure request for {email} in {product}, confirmation due {date}"),
    Template("data_privacy", "P2", ("Need a signed DPA", "Data processing agreement"),
             ("Our legal team needs a signed data processing agreement for {product} before {date}, or we have to "
              "stop using it.",),
             "Signed DPA for {product} needed by {date}"),
    Template("how_to", "P4", ("How do I export to CSV?", "Download data as CSV"),
             ("Where in {product} can I download my data as CSV? I looked under Settings.",),
             "How to export {product} data to CSV"),
    Template("how_to", "P4", ("Invite teammates", "Adding users"),
             ("How do I invite {n} teammates to {product} without them each signing up separately?",),
             "How to invite {n} teammates to {product}"),
    Template("how_to", "P4", ("Rotate an API key", "New API key without downtime"),
             ("How do I rotate our {product} API key without downtime?",),
             "How to rotate a {product} API key without downtime", products=("Ember API",)),
)

GREETINGS = ("", "Hi,\n", "Hello support,\n", "Hi team,\n")
SIGN_OFFS = ("", "\nThanks", "\nThanks,\n{first}", "\nBest regards,\n{first} ({company})")
FIRST_NAMES = ("Ana", "Ben", "Chloe", "Dev", "Emeka", "Farah", "Goran", "Hana", "Ivo", "Jun", "Kofi", "Lena")
COMPANIES = ("Northwind", "Bluebird Labs", "Kestrel & Co", "Oakline", "Pinecrest", "Quayside", "Rivermark")
MONTHS = ("July", "August", "September", "October")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
ZONES = ("Europe/Berlin", "America/Chicago", "Asia/Tokyo", "Australia/Sydney")
ANNOTATORS = ("Rosa", "Malik", "Yuki")
#: The assistant's versions in production (v3 takes two calls in three).
MODELS = ("triage-assistant-v2", "triage-assistant-v3", "triage-assistant-v3")


def details(rng: random.Random) -> dict[str, Any]:
    """Values for a template's slots."""
    first = rng.choice(FIRST_NAMES)
    return {
        "month": rng.choice(MONTHS), "amount": f"{rng.choice((19, 49, 99, 249, 499))}.00",
        "invoice": f"INV-{rng.randrange(10000, 99999)}", "seats": rng.randrange(12, 80), "used": rng.randrange(3, 11),
        "date": f"{rng.choice(MONTHS)} {rng.randrange(1, 29)}",
        "email": f"{first.lower()}@{rng.choice(('acme.io', 'example.org', 'mailbox.net'))}",
        "weekday": rng.choice(WEEKDAYS), "code": f"E{rng.randrange(100, 999)}", "tz": rng.choice(ZONES),
        "hours": rng.choice((2, 6, 12, 24, 48)), "version": f"4.{rng.randrange(0, 9)}.{rng.randrange(0, 9)}",
        "n": rng.choice((3, 5, 20, 50, 200)), "company": rng.choice(COMPANIES),
        "time": f"{rng.randrange(0, 24):02d}:{rng.choice((0, 15, 30, 45)):02d}", "first": first,
    }


def ticket(rng: random.Random, products: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, str]]:
    """A ticket (the task's input) about one of ``products`` and its right triage."""
    product = rng.choice(products)
    template = rng.choice([t for t in TEMPLATES if t.products is None or product in t.products])
    slots = {**details(rng), "product": product}
    body = (rng.choice(GREETINGS) + rng.choice(template.bodies) + rng.choice(SIGN_OFFS)).format(**slots)
    input = {"subject": rng.choice(template.subjects).format(**slots), "body": body, "product": product}
    decision = {"category": template.category, "priority": template.priority, "team": ROUTING[template.category],
                "summary": template.summary.format(**slots)}
    return input, decision


# --- how the production assistant goes wrong -----------------------------------------------------

#: An older routing table the assistant still half remembers.
OLD_TEAMS = {"bug": "engineering", "outage": "infra", "billing": "finance", "how_to": "support"}


def _fenced_or_pretty(d: dict[str, str], rng: random.Random) -> str:
    text = json.dumps(d, indent=2)
    return f"```json\n{text}\n```" if rng.random() < 0.5 else text


def _prose(d: dict[str, str], rng: random.Random) -> str:
    return rng.choice((f"This looks like a {d['category'].replace('_', ' ')} ticket; I'd send it to {d['team']} "
                       f"as {d['priority']}.", "Sure! Here is the triage:\n" + json.dumps(d)[:-1] + ",",
                       json.dumps(d)[:rng.randrange(20, 60)]))


def _unknown_category(d: dict[str, str], rng: random.Random) -> str:
    wrong = {"billing": "payments", "account_access": "login_issue", "bug": "defect", "outage": "incident",
             "data_privacy": "legal", "feature_request": "idea", "how_to": "question"}[d["category"]]
    return json.dumps({**d, "category": rng.choice((wrong, d["category"].upper()))})


def _invalid_priority(d: dict[str, str], rng: random.Random) -> str:
    return json.dumps({**d, "priority": rng.choice(("high", "urgent", "P0", d["priority"].lower(), "medium"))})


def _wrong_team(d: dict[str, str], rng: random.Random) -> str:
    other = OLD_TEAMS.get(d["category"]) or rng.choice([t for t in ROUTING.values() if t != d["team"]])
    return json.dumps({**d, "team": other})


def _summary_too_long(d: dict[str, str], rng: random.Random, input: dict[str, Any]) -> str:
    summary = f"{input['product']}: {input['subject']}. {input['body']}".replace("\n", " ")
    while len(summary) <= 140:
        summary += " The customer asks for a quick answer."
    return json.dumps({**d, "summary": summary})


def _missing_field(d: dict[str, str], rng: random.Random) -> str:
    dropped = rng.choice(("summary", "team", "priority"))
    return json.dumps({k: v for k, v in d.items() if k != dropped})


FAILURES: dict[str, Callable[..., str]] = {
    "not_json": _prose, "unknown_category": _unknown_category, "invalid_priority": _invalid_priority,
    "wrong_team_for_category": _wrong_team, "missing_field": _missing_field,
}
#: Wrong decisions that pass every assertion: only a person (or the judge) catches them.
CONFUSIONS = {"bug": "how_to", "outage": "bug", "billing": "how_to", "account_access": "how_to",
              "data_privacy": "how_to", "how_to": "feature_request", "feature_request": "how_to"}


def _wrong_decision(d: dict[str, str], rng: random.Random) -> tuple[str, dict[str, str]]:
    """(failure mode a person names, the wrong but well-formed decision)."""
    if rng.random() < 0.5:
        category = CONFUSIONS[d["category"]]
        return "wrong_category", {**d, "category": category, "team": ROUTING[category]}
    shifted = {"P1": "P3", "P2": "P4", "P3": "P1", "P4": "P2"}[d["priority"]]
    return "wrong_priority", {**d, "priority": shifted}


def model_output(decision: dict[str, str], input: dict[str, Any],
                 rng: random.Random) -> tuple[str, str | None, str | None]:
    """(output, error, the failure it has) of one call: about 25% fail an assertion, 2% error, 8% wrong."""
    roll = rng.random()
    if roll < 0.02:
        return "", rng.choice(("upstream timeout", "upstream returned 503 Service Unavailable")), None
    if roll < 0.27:
        kind = rng.choice((*FAILURES, "summary_too_long"))
        if kind == "summary_too_long":
            return _summary_too_long(decision, rng, input), None, kind
        return FAILURES[kind](decision, rng), None, kind
    if roll < 0.35:
        mode, wrong = _wrong_decision(decision, rng)
        return json.dumps(wrong), None, mode
    return (_fenced_or_pretty(decision, rng) if rng.random() < 0.15 else json.dumps(decision)), None, None


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


def traces(rng: random.Random) -> tuple[list[dict[str, Any]], dict[str, tuple[str | None, dict[str, str]]]]:
    """The trace records, and per trace id (the failure it has, the right decision)."""
    records, truth = [], {}
    moment = START
    for n in range(1, N_TRACES + 1):
        input, decision = ticket(rng, PRODUCTS)
        output, error, failure = model_output(decision, input, rng)
        moment += timedelta(seconds=rng.randrange(60, 5400), milliseconds=rng.randrange(1000))
        trace_id = f"tt_{n:05d}"
        prompt_tokens = sum(len(m["content"]) for m in TASK.prompt(input)) // 4
        records.append({
            "trace_id": trace_id, "source": "example", "task": NAME, "ts": _ts(moment), "input": input,
            "output": output, "model": rng.choice(MODELS),
            "latency_ms": rng.randrange(30000, 31000) if error == "upstream timeout" else rng.randrange(400, 2400),
            "prompt_tokens": prompt_tokens, "completion_tokens": len(output) // 4, "error": error,
            "metadata": {"session_id": f"sess_{rng.randrange(16**10):010x}",
                         "user_feedback": rng.choice((None, None, None, "thumbs_up", "thumbs_down")),
                         "app_version": rng.choice(("helpdesk-2.4.1", "helpdesk-2.5.0"))},
        })
        truth[trace_id] = (failure, decision)
    return records, truth


CRITIQUES = {
    None: ("Right category, priority and team.", "Good triage.", "Correct; summary is clear."),
    "wrong_category": ("This is not a {got}; it is a {want} ticket.",),
    "wrong_priority": ("Priority should be {want}, not {got}.",),
    "not_json": ("Not a JSON answer; the helpdesk cannot route it.",),
    "unknown_category": ("Category is not one we use.",),
    "invalid_priority": ("Priority must be P1 to P4.",),
    "wrong_team_for_category": ("Routed to the wrong team for the category.",),
    "summary_too_long": ("Summary pastes the whole ticket.",),
    "missing_field": ("A field is missing.",),
}


def annotations(records: list[dict[str, Any]], truth: dict[str, tuple[str | None, dict[str, str]]],
                rng: random.Random) -> list[dict[str, Any]]:
    """Leads' decisions on traces with an output: half on wrong ones (with the corrected decision)."""
    answered = [r for r in records if r["output"]]
    wrong = [r for r in answered if truth[r["trace_id"]][0] is not None]
    right = [r for r in answered if truth[r["trace_id"]][0] is None]
    chosen = rng.sample(wrong, N_ANNOTATIONS // 2) + rng.sample(right, N_ANNOTATIONS // 2)
    rows = []
    for record in sorted(chosen, key=lambda r: r["trace_id"]):
        failure, decision = truth[record["trace_id"]]
        got = TASK.normalise(record["output"])
        got_decision = json.loads(got) if got else {}
        key = "category" if failure == "wrong_category" else "priority"
        critique = rng.choice(CRITIQUES[failure]).format(got=got_decision.get(key), want=decision.get(key))
        moment = datetime.fromisoformat(record["ts"].replace("Z", "+00:00")) + timedelta(
            minutes=rng.randrange(30, 2880), milliseconds=rng.randrange(1000))
        rows.append({"trace_id": record["trace_id"], "annotator": rng.choice(ANNOTATORS),
                     "label": "good" if failure is None else "bad", "failure_mode": failure,
                     "correction": None if failure is None else json.dumps(decision, separators=(",", ":")),
                     "critique": critique, "annotated_at": _ts(moment)})
    return rows


def base_corpus(rng: random.Random) -> list[dict[str, Any]]:
    """Correctly triaged tickets about every product but the new one."""
    known = tuple(p for p in PRODUCTS if p != NEW_PRODUCT)
    rows = []
    for _ in range(N_BASE_CORPUS):
        input, decision = ticket(rng, known)
        rows.append({"input": input, "output": json.dumps(decision, separators=(",", ":"))})
    return rows


def write(out: Path) -> dict[str, int]:
    """Write the three files into ``out``; the number of lines of each."""
    rng = random.Random(SEED)
    records, truth = traces(rng)
    files = {"traces.jsonl": records, "annotations.jsonl": annotations(records, truth, rng),
             "base_corpus.jsonl": base_corpus(rng)}
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in files.items():
        (out / name).write_text("".join(_line(r) for r in rows), encoding="utf-8")
    return {name: len(rows) for name, rows in files.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"folder to write into (default {OUT})")
    counts = write(parser.parse_args().out)
    print(", ".join(f"{name}: {n}" for name, n in counts.items()))


if __name__ == "__main__":
    main()
