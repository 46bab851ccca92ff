"""Write the sql task's bundled sample deterministically: traces, annotations and a base corpus.

    python scripts/make_sql_demo.py [--out data/demo/sql] [--seed 11]

Six invented databases (a library, a clinic, a shipping company, a game store, a university and
a hotel chain) in three dialects. Questions come from templates filled with each database's
tables and literals; about a quarter of the production traces carry a failing output of a kind
a real assistant produces (an invented column, an unqualified join key, an UPDATE, two
statements, broken syntax, ...), named in ``metadata.injected_failure``. The base corpus holds
correct pairs over the first four databases only, none of them a production question.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

DEFAULT_SEED = 11
N_TRACES = 300
N_ANNOTATIONS = 60
N_BASE_CORPUS = 1500
BASE_DATABASES = ("library", "clinic", "shipping", "game_store")


# --- the databases ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]
    noun: tuple[str, str]  # singular, plural
    label: str
    cats: dict[str, tuple[str, ...]] = field(default_factory=dict)
    nums: dict[str, tuple[int, int]] = field(default_factory=dict)
    dates: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return self.columns[0]


@dataclass(frozen=True)
class Database:
    db_id: str
    dialect: str
    tables: tuple[Table, ...]
    #: (child, parent): the child holds the parent's key column under the same name
    relations: tuple[tuple[str, str], ...]

    def table(self, name: str) -> Table:
        return next(t for t in self.tables if t.name == name)

    def schema(self) -> dict[str, Any]:
        return {"tables": [{"name": t.name, "columns": list(t.columns)} for t in self.tables]}

    def all_columns(self) -> set[str]:
        return {c for t in self.tables for c in t.columns}


COUNTRIES = ("France", "Nigeria", "Japan", "Chile", "Canada", "India", "Germany", "Brazil", "Kenya", "Vietnam")

DATABASES: tuple[Database, ...] = (
    Database("library", "sqlite", (
        Table("authors", ("author_id", "name", "birth_year", "country"), ("author", "authors"), "name",
              {"country": COUNTRIES[:6]}, {"birth_year": (1900, 1995)}),
        Table("books", ("book_id", "title", "author_id", "genre", "published_year", "pages"), ("book", "books"),
              "title", {"genre": ("Fantasy", "Mystery", "Poetry", "History", "Science", "Romance")},
              {"published_year": (1950, 2023), "pages": (90, 900)}),
        Table("members", ("member_id", "full_name", "city", "joined_on"), ("member", "members"), "full_name",
              {"city": ("Leeds", "York", "Bristol", "Derby", "Bath")}, {}, ("joined_on",)),
        Table("loans", ("loan_id", "book_id", "member_id", "loaned_on", "returned_on"), ("loan", "loans"),
              "loan_id", {}, {}, ("loaned_on", "returned_on")),
    ), (("books", "authors"), ("loans", "books"), ("loans", "members"))),
    Database("clinic", "postgres", (
        Table("patients", ("patient_id", "first_name", "last_name", "birth_year", "city", "insurance_plan"),
              ("patient", "patients"), "last_name",
              {"city": ("Porto", "Lyon", "Graz", "Turin"), "insurance_plan": ("basic", "plus", "premium")},
              {"birth_year": (1940, 2015)}),
        Table("doctors", ("doctor_id", "full_name", "specialty", "years_experience"), ("doctor", "doctors"),
              "full_name", {"specialty": ("cardiology", "dermatology", "pediatrics", "neurology", "oncology")},
              {"years_experience": (1, 40)}),
        Table("appointments", ("appointment_id", "patient_id", "doctor_id", "scheduled_on", "status", "fee"),
              ("appointment", "appointments"), "appointment_id",
              {"status": ("booked", "completed", "cancelled", "no_show")}, {"fee": (40, 400)}, ("scheduled_on",)),
        Table("prescriptions", ("prescription_id", "appointment_id", "drug_name", "dosage_mg", "days_supply"),
              ("prescription", "prescriptions"), "drug_name",
              {"drug_name": ("amoxicillin", "ibuprofen", "metformin", "lisinopril")},
              {"dosage_mg": (5, 1000), "days_supply": (3, 90)}),
    ), (("appointments", "patients"), ("appointments", "doctors"), ("prescriptions", "appointments"))),
    Database("shipping", "duckdb", (
        Table("customers", ("customer_id", "company_name", "country", "segment"), ("customer", "customers"),
              "company_name", {"country": COUNTRIES[5:], "segment": ("retail", "wholesale", "manufacturing")}),
        Table("shipments", ("shipment_id", "customer_id", "origin_port", "destination_port", "weight_kg",
                            "shipped_on", "status"), ("shipment", "shipments"), "shipment_id",
              {"origin_port": ("Rotterdam", "Santos", "Mombasa", "Haiphong"),
               "destination_port": ("Hamburg", "Veracruz", "Singapore", "Antwerp"),
               "status": ("in_transit", "delivered", "delayed", "lost")}, {"weight_kg": (50, 20000)}, ("shipped_on",)),
        Table("carriers", ("carrier_id", "carrier_name", "country"), ("carrier", "carriers"), "carrier_name",
              {"country": COUNTRIES[3:8]}),
        Table("legs", ("leg_id", "shipment_id", "carrier_id", "departed_on", "arrived_on", "cost_usd"),
              ("leg", "legs"), "leg_id", {}, {"cost_usd": (200, 15000)}, ("departed_on", "arrived_on")),
    ), (("shipments", "customers"), ("legs", "shipments"), ("legs", "carriers"))),
    Database("game_store", "sqlite", (
        Table("publishers", ("publisher_id", "name", "country"), ("publisher", "publishers"), "name",
              {"country": COUNTRIES[::2]}),
        Table("games", ("game_id", "title", "genre", "release_year", "price", "publisher_id"), ("game", "games"),
              "title", {"genre": ("RPG", "Puzzle", "Racing", "Strategy", "Shooter")},
              {"release_year": (1995, 2024), "price": (5, 70)}),
        Table("players", ("player_id", "username", "country", "signup_year"), ("player", "players"), "username",
              {"country": COUNTRIES[1::2]}, {"signup_year": (2010, 2024)}),
        Table("purchases", ("purchase_id", "player_id", "game_id", "purchased_on", "amount"),
              ("purchase", "purchases"), "purchase_id", {}, {"amount": (1, 120)}, ("purchased_on",)),
        Table("reviews", ("review_id", "player_id", "game_id", "rating", "posted_on"), ("review", "reviews"),
              "review_id", {}, {"rating": (1, 10)}, ("posted_on",)),
    ), (("games", "publishers"), ("purchases", "players"), ("purchases", "games"), ("reviews", "games"))),
    Database("university", "postgres", (
        Table("departments", ("department_id", "name", "building"), ("department", "departments"), "name",
              {"building": ("North Hall", "Science Park", "Old Library", "East Wing")}),
        Table("instructors", ("instructor_id", "full_name", "department_id", "hire_year", "salary"),
              ("instructor", "instructors"), "full_name", {}, {"hire_year": (1985, 2024), "salary": (40000, 160000)}),
        Table("courses", ("course_id", "title", "department_id", "credits", "level"), ("course", "courses"), "title",
              {"level": ("introductory", "intermediate", "advanced")}, {"credits": (1, 10)}),
        Table("students", ("student_id", "full_name", "enrollment_year", "major"), ("student", "students"),
              "full_name", {"major": ("physics", "history", "economics", "biology", "linguistics")},
              {"enrollment_year": (2015, 2025)}),
        Table("enrollments", ("enrollment_id", "student_id", "course_id", "term", "grade_points"),
              ("enrollment", "enrollments"), "enrollment_id", {"term": ("2024-fall", "2025-spring", "2025-fall")},
              {"grade_points": (0, 4)}),
    ), (("instructors", "departments"), ("courses", "departments"), ("enrollments", "students"),
        ("enrollments", "courses"))),
    Database("hotel", "duckdb", (
        Table("hotels", ("hotel_id", "name", "city", "stars"), ("hotel", "hotels"), "name",
              {"city": ("Lisbon", "Oslo", "Krakow", "Seville", "Ghent")}, {"stars": (1, 5)}),
        Table("rooms", ("room_id", "hotel_id", "room_type", "nightly_rate", "capacity"), ("room", "rooms"),
              "room_id", {"room_type": ("single", "double", "suite", "family")},
              {"nightly_rate": (40, 600), "capacity": (1, 6)}),
        Table("guests", ("guest_id", "full_name", "country", "loyalty_tier"), ("guest", "guests"), "full_name",
              {"country": COUNTRIES[2:7], "loyalty_tier": ("bronze", "silver", "gold", "platinum")}),
        Table("bookings", ("booking_id", "guest_id", "room_id", "check_in", "nights", "total_price", "status"),
              ("booking", "bookings"), "booking_id", {"status": ("confirmed", "cancelled", "completed")},
              {"nights": (1, 21), "total_price": (60, 9000)}, ("check_in",)),
    ), (("rooms", "hotels"), ("bookings", "guests"), ("bookings", "rooms"))),
)
_BY_ID = {d.db_id: d for d in DATABASES}


# --- questions and their queries -------------------------------------------------------------------

@dataclass
class Spec:
    """A question and its correct query, with what failure injection needs to know."""

    question: str
    sql: str
    tables: list[str]
    columns: list[str]
    shared_key: str | None = None
    cat: tuple[str, str, str] | None = None  # (table, column, value) of an equality filter


def _w(column: str) -> str:
    return column.replace("_", " ")


def _date(rng: random.Random) -> str:
    return (datetime(2023, 1, 1) + timedelta(days=rng.randrange(900))).strftime("%Y-%m-%d")


def _num(rng: random.Random, bounds: tuple[int, int]) -> int:
    lo, hi = bounds
    value = rng.randint(lo, hi)
    return round(value, -2) if hi - lo > 2000 else value


def _pick(rng: random.Random, items: Any) -> Any:
    items = list(items)
    return items[rng.randrange(len(items))] if items else None


def t_filter_cat(db: Database, rng: random.Random) -> Spec | None:
    t = _pick(rng, [t for t in db.tables if t.cats])
    if t is None:
        return None
    cat = _pick(rng, sorted(t.cats))
    val = _pick(rng, t.cats[cat])
    q = rng.choice((f"List the {_w(t.label)} of all {t.noun[1]} whose {_w(cat)} is {val}.",
                    f"Which {t.noun[1]} have {_w(cat)} {val}? Show their {_w(t.label)}.",
                    f"Show me the {_w(t.label)} for {t.noun[1]} with {_w(cat)} = {val}"))
    return Spec(q, f"SELECT {t.label} FROM {t.name} WHERE {cat} = '{val}'", [t.name], [t.label, cat],
                cat=(t.name, cat, val))


def t_count_num(db: Database, rng: random.Random) -> Spec | None:
    t = _pick(rng, [t for t in db.tables if t.nums])
    if t is None:
        return None
    num = _pick(rng, sorted(t.nums))
    n = _num(rng, t.nums[num])
    q = rng.choice((f"How many {t.noun[1]} have a {_w(num)} above {n}?",
                    f"Count the {t.noun[1]} with {_w(num)} greater than {n}.",
                    f"number of {t.noun[1]} where {_w(num)} > {n}"))
    return Spec(q, f"SELECT COUNT(*) FROM {t.name} WHERE {num} > {n}", [t.name], [num])


def t_avg_by_cat(db: Database, rng: random.Random) -> Spec | None:
    t = _pick(rng, [t for t in db.tables if t.nums and t.cats])
    if t is None:
        return None
    num, cat = _pick(rng, sorted(t.nums)), _pick(rng, sorted(t.cats))
    fn, word = rng.choice((("AVG", "average"), ("SUM", "total"), ("MAX", "highest"), ("MIN", "lowest")))
    q = rng.choice((f"What is the {word} {_w(num)} of {t.noun[1]} per {_w(cat)}?",
                    f"{word.capitalize()} {_w(num)} by {_w(cat)} for {t.noun[1]}",
                    f"For each {_w(cat)}, what's the {word} {_w(num)} of the {t.noun[1]}?"))
    return Spec(q, f"SELECT {cat}, {fn}({num}) AS {fn.lower()}_{num} FROM {t.name} GROUP BY {cat}", [t.name],
                [cat, num])


def t_top_k(db: Database, rng: random.Random) -> Spec | None:
    t = _pick(rng, [t for t in db.tables if t.nums])
    if t is None:
        return None
    num = _pick(rng, sorted(t.nums))
    k = rng.choice((3, 5, 10, 20))
    high = rng.random() < 0.7
    word, direction = ("highest", "DESC") if high else ("lowest", "ASC")
    q = rng.choice((f"Show the {k} {t.noun[1]} with the {word} {_w(num)}.",
                    f"Which {k} {t.noun[1]} have the {word} {_w(num)}? Give the {_w(t.label)} and {_w(num)}.",
                    f"top {k} {t.noun[1]} by {_w(num)} ({word} first)"))
    return Spec(q, f"SELECT {t.label}, {num} FROM {t.name} ORDER BY {num} {direction} LIMIT {k}", [t.name],
                [t.label, num])


def t_count_per_cat(db: Database, rng: random.Random) -> Spec | None:
    t = _pick(rng, [t for t in db.tables if t.cats])
    if t is None:
        return None
    cat = _pick(rng, sorted(t.cats))
    alias = f"num_{t.noun[1]}"
    q = rng.choice((f"How many {t.noun[1]} are there for each {_w(cat)}, largest count first?",
                    f"Number of {t.noun[1]} per {_w(cat)}, sorted from most to fewest"))
    return Spec(q, f"SELECT {cat}, COUNT(*) AS {alias} FROM {t.name} GROUP BY {cat} ORDER BY {alias} DESC",
                [t.name], [cat])


def _relation(db: Database, rng: random.Random, parent_needs: Callable[[Table], bool] = lambda t: True):
    options = [(db.table(c), db.table(p)) for c, p in db.relations if parent_needs(db.table(p))]
    return _pick(rng, options) or (None, None)


def t_join_count(db: Database, rng: random.Random) -> Spec | None:
    child, parent = _relation(db, rng)
    key, alias = parent.key, f"num_{child.noun[1]}"
    q = rng.choice((f"How many {child.noun[1]} does each {parent.noun[0]} have?",
                    f"For every {parent.noun[0]}, count its {child.noun[1]}.",
                    f"{child.noun[0]} count per {parent.noun[0]}"))
    sql = (f"SELECT p.{key}, p.{parent.label}, COUNT(*) AS {alias} FROM {parent.name} AS p "
           f"JOIN {child.name} AS c ON c.{key} = p.{key} GROUP BY p.{key}, p.{parent.label}")
    return Spec(q, sql, [parent.name, child.name], [key, parent.label], shared_key=key)


def t_join_filter(db: Database, rng: random.Random) -> Spec | None:
    child, parent = _relation(db, rng, lambda t: bool(t.cats))
    if child is None:
        return None
    cat = _pick(rng, sorted(parent.cats))
    val = _pick(rng, parent.cats[cat])
    q = rng.choice((f"List the {_w(child.label)} of {child.noun[1]} whose {parent.noun[0]} has {_w(cat)} {val}.",
                    f"Which {child.noun[1]} belong to a {parent.noun[0]} with {_w(cat)} {val}? "
                    f"Show the {_w(child.label)}."))
    sql = (f"SELECT c.{child.label} FROM {child.name} AS c JOIN {parent.name} AS p ON p.{parent.key} = "
           f"c.{parent.key} WHERE p.{cat} = '{val}'")
    return Spec(q, sql, [child.name, parent.name], [child.label, cat], shared_key=parent.key)


def t_join_by_id(db: Database, rng: random.Random) -> Spec | None:
    child, parent = _relation(db, rng)
    key, ident = parent.key, rng.randint(1, 400)
    q = rng.choice((f"Show the {_w(child.label)} and the {parent.noun[0]} {_w(parent.label)} for {child.noun[1]} "
                    f"of {parent.noun[0]} {ident}.",
                    f"{child.noun[1]} of {parent.noun[0]} #{ident}: {_w(child.label)} with the "
                    f"{parent.noun[0]}'s {_w(parent.label)}"))
    sql = (f"SELECT c.{child.label}, p.{parent.label} FROM {child.name} AS c JOIN {parent.name} AS p "
           f"ON p.{key} = c.{key} WHERE c.{key} = {ident}")
    return Spec(q, sql, [child.name, parent.name], [child.label, parent.label], shared_key=key)


def t_above_average(db: Database, rng: random.Random) -> Spec | None:
    t = _pick(rng, [t for t in db.tables if t.nums])
    if t is None:
        return None
    num = _pick(rng, sorted(t.nums))
    q = rng.choice((f"Which {t.noun[1]} have a {_w(num)} above the average? Give their {_w(t.label)}.",
                    f"{t.noun[1]} with {_w(num)} higher than the mean {_w(num)}"))
    return Spec(q, f"SELECT {t.label} FROM {t.name} WHERE {num} > (SELECT AVG({num}) FROM {t.name})", [t.name],
                [t.label, num])


def t_more_than(db: Database, rng: random.Random) -> Spec | None:
    child, parent = _relation(db, rng)
    key, n, alias = parent.key, rng.randint(2, 12), f"num_{child.noun[1]}"
    q = rng.choice((f"Which {parent.noun[1]} have more than {n} {child.noun[1]}?",
                    f"List the {_w(parent.label)} of {parent.noun[1]} with over {n} {child.noun[1]}."))
    sql = (f"WITH counts AS (SELECT {key}, COUNT(*) AS {alias} FROM {child.name} GROUP BY {key}) "
           f"SELECT p.{parent.label} FROM {parent.name} AS p JOIN counts AS c ON c.{key} = p.{key} "
           f"WHERE c.{alias} > {n}")
    return Spec(q, sql, [parent.name, child.name], [parent.label], shared_key=key)


def t_without(db: Database, rng: random.Random) -> Spec | None:
    child, parent = _relation(db, rng)
    q = rng.choice((f"Which {parent.noun[1]} have no {child.noun[1]} at all?",
                    f"List {parent.noun[1]} without any {child.noun[1]} ({_w(parent.label)} only)."))
    sql = (f"SELECT p.{parent.label} FROM {parent.name} AS p LEFT JOIN {child.name} AS c "
           f"ON c.{parent.key} = p.{parent.key} WHERE c.{child.key} IS NULL")
    return Spec(q, sql, [parent.name, child.name], [parent.label], shared_key=parent.key)


def t_distinct(db: Database, rng: random.Random) -> Spec | None:
    t = _pick(rng, [t for t in db.tables if t.cats])
    if t is None:
        return None
    cat = _pick(rng, sorted(t.cats))
    q = rng.choice((f"What distinct {_w(cat)} values do the {t.noun[1]} have?",
                    f"List every {_w(cat)} that appears among {t.noun[1]}, alphabetically."))
    return Spec(q, f"SELECT DISTINCT {cat} FROM {t.name} ORDER BY {cat}", [t.name], [cat])


def t_between(db: Database, rng: random.Random) -> Spec | None:
    t = _pick(rng, [t for t in db.tables if t.nums])
    if t is None:
        return None
    num = _pick(rng, sorted(t.nums))
    a, b = sorted((_num(rng, t.nums[num]), _num(rng, t.nums[num])))
    if a == b:
        return None
    q = rng.choice((f"List {t.noun[1]} with {_w(num)} between {a} and {b}, showing {_w(t.label)} and {_w(num)}.",
                    f"{t.noun[1]} whose {_w(num)} is from {a} to {b}, ordered by {_w(num)}"))
    return Spec(q, f"SELECT {t.label}, {num} FROM {t.name} WHERE {num} BETWEEN {a} AND {b} ORDER BY {num}",
                [t.name], [t.label, num])


def t_after_date(db: Database, rng: random.Random) -> Spec | None:
    t = _pick(rng, [t for t in db.tables if t.dates])
    if t is None:
        return None
    col, day = _pick(rng, t.dates), _date(rng)
    q = rng.choice((f"How many {t.noun[1]} have a {_w(col)} date after {day}?",
                    f"Count {t.noun[1]} with {_w(col)} later than {day}."))
    return Spec(q, f"SELECT COUNT(*) FROM {t.name} WHERE {col} > '{day}'", [t.name], [col])


def t_two_filters(db: Database, rng: random.Random) -> Spec | None:
    t = _pick(rng, [t for t in db.tables if t.nums and t.cats])
    if t is None:
        return None
    cat, num = _pick(rng, sorted(t.cats)), _pick(rng, sorted(t.nums))
    val, n = _pick(rng, t.cats[cat]), _num(rng, t.nums[num])
    q = rng.choice((f"List the {_w(t.label)} of {t.noun[1]} with {_w(cat)} {val} and {_w(num)} below {n}.",
                    f"{t.noun[1]} where {_w(cat)} is {val} and {_w(num)} < {n}"))
    return Spec(q, f"SELECT {t.label} FROM {t.name} WHERE {cat} = '{val}' AND {num} < {n}", [t.name],
                [t.label, cat, num], cat=(t.name, cat, val))


TEMPLATES: tuple[Callable[[Database, random.Random], Spec | None], ...] = (
    t_filter_cat, t_count_num, t_avg_by_cat, t_top_k, t_count_per_cat, t_join_count, t_join_filter, t_join_by_id,
    t_above_average, t_more_than, t_without, t_distinct, t_between, t_after_date, t_two_filters,
)


def sample_spec(db: Database, rng: random.Random) -> Spec:
    """A question and its correct query over ``db`` from a random template."""
    while True:
        spec = rng.choice(TEMPLATES)(db, rng)
        if spec is not None:
            spec.question = spec.question[0].upper() + spec.question[1:]
            return spec


def task_input(db: Database, question: str) -> dict[str, Any]:
    return {"question": question, "schema": db.schema(), "dialect": db.dialect, "db_id": db.db_id}


# --- failures a production assistant makes ---------------------------------------------------------

_AVOID = {"date", "time", "order", "group", "type", "level", "key", "value", "first", "last", "user", "id", "on"}


def _replace_first(sql: str, old: str, new: str, last: bool = False) -> str:
    matches = list(re.finditer(rf"(?<![\w']){re.escape(old)}(?![\w'])", sql))
    m = matches[-1] if last else matches[0]
    return sql[: m.start()] + new + sql[m.end():]


def _wrong_names(db: Database, name: str, singular: str) -> list[str]:
    parts = name.split("_")
    options = [parts[0], parts[-1], name.replace("_", "")] if len(parts) > 1 else [f"{singular}_{name}", name + "s"]
    return [o for o in dict.fromkeys(options) if len(o) > 2 and o not in db.all_columns() and o not in _AVOID]


def inject_unknown_column(db: Database, spec: Spec, rng: random.Random) -> tuple[str, str] | None:
    for column in rng.sample(spec.columns, len(spec.columns)):
        singular = next(t.noun[0] for t in db.tables if column in t.columns)
        wrong = _wrong_names(db, column, singular)
        if wrong and column != spec.shared_key:
            return spec.question, _replace_first(spec.sql, column, rng.choice(wrong))
    return None


def inject_unknown_table(db: Database, spec: Spec, rng: random.Random) -> tuple[str, str] | None:
    table = db.table(spec.tables[0])
    wrong = [w for w in (table.noun[0], f"{table.noun[0]}_list", f"tbl_{table.name}")
             if w not in {t.name for t in db.tables}]
    return spec.question, _replace_first(spec.sql, table.name, rng.choice(wrong))


def inject_ambiguous_column(db: Database, spec: Spec, rng: random.Random) -> tuple[str, str] | None:
    if spec.shared_key is None or "WITH counts" in spec.sql:
        return None
    qualified = re.findall(rf"\b\w+\.{spec.shared_key}\b", spec.sql)
    return spec.question, _replace_first(spec.sql, qualified[-1], spec.shared_key, last=True)


def inject_not_read_only(db: Database, spec: Spec, rng: random.Random) -> tuple[str, str] | None:
    if spec.cat is None:
        return None
    table, cat, val = spec.cat
    other = rng.choice([v for v in db.table(table).cats[cat] if v != val])
    if rng.random() < 0.7:
        question = spec.question.rstrip(".?") + rng.choice((f". Then mark them as {other}.",
                                                            f"? They should all become {other}."))
        return question, f"UPDATE {table} SET {cat} = '{other}' WHERE {cat} = '{val}'"
    question = spec.question.rstrip(".?") + ". We want to clean those out."
    return question, f"DELETE FROM {table} WHERE {cat} = '{val}'"


def inject_multiple_statements(db: Database, spec: Spec, rng: random.Random) -> tuple[str, str] | None:
    second = rng.choice((f"SELECT COUNT(*) FROM {spec.tables[0]}", f"SELECT * FROM {spec.tables[0]} LIMIT 5"))
    return spec.question, f"{spec.sql};\n{second};"


def inject_not_sql(db: Database, spec: Spec, rng: random.Random) -> tuple[str, str] | None:
    kinds = ["prose", "truncated", "typo", "prose_fence"] + (["backticks"] if db.dialect != "sqlite" else [])
    kind = rng.choice(kinds)
    if kind == "prose":
        return spec.question, f"Here is the query you need:\n{spec.sql}"
    if kind == "prose_fence":
        return spec.question, f"Sure! This should work:\n```sql\n{spec.sql}\n```\nLet me know if you need more."
    if kind == "typo":
        return (spec.question, "SELEC" + spec.sql[len("SELECT"):]) if spec.sql.startswith("SELECT") else None
    if kind == "backticks":
        column = spec.columns[0]
        return spec.question, _replace_first(spec.sql, column, f"`{column}`")
    cut = max(spec.sql.rfind(word) + len(word) for word in (" WHERE", " ON", " BY", " FROM"))
    return spec.question, spec.sql[:cut]


def inject_wrong_literal(db: Database, spec: Spec, rng: random.Random) -> tuple[str, str] | None:
    numbers = re.findall(r"(?<![\w.'-])\d+(?![\w.'-])", spec.sql)
    if spec.cat is not None:
        table, cat, val = spec.cat
        other = rng.choice([v for v in db.table(table).cats[cat] if v != val])
        return spec.question, spec.sql.replace(f"'{val}'", f"'{other}'")
    if numbers:
        old = numbers[-1]
        return spec.question, _replace_first(spec.sql, old, str(int(old) + rng.choice((1, 2, 10))), last=True)
    return None


def inject_wrong_aggregate(db: Database, spec: Spec, rng: random.Random) -> tuple[str, str] | None:
    swaps = {"AVG(": "SUM(", "SUM(": "AVG(", "MAX(": "MIN(", "MIN(": "MAX("}
    for old, new in swaps.items():
        if old in spec.sql and "(SELECT" not in spec.sql:
            return spec.question, spec.sql.replace(old, new, 1)
    return None


def inject_wrong_sort_direction(db: Database, spec: Spec, rng: random.Random) -> tuple[str, str] | None:
    if " DESC" in spec.sql:
        return spec.question, spec.sql.replace(" DESC", " ASC")
    if " ASC" in spec.sql:
        return spec.question, spec.sql.replace(" ASC", " DESC")
    return None


#: Injected failure modes and their share of production traces; the first six are the task's checks,
#: the others pass every check and only a reviewer catches them.
FAILURES: dict[str, tuple[float, Callable[[Database, Spec, random.Random], tuple[str, str] | None]]] = {
    "unknown_column": (0.07, inject_unknown_column),
    "ambiguous_column": (0.05, inject_ambiguous_column),
    "not_sql": (0.05, inject_not_sql),
    "not_read_only": (0.03, inject_not_read_only),
    "multiple_statements": (0.03, inject_multiple_statements),
    "unknown_table": (0.02, inject_unknown_table),
    "wrong_literal": (0.02, inject_wrong_literal),
    "wrong_aggregate": (0.015, inject_wrong_aggregate),
    "wrong_sort_direction": (0.015, inject_wrong_sort_direction),
}


# --- how outputs are written -----------------------------------------------------------------------

_KEYWORDS = ("SELECT", "DISTINCT", "FROM", "WHERE", "GROUP BY", "ORDER BY", "LIMIT", "LEFT JOIN", "JOIN", "ON",
             "AS", "AND", "BETWEEN", "IS NULL", "COUNT", "AVG", "SUM", "MAX", "MIN", "DESC", "ASC", "WITH",
             "UPDATE", "SET", "DELETE")
_CLAUSE_BREAKS = ("FROM", "WHERE", "GROUP BY", "ORDER BY", "LIMIT", "LEFT JOIN", "JOIN")


def _outside_literals(sql: str, edit: Callable[[str], str]) -> str:
    parts = re.split(r"('[^']*')", sql)
    return "".join(p if p.startswith("'") else edit(p) for p in parts)


def styled(sql: str, rng: random.Random) -> str:
    """``sql`` as an assistant writes it: one line, lower-case keywords, one clause a line, fenced, with ``;``."""
    style = rng.choices(("plain", "lower", "pretty", "fenced"), (0.5, 0.15, 0.2, 0.15))[0]
    if style == "lower":
        pattern = re.compile(r"\b(" + "|".join(map(re.escape, _KEYWORDS)) + r")\b")
        sql = _outside_literals(sql, lambda s: pattern.sub(lambda m: m.group(1).lower(), s))
    elif style == "pretty":
        pattern = re.compile(r" (" + "|".join(map(re.escape, _CLAUSE_BREAKS)) + r")\b")
        sql = _outside_literals(sql, lambda s: pattern.sub(r"\n\1", s))
    if rng.random() < 0.3 and not sql.rstrip().endswith(";"):
        sql += ";"
    return f"```sql\n{sql}\n```" if style == "fenced" else sql


# --- the files -------------------------------------------------------------------------------------

def _iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def _dumps(record: Any) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


@dataclass
class Trace:
    record: dict[str, Any]
    correct_sql: str
    mode: str | None


def _trace(db: Database, ts: datetime, rng: random.Random, session: str, app: str) -> Trace:
    mode, roll = None, rng.random()
    for name, (share, _) in FAILURES.items():
        roll -= share
        if roll < 0:
            mode = name
            break
    while True:  # a seed query the failure applies to (every mode applies to some template)
        spec = sample_spec(db, rng)
        injected = FAILURES[mode][1](db, spec, rng) if mode else (spec.question, spec.sql)
        if injected is not None:
            break
    question, sql = injected
    output, error = (sql if mode == "not_sql" else styled(sql, rng)), None
    if mode is None and roll < 0.012:
        output, error = "", rng.choice(("upstream returned 503 Service Unavailable", "deadline exceeded"))
    schema_chars = sum(len(t.name) + sum(len(c) + 2 for c in t.columns) + 16 for t in db.tables)
    prompt_tokens = (schema_chars + len(question) + 420) // 4
    completion_tokens = max(1, round(len(output) / 3.6)) if output else 0
    latency = 30000 + rng.randint(0, 900) if error == "deadline exceeded" else (
        rng.randint(80, 900) if error else int((350 + 0.2 * prompt_tokens + 25 * completion_tokens)
                                               * (0.7 + 0.6 * rng.random())))
    feedback = None
    if output and rng.random() < 0.25:
        feedback = "thumbs_down" if mode and rng.random() < 0.8 else "thumbs_up" if not mode else None
    record = {
        "trace_id": "", "source": "demo", "task": "sql", "ts": _iso(ts), "input": task_input(db, question),
        "output": output, "model": rng.choices(("prod-sql-assistant-v2", "prod-sql-assistant-v1"), (0.85, 0.15))[0],
        "latency_ms": latency, "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
        "error": error,
        "metadata": {"session_id": session, "user_feedback": feedback, "app_version": app, "injected_failure": mode},
    }
    return Trace(record, spec.sql, mode)


def generate_traces(seed: int, n: int = N_TRACES) -> list[Trace]:
    """``n`` production traces in sessions of a few questions over one database, in time order."""
    rng = random.Random(f"{seed}:sql-traces")
    start = datetime(2026, 11, 2, 7, 0, tzinfo=timezone.utc)
    traces: list[Trace] = []
    while len(traces) < n:
        db = rng.choices(DATABASES, (0.2, 0.18, 0.17, 0.17, 0.14, 0.14))[0]
        ts = start + timedelta(seconds=rng.randrange(10 * 86400), milliseconds=rng.randrange(1000))
        session, app = f"sess_{rng.getrandbits(40):010x}", rng.choice(("web-4.1.0", "web-4.1.2", "slack-1.7.3"))
        for _ in range(min(rng.randint(1, 5), n - len(traces))):
            traces.append(_trace(db, ts, rng, session, app))
            ts += timedelta(seconds=rng.randint(20, 900), milliseconds=rng.randrange(1000))
    traces.sort(key=lambda t: t.record["ts"])
    for i, trace in enumerate(traces, 1):
        trace.record["trace_id"] = f"sql_{i:05d}"
    return traces


_CRITIQUES = {
    None: ("Correct.", "Right tables and filters.", "Matches the question.", "LGTM.", "Joins and grouping are right."),
    "unknown_column": ("Uses a column that does not exist.", "Invented a column name.",
                       "That column is not in the schema."),
    "ambiguous_column": ("Unqualified key in a join; the database rejects it.", "Ambiguous column, needs the alias."),
    "not_sql": ("Not runnable: prose or broken syntax.", "Cut off mid-query.", "Can't run this as SQL."),
    "not_read_only": ("It modifies data; we only answer with reads.", "An UPDATE/DELETE for a question. Never."),
    "multiple_statements": ("Two statements; the tool runs one query.", "Extra statement tacked on."),
    "unknown_table": ("Table name is wrong.", "No such table in this database."),
    "wrong_literal": ("Filters on a different value than asked.", "Wrong value in the WHERE."),
    "wrong_aggregate": ("Wrong aggregate for the question.", "Asked for one aggregate, got another."),
    "wrong_sort_direction": ("Sorted the wrong way.", "Ascending where the question wants descending (or back)."),
}
ANNOTATORS = ("Amara", "Bruno", "Chen", "Dana")


def sample_annotations(traces: list[Trace], seed: int, n: int = N_ANNOTATIONS) -> list[dict[str, Any]]:
    """``n`` people's decisions on traces with an output: half on failing outputs, half on good ones."""
    rng = random.Random(f"{seed}:sql-annotations")
    answered = [t for t in traces if t.record["output"]]
    bad = [t for t in answered if t.mode]
    good = [t for t in answered if not t.mode]
    chosen = rng.sample(bad, min(len(bad), n // 2))
    chosen += rng.sample(good, n - len(chosen))
    rows = []
    for trace in sorted(chosen, key=lambda t: t.record["trace_id"]):
        ts = datetime.strptime(trace.record["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
        at = ts + timedelta(hours=rng.randint(2, 72), seconds=rng.randrange(3600), milliseconds=rng.randrange(1000))
        rows.append({"trace_id": trace.record["trace_id"], "annotator": rng.choice(ANNOTATORS),
                     "label": "bad" if trace.mode else "good", "failure_mode": trace.mode,
                     "correction": trace.correct_sql if trace.mode else None,
                     "critique": rng.choice(_CRITIQUES[trace.mode]), "annotated_at": _iso(at)})
    return rows


def base_corpus(seed: int, traces: list[Trace], n: int = N_BASE_CORPUS) -> list[dict[str, Any]]:
    """``n`` correct {input, output} pairs over BASE_DATABASES, none a production trace's question."""
    rng = random.Random(f"{seed}:sql-base-corpus")
    taken = {(t.record["input"]["db_id"], t.record["input"]["question"]) for t in traces}
    rows = []
    while len(rows) < n:
        db = _BY_ID[rng.choice(BASE_DATABASES)]
        spec = sample_spec(db, rng)
        if (db.db_id, spec.question) in taken:
            continue
        taken.add((db.db_id, spec.question))
        rows.append({"input": task_input(db, spec.question), "output": spec.sql})
    return rows


def write_sql_demo(out_dir: str | Path, seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """Write traces.jsonl, annotations.jsonl and base_corpus.jsonl under ``out_dir``; return counts."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    traces = generate_traces(seed)
    annotations = sample_annotations(traces, seed)
    corpus = base_corpus(seed, traces)
    for name, rows in (("traces.jsonl", [t.record for t in traces]), ("annotations.jsonl", annotations),
                       ("base_corpus.jsonl", corpus)):
        (out / name).write_text("".join(_dumps(r) + "\n" for r in rows), encoding="utf-8")
    return {"traces": len(traces), "modes": dict(Counter(t.mode for t in traces if t.mode).most_common()),
            "errors": sum(1 for t in traces if t.record["error"]),
            "db_ids": dict(Counter(t.record["input"]["db_id"] for t in traces).most_common()),
            "annotations": dict(Counter(a["label"] for a in annotations)), "base_corpus": len(corpus)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data/demo/sql", help="output folder (default data/demo/sql)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    args = parser.parse_args(argv)
    counts = write_sql_demo(args.out, args.seed)
    for name in ("traces.jsonl", "annotations.jsonl", "base_corpus.jsonl"):
        path = Path(args.out) / name
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    print(f"traces: {counts['traces']} ({counts['errors']} upstream errors) over {counts['db_ids']}")
    for mode, n in counts["modes"].items():
        print(f"  {mode:22s} {n:4d}  {n / counts['traces']:6.1%}")
    print(f"annotations: {counts['annotations']}; base corpus: {counts['base_corpus']} pairs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
