"""Production prompt layouts: a task's input recovered from chat logs its own prompt did not write.

A *prompt layout* is a template of the user message (and optionally of the system message) with
named slots, for example ``Columns: {columns:list}\\nQuestion: {question}``. Matching a logged
message against it gives the slots' values, or None when the message has another shape; the task
turns the slots into its input (:func:`pipeline.engine.tasks.hooks.input_from_slots`).

Template syntax:

- ``{name}`` is a slot (``name`` a Python identifier) holding text; ``{name:parser}`` parses that
  text with one of :data:`PARSERS`: ``text`` (the default, the text as it is), ``list`` (items
  separated by ", "), ``csv`` (items separated by "," without spaces; items may hold spaces),
  ``pylist`` (a Python or JSON list literal, ``['a', "b's"]``). An empty list text is ``[]``;
  an empty item is kept as ``""`` (the task decides what to do with it).
- ``{...}`` is text passed over, kept nowhere (a long fixed part: instructions, examples).
- ``{{`` and ``}}`` are literal braces; any other brace is an error.

Matching is anchored at both ends of the message; white space around the whole template and the
message is ignored, and so is white space at the end of each line (and ``\\r\\n`` line ends). A
slot ends where the template's text after it first occurs (slots take as little as they can),
except the last slot, which ends where that text last occurs (it takes as much as it can), and
``{...}``, which also takes as much as it can, so that a fixed part holding examples of the lines
that follow it (few-shot ``NLQ:`` lines) is passed over to their last occurrence. Two slots must
be separated by text. A slot that has ended is not tried elsewhere, so matching takes linear time.

Layouts come from the task (its ``prompt_layouts``) and from layout files configured on a trace
source (:func:`with_prompt_layouts`): a YAML or JSON list of ``{name, user, system?}``.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import yaml

from pipeline.engine.tasks import Task, hooks


class SlotError(ValueError):
    """A message has a layout's shape, but a slot's text is not what the slot's parser reads."""


def _list_literal(text: str) -> list[Any]:
    """A Python or JSON list literal as a list."""
    try:
        value = json.loads(text)
    except ValueError:
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError) as exc:
            raise SlotError(f"is not a Python or JSON list literal ({type(exc).__name__})") from None
    if not isinstance(value, (list, tuple)):
        raise SlotError(f"is a {type(value).__name__} literal, not a list")
    return list(value)


#: The parsers a slot may name, by name: each reads the slot's text or raises SlotError.
PARSERS: dict[str, Callable[[str], Any]] = {
    "text": lambda text: text,
    "list": lambda text: text.split(", ") if text else [],
    "csv": lambda text: text.split(",") if text else [],
    "pylist": _list_literal,
}

#: Literal braces, a slot or the skip (``{...}``), or a stray brace.
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_SLOT = re.compile(r"(?P<name>[A-Za-z_]\w*)(?::(?P<parser>\w+))?")
_SKIP = "..."
#: What a line end in a template matches: white space at the end of the line, then \n or \r\n.
_LINE_END = r"[ \t]*\r?\n"
#: What the end of a template matches: white space, then the end of the message.
_END = r"\s*\Z"


@dataclass(frozen=True)
class Slot:
    """A slot of a template: its name, the parser of its text, and whether a line end (or the
    template's end) follows it, so that white space at the end of its text is dropped."""

    name: str
    parser: str
    at_line_end: bool


@dataclass(frozen=True)
class Template:
    """A compiled message template (see the module docstring)."""

    text: str
    pattern: re.Pattern[str]
    slots: tuple[Slot, ...]

    def match(self, message: str) -> dict[str, Any] | None:
        """The slots' parsed values for ``message``, or None when it does not have the template's
        shape; raises SlotError when a slot's text is not what its parser reads."""
        found = self.pattern.match(message)
        if found is None:
            return None
        values = {}
        for slot in self.slots:
            text = found.group(slot.name)
            text = text.rstrip(" \t\r\n") if slot.at_line_end else text
            try:
                values[slot.name] = PARSERS[slot.parser](text)
            except SlotError as exc:
                shown = text if len(text) <= 40 else text[:37] + "..."
                raise SlotError(f"slot {slot.name!r} ({slot.parser}) {exc}: {shown!r}") from None
        return values


@lru_cache(maxsize=256)
def compile_template(text: str) -> Template:
    """The template ``text`` compiled; raises ValueError saying what is wrong with it."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("a template must be a non-empty string")
    source = text.replace("\r\n", "\n").strip()
    pieces: list[tuple[str, Any]] = []  # ("text", literal) | ("slot", (name, parser)) | ("skip", None)
    at = 0
    for token in _TOKEN.finditer(source):
        pieces.append(("text", source[at:token.start()]))
        at = token.end()
        raw = token.group(0)
        if raw in ("{{", "}}"):
            pieces.append(("text", raw[0]))
        elif raw in ("{", "}"):
            raise ValueError(f"stray {raw!r} at character {token.start()} of {source[:60]!r}: "
                             f"write {raw * 2!r} for a literal brace")
        elif token.group(1) == _SKIP:
            pieces.append(("skip", None))
        else:
            slot = _SLOT.fullmatch(token.group(1))
            if slot is None:
                raise ValueError(f"{raw!r} is not a slot: write {{name}}, {{name:parser}} or {{...}}")
            parser = slot.group("parser") or "text"
            if parser not in PARSERS:
                raise ValueError(f"slot {raw!r} names the parser {parser!r}; known parsers: {', '.join(PARSERS)}")
            pieces.append(("slot", (slot.group("name"), parser)))
    pieces.append(("text", source[at:]))
    return _compiled(text, [p for p in pieces if p != ("text", "")])


def _literal(text: str) -> str:
    """The regex of a template's literal text: each line end may have white space before it."""
    return _LINE_END.join(re.escape(line) for line in text.split("\n"))


def _compiled(text: str, pieces: list[tuple[str, Any]]) -> Template:
    """The template's pattern. Each slot (or skip) and the text after it form one atomic group: a
    slot ends at the first place that text follows (the last slot and a skip: the last place),
    and is never tried elsewhere, so matching takes linear time even on a message that fails."""
    names = [value[0] for kind, value in pieces if kind == "slot"]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"slot {twice[0]!r} appears twice in the template")
    last = max((i for i, (kind, _) in enumerate(pieces) if kind == "slot"), default=-1)
    regex, slots, i = [r"\A\s*"], [], 0
    while i < len(pieces):
        kind, value = pieces[i]
        if kind == "text":
            regex.append(_literal(value) + (_END if i == len(pieces) - 1 else ""))
            i += 1
            continue
        following = pieces[i + 1] if i + 1 < len(pieces) else ("text", "")
        if following[0] != "text":
            raise ValueError("two slots (or a slot and {...}) stand next to each other: separate them by text")
        body = ".*" if kind == "skip" or i == last else ".*?"
        group = f"(?:{body})" if kind == "skip" else f"(?P<{value[0]}>{body})"
        ends = i + 2 >= len(pieces)
        regex.append(f"(?>{group}{_literal(following[1])}{_END if ends else ''})")
        if kind == "slot":
            slots.append(Slot(value[0], value[1], at_line_end=ends or following[1].startswith("\n")))
        i += 2
    return Template(text, re.compile("".join(regex), re.DOTALL), tuple(slots))


@dataclass(frozen=True)
class PromptLayout:
    """A production prompt's layout: a name (reasons quote it), the user message's template and
    optionally the system message's."""

    name: str
    user: Template
    system: Template | None = None

    def match(self, user: str | None, system: str | None) -> dict[str, Any] | None:
        """The slots of both templates for the logged user and system message texts, or None when
        either has another shape (or is missing); raises SlotError (see :meth:`Template.match`)."""
        if user is None or (self.system is not None and system is None):
            return None
        slots = self.user.match(user)
        if slots is None or self.system is None:
            return slots
        system_slots = self.system.match(system)
        return None if system_slots is None else {**system_slots, **slots}


_LAYOUT_KEYS = {"name", "user", "system"}


def as_layout(spec: PromptLayout | Mapping[str, Any]) -> PromptLayout:
    """A layout from a ``{name, user, system?}`` mapping (a layout is returned as it is); raises
    ValueError saying what is wrong."""
    if isinstance(spec, PromptLayout):
        return spec
    if not isinstance(spec, Mapping):
        raise ValueError(f"a layout must be a mapping of name, user and system, got {type(spec).__name__}")
    unknown = sorted(set(spec) - _LAYOUT_KEYS)
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (a layout has name, user and system)")
    name = spec.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError("a layout needs a name (a non-empty string)")
    try:
        user = compile_template(spec.get("user"))
        system = compile_template(spec["system"]) if spec.get("system") is not None else None
    except (ValueError, TypeError) as exc:
        raise ValueError(f"layout {name!r}: {exc}") from None
    if system is not None and {s.name for s in system.slots} & {s.name for s in user.slots}:
        raise ValueError(f"layout {name!r}: a slot appears in both the system and the user template")
    return PromptLayout(name, user, system)


def load_layout_file(path: str | Path) -> tuple[PromptLayout, ...]:
    """The layouts of a YAML or JSON layout file (a list of ``{name, user, system?}``); raises
    ValueError naming the file and the entry when one is wrong."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        specs = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ValueError(f"prompt layout file {path}: cannot be read: {type(exc).__name__}: {exc}") from None
    if not isinstance(specs, list) or not specs:
        raise ValueError(f"prompt layout file {path}: must hold a non-empty list of layouts ({{name, user, system?}})")
    layouts = []
    for index, spec in enumerate(specs):
        try:
            layouts.append(as_layout(spec))
        except ValueError as exc:
            raise ValueError(f"prompt layout file {path}, layout {index + 1}: {exc}") from None
    names = [layout.name for layout in layouts]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"prompt layout file {path}: the name {twice[0]!r} is given to two layouts")
    return tuple(layouts)


class TaskWithLayouts:
    """A task seen by a trace source that has production prompt layouts configured: every
    attribute is the task's own, and ``configured_prompt_layouts`` holds the source's layouts."""

    def __init__(self, task: Task, layouts: Sequence[PromptLayout]):
        self.task = task
        self.configured_prompt_layouts = tuple(layouts)

    def __getattr__(self, name: str) -> Any:
        if name == "task":  # not set yet (a copy being made): no recursion
            raise AttributeError(name)
        return getattr(self.task, name)

    def __repr__(self) -> str:
        return f"TaskWithLayouts({self.task!r}, {[layout.name for layout in self.configured_prompt_layouts]})"


def with_prompt_layouts(task: Task, paths: Sequence[str | Path]) -> Task:
    """``task`` with the layouts of the layout files ``paths`` configured (the task itself when
    there are none); raises ValueError naming a file that cannot be used."""
    layouts = tuple(layout for path in paths for layout in load_layout_file(path))
    return TaskWithLayouts(task, layouts) if layouts else task


def live_layouts(task: Task) -> tuple[PromptLayout, ...]:
    """The layouts tried after the task's own prompt, in order: those configured on the trace
    source, then the task's built-in ones (its ``prompt_layouts``)."""
    configured = getattr(task, "configured_prompt_layouts", ())
    return tuple(configured) + tuple(as_layout(spec) for spec in hooks.prompt_layouts(task))


@dataclass
class Recovery:
    """What trying the layouts gave: the input of the first layout matched whose input the task
    accepts; else, ``invalid`` (the first layout matched, and why its input is not valid) and
    ``refused`` (layouts whose shape matched but a slot's text could not be read, and why)."""

    input: Any = None
    invalid: tuple[str, str] | None = None
    refused: tuple[str, ...] = ()


def recover(task: Task, layouts: Sequence[PromptLayout], user: str | None, system: str | None) -> Recovery:
    """Try ``layouts`` in order on the logged user and system message texts."""
    invalid, refused = None, []
    for layout in layouts:
        try:
            slots = layout.match(user, system)
        except SlotError as exc:
            refused.append(f"layout {layout.name!r}: {exc}")
            continue
        if slots is None:
            continue
        input = hooks.input_from_slots(task, slots)
        problem = task.validate_input(input)
        if problem is None:
            return Recovery(input=input)
        invalid = invalid or (layout.name, problem)
    return Recovery(invalid=invalid, refused=tuple(refused))
