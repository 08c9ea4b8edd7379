"""The package's modules import each other one way: no cycles, counting
imports inside functions too, and every import points down `LAYERS`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import mobilenetv3

PACKAGE = Path(mobilenetv3.__file__).parent

# The package's layers, lowest first: a module may import its own layer and
# the layers below it (docs/development.md, "Layers"). A module name matches its
# longest listed prefix.
LAYERS = (
    ("mobilenetv3.version", "mobilenetv3.core"),  # architecture tables, images, labels, checks
    ("mobilenetv3.weights",),  # checkpoint readers of every source, downloads
    ("mobilenetv3.presets.registry", "mobilenetv3.presets.folders"),  # presets as data, folders on disk
    ("mobilenetv3.presets",),  # the loader (classes by an explicit table of names), conversion, preprocessing
    ("mobilenetv3.runtime.kernels", "mobilenetv3.runtime.initializers"),  # backend fast paths of single layers
    ("mobilenetv3.nets.layers",),  # plain Keras layers; their `call` asks the kernels first
    ("mobilenetv3.runtime",),  # whole-model runtime: JAX compiled call, PyTorch direct run, folding, `accelerate`
    ("mobilenetv3.nets",),  # the backbone and its aliases (built, then `accelerate`d)
    ("mobilenetv3.detection", "mobilenetv3.datasets"),  # box coding, SSD loss and NMS; generated datasets
    ("mobilenetv3.tasks",),
    ("mobilenetv3.keras_hub",),  # optional integration: our classes as keras-hub's
    ("mobilenetv3.quantization",),  # quantization-aware twins of built models (fake-quant layers)
    ("mobilenetv3.training",),
    ("mobilenetv3.export",),  # exporters, the runtimes that run them, and `speed`: timing a model on each
    ("mobilenetv3.serving",),  # many images through a task model on any runtime: prediction, evaluation
    ("mobilenetv3.cli", "mobilenetv3.__main__", "mobilenetv3"),  # (the peer benchmark lives in benchmarks/)
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """`{module: modules of this package it imports}`, anywhere in its file."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as `[a, b, ..., a]`, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*stack[stack.index(target):], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def layer_of(module: str) -> int:
    """The index in `LAYERS` of `module`'s longest matching prefix."""
    matches = [
        (len(prefix), index)
        for index, prefixes in enumerate(LAYERS)
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    if not matches:
        raise AssertionError(f"{module} is in no layer of LAYERS; add it where it belongs.")
    return max(matches)[1]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a module from a higher layer, as "a -> b"."""
    return [
        f"{name} -> {target}"
        for name, targets in sorted(graph.items())
        for target in sorted(targets)
        if layer_of(target) > layer_of(name)
    ]


@pytest.mark.core
def test_find_cycle_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.core
def test_package_has_no_import_cycle():
    graph = import_graph()
    assert "mobilenetv3.nets.backbone" in graph["mobilenetv3.tasks.classifier"]  # the graph is read
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


@pytest.mark.core
def test_imports_point_down_the_layers():
    assert upward_imports({"mobilenetv3.weights.timm": {"mobilenetv3.nets.backbone"}}) == [
        "mobilenetv3.weights.timm -> mobilenetv3.nets.backbone"
    ]
    assert upward_imports(import_graph()) == []
