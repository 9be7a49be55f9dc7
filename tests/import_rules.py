"""The project's import graph, read with ast (nothing is imported or run), and the rules it obeys.

Every ``import`` and ``from ... import`` counts, in-function ones included: an import hidden in a
function body still runs on the path that reaches it. Used by tests/test_structure.py.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("edgeseg", "converters", "benchmarks")
# What the device side may import besides the standard library and its own modules.
DEVICE_EXTERNAL = {"numpy", "PIL", "click", "ai_edge_litert", "tflite_runtime", "onnxruntime",
                   "onnx", "flatbuffers", "ethosu", "tflite_micro"}
# Never on the device side, wherever the import stands.
FORBIDDEN = {"tensorflow", "tf_keras", "keras", "tensorflow_model_optimization", "tf2onnx",
             "matplotlib", "torch"}
# The one exception: LiteRT's loader order ends at TensorFlow's own copy of the runtime
# (ai_edge_litert, else tflite_runtime, else tensorflow.lite), for a machine that has TensorFlow
# and neither runtime (Windows, where ai-edge-litert has no wheel). The base install never
# reaches it.
TFLITE_FALLBACK = {("edgeseg/device/runtime.py", "tensorflow"),
                   ("edgeseg/device/formats/tflite.py", "tensorflow")}
# The one module whose name starts with "_" that others import: it decides which Keras
# TensorFlow uses, before TensorFlow is imported (tf_keras for tfmot).
PRIVATE_MODULES_ALLOWED = {"edgeseg._keras"}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the module imported (the project's own, resolved), or the external name
    name: str | None  # the name taken from it (``from x import name``), if any
    line: int


def modules(root: Path) -> dict[str, Path]:
    """{dotted name: file} of every module of the project's packages under ``root``."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports(root: Path) -> list[Import]:
    """Every import statement of every module, resolved to a module of the project where it
    names one (``from edgeseg.device import card`` is the module ``edgeseg.device.card``)."""
    mods = modules(root)
    found = []
    for module, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    found.append(Import(module, _owner(alias.name, mods), None, node.lineno))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    parts = parts[:len(parts) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    target = full if full in mods else _owner(base, mods)
                    found.append(Import(module, target, None if target == full else alias.name,
                                        node.lineno))
    return found


def _owner(name: str, mods: dict) -> str:
    """The project module ``name`` is or is inside, else ``name`` itself (external)."""
    probe = name
    while probe and probe not in mods:
        probe = probe.rpartition(".")[0]
    return probe or name


def is_project(name: str) -> bool:
    return name.split(".")[0] in PACKAGES


def graph(root: Path) -> dict[str, set[str]]:
    """{module: the project modules it imports}."""
    edges = {module: set() for module in modules(root)}
    for imp in imports(root):
        if is_project(imp.target) and imp.target != imp.module:
            edges[imp.module].add(imp.target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected set of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for other in edges.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def device_modules(root: Path) -> dict[str, Path]:
    """The device side: the ``edgeseg.device`` package and the harness (the modules directly in
    ``benchmarks/``; its sub-packages, such as the host-side studies, are not part of it), and
    ``edgeseg/__init__.py`` (the package itself, whose flat API loads lazily)."""
    return {name: path for name, path in modules(root).items()
            if name == "edgeseg" or name == "edgeseg.device" or name.startswith("edgeseg.device.")
            or name == "benchmarks" or (name.startswith("benchmarks.") and name.count(".") == 1
                                        and path.parent.name == "benchmarks")}


def device_violations(root: Path) -> list[str]:
    """Imports on the device side of anything but the standard library, the allowed external
    packages and other device-side modules: ``file:line imports X``."""
    device = device_modules(root)
    problems = []
    for imp in imports(root):
        if imp.module not in device:
            continue
        where = f"{device[imp.module].relative_to(root).as_posix()}:{imp.line}"
        top = imp.target.split(".")[0]
        if is_project(imp.target):
            if imp.target not in device:
                problems.append(f"{where} imports the host-side module {imp.target}")
        elif top in FORBIDDEN:
            if (device[imp.module].relative_to(root).as_posix(), top) not in TFLITE_FALLBACK:
                problems.append(f"{where} imports {imp.target}")
        elif top not in DEVICE_EXTERNAL and top not in sys.stdlib_module_names \
                and top != "__future__":
            problems.append(f"{where} imports {imp.target}, which is not a device dependency")
    return problems


def _private_attributes(root: Path) -> list[str]:
    """``module._name`` where ``module`` is a project module bound by an import (``from
    benchmarks.studies import budget`` ... ``budget._untrained``): ``module <- target.name``."""
    mods, found = modules(root), []
    for module, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        bound = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname and alias.name in mods:
                        bound[alias.asname] = alias.name
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                for alias in node.names:
                    if f"{base}.{alias.name}" in mods:
                        bound[alias.asname or alias.name] = f"{base}.{alias.name}"
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                    node.value.id in bound and node.attr.startswith("_") and \
                    not node.attr.startswith("__") and bound[node.value.id] != module:
                found.append(f"{module} <- {bound[node.value.id]}.{node.attr}")
    return found


def private_imports(root: Path) -> list[str]:
    """Names starting with ``_`` taken from another project module (imported, or reached as an
    imported module's attribute), and project modules whose name starts with ``_`` imported by
    others: ``module <- target.name``."""
    found = _private_attributes(root)
    for imp in imports(root):
        if not is_project(imp.target) or imp.target == imp.module:
            continue
        if imp.name and imp.name.startswith("_") and not imp.name.startswith("__"):
            found.append(f"{imp.module} <- {imp.target}.{imp.name}")
        package, _, last = imp.target.rpartition(".")
        inside = imp.module.startswith(package + ".")  # a package's own private module
        if last.startswith("_") and not last.startswith("__") and not inside and \
                imp.target not in PRIVATE_MODULES_ALLOWED:
            found.append(f"{imp.module} <- {imp.target}")
    return found
