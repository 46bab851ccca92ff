"""ticket_triage: a support ticket in, a triage decision out. A team's own task, in one module.

Input ``{"subject": str, "body": str, "product": str}``; output one JSON object::

    {"category": "billing", "priority": "P2", "team": "billing-ops",
     "summary": "Duplicate March charge of $49.00 on Atlas CRM invoice INV-20419; refund requested"}

- ``category``: one of :data:`CATEGORIES`;
- ``priority``: ``P1`` (many customers down) to ``P4`` (a question or a wish), see :data:`SYSTEM_PROMPT`;
- ``team``: the team the category routes to in :data:`ROUTING` (routing is by category alone);
- ``summary``: one line for the team's queue, at most :data:`MAX_SUMMARY` characters.

Each assertion is named after the failure mode it detects, and a problem is reported by one
assertion only: a missing ``team`` is ``missing_field``, not also ``wrong_team_for_category``.

Exact match (:meth:`TicketTriage.match_key`) compares the decision, category + priority + team:
the summary is free text with many right answers, so comparing it would count a correct triage
as a miss. The canonical form (:meth:`TicketTriage.normalise`) keeps the whole output, summary
included, because curation stores it and the local model is trained to write it.

Everything is in this one module, so the check version (a hash of this file's source) changes
with any edit here, the prompt's too: every trace is evaluated again. That is cheap for this
task; a task whose traces are many keeps its checks in a module of their own (see nl2query).
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

from pipeline.engine.tasks.base import CheckResult, Example, SyntheticExample
from pipeline.engine.tasks.hooks import DemoData, canonical_json, collapse

NAME = "ticket_triage"
VERSION = "1"

#: Where each category of ticket goes: the routing table the support organisation publishes.
ROUTING: dict[str, str] = {
    "account_access": "identity",
    "billing": "billing-ops",
    "bug": "product-engineering",
    "data_privacy": "privacy-office",
    "feature_request": "product-management",
    "how_to": "customer-success",
    "outage": "sre-oncall",
}
CATEGORIES: tuple[str, ...] = tuple(sorted(ROUTING))
PRIORITIES: tuple[str, ...] = ("P1", "P2", "P3", "P4")
FIELDS: tuple[str, ...] = ("category", "priority", "team", "summary")
MAX_SUMMARY = 140
#: The products the support desk serves (a ticket may name another: inputs are not limited to these).
PRODUCTS: tuple[str, ...] = ("Atlas CRM", "Beacon Analytics", "Cobalt Payroll", "Drift Mobile", "Ember API")
#: Words that tie a ticket to one product: a ticket using them is not the same ticket for another one.
PRODUCT_TERMS: dict[str, tuple[str, ...]] = {
    "Drift Mobile": ("iphone", "android", "app store", "play store", "tablet"),
    "Ember API": ("api key", "webhook", "endpoint", "sdk", "rate limit"),
    "Cobalt Payroll": ("payslip", "payroll run", "tax form"),
}

CHECK_NAMES: tuple[str, ...] = (
    "not_json", "missing_field", "unknown_category", "invalid_priority", "wrong_team_for_category",
    "summary_too_long",
)

SYSTEM_PROMPT = (
    "You triage support tickets. Answer with one JSON object and nothing else, with the keys "
    "category, priority, team and summary.\n"
    f"category: one of {', '.join(CATEGORIES)}.\n"
    "priority: P1 when the product is down or unusable for many people; P2 when one customer is "
    "blocked, was charged wrongly or has a legal deadline; P3 when something is wrong but there is a "
    "workaround, or for billing questions; P4 for questions and feature requests.\n"
    "team: the team the category routes to: "
    + "; ".join(f"{category} -> {team}" for category, team in ROUTING.items()) + ".\n"
    f"summary: one line for the team's queue, at most {MAX_SUMMARY} characters, naming the product."
)

# --- the prompt and its inputs ------------------------------------------------------------------


def prompt(input: dict[str, Any]) -> list[dict[str, str]]:
    """System and user messages for a ticket; the user message is what a local model reads."""
    user = f"Product: {input['product']}\nSubject: {input['subject']}\n\n{input['body']}"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def input_from_messages(messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The ticket behind :func:`prompt`'s user message, for chat logs; None when it is not one."""
    users = [m for m in messages if m.get("role") == "user" and isinstance(m.get("content"), str)]
    if not users:
        return None
    match = re.fullmatch(r"Product: (.+)\nSubject: (.+)\n\n(.+)", users[-1]["content"], re.DOTALL)
    if match is None:
        return None
    return {"subject": match.group(2), "body": match.group(3), "product": match.group(1)}


def validate_input(input: Any) -> str | None:
    """None for a ticket with a non-empty subject, body and product, else why it is not one."""
    if not isinstance(input, dict):
        return f"input must be an object, got {type(input).__name__}"
    for key in ("subject", "body", "product"):
        value = input.get(key)
        if not isinstance(value, str) or not value.strip():
            return f"input.{key} must be a non-empty string"
    return None


# --- the assertions -----------------------------------------------------------------------------

_FENCE = re.compile(r"^\s*```[a-zA-Z0-9_-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)


def parse(output: Any) -> dict[str, Any] | None:
    """The output as a dict, or None when it (code fences stripped) is not one JSON object."""
    if not isinstance(output, str):
        return None
    match = _FENCE.match(output)
    try:
        value = json.loads(match.group(1) if match else output)
    except (json.JSONDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _text(decision: dict[str, Any], key: str) -> str | None:
    """The field as a non-empty string, or None (what ``missing_field`` reports)."""
    value = decision.get(key)
    return value if isinstance(value, str) and value.strip() else None


def _missing_field(decision: dict[str, Any], input: dict[str, Any]) -> str | None:
    missing = [key for key in FIELDS if _text(decision, key) is None]
    return f"missing or empty: {', '.join(missing)}" if missing else ""


def _unknown_category(decision: dict[str, Any], input: dict[str, Any]) -> str | None:
    category = _text(decision, "category")
    if category is None:
        return None
    return "" if category in ROUTING else f"category {category!r} is not one of {', '.join(CATEGORIES)}"


def _invalid_priority(decision: dict[str, Any], input: dict[str, Any]) -> str | None:
    priority = _text(decision, "priority")
    if priority is None:
        return None
    return "" if priority in PRIORITIES else f"priority {priority!r} is not one of {', '.join(PRIORITIES)}"


def _wrong_team_for_category(decision: dict[str, Any], input: dict[str, Any]) -> str | None:
    category, team = _text(decision, "category"), _text(decision, "team")
    if category not in ROUTING or team is None:
        return None
    return "" if team == ROUTING[category] else f"{category} routes to {ROUTING[category]!r}, got {team!r}"


def _summary_too_long(decision: dict[str, Any], input: dict[str, Any]) -> str | None:
    summary = _text(decision, "summary")
    if summary is None:
        return None
    return "" if len(summary) <= MAX_SUMMARY else f"summary has {len(summary)} characters, more than {MAX_SUMMARY}"


#: The assertions on a parsed output, in CHECK_NAMES order after ``not_json``: each gives why it
#: failed, "" when it passed, or None when there is nothing to check (the field is missing, or the
#: category unknown: another assertion reports that).
_CHECKS = (_missing_field, _unknown_category, _invalid_priority, _wrong_team_for_category, _summary_too_long)


def check(input: dict[str, Any], output: str) -> list[CheckResult]:
    """Every assertion on ``output`` for ``input``; one result per name in CHECK_NAMES."""
    decision = parse(output)
    if decision is None:
        skipped = [CheckResult(name, None, "skipped: output is not a JSON object") for name in CHECK_NAMES[1:]]
        return [CheckResult("not_json", False, "output is not one JSON object"), *skipped]
    results = [CheckResult("not_json", True)]
    for name, assertion in zip(CHECK_NAMES[1:], _CHECKS):
        problem = assertion(decision, input)
        if problem is None:
            results.append(CheckResult(name, None, "skipped: reported by missing_field or unknown_category"))
        else:
            results.append(CheckResult(name, not problem, problem))
    return results


def normalise(output: str) -> str | None:
    """The whole output as JSON with sorted keys and no spaces; None when it is not a JSON object."""
    decision = parse(output)
    return None if decision is None else canonical_json(decision)


def match_key(output: str) -> str | None:
    """What exact match compares: category, priority and team (not the free-text summary)."""
    decision = parse(output)
    return None if decision is None else canonical_json({key: decision.get(key) for key in FIELDS[:3]})


# --- what the engine asks about inputs (pipeline.engine.tasks.hooks) -----------------------------


def _mentions(text: str, name: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text, re.IGNORECASE) is not None


def _ticket_text(input: dict[str, Any]) -> str:
    return f"{input.get('subject', '')}\n{input.get('body', '')}"


def group_key(input: dict[str, Any]) -> str:
    """The ticket's text with its product's name masked: the same ticket about another product
    (which :func:`swap_product` writes) never lands in another split than the original."""
    product = str(input.get("product", ""))
    text = _ticket_text(input)
    if product:
        text = re.sub(rf"(?<!\w){re.escape(product)}(?!\w)", "<product>", text, flags=re.IGNORECASE)
    return collapse(text)


def slice_of(input: dict[str, Any]) -> str:
    """The ticket's product: reports show each product's pass rate."""
    return str(input.get("product", ""))


def dedup_text(input: dict[str, Any]) -> tuple[str, str]:
    """(the product, subject and body): near-duplicate tickets are looked for within one product."""
    return str(input.get("product", "")), _ticket_text(input)


def display_text(input: Any) -> str:
    """``[product] subject``: what a support lead reads first in the report and the annotation app."""
    if not isinstance(input, dict):
        return json.dumps(input, ensure_ascii=False)
    return f"[{input.get('product', '?')}] {input.get('subject', '')}"


# --- offline synthetic data ---------------------------------------------------------------------


def swap_product(example: Example, rng: random.Random) -> Example | None:
    """The same ticket about another product, its summary updated, the decision unchanged; None
    when the ticket is tied to its product.

    The assumption: category, priority and team do not depend on the product (routing is by
    category, and the priority rules in the prompt name no product), and a ticket names its product
    only by its name. A ticket is tied to its product, and left alone, when its product is not one
    of :data:`PRODUCTS`, when it uses a word of :data:`PRODUCT_TERMS` (an iPhone crash is not a
    payroll ticket) or when it names another product ("moving from Atlas CRM to ...").
    """
    product = example.input.get("product")
    decision = parse(example.output)
    if product not in PRODUCTS or decision is None or not isinstance(decision.get("summary"), str):
        return None
    text = _ticket_text(example.input)
    if any(_mentions(text, other) for other in PRODUCTS if other != product):
        return None
    if any(_mentions(text, term) for terms in PRODUCT_TERMS.values() for term in terms):
        return None
    other = rng.choice([p for p in PRODUCTS if p != product])
    pattern = re.compile(rf"(?<!\w){re.escape(product)}(?!\w)", re.IGNORECASE)

    def swap(value: str) -> str:
        return pattern.sub(other, value)

    ticket = {**example.input, "product": other, "subject": swap(example.input["subject"]),
              "body": swap(example.input["body"])}
    return Example(ticket, canonical_json({**decision, "summary": swap(decision["summary"])}))


#: The offline generators by name (the name is recorded as each synthetic example's generator).
GENERATORS = {"swap_product": swap_product}


def synthesize(examples: list[Example], n: int, rng: random.Random) -> list[SyntheticExample]:
    """Up to ``n`` new examples: each seed (in random order) given to each generator once; kept
    only when every assertion passes and the ticket is new."""
    seen = {canonical_json(e.input) for e in examples}
    out: list[SyntheticExample] = []
    order = list(range(len(examples)))
    rng.shuffle(order)
    for index in order:
        for name, generate in GENERATORS.items():
            if len(out) >= n:
                return out
            made = generate(examples[index], rng)
            if made is None or canonical_json(made.input) in seen:
                continue
            if validate_input(made.input) or any(r.passed is False for r in check(made.input, made.output)):
                continue
            seen.add(canonical_json(made.input))
            out.append(SyntheticExample(made.input, made.output, index, name))
    return out


# --- the task object ----------------------------------------------------------------------------

_DATA = Path(__file__).resolve().parent / "data"


class TicketTriage:
    """The ticket_triage task as a Task object (see pipeline/engine/tasks/base.py and hooks.py)."""

    name = NAME
    version = VERSION
    check_names = CHECK_NAMES

    prompt = staticmethod(prompt)
    validate_input = staticmethod(validate_input)
    check = staticmethod(check)
    normalise = staticmethod(normalise)
    synthesize = staticmethod(synthesize)
    input_from_messages = staticmethod(input_from_messages)

    # what the engine asks through pipeline.engine.tasks.hooks
    match_key = staticmethod(match_key)
    group_key = staticmethod(group_key)
    slice_name = "product"
    slice_of = staticmethod(slice_of)
    dedup_text = staticmethod(dedup_text)
    display_text = staticmethod(display_text)
    demo_data = DemoData(traces=str(_DATA / "traces.jsonl"), annotations=str(_DATA / "annotations.jsonl"),
                         base_corpus=str(_DATA / "base_corpus.jsonl"))


TASK = TicketTriage()
