"""Imports run one way: the client -> the protocol; the executors -> the core -> the protocol; inside the core, from
higher layers to lower ones only, with no cycle between modules or between the core's subpackages.

Every import is read from the source (``ast``), the ones inside functions and ``TYPE_CHECKING`` blocks included,
and a failure lists every import that breaks a rule, by file, line and imported module.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = {"finetuner": ROOT / "client", "finetuner_protocol": ROOT / "client", "finetuner_core": ROOT / "executors"}
EXECUTORS = sorted((ROOT / "executors").glob("*/executor.py"))

# The core's layers, lowest first: a module imports its own layer or lower ones, never a higher one. Each entry is
# the name under finetuner_core (a subpackage or a module); a new one must be placed here.
CORE_LAYERS: tuple[tuple[str, ...], ...] = (
    ("models", "storage", "callbacks", "in_thread", "parent"),
    ("training", "evaluation"),
    ("config",),
    ("runs",),
    ("workspace", "fit_request", "admin", "serve"),
)
HEAVY = frozenset(
    {
        "torch",
        "torchvision",
        "faiss",
        "open_clip",
        "timm",
        "sentence_transformers",
        "pytorch_metric_learning",
        "transformers",
        "jina",
    }
)
PROTOCOL_LIBRARIES = frozenset({"pydantic", "docarray", "numpy", "PIL"})  # besides the standard library
JINA_ALLOWED = {ROOT / "client" / "finetuner" / "transport.py", *EXECUTORS}
# Loaded when called, not before: the model code (get_model / encode, the `inference` extra) and the operator's
# `finetuner admin`, which runs where the service is installed.
CLIENT_LAZY_CORE = ("finetuner_core.models", "finetuner_core.admin")


@dataclass(frozen=True)
class Import:
    file: Path
    line: int
    module: str  # the imported module, resolved (a ``from a import b`` of a module b is ``a.b``)
    lazy: bool  # inside a function or an ``if TYPE_CHECKING:`` block: not run when the importer is imported

    def __str__(self) -> str:
        return f"{self.file.relative_to(ROOT)}:{self.line} imports {self.module}"

    @property
    def top(self) -> str:
        return self.module.split(".")[0]


def module_name(path: Path) -> str:
    """``finetuner_core.runs.store`` for executors/finetuner_core/runs/store.py; ``executors.trainer.executor``."""
    for package, base in SOURCES.items():
        if path.is_relative_to(base / package):
            parts = path.relative_to(base).with_suffix("").parts
            return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def source_files() -> list[Path]:
    files = [path for package, base in SOURCES.items() for path in sorted((base / package).rglob("*.py"))]
    return files + EXECUTORS


def known_modules() -> set[str]:
    return {module_name(path) for path in source_files()}


def imports_of(path: Path, known: set[str]) -> Iterator[Import]:
    tree = ast.parse(path.read_text("utf-8"), filename=str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    lazy_nodes = {id(node) for block in ast.walk(tree) if is_lazy_block(block) for node in ast.walk(block)}
    for node in ast.walk(tree):
        lazy = id(node) in lazy_nodes
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(path, node.lineno, alias.name, lazy)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield Import(path, node.lineno, submodule if submodule in known else base, lazy)


def is_lazy_block(node: ast.AST) -> bool:
    """A function, or an ``if TYPE_CHECKING:`` block."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return True
    test = node.test if isinstance(node, ast.If) else None
    return isinstance(test, ast.Name | ast.Attribute) and ast.unparse(test).endswith("TYPE_CHECKING")


def all_imports() -> list[Import]:
    known = known_modules()
    return [found for path in source_files() for found in imports_of(path, known)]


def core_part(module: str) -> str:
    """The name under finetuner_core that places ``module`` in a layer ("" for the package itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def core_layer(module: str) -> int | None:
    part = core_part(module)
    if not part:
        return -1  # finetuner_core itself: its __init__ imports nothing
    return next((i for i, layer in enumerate(CORE_LAYERS) if part in layer), None)


def problem(found: Import) -> str | None:
    """Why ``found`` breaks the direction of imports (None: it does not)."""
    importer = module_name(found.file)
    side = importer.split(".")[0]
    if found.top == "jina" and found.file not in JINA_ALLOWED:
        return "jina is imported only by executors/*/executor.py and client/finetuner/transport.py"
    if side == "finetuner_protocol":
        if found.top in ("finetuner", "finetuner_core"):
            return "the protocol imports neither the client nor the core"
        if found.top not in PROTOCOL_LIBRARIES | {"finetuner_protocol"} and found.top not in sys.stdlib_module_names:
            return f"the protocol imports only {', '.join(sorted(PROTOCOL_LIBRARIES))} and the standard library"
    if side == "finetuner":
        lazy_core = found.lazy and any(found.module == m or found.module.startswith(m + ".") for m in CLIENT_LAZY_CORE)
        if found.top == "finetuner_core" and not lazy_core:
            allowed = ", ".join(CLIENT_LAZY_CORE)
            return f"the client imports the protocol, not the core (only {allowed}, inside a function)"
        if found.top in HEAVY - {"jina"} and not found.lazy:
            return "the client imports no heavy library when it is imported"
    if side == "finetuner_core":
        if found.top == "finetuner":
            return "the core does not import the client"
        if found.top == "finetuner_core":
            own, target = core_layer(importer), core_layer(found.module)
            if own is None:
                return f"finetuner_core.{core_part(importer)} has no layer: place it in CORE_LAYERS"
            if target is None:
                return f"finetuner_core.{core_part(found.module)} has no layer: place it in CORE_LAYERS"
            if target > own:
                upward = f"{core_part(found.module)} ({target})"
                return f"{core_part(importer)} (layer {own}) imports a higher layer: {upward}"
    if side == "executors" and found.top == "finetuner":
        return "an executor does not import the client"
    return None


def cycles(edges: dict[str, dict[str, Import]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in edges.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def describe(component: list[str], edges: dict[str, dict[str, Import]]) -> str:
    inside = set(component)
    links = [str(found) for node in component for target, found in edges.get(node, {}).items() if target in inside]
    return " <-> ".join(component) + ":\n      " + "\n      ".join(sorted(links))


def graph(imports: list[Import], node_of) -> dict[str, dict[str, Import]]:
    """Edges between the nodes ``node_of`` gives (None: not a node), each with one import that makes it."""
    edges: dict[str, dict[str, Import]] = {}
    for found in imports:
        source, target = node_of(module_name(found.file)), node_of(found.module)
        if source is not None and target is not None and source != target:
            edges.setdefault(source, {}).setdefault(target, found)
    return edges


def test_every_import_runs_one_way():
    problems = sorted({f"{found}: {why}" for found in all_imports() if (why := problem(found))})
    assert not problems, f"{len(problems)} import(s) against the direction:\n  " + "\n  ".join(problems)


def test_no_modules_import_each_other_in_a_cycle():
    known = known_modules()
    edges = graph(all_imports(), lambda module: module if module in known else None)
    found = cycles(edges)
    assert not found, f"{len(found)} import cycle(s):\n  " + "\n  ".join(describe(c, edges) for c in found)


def test_no_subpackages_of_the_core_import_each_other_in_a_cycle():
    def part(module: str) -> str | None:
        return core_part(module) or None if module.startswith("finetuner_core.") else None

    edges = graph(all_imports(), part)
    found = cycles(edges)
    assert not found, f"{len(found)} cycle(s) between the core's parts:\n  " + "\n  ".join(
        describe(c, edges) for c in found
    )


def test_the_run_store_loads_no_training_code():
    """Reading runs (their status, logs, metrics) needs SQLite and the protocol, not the training loop or torch."""
    script = (
        "import sys, finetuner_core.runs.store; "
        "print(' '.join(m for m in sys.modules if m.split('.')[0] in ('finetuner_core', 'torch')))"
    )
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    heavy = [m for m in loaded if m == "torch" or m.startswith(("finetuner_core.training", "finetuner_core.config"))]
    assert "finetuner_core.runs.store" in loaded and not heavy, f"import finetuner_core.runs.store loads {heavy}"


def test_the_rules_see_an_upward_import_and_a_cycle():
    """The checks above fail on what they are meant to catch."""
    storage = ROOT / "executors" / "finetuner_core" / "storage" / "database.py"
    upward = Import(storage, 1, "finetuner_core.runs.store", lazy=True)
    assert "storage (layer 0) imports a higher layer: runs (3)" in problem(upward)
    protocol = ROOT / "client" / "finetuner_protocol" / "wire.py"
    assert "the protocol imports neither" in problem(Import(protocol, 1, "finetuner_core.config", False))
    assert "the protocol imports only" in problem(Import(protocol, 1, "torch", True))
    assert "jina is imported only" in problem(Import(storage, 1, "jina", True))
    client = ROOT / "client" / "finetuner" / "api.py"
    assert problem(Import(client, 1, "finetuner_core.models.build", lazy=True)) is None
    assert "the client imports the protocol" in problem(Import(client, 1, "finetuner_core.runs.store", True))
    a, b = Import(storage, 1, "b", False), Import(storage, 2, "a", False)
    assert cycles({"a": {"b": a}, "b": {"a": b}, "c": {"a": a}}) == [["a", "b"]]
    workspace = ROOT / "executors" / "finetuner_core" / "workspace.py"
    assert "finetuner_core.runs.store" in {found.module for found in imports_of(workspace, known_modules())}
    store = ROOT / "executors" / "finetuner_core" / "runs" / "store.py"
    config = [found for found in imports_of(store, known_modules()) if found.module == "finetuner_core.config"]
    assert config and all(found.lazy for found in config), "a TYPE_CHECKING or function-level import is lazy"
