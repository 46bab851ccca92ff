"""Write the CRM assistant example's bundled sample deterministically: examples/crm_assistant/data/*.jsonl.

    python scripts/make_crm_demo.py [--out examples/crm_assistant/data] [--seed 5]

Made-up accounts, contacts and deals; a salesperson's requests and the assistant's JSON replies
(examples/crm_assistant/task.yaml). Most traces are in the project's trace format, a fifth are
OpenAI chat logs whose user message the task's prompt wrote (their input is recovered from it).
About a quarter of the replies fail a check (not JSON, a code fence, an email address or
markdown in the reply, an unknown record, an overdue task, too many widgets, ...); a few are
wrong in a way only a person sees (annotated bad). The base corpus uses other accounts, all good.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.engine.tasks.declarative import load_declarative  # noqa: E402

TASK_FILE = ROOT / "examples" / "crm_assistant" / "task.yaml"
FIRST = ["Ana", "Ben", "Chloe", "Dev", "Elif", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Keiko", "Luca", "Mira",
         "Noah", "Olu", "Pia"]
LAST = ["Lopez", "Okafor", "Schmidt", "Tanaka", "Novak", "Haddad", "Moreau", "Silva", "Kowalski", "Berg"]
TITLES = ["CFO", "Head of Procurement", "IT Director", "Operations Manager", "CEO", "Finance Lead"]
COMPANIES = ["Acme Tools", "Bluewater Foods", "Cobalt Labs", "Dunmore Logistics", "Evergreen Clinics", "Fjord Media",
             "Granite Insurance", "Harbor Retail", "Ionic Energy", "Juniper Schools", "Kestrel Air", "Lumen Legal",
             "Maple Dental", "Nimbus Travel", "Orbit Games", "Pine Hotels", "Quartz Bank", "Ridge Farms",
             "Summit Sports", "Tidal Wines", "Umber Studios", "Vantage Motors", "Willow Care", "Xeno Robotics"]
SEGMENTS = ["smb", "mid_market", "enterprise"]
STAGES = ["discovery", "proposal", "negotiation", "verbal_yes"]
PRODUCTS = ["renewal", "expansion", "pilot", "add-on seats", "support upgrade"]
FAILURES = ["not_json", "code_fence", "email_in_reply", "markdown_in_reply", "unknown_record", "bad_widget_type",
            "overdue_task", "too_many_widgets", "missing_widgets", "reply_too_long", "placeholder_in_reply",
            "phone_in_reply"]
ANNOTATORS = ["Sam", "Rita", "Omar"]


class Ids:
    """Sequential contact and deal ids shared by all accounts."""

    def __init__(self):
        self.contact = self.deal = 0

    def next_contact(self) -> str:
        self.contact += 1
        return f"c_{self.contact}"

    def next_deal(self) -> str:
        self.deal += 1
        return f"d_{self.deal}"


def accounts(rng: random.Random, companies: list[str], prefix: str, ids: Ids) -> list[dict]:
    """One account per company: id, segment, 2-4 contacts, 0-3 open deals."""
    out = []
    for n, company in enumerate(companies, start=1):
        contacts = [{"id": ids.next_contact(), "name": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
                     "title": rng.choice(TITLES)} for _ in range(rng.randint(2, 4))]
        deals = [{"id": ids.next_deal(), "title": f"{company} {rng.choice(PRODUCTS)}", "stage": rng.choice(STAGES),
                  "amount": rng.randrange(5, 400) * 100} for _ in range(rng.randint(0, 3))]
        out.append({"account_id": f"{prefix}_{n:03d}", "company": company, "segment": rng.choice(SEGMENTS),
                    "contacts": contacts, "deals": deals})
    return out


def request(rng: random.Random, account: dict, today: date) -> tuple[dict, dict]:
    """A salesperson's request about ``account`` and the assistant's good reply (as a dict)."""
    contact = rng.choice(account["contacts"])
    first = contact["name"].split()[0]
    options = [
        (f"who should I talk to about the renewal at {account['company']}?",
         {"reply": f"{contact['name']} ({contact['title']}) is the best person for the renewal.",
          "widgets": [{"type": "contact_card", "id": contact["id"]}]}),
        (f"remind me to follow up with {first} next week",
         {"reply": f"I've added a task to follow up with {first} next week.",
          "widgets": [{"type": "task", "id": "t_new", "title": f"Follow up with {contact['name']}",
                       "due": (today + timedelta(days=7)).isoformat()}]}),
        (f"what's {first}'s email?",
         {"reply": f"Here is {first}'s contact card.", "widgets": [{"type": "contact_card", "id": contact["id"]}]}),
    ]
    if account["deals"]:
        deal = rng.choice(account["deals"])
        total = sum(d["amount"] for d in account["deals"])
        options += [
            (f"where are we on {deal['title']}?",
             {"reply": f"{deal['title']} is in {deal['stage'].replace('_', ' ')}, worth ${deal['amount']:,}.",
              "widgets": [{"type": "deal", "id": deal["id"]}]}),
            ("summarise my open deals here",
             {"reply": f"{len(account['deals'])} open deal{'s' * (len(account['deals']) > 1)} worth ${total:,} in total.",
              "widgets": [{"type": "deal", "id": d["id"]} for d in account["deals"][:3]]}),
        ]
    message, reply = rng.choice(options)
    task_input = {"account_id": account["account_id"], "segment": account["segment"], "today": today.isoformat(),
                  "message": message, "contacts": account["contacts"], "deals": account["deals"]}
    return task_input, reply


def failing(kind: str, reply: dict, task_input: dict) -> str:
    """The good ``reply`` broken in the way ``kind`` names, as output text."""
    r = json.loads(json.dumps(reply))
    if kind == "not_json":
        return r["reply"]
    if kind == "code_fence":
        return "```json\n" + json.dumps(r, indent=2) + "\n```"
    if kind == "email_in_reply":
        name = task_input["contacts"][0]["name"].lower().replace(" ", ".")
        r["reply"] += f" You can reach them at {name}@example.com."
    elif kind == "markdown_in_reply":
        r["reply"] = "**Summary:** " + r["reply"]
    elif kind == "unknown_record":
        r["widgets"] = [{"type": "contact_card", "id": "c_9999"}]
    elif kind == "bad_widget_type":
        r["widgets"] = [{"type": "note", "id": "t_new", "title": "Call back"}]
    elif kind == "overdue_task":
        due = (date.fromisoformat(task_input["today"]) - timedelta(days=3)).isoformat()
        r["widgets"] = [{"type": "task", "id": "t_new", "title": "Send the proposal", "due": due}]
    elif kind == "too_many_widgets":
        r["widgets"] = [{"type": "contact_card", "id": c["id"]} for c in task_input["contacts"]] * 2
    elif kind == "missing_widgets":
        del r["widgets"]
    elif kind == "reply_too_long":
        r["reply"] = " ".join([r["reply"]] * 12)
    elif kind == "placeholder_in_reply":
        r["reply"] = "Hi [name], " + r["reply"]
    elif kind == "phone_in_reply":
        r["reply"] += " Their direct line is +1 415 555 0134."
    return json.dumps(r)


def wrong(reply: dict, task_input: dict) -> str | None:
    """A reply that passes every check but shows the wrong record (only a person sees it), or None."""
    widgets = reply["widgets"]
    others = [c for c in task_input["contacts"] if all(c["id"] != w["id"] for w in widgets)]
    if len(widgets) != 1 or widgets[0]["type"] != "contact_card" or not others:
        return None
    return json.dumps({**reply, "widgets": [{"type": "contact_card", "id": others[0]["id"]}]})


def _text(reply: dict, rng: random.Random) -> str:
    return json.dumps(reply, indent=2) if rng.random() < 0.3 else json.dumps(reply)


def traces(rng: random.Random, accts: list[dict], task, n: int = 150) -> list[dict]:
    """``n`` traces (a fifth as OpenAI chat logs), with their kind and good reply."""
    start = datetime(2026, 10, 1, 8, tzinfo=timezone.utc)
    out = []
    for i in range(n):
        at = start + timedelta(minutes=i * 97 + rng.randrange(60))
        task_input, reply = request(rng, rng.choice(accts), at.date())
        roll = rng.random()
        kind, output = "good", _text(reply, rng)
        if roll < 0.25:
            kind = rng.choice(FAILURES)
            output = failing(kind, reply, task_input)
        elif roll < 0.32 and (bad := wrong(reply, task_input)) is not None:
            kind, output = "wrong_contact", bad
        usage = {"prompt_tokens": len(task.prompt(task_input)[-1]["content"]) // 4 + 180,
                 "completion_tokens": len(output) // 4 + 1}
        metadata = {"user": f"rep_{rng.randrange(1, 12):02d}", "app_version": rng.choice(["crm-7.2", "crm-7.3"])}
        if i % 5 == 4:
            record = {"id": f"chatcmpl-crm-{i + 1:04d}", "created": int(at.timestamp()), "model": "gpt-4.1-mini",
                      "messages": task.prompt(task_input) + [{"role": "assistant", "content": output}],
                      "usage": usage, "metadata": metadata}
            trace_id = record["id"]
        else:
            trace_id = f"crm_{i + 1:05d}"
            record = {"trace_id": trace_id, "task": "crm_assistant", "ts": at.isoformat().replace("+00:00", "Z"),
                      "input": task_input, "output": output, "model": "gpt-4.1-mini",
                      "latency_ms": rng.randrange(400, 2600), **usage, "error": None, "metadata": metadata}
        out.append({"record": record, "trace_id": trace_id, "kind": kind, "good": json.dumps(reply), "at": at})
    return out


def annotations(rng: random.Random, made: list[dict], n: int = 30) -> list[dict]:
    """``n`` decisions: failing and wrong traces first (up to half), then good ones; corrections pass every check."""
    bad = [t for t in made if t["kind"] != "good"]
    good = [t for t in made if t["kind"] == "good"]
    picked = bad[: n // 2] + rng.sample(good, n - min(len(bad), n // 2))
    critiques = {"good": "Right record, short reply.", "wrong_contact": "Shows the wrong contact for this request."}
    out = []
    for t in sorted(picked, key=lambda t: t["trace_id"]):
        kind = t["kind"]
        out.append({"trace_id": t["trace_id"], "annotator": rng.choice(ANNOTATORS),
                    "label": "good" if kind == "good" else "bad", "failure_mode": None if kind == "good" else kind,
                    "correction": None if kind == "good" or rng.random() < 0.3 else t["good"],
                    "critique": critiques.get(kind, f"Breaks the format: {kind.replace('_', ' ')}."),
                    "annotated_at": (t["at"] + timedelta(hours=rng.randint(3, 40))).strftime("%Y-%m-%dT%H:%M:%SZ")})
    return out


def base_corpus(rng: random.Random, accts: list[dict], n: int = 500) -> list[dict]:
    """``n`` distinct good {input, output} pairs over the base accounts."""
    out, seen = [], set()
    start = date(2026, 6, 1)
    while len(out) < n:
        task_input, reply = request(rng, rng.choice(accts), start + timedelta(days=rng.randrange(90)))
        key = json.dumps(task_input, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append({"input": task_input, "output": json.dumps(reply)})
    return out


def _write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(TASK_FILE.parent / "data"), help="output folder")
    parser.add_argument("--seed", type=int, default=5, help="random seed (default 5)")
    args = parser.parse_args(argv)
    task = load_declarative(TASK_FILE)
    ids = Ids()
    team = accounts(random.Random(f"{args.seed}:team"), COMPANIES[:16], "acc", ids)
    base = accounts(random.Random(f"{args.seed}:base"), COMPANIES[16:], "base", ids)
    made = traces(random.Random(f"{args.seed}:traces"), team, task)
    decided = annotations(random.Random(f"{args.seed}:annotations"), made)
    corpus = base_corpus(random.Random(f"{args.seed}:corpus"), base)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _write(out / "traces.jsonl", [t["record"] for t in made])
    _write(out / "annotations.jsonl", decided)
    _write(out / "base_corpus.jsonl", corpus)
    print(f"traces: {len(made)} {dict(Counter(t['kind'] for t in made).most_common())}")
    print(f"annotations: {len(decided)} {dict(Counter(a['label'] for a in decided))}")
    print(f"base corpus: {len(corpus)} examples")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
