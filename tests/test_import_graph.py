"""The package's import graph, read from the source (``ast``): no cycle, and no arrow pointing up
the layers (docs/architecture.md). A module-level import decides what loading a module loads;
an import inside a function is a dependency all the same, so both are checked, the second with
the few exceptions listed (each with its reason)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import vin_ocr

ROOT = Path(vin_ocr.__file__).parent
#: bottom to top; a module may import its own layer and those below it
LAYERS = [
    ["vin_ocr", "vin_ocr.vin", "vin_ocr.reading", "vin_ocr.errors", "vin_ocr.layout",
     "vin_ocr.barcode", "vin_ocr.decoding", "vin_ocr.data", "vin_ocr.config"],
    ["vin_ocr.models", "vin_ocr.hardware"],
    ["vin_ocr.run_folder"],  # the run folder: layout, run.json, base, load as an engine
    ["vin_ocr.evaluation", "vin_ocr.hub"],
    ["vin_ocr.training"],
    ["vin_ocr.app", "vin_ocr.cli", "vin_ocr.bench"],
]  # fmt: skip
#: imports inside a function that point up, and why they are allowed
LAZY_UP: dict[tuple[str, str], str] = {}  # none today
#: modules whose imports inside functions may point anywhere, and why
LAZY_FROM = {"vin_ocr.config": "register_configs() imports every command's schema when called"}


def _modules() -> dict[str, Path]:
    mods = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


MODULES = _modules()


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            parts = module.split(".")
            is_pkg = MODULES[module].name == "__init__.py"
            parts = parts[: len(parts) - node.level + is_pkg]
            base = ".".join(parts + ([node.module] if node.module else []))
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
    return {n for n in names if n in MODULES and n != module}


def imports(module: str, lazy: bool) -> set[str]:
    """The vin_ocr modules ``module`` imports at module level (``TYPE_CHECKING`` blocks left
    out), or anywhere in it when ``lazy``."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found: set[str] = set()
    if lazy:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                found |= _targets(module, node)
        return found

    def walk(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                found.update(_targets(module, node))
            elif isinstance(node, ast.If):
                if "TYPE_CHECKING" not in ast.unparse(node.test):
                    walk(node.body)
                walk(node.orelse)
            elif isinstance(node, ast.Try):
                for block in (node.body, *(h.body for h in node.handlers), node.orelse,
                              node.finalbody):  # fmt: skip
                    walk(block)

    walk(tree.body)
    return found


def graph(lazy: bool) -> dict[str, set[str]]:
    edges = {m: imports(m, lazy) for m in MODULES}
    if lazy:
        for m in LAZY_FROM:
            edges[m] = imports(m, False)
        edges = {m: {t for t in ts if (m, t) not in LAZY_UP} for m, ts in edges.items()}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def layer(module: str) -> int:
    best = max(
        ((i, len(p)) for i, names in enumerate(LAYERS) for p in names
         if module == p or module.startswith(p + ".")),
        key=lambda x: x[1],
    )  # fmt: skip
    return best[0]


def test_the_graph_sees_the_imports():
    assert "vin_ocr.run_folder" in MODULES and "vin_ocr.training.merge" in MODULES
    assert {"vin_ocr.run_folder", "vin_ocr.hub.push"} <= imports("vin_ocr.training.merge", False)
    assert "vin_ocr.run_folder" not in imports("vin_ocr.models.engine", True)
    # function-level imports are seen only when asked for
    assert "vin_ocr.run_folder" not in imports("vin_ocr.evaluation.engines", False)
    assert "vin_ocr.run_folder" in imports("vin_ocr.evaluation.engines", True)
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("lazy", [False, True], ids=["module level", "with function level"])
def test_no_import_cycle(lazy):
    assert cycles(graph(lazy)) == []


@pytest.mark.parametrize("lazy", [False, True], ids=["module level", "with function level"])
def test_no_arrow_points_up(lazy):
    up = [
        f"{m} -> {t}"
        for m, targets in sorted(graph(lazy).items())
        for t in sorted(targets)
        if layer(t) > layer(m)
    ]
    assert up == []


def test_every_module_has_a_layer():
    assert all(layer(m) >= 0 for m in MODULES)


@pytest.mark.slow
def test_every_module_imports_in_a_fresh_interpreter():
    names = sorted(m for m in MODULES if not m.endswith("__main__"))
    code = "import importlib, sys\nfor n in sys.argv[1:]:\n    importlib.import_module(n)\n"
    proc = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
