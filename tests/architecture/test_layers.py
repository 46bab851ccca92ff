"""The architecture, checked: layers, package order, no import cycles, thin assets.

Plain pytest over the source (``ast``): nothing is imported, so it runs in a second. The rules
are the ones in docs/architecture.md; each failure names the module or function to fix.
"""

from __future__ import annotations

import ast
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIRS = ("pipeline", "assets")

# The engine's stage packages, in dependency order: a package may import only packages to its
# left, or itself.
ENGINE_ORDER = ("core", "tasks", "providers", "ingest", "label", "curate", "train", "evaluate")
# What sits above the engine and must never be imported from it.
ABOVE_ENGINE = ("assets", "pipeline.resources", "pipeline.definitions", "pipeline.automation", "pipeline.annotate",
                "pipeline.pipes")
ASSET_DECORATORS = {
    "asset", "multi_asset", "graph_asset", "asset_check", "multi_asset_check",
    "observable_source_asset", "multi_observable_source_asset",
    "sensor", "asset_sensor", "multi_asset_sensor", "run_status_sensor", "run_failure_sensor", "schedule",
}
MAX_ASSET_BODY_LINES = 30
SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE)\b")
SHARED = "../" + "shared"  # spelled in two pieces so this file does not mention it


@dataclass(frozen=True)
class Import:
    target: str  # the imported module, resolved to a project module where it is one
    line: int


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    is_package: bool

    @property
    def rel(self) -> str:
        return self.path.relative_to(ROOT).as_posix()


def _module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    return ".".join(parts), is_package


def _load_modules() -> dict[str, Module]:
    modules = {}
    for top in SOURCE_DIRS:
        for path in sorted((ROOT / top).rglob("*.py")):
            name, is_package = _module_name(path)
            modules[name] = Module(name, path, ast.parse(path.read_text(encoding="utf-8"), str(path)), is_package)
    return modules


MODULES = _load_modules()


def _resolve(name: str) -> str:
    """The longest prefix of a dotted name that is a project module (the name itself if none is)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in MODULES:
            return prefix
    return name


def imports(module: Module) -> list[Import]:
    """Every import in the module, at any depth (function-level imports included)."""
    found = []
    package = module.name if module.is_package else module.name.rpartition(".")[0]
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            found += [Import(_resolve(alias.name), node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.append(Import(submodule if submodule in MODULES else _resolve(base), node.lineno))
    return found


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


ENGINE = {name: module for name, module in MODULES.items() if _within(name, "pipeline.engine")}
ASSETS = {name: module for name, module in MODULES.items() if _within(name, "assets")}


def _stage(name: str) -> str | None:
    """The engine package of a module (``pipeline.engine.label.judge`` -> ``label``)."""
    parts = name.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["pipeline", "engine"] else None


def test_engine_never_imports_dagster():
    offenders = [
        f"{m.rel}:{i.line} imports {i.target}"
        for m in ENGINE.values() for i in imports(m)
        if i.target.split(".")[0] == "dagster" or i.target.startswith("dagster_")
    ]
    assert not offenders, (
        "The engine (pipeline/engine/) is framework-free and never imports dagster; move the Dagster part "
        "to assets/ or pipeline/resources:\n  " + "\n  ".join(offenders)
    )


def test_engine_never_imports_what_sits_above_it():
    offenders = [
        f"{m.rel}:{i.line} imports {i.target}"
        for m in ENGINE.values() for i in imports(m)
        if any(_within(i.target, above) for above in ABOVE_ENGINE)
    ]
    assert not offenders, (
        "The engine never imports assets, resources, definitions, automation or the annotation app "
        "(they import the engine); pass what it needs as arguments:\n  " + "\n  ".join(offenders)
    )


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the graph's strongly connected components."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            child = next(edges, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def _cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One import cycle through the component's first module, as a path back to it."""
    members, start = set(component), component[0]
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & members):
                if child == start:
                    return paths[node] + [start]
                if child not in paths:
                    paths[child] = paths[node] + [child]
                    following.append(child)
        frontier = following
    return component


def test_no_import_cycles():
    graph = {name: set() for name in MODULES}
    where: dict[tuple[str, str], int] = {}
    for name, module in MODULES.items():
        for i in imports(module):
            if i.target in MODULES and i.target != name:
                graph[name].add(i.target)
                where.setdefault((name, i.target), i.line)
    cycles = []
    for component in _strongly_connected(graph):
        if len(component) > 1:
            path = _cycle(graph, component)
            steps = [f"{a} (line {where[a, b]}) -> {b}" for a, b in zip(path, path[1:])]
            cycles.append(f"{len(component)} modules {component}; for instance:\n    " + "\n    ".join(steps))
    assert not cycles, (
        "Import cycles between project modules (function-level imports count): move the shared code "
        "into the earlier module or pass it as an argument:\n  " + "\n  ".join(cycles)
    )


def test_engine_packages_import_only_earlier_packages():
    offenders = []
    for name, module in ENGINE.items():
        stage = _stage(name)
        if stage not in ENGINE_ORDER:
            continue
        for i in imports(module):
            target = _stage(i.target)
            if target in ENGINE_ORDER and ENGINE_ORDER.index(target) > ENGINE_ORDER.index(stage):
                offenders.append(f"{module.rel}:{i.line} ({stage}) imports {i.target} ({target})")
    assert not offenders, (
        f"Engine packages depend one way, {' < '.join(ENGINE_ORDER)}: a package imports only packages "
        "to its left, or itself. Move the shared code to the earlier package:\n  " + "\n  ".join(offenders)
    )


def test_engine_root_holds_only_the_stage_packages():
    engine = ROOT / "pipeline" / "engine"
    strays = sorted(
        path.relative_to(ROOT).as_posix() for path in engine.iterdir()
        if (path.suffix == ".py" and path.name != "__init__.py")
        or (path.is_dir() and path.name != "__pycache__" and path.name not in ENGINE_ORDER)
    )
    assert not strays, (
        f"pipeline/engine/ holds only __init__.py and the stage packages ({', '.join(ENGINE_ORDER)}); "
        "move these into the stage they serve:\n  " + "\n  ".join(strays)
    )


def _decorator_name(decorator: ast.expr) -> str | None:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    if isinstance(target, ast.Attribute):
        return target.attr
    if isinstance(target, ast.Name):
        return target.id
    return None


def _docstring_lines(node: ast.AST) -> set[int]:
    body = getattr(node, "body", None)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        return set(range(body[0].lineno, body[0].end_lineno + 1))
    return set()


def body_lines(function: ast.FunctionDef | ast.AsyncFunctionDef, source_lines: list[str]) -> int:
    """Lines of a function's body that are code: not blank, not a comment, not the docstring."""
    skip = _docstring_lines(function)
    first = function.body[0].lineno
    return sum(
        1 for number in range(first, function.end_lineno + 1)
        if number not in skip and source_lines[number - 1].strip()
        and not source_lines[number - 1].strip().startswith("#")
    )


def asset_functions():
    for module in ASSETS.values():
        source_lines = module.path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(module.tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                    any(_decorator_name(d) in ASSET_DECORATORS for d in node.decorator_list):
                yield module, node, body_lines(node, source_lines)


def test_asset_bodies_are_thin():
    assert any(True for _ in asset_functions()), "no decorated asset found: is the decorator list out of date?"
    offenders = [
        f"{module.rel}:{node.lineno} {node.name}: {lines} lines"
        for module, node, lines in asset_functions() if lines > MAX_ASSET_BODY_LINES
    ]
    assert not offenders, (
        f"An asset, check, sensor or schedule body reads, calls the engine, writes and returns metadata in at "
        f"most {MAX_ASSET_BODY_LINES} lines; move the logic into pipeline/engine/:\n  " + "\n  ".join(offenders)
    )


def test_no_sql_in_assets():
    offenders = []
    for module in ASSETS.values():
        docstrings = {
            id(node.body[0].value) for node in ast.walk(module.tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and _docstring_lines(node)
        }
        owner = {}  # the innermost function around each string (outer functions are walked first)
        for function in ast.walk(module.tree):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                owner.update((id(node), function.name) for node in ast.walk(function))
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                match = SQL.search(node.value)
                if match:
                    where = owner.get(id(node), "module level")
                    offenders.append((module.rel, node.lineno, f"({where}) {match.group(1)} in {node.value.strip()[:60]!r}"))
    offenders = [f"{rel}:{line} {what}" for rel, line, what in sorted(offenders)]
    assert not offenders, (
        "SQL belongs in the engine: call (or add) an engine function that takes the DuckDB connection:\n  "
        + "\n  ".join(offenders)
    )


def _repository_files() -> list[Path]:
    """Tracked files and untracked ones git does not ignore; without git, every file but .git and .venv."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT, capture_output=True, check=True,
        ).stdout.decode().split("\0")
        return sorted({ROOT / name for name in listed if name and (ROOT / name).is_file()})
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "__pycache__"}
        return sorted(p for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.relative_to(ROOT).parts))


def test_nothing_points_outside_the_repository():
    offenders = []
    for path in _repository_files():
        data = path.read_bytes()
        if b"\0" in data:
            continue
        for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            if SHARED in line:
                offenders.append(f"{path.relative_to(ROOT).as_posix()}:{number}")
    assert not offenders, (
        f"{SHARED} is not part of the repository (users do not have it): say it here, or link a page "
        "under docs/:\n  " + "\n  ".join(offenders)
    )


@pytest.mark.parametrize("source, expected", [
    ("from pipeline.engine.core import store", "pipeline.engine.core.store"),
    ("from pipeline.engine.providers import ChatProvider", "pipeline.engine.providers"),
    ("import pipeline.engine.core.store", "pipeline.engine.core.store"),
    ("from . import store", "pipeline.engine.core.store"),
    ("from .store import read", "pipeline.engine.core.store"),
])
def test_imports_resolve_to_modules(source, expected):
    module = Module("pipeline.engine.core.snapshot", ROOT / "pipeline/engine/core/snapshot.py", ast.parse(source), False)
    assert [i.target for i in imports(module)] == [expected]


# Input keys of the built-in tasks: only a task's own package may read them. ("messages" is the
# OpenAI chat format's own field, which ingestion and the training files read by right.)
TASK_INPUT_KEYS = {"question", "dataset", "columns", "db_id", "schema", "dialect", "subject", "product"}


def _reads_of_input_keys(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, key) of every ``x["key"]`` and ``x.get("key")`` reading one of TASK_INPUT_KEYS."""
    found = []
    for node in ast.walk(tree):
        key = None
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            key = node.slice.value
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
              and node.args and isinstance(node.args[0], ast.Constant)):
            key = node.args[0].value
        if key in TASK_INPUT_KEYS:
            found.append((node.lineno, key))
    return found


def test_no_module_outside_a_task_reads_an_input_key_by_name():
    """The engine, the assets and the annotation app know a task only through its interface and
    hooks (pipeline/engine/tasks/hooks.py); tasks/base.py and hooks.py are the interface itself."""
    interface = {"pipeline.engine.tasks", "pipeline.engine.tasks.base", "pipeline.engine.tasks.hooks"}
    generic = [m for m in MODULES.values() if m.name in interface or (
        m.name.startswith(("pipeline.engine.", "assets", "pipeline.annotate"))
        and not m.name.startswith("pipeline.engine.tasks."))]
    offenders = [f"{m.rel}:{line} reads input[{key!r}]" for m in generic for line, key in _reads_of_input_keys(m.tree)]
    assert not offenders, "ask the task through pipeline.engine.tasks.hooks instead:\n" + "\n".join(offenders)
