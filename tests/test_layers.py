"""Issue 13: the layers point one way, and functions stay short.

schemas/ (records, codec, errors, config) is the bottom and imports nothing of ours;
producers/, streams/ and sinks/ sit on it and never import the application, wiretide/;
nothing imports in a cycle; the sans-IO cores import no I/O. Every import counts,
function-local ones and `importlib.import_module("...")` too. A failure names file:line."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from graphlib import CycleError, TopologicalSorter
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("schemas", "producers", "streams", "sinks", "wiretide")
PEERS = ("producers", "streams", "sinks")

# Modules that do I/O: sockets, processes, event loops, brokers, databases, the network.
IO_MODULES = (
    "socket",
    "ssl",
    "select",
    "selectors",
    "asyncio",
    "subprocess",
    "multiprocessing",
    "threading",
    "shutil",
    "tempfile",
    "confluent_kafka",
    "clickhouse_connect",
    "chdb",
    "urllib.request",
    "http.client",
    "http.server",
    "requests",
    "httpx",
    "fastapi",
    "uvicorn",
    "kubernetes",
)
# What a core may take from an I/O module: functions that touch no file, socket or process.
PURE_PARTS = {"socket": frozenset({"inet_ntop", "inet_pton", "AF_INET", "AF_INET6"})}
# Calls and attributes that read the environment or the file system.
IO_NAMES = {"open": "open()", "environ": "os.environ", "getenv": "os.getenv"}

# The sans-IO cores: pure functions and classes over bytes and records.
SANS_IO_CORES = (
    "streams/dissect/",
    "streams/reassembly/",
    "streams/redact.py",
    "streams/rules/",
    "wiretide/kfl/",
    "schemas/records.py",
    "schemas/serde.py",
    "schemas/codec.py",
)
# Inside the cores, the one shell that reads rule files from disk.
SANS_IO_SHELLS = ("streams/rules/load.py",)


@dataclass(frozen=True)
class Import:
    source: str  # importing module, dotted
    path: str  # its file, relative to ROOT
    line: int
    target: str  # imported module, dotted (a module of ours, or an external name)
    type_only: bool  # under `if TYPE_CHECKING:`

    def where(self) -> str:
        return f"{self.path}:{self.line} imports {self.target}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _sources() -> dict[str, Path]:
    """Our modules by dotted name."""
    files = (p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py")))
    return {_module_name(p): p for p in files}


def _resolve(module: str | None, level: int, source: str, is_package: bool) -> str:
    if not level:
        return module or ""
    base = source.split(".") if is_package else source.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _type_only_nodes(tree: ast.AST) -> set[int]:
    nodes: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            nodes.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return nodes


def _import_module_target(node: ast.Call) -> str | None:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name not in ("import_module", "__import__") or not node.args:
        return None
    arg = node.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    return "?"  # computed at run time


def _targets(node: ast.AST, source: str, is_package: bool) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        base = _resolve(node.module, node.level, source, is_package)
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            yield submodule if submodule in _sources() else base
    elif isinstance(node, ast.Call):
        target = _import_module_target(node)
        if target is not None:
            yield target


@cache
def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _imports_in(tree: ast.Module, source: str, path: str) -> list[Import]:
    type_only = _type_only_nodes(tree)
    is_package = path.endswith("__init__.py")
    return [
        Import(source, path, node.lineno, target, id(node) in type_only)
        for node in ast.walk(tree)
        for target in _targets(node, source, is_package)
    ]


@cache
def imports() -> tuple[Import, ...]:
    found: list[Import] = []
    for source, path in _sources().items():
        found += _imports_in(_parse(path), source, str(path.relative_to(ROOT)))
    return tuple(found)


def _top(module: str) -> str:
    return module.split(".")[0]


def _ours(target: str) -> bool:
    return _top(target) in PACKAGES


def _report(bad: list[Import]) -> str:
    return "\n".join(sorted({i.where() for i in bad}))


_EVERY_KIND = """
import os.path
from typing import TYPE_CHECKING
from . import base
from ..reassembly import tcp, events as ev
if TYPE_CHECKING:
    from schemas.records import Segment
def later():
    from wiretide.kfl import parse
    importlib.import_module("sinks.clickhouse.view")
    return __import__(name)
"""


def test_the_scan_sees_every_kind_of_import() -> None:
    found = _imports_in(ast.parse(_EVERY_KIND), "streams.dissect.x", "streams/dissect/x.py")
    assert {(i.line, i.target, i.type_only) for i in found} == {
        (2, "os.path", False),
        (3, "typing", False),
        (4, "streams.dissect.base", False),
        (5, "streams.reassembly.tcp", False),
        (5, "streams.reassembly.events", False),
        (7, "schemas.records", True),
        (9, "wiretide.kfl", False),
        (10, "sinks.clickhouse.view", False),
        (11, "?", False),
    }
    assert len(_sources()) > 100, "the scan found too few modules"


def test_computed_imports_only_in_the_application() -> None:
    """The scan cannot follow `import_module(name)`: below wiretide/ it could hide an
    upward import."""
    computed = [i for i in imports() if i.target == "?" and _top(i.source) != "wiretide"]
    assert not computed, "import_module() with a computed name:\n" + _report(computed)


def test_schemas_imports_nothing_of_ours() -> None:
    up = [i for i in imports() if _top(i.source) == "schemas" and _ours(i.target)]
    up = [i for i in up if _top(i.target) != "schemas"]
    assert not up, "schemas/ is the bottom layer:\n" + _report(up)


def test_producers_streams_sinks_never_import_the_application() -> None:
    up = [i for i in imports() if _top(i.source) in PEERS and _top(i.target) == "wiretide"]
    assert not up, "only wiretide/ may import wiretide/:\n" + _report(up)


# Imports allowed between producers/, streams/ and sinks/; today they share only schemas/.
PEER_IMPORTS: dict[tuple[str, str], str] = {}


def test_peers_import_each_other_only_as_listed() -> None:
    extra = [
        i
        for i in imports()
        if _top(i.source) in PEERS
        and _top(i.target) in PEERS
        and _top(i.source) != _top(i.target)
        and (_top(i.source), _top(i.target)) not in PEER_IMPORTS
    ]
    assert not extra, "an import between peers (list it in PEER_IMPORTS, why):\n" + _report(extra)


def _cycles(edges: dict[tuple[str, str], list[Import]]) -> list[str]:
    """Every cycle in the graph of `edges` ((importer, imported) -> its imports), each as
    the imports that make it; one edge of a cycle is dropped to look for the next."""
    graph: dict[str, set[str]] = {}
    for src, dst in edges:
        graph.setdefault(src, set()).add(dst)
    found = []
    while True:
        try:
            TopologicalSorter(graph).prepare()
            return found
        except CycleError as ex:
            cycle = ex.args[1]  # each one imported by the next
            steps = [min(edges[b, a], key=Import.where) for a, b in pairwise(cycle)]
            found.append("\n".join(i.where() for i in reversed(steps)))
            graph[cycle[1]].discard(cycle[0])


def test_no_import_cycle_between_packages() -> None:
    edges: dict[tuple[str, str], list[Import]] = {}
    for i in imports():
        if _ours(i.target) and _top(i.target) != _top(i.source):
            edges.setdefault((_top(i.source), _top(i.target)), []).append(i)
    cycles = _cycles(edges)
    assert not cycles, "packages import each other in a cycle:\n" + "\n\n".join(cycles)


def test_no_import_cycle_between_modules() -> None:
    edges: dict[tuple[str, str], list[Import]] = {}
    for i in imports():
        if not i.type_only and i.target in _sources() and i.target != i.source:
            edges.setdefault((i.source, i.target), []).append(i)
    cycles = _cycles(edges)
    assert not cycles, "modules import each other in a cycle:\n" + "\n\n".join(cycles)


def _is_sans_io(path: str) -> bool:
    return path.startswith(SANS_IO_CORES) and path not in SANS_IO_SHELLS


def _with_parents(module: str) -> Iterator[str]:
    """Importing a.b.c runs a/__init__ and a/b/__init__ first."""
    parts = module.split(".")
    yield from (".".join(parts[:n]) for n in range(1, len(parts) + 1))


@cache
def _run_time_imports() -> dict[str, list[Import]]:
    """By importing module; `if TYPE_CHECKING:` ones left out."""
    by_source: dict[str, list[Import]] = {}
    for i in imports():
        if not i.type_only:
            by_source.setdefault(i.source, []).append(i)
    return by_source


def _reached(core: str) -> dict[str, list[Import]]:
    """Our modules that importing `core` runs, each with the chain of imports that gets there."""
    chains: dict[str, list[Import]] = {core: []}
    todo = [core]
    while todo:
        module = todo.pop()
        for i in _run_time_imports().get(module, ()):
            for target in _with_parents(i.target):
                path = _sources().get(target)
                if (
                    path
                    and target not in chains
                    and str(path.relative_to(ROOT)) not in SANS_IO_SHELLS
                ):
                    chains[target] = [*chains[module], i]
                    todo.append(target)
    return chains


def _does_io(i: Import) -> bool:
    return any(i.target == m or i.target.startswith(m + ".") for m in IO_MODULES)


def _io_uses(module: str) -> Iterator[str]:
    path = _sources()[module]
    for node in ast.walk(_parse(path)):
        name = None
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "open"
        ):
            name = "open"
        elif isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv"):
            name = node.attr
        elif isinstance(node, ast.Name) and node.id in ("environ", "getenv"):
            name = node.id
        if name:
            yield f"{path.relative_to(ROOT)}:{node.lineno} uses {IO_NAMES[name]}"


def _pure_use(i: Import) -> bool:
    """Does the file take only PURE_PARTS from the I/O module it imports?"""
    pure = PURE_PARTS.get(i.target)
    if pure is None:
        return False
    tree = _parse(ROOT / i.path)
    bases = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    used: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == i.target:
            used.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Attribute) and getattr(node.value, "id", None) == i.target:
            used.add(node.attr)
        elif isinstance(node, ast.Name) and node.id == i.target and id(node) not in bases:
            used.add(node.id)  # the module passed around whole
    return bool(used) and used <= pure


def _io_problems(core: str) -> Iterator[tuple[str, list[Import]]]:
    for module, chain in _reached(core).items():
        for i in _run_time_imports().get(module, ()):
            if _does_io(i) and not _pure_use(i):
                yield i.where(), chain
        yield from ((use, chain) for use in _io_uses(module))


def test_sans_io_cores_do_no_io() -> None:
    cores = [name for name, path in _sources().items() if _is_sans_io(str(path.relative_to(ROOT)))]
    assert len(cores) > 30, "the sans-IO cores were not found"
    shortest: dict[str, list[Import]] = {}
    for core in cores:
        for problem, chain in _io_problems(core):
            if problem not in shortest or len(chain) < len(shortest[problem]):
                shortest[problem] = chain
    assert not shortest, "a sans-IO core does I/O:\n" + "\n".join(
        problem + "".join(f"\n    reached from {i.where()}" for i in shortest[problem])
        for problem in sorted(shortest)
    )


MAX_FUNCTION_LINES = 80
# Longer functions allowed, each with why; a hot path earns its place by measurement.
# None today: producers/decode.py's make_decoder, split into a closure per layer, measured
# as fast as the one 243-line closure it was.
LONG_FUNCTIONS: dict[str, str] = {}


def test_functions_are_short() -> None:
    lengths: dict[str, int] = {}
    long: list[str] = []
    for path in _sources().values():
        rel = str(path.relative_to(ROOT))
        for node in ast.walk(_parse(path)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                key = f"{rel}::{node.name}"
                lengths[key] = node.end_lineno - node.lineno + 1
                if lengths[key] > MAX_FUNCTION_LINES and key not in LONG_FUNCTIONS:
                    long.append(f"{rel}:{node.lineno} {node.name} is {lengths[key]} lines")
    assert not long, f"over {MAX_FUNCTION_LINES} lines; split it:\n" + "\n".join(long)
    short = [key for key in LONG_FUNCTIONS if lengths.get(key, 0) <= MAX_FUNCTION_LINES]
    assert not short, "no longer long (or gone); drop from LONG_FUNCTIONS:\n" + "\n".join(short)
