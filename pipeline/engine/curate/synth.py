"""Synthetic examples: offline generators (the task's) and LLM generators (through a ChatProvider).

Every candidate keeps its provenance (parent example, generator, prompt version, model, seed).
:func:`accept` keeps only candidates whose input is valid and whose output passes every
assertion, and drops duplicates and near-duplicates of existing examples, counting why.

LLM generators (prompts are versioned files the task ships, ``prompts/synth/`` next to it):

- ``llm_rewrite``: a real input and its output -> ``k`` variations of similar complexity.
- ``llm_dimensions``: a (feature, scenario, persona) tuple -> an output (first prompt) -> the
  input a person in that situation would give for it (second prompt).

Both fill the prompts' ``$field`` placeholders from the seed input's fields and take the fields a
reply gives that the seed input has (the rest of the seed input stays as it is).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from string import Template
from typing import Any

import polars as pl

from pipeline.engine.curate.dedup import DEFAULT_THRESHOLD, NearDuplicateIndex, input_key
from pipeline.engine.providers import ChatProvider, ProviderError
from pipeline.engine.tasks import Example, Task, hooks, task_file

SYNTHETIC_SCHEMA = {
    "example_id": pl.String, "parent_id": pl.String, "generator": pl.String, "input": pl.String,
    "output": pl.String, "seed": pl.Int64, "prompt_version": pl.String, "model": pl.String,
    "created_at": pl.Datetime("us", "UTC"),
}
JSON_OBJECT = {"type": "json_object"}


@dataclass(frozen=True)
class Candidate:
    """A generated example before acceptance, with its provenance."""

    input: dict[str, Any]
    output: str
    parent_id: str
    generator: str
    prompt_version: str | None = None
    model: str | None = None


@dataclass(frozen=True)
class Prompt:
    """A versioned prompt file: ``## system`` and ``## user`` sections with ``$field`` placeholders."""

    id: str
    system: str
    user: str

    def messages(self, **fields: Any) -> list[dict[str, str]]:
        try:
            return [{"role": "system", "content": Template(self.system).substitute(fields)},
                    {"role": "user", "content": Template(self.user).substitute(fields)}]
        except KeyError as exc:
            raise ValueError(f"prompt {self.id} needs field {exc.args[0]!r}, which the example does not have") from None


def load_prompt(task_name: str, name: str, version: str = "v1") -> Prompt:
    """The task's prompt ``prompts/synth/<name>.<version>.md``, named ``<task_name>/<name>.<version>``."""
    text = _prompt_file(task_name, f"{name}.{version}.md")
    parts = re.split(r"^## (system|user)\s*$", text, flags=re.MULTILINE)
    sections = dict(zip(parts[1::2], (p.strip() for p in parts[2::2])))
    if set(sections) != {"system", "user"}:
        raise ValueError(f"prompt {task_name}/{name}.{version} must have '## system' and '## user' sections")
    return Prompt(f"{task_name}/{name}.{version}", sections["system"], sections["user"])


def load_dimensions(task_name: str, version: str = "v1") -> dict[str, dict[str, str]]:
    """Dimension values and their descriptions, the task's ``prompts/synth/dimensions.<version>.json``."""
    return json.loads(_prompt_file(task_name, f"dimensions.{version}.json"))


def _prompt_file(task_name: str, file_name: str) -> str:
    try:
        path = task_file(task_name, f"synth/{file_name}")
    except ValueError as exc:
        raise ValueError(f"no synthetic-data prompt {task_name}/{file_name}: {exc}") from None
    return path.read_text(encoding="utf-8")


# --- generators -------------------------------------------------------------------------------

def offline_candidates(seeds: pl.DataFrame, task: Task, n: int, seed: int) -> list[Candidate]:
    """Up to ``n`` candidates from the task's offline generators over ``seeds`` (example_id, input, output)."""
    examples = [Example(json.loads(i), o) for i, o in seeds.select("input", "output").iter_rows()]
    parents = seeds["example_id"].to_list()
    return [Candidate(s.input, s.output, parents[s.parent_index], s.generator)
            for s in task.synthesize(examples, n, random.Random(seed))]


def llm_rewrite(provider: ChatProvider, seeds: pl.DataFrame, n: int, rng: random.Random, prompt: Prompt,
                per_call: int = 3, temperature: float = 0.8) -> tuple[list[Candidate], Counter]:
    """Up to ``n`` variations of randomly chosen seeds, ``per_call`` per request."""
    out: list[Candidate] = []
    problems: Counter = Counter()
    rows = seeds.select("example_id", "input", "output").rows()
    for _ in range(-(-n // per_call) if rows else 0):
        parent_id, input_json, output = rng.choice(rows)
        seed_input = json.loads(input_json)
        reply = _ask(provider, prompt.messages(**_fields(seed_input), output=output, k=per_call),
                     temperature, rng, problems)
        items = reply.get("variations") if isinstance(reply, dict) else None
        if reply is not None and not isinstance(items, list):
            problems["llm_reply_without_variations"] += 1
            continue
        for item in (items or [])[:per_call]:
            candidate = _from_item(item, seed_input, parent_id, "llm_rewrite", prompt.id, provider.model, problems)
            if candidate is not None:
                out.append(candidate)
    return out[:n], problems


def llm_dimensions(provider: ChatProvider, seeds: pl.DataFrame, n: int, rng: random.Random, spec_prompt: Prompt,
                   question_prompt: Prompt, dimensions: dict[str, dict[str, str]],
                   temperature: float = 0.8) -> tuple[list[Candidate], Counter]:
    """Up to ``n`` examples, each from a random dimension tuple over a random seed's input.

    The seed gives the context (its input's fields, such as nl2query's dataset and columns) and is
    recorded as the parent.
    """
    out: list[Candidate] = []
    problems: Counter = Counter()
    rows = seeds.select("example_id", "input").rows()
    version = f"{spec_prompt.id}+{question_prompt.id}"
    for _ in range(n if rows else 0):
        parent_id, input_json = rng.choice(rows)
        seed_input = json.loads(input_json)
        chosen = {name: rng.choice(sorted(values)) for name, values in sorted(dimensions.items())}
        described = "\n".join(f"- {name}: {value} ({dimensions[name][value]})" for name, value in chosen.items())
        spec = _ask(provider, spec_prompt.messages(**_fields(seed_input), dimensions=described),
                    temperature, rng, problems)
        if spec is None:
            continue
        output = _output_text(spec.get("output") if isinstance(spec, dict) else None)
        if output is None:
            problems["llm_reply_without_output"] += 1
            continue
        phrased = _ask(provider, question_prompt.messages(**_fields(seed_input), dimensions=described, output=output),
                       temperature, rng, problems)
        if phrased is None:
            continue
        item = {**(phrased if isinstance(phrased, dict) else {}), "output": output}
        tag = "/".join(chosen.values())
        candidate = _from_item(item, seed_input, parent_id, f"llm_dimensions:{tag}", version, provider.model, problems)
        if candidate is not None:
            out.append(candidate)
    return out, problems


def _fields(input: dict[str, Any]) -> dict[str, str]:
    """An input's fields as prompt text: a list of plain values as ``a, b``, anything else nested
    as JSON, scalars as they are."""
    def text(value: Any) -> str:
        if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
            return ", ".join(map(str, value))
        return json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else str(value)

    return {k: text(v) for k, v in input.items()}


def _ask(provider: ChatProvider, messages: list[dict[str, str]], temperature: float, rng: random.Random,
         problems: Counter) -> Any:
    """The reply parsed as JSON, or None (counted) when the call fails or the reply is not JSON."""
    try:
        text = provider.complete(messages, temperature=temperature, response_format=JSON_OBJECT,
                                 seed=rng.randrange(2**31)).text
    except ProviderError:
        problems["llm_call_failed"] += 1
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        problems["llm_reply_not_json"] += 1
        return None


def _output_text(value: Any) -> str | None:
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return value if isinstance(value, str) and value.strip() else None


def _from_item(item: Any, seed_input: dict[str, Any], parent_id: str, generator: str, prompt_version: str,
               model: str, problems: Counter) -> Candidate | None:
    output = _output_text(item.get("output")) if isinstance(item, dict) else None
    if output is None:
        problems["llm_item_without_output"] += 1
        return None
    changed = {k: v for k, v in item.items() if k in seed_input and k != "output"}
    if not changed:
        problems["llm_item_without_input"] += 1
        return None
    return Candidate({**seed_input, **changed}, output, parent_id, generator, prompt_version, model)


def reuse_llm_examples(stored: pl.DataFrame, seed_ids: list[str], rewrites: int,
                       composed: int) -> tuple[pl.DataFrame, dict[str, int]]:
    """Earlier LLM examples (``model`` set) whose parent is still a seed, kept rather than paid for
    again, and how many more to ask each LLM generator for to reach ``rewrites`` and ``composed``."""
    kept = stored.filter(pl.col("model").is_not_null() & pl.col("parent_id").is_in(seed_ids)).select(
        list(SYNTHETIC_SCHEMA)).cast(SYNTHETIC_SCHEMA)
    have = Counter(g.split(":", 1)[0] for g in kept["generator"])
    return kept, {"llm_rewrite": max(0, rewrites - have["llm_rewrite"]),
                  "llm_dimensions": max(0, composed - have["llm_dimensions"])}


# --- acceptance -------------------------------------------------------------------------------

def accept(candidates: list[Candidate], existing: pl.DataFrame, task: Task, seed: int,
           threshold: float = DEFAULT_THRESHOLD, now: datetime | None = None) -> tuple[pl.DataFrame, Counter]:
    """The synthetic_examples rows worth keeping, and why the others were rejected.

    A candidate is rejected when its input is invalid for the task, its output fails an
    assertion (``fails:<check>``), its input duplicates an existing or earlier candidate's
    input, or it is a near-duplicate of one with the same output. Outputs are normalised.
    """
    now = now or datetime.now(timezone.utc)
    rejected: Counter = Counter()
    seen = {input_key(task, i) for i in existing["input"]}
    near = NearDuplicateIndex(task, threshold)
    for input_json, output in existing.select("input", "output").iter_rows():
        near.add(input_json, True, scope=hooks.normalise(task, output, json.loads(input_json)))
    rows = []
    for c in candidates:
        problem = task.validate_input(c.input)
        if problem is not None:
            rejected["invalid_input"] += 1
            continue
        failed = [r.check_name for r in task.check(c.input, c.output) if r.passed is False]
        if failed:
            rejected[f"fails:{failed[0]}"] += 1
            continue
        output = hooks.normalise(task, c.output, c.input)
        input_json = json.dumps(c.input, ensure_ascii=False)
        key = input_key(task, input_json)
        if key in seen:
            rejected["duplicate_input"] += 1
            continue
        if near.find(input_json, scope=output) is not None:
            rejected["near_duplicate"] += 1
            continue
        seen.add(key)
        near.add(input_json, True, scope=output)
        digest = hashlib.sha256(f"{input_json}\x1f{output}".encode()).hexdigest()[:24]
        rows.append({"example_id": f"synthetic:{digest}", "parent_id": c.parent_id, "generator": c.generator,
                     "input": input_json, "output": output, "seed": seed, "prompt_version": c.prompt_version,
                     "model": c.model, "created_at": now})
    return pl.DataFrame(rows, schema=SYNTHETIC_SCHEMA), rejected
