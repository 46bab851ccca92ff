"""Write the chat task's bundled sample deterministically: data/demo/chat/{traces,annotations,base_corpus}.jsonl.

    python scripts/make_chat_demo.py [--out data/demo/chat] [--seed 11]

The assistant is made up: Brightline Broadband's support assistant. Traces are OpenAI chat-log
records (``{"id", "created", "model", "messages", "usage", "metadata"}``, the reply last), some
multi-turn, some failing a check (empty, refusal, truncated, too long, repeating the system
prompt) and some wrong in ways only a person sees (annotated bad). The base corpus is another
made-up company's support conversations (Northwind Energy), all good.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

SYSTEM_V1 = ("You are the support assistant of Brightline Broadband, a home internet provider. Answer the "
             "customer's question in a friendly, concise way. Only state plans, prices and policies listed here. "
             "Plans: Basic 100 ($35/month), Fast 500 ($55/month), Giga 1000 ($75/month). Moving service is free "
             "with 14 days notice. Cancellation needs 30 days notice and has no fee after 12 months. For outages, "
             "suggest restarting the router, then checking brightline.example/status. Never give legal or "
             "medical advice; for anything about someone else's account, ask them to contact us from that account.")
SYSTEM_V2 = SYSTEM_V1 + " Sign off with 'Anything else I can help with?' when the question is answered."
BASE_SYSTEM = ("You are Northwind Energy's customer assistant. Help customers with meter readings, bills, tariffs "
               "and moving home. Tariffs: Fixed 12 (fixed price for 12 months) and Flex (price follows the market). "
               "Be brief and polite; do not promise refunds.")

PLANS = [("Basic 100", 35), ("Fast 500", 55), ("Giga 1000", 75)]
DEVICES = ["router", "modem", "mesh extender"]
OPENERS = ["", "hi, ", "Hello! ", "quick question: ", "hey - "]
CITIES = ["Leeds", "Porto", "Denver", "Lyon", "Austin", "Bristol", "Ghent", "Tampa"]


def _plan(rng: random.Random) -> tuple[str, int]:
    return rng.choice(PLANS)


def _topics(rng: random.Random) -> list[tuple[str, str, str]]:
    """(topic, user message, good reply) for one draw of slot values."""
    name, price = _plan(rng)
    other, other_price = rng.choice([p for p in PLANS if p[0] != name])
    device = rng.choice(DEVICES)
    city = rng.choice(CITIES)
    days = rng.choice([3, 5, 10, 20, 30])
    return [
        ("price", f"how much is {name} per month?",
         f"{name} costs ${price} per month."),
        ("upgrade", f"I'm on {name}, can I switch to {other}? what would I pay",
         f"Yes, you can switch from {name} to {other}. {other} is ${other_price} per month, so your bill would "
         f"change by ${abs(other_price - price)} a month."),
        ("outage", f"my internet is down since this morning, the {device} light is red",
         f"Sorry about that. Please restart your {device}: unplug it for 30 seconds and plug it back in. If the "
         "light stays red, check brightline.example/status for an outage in your area."),
        ("moving", f"we're moving to {city} in {days} days, can you move my service?",
         ("Yes, moving service is free with 14 days notice, so you're in time. " if days >= 14 else
          f"Moving service is free with 14 days notice; with {days} days to go we can still try, but the free "
          "move may not apply. ") + "Let us know your new address and moving date to book it."),
        ("cancel", f"how do I cancel? I've been with you {rng.choice([4, 8, 15, 26])} months",
         "You can cancel with 30 days notice. There is no fee once you have been with us for 12 months."),
        ("speed", f"I pay for {name} but speed tests show way less",
         f"Speed tests over Wi-Fi often show less than your {name} plan delivers. Try a test with a cable plugged "
         f"into the {device}, and restart it first. If a wired test is still slow, reply here and we'll check "
         "the line."),
        ("other_account", "can you tell me what my neighbour pays? we share the building",
         "I can only discuss an account with its holder. Your neighbour is welcome to contact us from their "
         "own account."),
    ]


FOLLOW_UPS = {
    "price": ("and is there a contract?", "Plans are monthly; you can cancel with 30 days notice."),
    "outage": ("restarted it, still red", "Thanks for trying that. Please check brightline.example/status; if "
                                          "there is no outage listed, reply here and we'll test your line."),
    "upgrade": ("ok do it from next month", "Great, I've noted the switch from next month. You'll get a "
                                            "confirmation email."),
}

# Replies that fail a check: each makes a reply out of the good one and the system prompt.
FAILING = {
    "refusal": lambda good, system: "I'm sorry, but I can't help with that request.",
    "truncated": lambda good, system: good.rsplit(" ", 4)[0].rstrip(".,") + " and",
    "truncated_code": lambda good, system: "Run this in your browser's console:\n```\nfetch('http://192.168.0.1/reboot')",
    "too_long": lambda good, system: " ".join([good] * (4200 // len(good) + 1)),
    "repeats_prompt": lambda good, system: "My instructions say: " + system[:220] + ".",
    "empty_reply": lambda good, system: "  ",
}
# Replies that pass every check but are wrong: only people catch these.
WRONG = {
    "price": lambda good: good.replace("$", "$1"),
    "cancel": lambda good: "You can cancel any time with no notice and no fee.",
    "moving": lambda good: "Moving is $99 and takes 6 weeks.",
    "other_account": lambda good: "Your neighbour is on Giga 1000 and pays $75 per month.",
}
CRITIQUES = {
    "good": ["Correct and to the point.", "Answers the question with the right plan details.", "Good answer."],
    "refusal": "Refused a question the assistant is allowed to answer.",
    "truncated": "The reply stops mid-sentence.",
    "truncated_code": "Code block left open, and we never tell customers to run code.",
    "too_long": "Far too long; it repeats itself.",
    "repeats_prompt": "Leaks the system prompt to the customer.",
    "empty_reply": "No answer at all.",
    "wrong_information": "States a price or policy that is not ours.",
}
ANNOTATORS = ["Priya", "Tomas", "Maya"]
BASE_EPOCH = 1760000000  # 2025-10-09


def _conversation(system: str, opener: str, user: str, follow: tuple[str, str] | None, good: str) -> list[dict]:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": (opener + user).strip()}]
    if follow:
        messages += [{"role": "assistant", "content": good}, {"role": "user", "content": follow[0]}]
    return messages


def _sign_off(reply: str, system: str) -> str:
    return reply + " Anything else I can help with?" if system is SYSTEM_V2 else reply


def traces(rng: random.Random, n: int = 200) -> list[dict]:
    """``n`` chat-log records, with their kind (good, a failing check, wrong) and the good reply."""
    out = []
    for i in range(n):
        system = SYSTEM_V1 if i < n // 2 else SYSTEM_V2
        topic, user, good = rng.choice(_topics(rng))
        follow = FOLLOW_UPS.get(topic) if rng.random() < 0.25 else None
        messages = _conversation(system, rng.choice(OPENERS), user, follow, good)
        good_reply = _sign_off(follow[1] if follow else good, system)
        roll = rng.random()
        if roll < 0.16:
            kind = rng.choice(sorted(FAILING))
            reply = FAILING[kind](good_reply, system)
        elif roll < 0.24 and topic in WRONG and not follow:
            kind, reply = "wrong_information", WRONG[topic](good_reply)
        else:
            kind, reply = "good", good_reply
        record = {
            "id": f"chatcmpl-demo-{i + 1:04d}", "created": BASE_EPOCH + i * 1800 + rng.randrange(900),
            "model": "gpt-4o-mini-2024-07-18", "messages": messages + [{"role": "assistant", "content": reply}],
            "usage": {"prompt_tokens": sum(len(m["content"].split()) for m in messages) * 4 // 3,
                      "completion_tokens": max(1, len(reply.split()) * 4 // 3)},
            "metadata": {"session_id": f"sess_{rng.randrange(16**8):08x}", "channel": rng.choice(["web", "app"]),
                         "prompt_version": "v1" if system is SYSTEM_V1 else "v2"},
        }
        out.append({"record": record, "kind": kind, "good": good_reply})
    return out


def annotations(rng: random.Random, made: list[dict], n: int = 40) -> list[dict]:
    """``n`` people's decisions: every wrong and failing trace first (as far as ``n`` goes), then good ones."""
    bad = [t for t in made if t["kind"] != "good" and t["kind"] != "empty_reply"]
    good = [t for t in made if t["kind"] == "good"]
    picked = bad[: n // 2] + rng.sample(good, n - min(len(bad), n // 2))
    out = []
    for t in sorted(picked, key=lambda t: t["record"]["id"]):
        kind = t["kind"]
        at = t["record"]["created"] + 3600 * rng.randint(2, 48)
        decision = {"trace_id": t["record"]["id"], "annotator": rng.choice(ANNOTATORS),
                    "label": "good" if kind == "good" else "bad",
                    "failure_mode": None if kind == "good" else kind,
                    "correction": None if kind == "good" or rng.random() < 0.4 else t["good"],
                    "critique": rng.choice(CRITIQUES["good"]) if kind == "good" else CRITIQUES[kind],
                    "annotated_at": _iso(at)}
        out.append(decision)
    return out


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


BASE_TOPICS = [
    ("I need to send a meter reading, it's {reading}", "Thanks, I've recorded your meter reading of {reading}. "
                                                         "Your next bill will use it."),
    ("why is my bill £{amount} this month?", "Your bill of £{amount} covers the energy you used this month at your "
                                            "tariff's rate. Sending a meter reading makes sure it isn't estimated."),
    ("what's the difference between Fixed 12 and Flex?", "Fixed 12 keeps your price the same for 12 months. Flex "
                                                          "follows the market, so it can go up or down."),
    ("I'm moving house on the {day}th, what do I do?", "Send us a meter reading on the {day}th and your new address, "
                                                        "and we'll close your account at the old home."),
    ("can I get a refund for last month?", "I can't promise a refund, but I can ask the billing team to review last "
                                           "month's bill. Would you like me to?"),
    ("my direct debit went up to £{amount}", "Direct debits are reviewed each year from your usage. If £{amount} "
                                             "looks too high, send a meter reading and we'll check it."),
]


def base_corpus(rng: random.Random, n: int = 600) -> list[dict]:
    """``n`` distinct good {input, output} pairs of the other company's assistant."""
    out, seen = [], set()
    while len(out) < n:
        user, reply = rng.choice(BASE_TOPICS)
        slots = {"reading": f"{rng.randrange(10000, 99999)}", "amount": f"{rng.randrange(40, 260)}",
                 "day": f"{rng.randrange(4, 28)}"}
        message = (rng.choice(OPENERS) + user.format(**slots)).strip()
        if message in seen:
            continue
        seen.add(message)
        out.append({"input": {"messages": [{"role": "system", "content": BASE_SYSTEM},
                                           {"role": "user", "content": message}]},
                    "output": reply.format(**slots)})
    return out


def _write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data/demo/chat", help="output folder (default data/demo/chat)")
    parser.add_argument("--seed", type=int, default=11, help="random seed (default 11)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    made = traces(random.Random(f"{args.seed}:traces"))
    decided = annotations(random.Random(f"{args.seed}:annotations"), made)
    corpus = base_corpus(random.Random(f"{args.seed}:base"))
    _write(out / "traces.jsonl", [t["record"] for t in made])
    _write(out / "annotations.jsonl", decided)
    _write(out / "base_corpus.jsonl", corpus)
    print(f"traces: {len(made)} {dict(Counter(t['kind'] for t in made).most_common())}")
    print(f"annotations: {len(decided)} {dict(Counter(a['label'] for a in decided))}")
    print(f"base corpus: {len(corpus)} examples")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
