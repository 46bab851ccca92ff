"""Declarative tasks: a Task described by a YAML (or JSON) file instead of Python.

``load_task("path/to/task.yaml")`` reads a file like this (every key but ``name``, ``version``,
``input``, ``prompt`` and ``output`` optional)::

    name: crm_assistant                 # the task name trace records carry
    version: "1"
    description: what the assistant does
    input:                              # the fields of an input, in prompt order
      - {name: message, type: string, description: the user's request}       # required by default
      - {name: contacts, type: list, items: object, required: false}
    prompt:
      system: You are ...               # literal text
      user: "Request: {message}\\nContacts: {contacts}"   # {field} slots, declared fields only
    output:
      format: json                      # json (the default when a schema is given) or text
      schema: {type: object, ...}       # a JSON Schema the output must satisfy
    rules:                              # regular expressions, searched anywhere in the text
      - {name: no_email, must_not_match: '\\S+@\\S+', path: $.reply, flags: [ignorecase]}
    checks:                             # Python checks: (input, output) -> CheckResult | (passed, detail)
      - {name: known_ids, function: "package.module:function"}
    hooks:                              # see pipeline.engine.tasks.hooks; engine defaults otherwise
      group_by: [account_id]            # what must never straddle splits
      slice_by: segment                 # what reports slice by
      display: message                  # what a person sees first
      dedup: {scope: [account_id], text: message}
    demo: {traces: data/traces.jsonl, annotations: data/annotations.jsonl, base_corpus: data/base_corpus.jsonl}

Field types: string, integer, number, boolean, list (``items``: one of those or object), object.
In the prompt a list of plain values is written ``a, b, c``, an object or a list of objects as
compact JSON, a boolean ``true``/``false``, a missing optional field as nothing.

The checks, in order, named after the failure modes they detect: ``not_json`` (JSON outputs),
then one ``schema_<keyword>`` per JSON Schema keyword of the schema that can fail on its own
(``schema_required``, ``schema_type``, ``schema_enum``, ``schema_pattern``,
``schema_additional_properties``, ... sorted; ``schema_forbidden`` for a ``false`` subschema),
then the rules, then the Python checks. A rule's ``path`` (``$.reply``, ``$.widgets[*].title``,
``$.items[0]``) picks the values it is matched against in a JSON output; without one it is
matched against the raw output. ``must_match`` fails when a value does not match (or the path
finds none), ``must_not_match`` when one does.

Prompts for the judge and LLM synthetic data lie in a ``prompts/`` folder next to the file
(``prompts/judge.v1.md``, ``prompts/synth/...``); demo paths are relative to the file.
The check version covers the file's text (the spec is one of ``check_modules``) and the
modules of the Python checks. Declarative tasks have no offline synthetic generators.
"""

from __future__ import annotations

import importlib
import json
import random
import re
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from pipeline.engine.tasks.base import CheckResult, Example, SyntheticExample
from pipeline.engine.tasks.hooks import DemoData, canonical_json

SUFFIXES = (".yaml", ".yml", ".json")
SCALAR_TYPES = ("string", "integer", "number", "boolean")
FIELD_TYPES = (*SCALAR_TYPES, "list", "object")
TOP_LEVEL_KEYS = ("name", "version", "description", "input", "prompt", "output", "rules", "checks", "hooks", "demo")
REGEX_FLAGS = {"ignorecase": re.IGNORECASE, "multiline": re.MULTILINE, "dotall": re.DOTALL}

# JSON Schema keywords that only pass their subschemas' errors on (never an error of their own).
_DESCEND_ONLY = frozenset({"properties", "patternProperties", "propertyNames", "allOf", "$ref", "$dynamicRef",
                           "dependentSchemas", "if", "prefixItems"})
# Keywords with an error of their own only when their value is false (a schema value descends).
_OWN_ERROR_WHEN_FALSE = frozenset({"additionalProperties", "items", "additionalItems"})
_SUBSCHEMA = frozenset({"additionalProperties", "items", "additionalItems", "contains", "propertyNames", "not", "if",
                        "then", "else", "unevaluatedItems", "unevaluatedProperties"})
_SUBSCHEMA_MAP = frozenset({"properties", "patternProperties", "dependentSchemas", "$defs", "definitions",
                            "dependencies"})
_SUBSCHEMA_LIST = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
# Keywords that report one error of their own, not their subschemas' errors.
_REPORTED_AS_ONE = frozenset({"anyOf", "oneOf", "not", "if", "contains", "unevaluatedItems", "unevaluatedProperties"})
# Keywords that are not validation keywords of their own but belong in a schema.
_NON_VALIDATING = frozenset({"$schema", "$id", "id", "$anchor", "$dynamicAnchor", "$vocabulary", "$comment", "$defs",
                             "definitions", "title", "description", "default", "examples", "readOnly", "writeOnly",
                             "deprecated", "contentMediaType", "contentEncoding", "contentSchema", "minContains",
                             "maxContains", "then", "else"})
_SLOT = re.compile(r"\{([A-Za-z_]\w*)\}")
_PATH_STEP = re.compile(r"\.([A-Za-z_][\w-]*)|\[(\d+)\]|(\[\*\]|\.\*)")
_DETAIL_CHARS = 200


class TaskSpecError(ValueError):
    """A task file that cannot be loaded; the message names the file and the problem."""


@dataclass(frozen=True)
class Field:
    """One input field: its name, type (and item type for lists), whether it is required."""

    name: str
    type: str
    items: str | None = None
    required: bool = True
    description: str = ""


@dataclass(frozen=True)
class Rule:
    """A regular-expression rule: the values at ``path`` (or the raw output) must (not) match."""

    name: str
    pattern: re.Pattern
    must_match: bool
    path: tuple | None = None
    path_text: str | None = None


@dataclass(frozen=True)
class PythonCheck:
    """A check written in Python, found by import path ``package.module:function``."""

    name: str
    function: Callable[[dict[str, Any], str], Any]
    module: types.ModuleType


def _kind(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "object",
            type(None): "null"}.get(type(value), type(value).__name__)


def _is_type(value: Any, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "object":
        return isinstance(value, dict)
    return isinstance(value, list)


def _snake(keyword: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", keyword.lstrip("$")).lower()


def _short(text: str) -> str:
    return text if len(text) <= _DETAIL_CHARS else text[: _DETAIL_CHARS - 3] + "..."


# --- reading the file ---------------------------------------------------------------------------

def parse_spec(text: str, path: Path) -> dict[str, Any]:
    """The content of a task file's ``text`` (JSON for ``.json``, YAML otherwise)."""
    try:
        spec = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise TaskSpecError(f"task file {path}: not valid JSON: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise TaskSpecError(f"task file {path}: not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(spec, dict):
        raise TaskSpecError(f"task file {path}: must hold a mapping of settings, got {_kind(spec)}")
    return spec


class _Spec:
    """Reads one part of a task file after another, raising TaskSpecError with the file named."""

    def __init__(self, path: Path):
        self.path = path

    def error(self, problem: str) -> TaskSpecError:
        return TaskSpecError(f"task file {self.path}: {problem}")

    def mapping(self, value: Any, where: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(f"{where} must be a mapping, got {_kind(value)}")
        unknown = [k for k in value if k not in allowed]
        if unknown:
            raise self.error(f"{where} has unknown key {unknown[0]!r} (allowed: {', '.join(allowed)})")
        return value

    def text(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.error(f"{where} must be non-empty text, got {_kind(value)}")
        return value

    def fields(self, value: Any) -> tuple[Field, ...]:
        if not isinstance(value, list) or not value:
            raise self.error("input must be a non-empty list of fields ({name, type, required, description})")
        out: list[Field] = []
        for n, item in enumerate(value):
            item = self.mapping(item, f"input[{n}]", ("name", "type", "items", "required", "description"))
            name = self.text(item.get("name"), f"input[{n}].name")
            if not re.fullmatch(r"[A-Za-z_]\w*", name):
                raise self.error(f"input field name {name!r} must be letters, digits and underscores")
            kind, items = item.get("type"), item.get("items")
            if kind not in FIELD_TYPES:
                raise self.error(f"input field {name!r} has unknown type {kind!r} (types: {', '.join(FIELD_TYPES)})")
            if items is not None and (kind != "list" or items not in (*SCALAR_TYPES, "object")):
                raise self.error(f"input field {name!r}: items ({items!r}) is for a list, one of "
                                 f"{', '.join((*SCALAR_TYPES, 'object'))}")
            required = item.get("required", True)
            if not isinstance(required, bool):
                raise self.error(f"input field {name!r}: required must be true or false, got {required!r}")
            if any(f.name == name for f in out):
                raise self.error(f"input field {name!r} is declared twice")
            out.append(Field(name, kind, items, required, str(item.get("description") or "")))
        return tuple(out)

    def schema(self, schema: Any) -> tuple[jsonschema.protocols.Validator, tuple[str, ...]]:
        """A validator for the output schema and the schema_* checks its keywords give."""
        if not isinstance(schema, (dict, bool)):
            raise self.error(f"output.schema must be a JSON Schema (a mapping), got {_kind(schema)}")
        cls = jsonschema.validators.validator_for(schema)
        try:
            cls.check_schema(schema)
        except jsonschema.SchemaError as exc:
            where = "/".join(map(str, exc.path)) or "(top)"
            raise self.error(f"output.schema is not a valid JSON Schema at {where}: {exc.message}") from None
        keywords: set[str] = set()
        self._walk(schema, cls, "#", keywords)
        return cls(schema, format_checker=cls.FORMAT_CHECKER), tuple(sorted(keywords))

    def _walk(self, schema: Any, cls: Any, where: str, found: set[str], collect: bool = True) -> None:
        """Refuse unknown keywords, uncheckable formats and outside references anywhere; collect
        (into ``found``) the keywords whose errors validation reports, which excludes those inside
        anyOf, oneOf, not, if and contains (they report one error of their own)."""
        if schema is False and collect:
            found.add("forbidden")
        if not isinstance(schema, dict):
            return
        for key, value in schema.items():
            if key not in cls.VALIDATORS and key not in _NON_VALIDATING and not key.startswith("x-"):
                raise self.error(f"output.schema: unknown JSON Schema keyword {key!r} at {where} "
                                 "(annotations of your own start with x-)")
            if key == "format" and value not in cls.FORMAT_CHECKER.checkers:
                raise self.error(f"output.schema: format {value!r} at {where} cannot be checked here (formats: "
                                 f"{', '.join(sorted(cls.FORMAT_CHECKER.checkers))})")
            if key in ("$ref", "$dynamicRef") and not str(value).startswith("#"):
                raise self.error(f"output.schema: only references within the schema (#...) are allowed, got {value!r}")
            own_error_when_false = key in _OWN_ERROR_WHEN_FALSE
            if collect and key in cls.VALIDATORS and key not in _DESCEND_ONLY and (
                    not own_error_when_false or value is False):
                found.add(_snake(key))
            inner = collect and key not in _REPORTED_AS_ONE
            if own_error_when_false and value is False:
                continue
            if key in _SUBSCHEMA and not isinstance(value, list):
                self._walk(value, cls, f"{where}/{key}", found, inner)
            elif key in _SUBSCHEMA_MAP and isinstance(value, dict):
                for name, sub in value.items():
                    self._walk(sub, cls, f"{where}/{key}/{name}", found, inner)
            elif key in _SUBSCHEMA_LIST or (key == "items" and isinstance(value, list)):
                for n, sub in enumerate(value):
                    self._walk(sub, cls, f"{where}/{key}/{n}", found, inner)

    def rule(self, item: Any, n: int, json_output: bool) -> Rule:
        item = self.mapping(item, f"rules[{n}]", ("name", "must_match", "must_not_match", "path", "flags",
                                                   "description"))
        name = self.text(item.get("name"), f"rules[{n}].name")
        modes = [k for k in ("must_match", "must_not_match") if k in item]
        if len(modes) != 1:
            raise self.error(f"rule {name!r} needs exactly one of must_match or must_not_match (the pattern)")
        flags = 0
        for flag in item.get("flags") or []:
            if flag not in REGEX_FLAGS:
                raise self.error(f"rule {name!r}: unknown flag {flag!r} (flags: {', '.join(REGEX_FLAGS)})")
            flags |= REGEX_FLAGS[flag]
        try:
            pattern = re.compile(self.text(item[modes[0]], f"rule {name!r} pattern"), flags)
        except re.error as exc:
            raise self.error(f"rule {name!r}: the pattern does not compile: {exc}") from None
        path_text = item.get("path")
        if path_text is not None and not json_output:
            raise self.error(f"rule {name!r} has a path, but the output is text, not JSON")
        path = None if path_text is None else self.json_path(path_text, f"rule {name!r}")
        return Rule(name, pattern, modes[0] == "must_match", path, path_text)

    def json_path(self, text: Any, where: str) -> tuple:
        if not isinstance(text, str) or not text.startswith("$"):
            raise self.error(f"{where}: path must start with $ ($.reply, $.items[*].name), got {text!r}")
        steps, at = [], 1
        while at < len(text):
            match = _PATH_STEP.match(text, at)
            if not match:
                raise self.error(f"{where}: cannot read path {text!r} at {text[at:]!r} (steps: .key, [n], [*])")
            key, index, star = match.groups()
            steps.append(key if key is not None else int(index) if index is not None else "*")
            at = match.end()
        return tuple(steps)

    def python_check(self, item: Any, n: int) -> PythonCheck:
        item = self.mapping(item, f"checks[{n}]", ("name", "function", "description"))
        target = self.text(item.get("function"), f"checks[{n}].function")
        module_name, sep, function_name = target.partition(":")
        if not sep or not module_name or not function_name:
            raise self.error(f"checks[{n}].function {target!r} must be an import path 'package.module:function'")
        name = item.get("name") or function_name
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # any failure importing a team's module is this file's problem to report
            raise self.error(f"check {name!r}: cannot import {module_name!r} ({type(exc).__name__}: {exc})") from None
        function = getattr(module, function_name, None)
        if not callable(function):
            raise self.error(f"check {name!r}: module {module_name!r} has no function {function_name!r}")
        return PythonCheck(str(name), function, module)

    def hooks(self, value: Any, fields: tuple[Field, ...]) -> dict[str, Any]:
        hooks = self.mapping(value, "hooks", ("group_by", "slice_by", "display", "dedup"))
        names = {f.name for f in fields}

        def field(name: Any, where: str) -> str:
            if name not in names:
                raise self.error(f"hooks.{where}: {name!r} is not an input field ({', '.join(sorted(names))})")
            return name

        def field_list(value: Any, where: str) -> tuple[str, ...]:
            if not isinstance(value, list) or not value:
                raise self.error(f"hooks.{where} must be a non-empty list of input fields")
            return tuple(field(v, where) for v in value)

        out: dict[str, Any] = {}
        if "group_by" in hooks:
            out["group_by"] = field_list(hooks["group_by"], "group_by")
        if "slice_by" in hooks:
            out["slice_by"] = field(hooks["slice_by"], "slice_by")
        if "display" in hooks:
            out["display"] = field(hooks["display"], "display")
        if "dedup" in hooks:
            dedup = self.mapping(hooks["dedup"], "hooks.dedup", ("scope", "text"))
            out["dedup"] = (field_list(dedup.get("scope") or [], "dedup.scope") if "scope" in dedup else (),
                            field(dedup.get("text"), "dedup.text"))
        return out

    def demo(self, value: Any) -> DemoData:
        demo = self.mapping(value, "demo", ("traces", "annotations", "base_corpus", "prompt_layouts"))
        paths = {k: str((self.path.parent / self.text(v, f"demo.{k}")).resolve()) for k, v in demo.items()}
        return DemoData(**paths)


# --- the task -----------------------------------------------------------------------------------

def _spec_module(name: str, path: Path) -> types.ModuleType:
    """A module standing for the task file, so ``check_version`` (which hashes the source of
    ``check_modules``) hashes the file's text as it does a Python task's check module."""
    module = types.ModuleType(f"flywheel_task_file.{name}")
    module.__file__ = str(path)
    return module


def _values_at(value: Any, path: tuple) -> list[Any]:
    found = [value]
    for step in path:
        nxt: list[Any] = []
        for item in found:
            if step == "*":
                nxt.extend(item.values() if isinstance(item, dict) else item if isinstance(item, list) else [])
            elif isinstance(step, int):
                if isinstance(item, list) and step < len(item):
                    nxt.append(item[step])
            elif isinstance(item, dict) and step in item:
                nxt.append(item[step])
        found = nxt
    return found


class DeclarativeTask:
    """A Task read from a task file (see the module docstring); build one with :func:`load_declarative`."""

    def __init__(self, text: str, path: Path):
        path = path.resolve()
        spec, read = parse_spec(text, path), _Spec(path)
        self.path, self._text = path, text
        read.mapping(spec, "the file", TOP_LEVEL_KEYS)
        self.name = read.text(spec.get("name"), "name")
        if not re.fullmatch(r"[A-Za-z][\w.-]*", self.name):
            raise read.error(f"name {self.name!r} must start with a letter (letters, digits, _ . -)")
        version = spec.get("version")
        if not isinstance(version, (str, int)) or isinstance(version, bool) or not str(version).strip():
            raise read.error("version must be text or a number (\"1\")")
        self.version = str(version)
        self.description = str(spec.get("description") or "")
        self.fields = read.fields(spec.get("input"))
        prompt = read.mapping(spec.get("prompt"), "prompt", ("system", "user"))
        self.system = str(prompt.get("system") or "")
        self.user_template = read.text(prompt.get("user"), "prompt.user")
        known = {f.name for f in self.fields}
        for slot in _SLOT.findall(self.user_template):
            if slot not in known:
                raise read.error(f"prompt.user has slot {{{slot}}}, which is not an input field")
        output = read.mapping(spec.get("output"), "output", ("format", "schema"))
        self.output_format = output.get("format") or ("json" if "schema" in output else None)
        if self.output_format not in ("json", "text"):
            raise read.error(f"output.format must be json or text, got {output.get('format')!r}")
        if "schema" in output and self.output_format != "json":
            raise read.error("output.schema is for JSON outputs; set output.format to json")
        self._validator, schema_checks = read.schema(output["schema"]) if "schema" in output else (None, ())
        self._json = self.output_format == "json"
        self.rules = tuple(read.rule(r, n, self._json) for n, r in enumerate(_list(spec, "rules", read)))
        self.python_checks = tuple(read.python_check(c, n) for n, c in enumerate(_list(spec, "checks", read)))
        self.check_names = ((("not_json",) if self._json else ()) + tuple(f"schema_{k}" for k in schema_checks)
                            + tuple(r.name for r in self.rules) + tuple(c.name for c in self.python_checks))
        twice = sorted({n for n in self.check_names if self.check_names.count(n) > 1})
        if twice:
            raise read.error(f"check name {twice[0]!r} is used twice (rules, checks and schema checks share names)")
        self._schema_checks = tuple(f"schema_{k}" for k in schema_checks)
        self.check_modules = (_spec_module(self.name, path), *dict.fromkeys(c.module for c in self.python_checks))
        hooks = read.hooks(spec["hooks"], self.fields) if spec.get("hooks") is not None else {}
        self._hooks(hooks)
        self.demo_data = read.demo(spec["demo"]) if spec.get("demo") is not None else DemoData()
        self._user_pattern = _template_pattern(self.user_template)

    def __reduce__(self):  # worker processes rebuild the task from the same text
        return (DeclarativeTask, (self._text, self.path))

    def __repr__(self) -> str:
        return f"DeclarativeTask({self.name!r}, version={self.version!r}, path={str(self.path)!r})"

    # hooks: set only when the file configures them, so the engine's defaults apply otherwise
    def _hooks(self, hooks: dict[str, Any]) -> None:
        if "group_by" in hooks:
            fields = hooks["group_by"]
            self.group_key = lambda input: canonical_json({f: input.get(f) for f in fields})
        if "slice_by" in hooks:
            self.slice_name = hooks["slice_by"]
            self.slice_of = lambda input: input.get(self.slice_name)
        if "display" in hooks:
            self.display_text = lambda input: self.render(hooks["display"], input.get(hooks["display"]))
        if "dedup" in hooks:
            scope, text = hooks["dedup"]
            self.dedup_text = lambda input: (canonical_json([input.get(f) for f in scope]),
                                             self.render(text, input.get(text)))

    # --- inputs and the prompt ---------------------------------------------------------------
    def _field(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)

    def render(self, name: str, value: Any) -> str:
        """A field's value as the prompt writes it (lists of plain values ``a, b``, objects as JSON)."""
        field = self._field(name)
        if value is None:
            return ""
        if field.type == "list" and field.items in SCALAR_TYPES:
            return ", ".join(_scalar(v) for v in value)
        if field.type in ("list", "object"):
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        return _scalar(value)

    def prompt(self, input: dict[str, Any]) -> list[dict[str, str]]:
        """System and user messages for ``input``: the user template with its slots filled."""
        user = _SLOT.sub(lambda m: self.render(m.group(1), input.get(m.group(1))), self.user_template)
        return ([{"role": "system", "content": self.system}] if self.system else []) + [
            {"role": "user", "content": user}]

    def validate_input(self, input: Any) -> str | None:
        """None for an input with the declared fields and types, else the first thing wrong."""
        if not isinstance(input, dict):
            return f"input must be an object, got {_kind(input)}"
        known = {f.name for f in self.fields}
        unknown = [k for k in input if k not in known]
        if unknown:
            return f"input has unknown field {unknown[0]!r} (fields: {', '.join(f.name for f in self.fields)})"
        for field in self.fields:
            value = input.get(field.name)
            if value is None:
                if field.required:
                    return f"input.{field.name} is required"
                continue
            if not _is_type(value, field.type):
                return f"input.{field.name} must be {_a(field.type)}, got {_kind(value)}"
            if field.type == "string" and field.required and not value.strip():
                return f"input.{field.name} must not be empty"
            if field.type == "list" and field.items:
                bad = next((n for n, v in enumerate(value) if not _is_type(v, field.items)), None)
                if bad is not None:
                    return f"input.{field.name}[{bad}] must be {_a(field.items)}, got {_kind(value[bad])}"
        return None

    def input_from_messages(self, messages: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The input behind a logged last user message written by :meth:`prompt`, or None when the
        message was not (the recovered input must give back exactly that message)."""
        users = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        if not users or not isinstance(users[-1], str):
            return None
        match = self._user_pattern.fullmatch(users[-1])
        if match is None:
            return None
        input: dict[str, Any] = {}
        for name, text in match.groupdict().items():
            if text == "" and not self._field(name).required:
                continue
            try:
                input[name] = self._parse(name, text)
            except ValueError:
                return None
        if self.validate_input(input) is not None or self.prompt(input)[-1]["content"] != users[-1]:
            return None
        return input

    def _parse(self, name: str, text: str) -> Any:
        field = self._field(name)
        if field.type == "list" and field.items in SCALAR_TYPES:
            return [_parse_scalar(field.items, t) for t in text.split(", ")] if text else []
        if field.type in ("list", "object"):
            return json.loads(text)
        return _parse_scalar(field.type, text)

    # --- outputs -----------------------------------------------------------------------------
    def _parsed(self, output: str) -> tuple[bool, Any, str]:
        try:
            return True, json.loads(output), ""
        except (TypeError, ValueError, RecursionError) as exc:
            fenced = isinstance(output, str) and output.strip().startswith("```")
            return False, None, f"output is not JSON: {exc}" + (" (it is wrapped in a code fence)" if fenced else "")

    def check(self, input: dict[str, Any], output: str) -> list[CheckResult]:
        """Run every check on ``output``; one result per name in ``check_names``, in that order."""
        results: list[CheckResult] = []
        ok, value, why = self._parsed(output) if self._json else (True, None, "")
        if self._json:
            results.append(CheckResult("not_json", ok, why))
            results.extend(self._schema_results(value) if ok else
                           [CheckResult(n, None, "skipped: output is not JSON") for n in self._schema_checks])
        for rule in self.rules:
            results.append(self._rule_result(rule, output, value, ok))
        for check in self.python_checks:
            results.append(_run_python_check(check, input, output))
        return results

    def _schema_results(self, value: Any) -> list[CheckResult]:
        problems: dict[str, list[str]] = {n: [] for n in self._schema_checks}
        for error in self._validator.iter_errors(value) if self._validator else ():
            name = f"schema_{_snake(error.validator) if error.validator else 'forbidden'}"
            problems[name].append(_short(f"{error.json_path}: {error.message}"))
        return [CheckResult(n, not p, "; ".join(dict.fromkeys(p))) for n, p in problems.items()]

    def _rule_result(self, rule: Rule, output: str, value: Any, parsed: bool) -> CheckResult:
        if rule.path is None:
            values, where = [output], "output"
        elif not parsed:
            return CheckResult(rule.name, None, "skipped: output is not JSON")
        else:
            values, where = _values_at(value, rule.path), rule.path_text
        texts = [v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for v in values]
        if rule.must_match:
            if not texts:
                return CheckResult(rule.name, False, f"{where}: no value to match /{rule.pattern.pattern}/")
            missed = [t for t in texts if not rule.pattern.search(t)]
            return CheckResult(rule.name, not missed, _short(f"{where}: {missed[0]!r} does not match "
                                                             f"/{rule.pattern.pattern}/") if missed else "")
        hits = [m.group(0) for t in texts for m in [rule.pattern.search(t)] if m]
        return CheckResult(rule.name, not hits, _short(f"{where}: matches {hits[0]!r}") if hits else "")

    def normalise(self, output: str) -> str | None:
        """Canonical JSON (sorted keys, compact) of a JSON output; white space collapsed for a text
        output; None when a JSON output does not parse or a text output is empty."""
        if self._json:
            ok, value, _ = self._parsed(output)
            return canonical_json(value) if ok else None
        text = " ".join(output.split()) if isinstance(output, str) else ""
        return text or None

    def synthesize(self, examples: list[Example], n: int, rng: random.Random) -> list[SyntheticExample]:
        """No offline generators: synthetic data for a declarative task comes from the LLM prompts."""
        return []


def _list(spec: dict[str, Any], key: str, read: _Spec) -> list[Any]:
    value = spec.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise read.error(f"{key} must be a list, got {_kind(value)}")
    return value


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def _parse_scalar(kind: str, text: str) -> Any:
    if kind == "string":
        return text
    if kind == "boolean":
        if text not in ("true", "false"):
            raise ValueError(text)
        return text == "true"
    value = json.loads(text)
    if not _is_type(value, kind):
        raise ValueError(text)
    return value


def _template_pattern(template: str) -> re.Pattern:
    """A pattern matching what ``template`` renders to, one named group per slot."""
    parts, seen, at = [], set(), 0
    for match in _SLOT.finditer(template):
        parts.append(re.escape(template[at:match.start()]))
        name = match.group(1)
        parts.append(f"(?P={name})" if name in seen else f"(?P<{name}>.*?)")
        seen.add(name)
        at = match.end()
    parts.append(re.escape(template[at:]))
    return re.compile("".join(parts), re.DOTALL)


def _run_python_check(check: PythonCheck, input: dict[str, Any], output: str) -> CheckResult:
    try:
        result = check.function(input, output)
    except Exception as exc:  # a team's check failing on one odd output must not stop the others
        return CheckResult(check.name, None, _short(f"could not check: {type(exc).__name__}: {exc}"))
    if isinstance(result, CheckResult):
        return CheckResult(check.name, result.passed, result.detail)
    if isinstance(result, tuple) and len(result) == 2 and result[0] in (True, False, None):
        return CheckResult(check.name, result[0], str(result[1] or ""))
    return CheckResult(check.name, None, _short(f"could not check: {check.name} returned {result!r}, expected a "
                                                "CheckResult or (passed, detail)"))


def is_task_file(name: str) -> bool:
    """True when ``name`` names a task file (by its suffix) rather than a task module."""
    return name.lower().endswith(SUFFIXES)


def load_declarative(path: str | Path) -> DeclarativeTask:
    """The task a YAML or JSON file describes; raises TaskSpecError naming the file and the problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskSpecError(f"task file {path}: cannot be read ({exc})") from None
    return DeclarativeTask(text, path)


__all__ = ["DeclarativeTask", "Field", "PythonCheck", "Rule", "TaskSpecError", "is_task_file", "load_declarative",
           "parse_spec"]
