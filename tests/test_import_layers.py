"""The imports of mammo_tf and the CLI (mammo_tf_cli, the cli/ folder) point one way: no module imports one
that imports it back, directly or around a longer loop, and no module imports from a layer above its own.

Layers, bottom to top (LAYERS below): errors, paths, config < io < data < models < training, inference
(siblings: neither imports the other) < evaluation < workflows < cli. A module imports from its own layer
or below; what a lower layer needs from a higher one is passed in (a callback, a function argument).

The walk is static (ast), over every `import` and `from ... import` anywhere
in a module: at the top, inside functions (the lazy imports that keep
TensorFlow out of `--help`), under `if TYPE_CHECKING:`. A lazy import hides a
cycle from Python at import time, not from the layering, so it counts.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {"mammo_tf": REPO / "mammo_tf", "mammo_tf_cli": REPO / "cli"}  # import name -> folder


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the packages (a package is its __init__.py)."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `name` imports anywhere in its file."""
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package, one level up per extra dot
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from a.b import c` imports the module a.b.c when there is one, else the name c of a.b
            candidates = [
                f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module for alias in node.names
            ]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in known:  # `import a.b.c` of a non-module name: its module
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                targets.add(candidate)
    return targets


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


# Layers, bottom = 0; each holds the top-level parts of mammo_tf named (a module, or a package with everything
# under it). "mammo_tf" is the package's own __init__ (__version__ only), never a catch-all.
LAYERS = {
    "errors": 0,
    "paths": 0,
    "machine": 0,
    "config": 0,
    "io": 1,
    "data": 2,
    "models": 3,
    "training": 4,
    "inference": 4,
    "evaluation": 5,
    "workflows": 6,
    "cli": 7,  # mammo_tf_cli, the cli/ folder
}
SIBLINGS = {frozenset({"training", "inference"})}  # one rank, and neither imports the other


def layer_of(module: str) -> str | None:
    """The LAYERS name of a module (mammo_tf.data.samplers -> "data"), or None if it is in none."""
    parts = module.split(".")
    if parts[0] == "mammo_tf_cli":
        return "cli"
    if module == "mammo_tf":
        return "errors"  # the bottom layer
    return parts[1] if parts[0] == "mammo_tf" and parts[1] in LAYERS and parts[1] != "cli" else None


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Every import that runs upward, or sideways between siblings: "module -> imported (layer -> layer)"."""
    found = []
    for module in sorted(graph):
        for target in sorted(graph[module]):
            source_layer, target_layer = layer_of(module), layer_of(target)
            if source_layer is None or target_layer is None or source_layer == target_layer:
                continue
            upward = LAYERS[target_layer] > LAYERS[source_layer]
            if upward or frozenset({source_layer, target_layer}) in SIBLINGS:
                found.append(f"{module} -> {target} ({source_layer} -> {target_layer})")
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One loop per strongly connected component of more than one module (Tarjan), as a readable path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_loop(graph, component) for component in components]


def _loop(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A shortest path from the component's first module back to itself (breadth-first inside the component)."""
    start, members = component[0], set(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for target in sorted(graph[node] & members):
            if target == start:
                return [*paths[node], start]
            if target not in paths:
                paths[target] = [*paths[node], target]
                queue.append(target)
    return component  # pragma: no cover - a strongly connected component always closes


def test_the_walk_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    """The walker itself: a function-level import and a relative import both make edges, so a cycle shows."""
    (tmp_path / "a.py").write_text("def f():\n    from pkg import b\n")
    (tmp_path / "b.py").write_text("from .a import f\n")
    known = {"pkg", "pkg.a", "pkg.b"}
    graph = {"pkg.a": _imports("pkg.a", tmp_path / "a.py", known), "pkg.b": _imports("pkg.b", tmp_path / "b.py", known)}
    assert graph == {"pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}}
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.a"]]


def test_no_import_cycles() -> None:
    graph = import_graph()
    assert "mammo_tf.data.catalog" in graph and "mammo_tf_cli.main" in graph  # the walk found both packages
    loops = cycles(graph)
    assert not loops, "import cycles:\n" + "\n".join(" -> ".join(loop) for loop in loops)


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(m for m in import_graph() if layer_of(m) is None)
    assert not unplaced, f"modules in no layer (add them to LAYERS in {Path(__file__).name}): {unplaced}"


def test_the_layer_check_flags_upward_and_sideways_imports() -> None:
    graph = {
        "mammo_tf.data.a": {"mammo_tf.io.b", "mammo_tf.errors", "mammo_tf.models.c"},  # io, errors: fine; models: up
        "mammo_tf.training.d": {"mammo_tf.inference.e"},  # sideways between siblings
        "mammo_tf.inference.e": {"mammo_tf.models.c", "mammo_tf.inference.f"},  # down, and inside its own layer
        "mammo_tf.config.g": {"mammo_tf.errors"},  # config (a package or a module) is the bottom layer
        "mammo_tf_cli.main": {"mammo_tf.workflows.h"},
    }
    assert [layer_of(m) for m in ("mammo_tf", "mammo_tf.config", "mammo_tf.config.g", "mammo_tf_cli")] == [
        "errors",
        "config",
        "config",
        "cli",
    ]
    assert layer_of("mammo_tf.export") is None and layer_of("mammo_tf.cli") is None  # placed nowhere: a failure
    assert layer_violations(graph) == [
        "mammo_tf.data.a -> mammo_tf.models.c (data -> models)",
        "mammo_tf.training.d -> mammo_tf.inference.e (training -> inference)",
    ]


def test_imports_never_point_up_a_layer() -> None:
    """Any upward import, or one between training and inference, lazy ones included, fails with its name."""
    wrong = layer_violations(import_graph())
    assert not wrong, f"{len(wrong)} imports against the layers (module -> imported):\n" + "\n".join(wrong)


@pytest.mark.parametrize(
    ("module", "must_not_import"),
    [
        # the catalog schema at the bottom, the source readers above it, the dispatcher on top
        ("mammo_tf.data.schema", "mammo_tf.data."),
        ("mammo_tf.data.mias", "mammo_tf.data.catalog"),
        ("mammo_tf.data.manifest", "mammo_tf.data.catalog"),
        ("mammo_tf.data.phantom", "mammo_tf.data.catalog"),
        ("mammo_tf.data.mias", "mammo_tf.data.fetch"),
        # the image reader dispatches to the DICOM reader, never the other way
        ("mammo_tf.io.dicom", "mammo_tf.io.images"),
        ("mammo_tf.io.base", "mammo_tf."),
        # command modules are registered by main.py; they do not import it back
        ("mammo_tf_cli.data", "mammo_tf_cli.main"),
        ("mammo_tf_cli.paths", "mammo_tf_cli."),
    ],
)
def test_layers(module: str, must_not_import: str) -> None:
    imported = import_graph()[module]
    assert not [m for m in imported if m == must_not_import or m.startswith(must_not_import)], imported


@pytest.mark.parametrize(
    ("module", "allowed"),
    [("mammo_tf.data.degrade", {"__future__", "cv2", "numpy", "mammo_tf"})],  # NumPy/OpenCV: no TensorFlow
)
def test_third_party_imports(module: str, allowed: set[str]) -> None:
    nodes = list(ast.walk(ast.parse(_modules()[module].read_text("utf-8"))))
    roots = {alias.name.split(".")[0] for node in nodes if isinstance(node, ast.Import) for alias in node.names}
    roots |= {node.module.split(".")[0] for node in nodes if isinstance(node, ast.ImportFrom) and node.module}
    assert roots <= allowed, sorted(roots - allowed)


def test_readme_imports_still_work() -> None:
    from mammo_tf.data.catalog import Catalog, load_catalog
    from mammo_tf.data.schema import Catalog as SchemaCatalog
    from mammo_tf.io.images import Image, read_image

    assert Catalog is SchemaCatalog and callable(load_catalog) and callable(read_image) and Image


def test_every_package_folder_is_installed() -> None:
    """A package missing from pyproject.toml works from the checkout (editable install) but not from a wheel."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {
        ".".join(("mammo_tf", *init.parent.relative_to(REPO / "mammo_tf").parts))
        for init in (REPO / "mammo_tf").rglob("__init__.py")
    }
    assert folders <= listed, sorted(folders - listed)
