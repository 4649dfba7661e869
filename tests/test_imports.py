"""The layers import downward only, and the package holds that itself.

Every ``import`` in ``gradflow/`` (those inside functions too; not those under
``if TYPE_CHECKING:``, which never run) is read from the source with ``ast``
and checked against the layer table of DESIGN.md: no import circle, no import
of a layer above, no private ``_x`` module of another package, no ``jax._src``,
and no use of the top-level ``gradflow`` module (its lazy loader) from inside
the package.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gradflow"

#: Layer -> the module prefixes in it (longest prefix wins).
LAYERS = {
    "data": (
        "gradflow._names",
        "gradflow._specs",
        "gradflow._checks",
        "gradflow._decay",
        "gradflow._experiments",
        "gradflow._version",
        "gradflow.results",
    ),
    "cells": ("gradflow.cells",),
    "unroll": ("gradflow._unroll",),
    "measure": ("gradflow._measure",),
    "tasks": ("gradflow.tasks",),
    "models": ("gradflow.models",),
    "train": ("gradflow.train",),
    "sweep": ("gradflow.sweep",),
    "plots": ("gradflow.plots",),
    "report": ("gradflow.report",),
    "cli": ("gradflow.cli",),
}
_BELOW_SWEEP = {"data", "cells", "unroll", "measure", "tasks", "models", "train"}
#: Layer -> the layers it may import (itself included).
ALLOWED = {
    "data": {"data"},
    "cells": {"data", "cells"},
    "unroll": {"data", "cells", "unroll"},
    "measure": {"data", "cells", "unroll", "measure"},
    "tasks": {"data", "tasks"},
    "models": {"data", "cells", "unroll", "tasks", "models"},
    "train": {"data", "cells", "unroll", "measure", "tasks", "models", "train"},
    "sweep": _BELOW_SWEEP | {"sweep"},
    # numpy + matplotlib + results.py: never jax, so never a jax layer
    "plots": {"data", "plots"},
    "report": {"data", "plots", "report"},
    "cli": set(LAYERS),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    """Whether ``name`` (``gradflow.x.y``) is a module or package of the source."""
    rel = Path(*name.split(".")[1:]) if "." in name else Path()
    base = PACKAGE / rel
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                skip.update(id(n) for n in ast.walk(inner))
    return skip


def imports_of(path: Path) -> list[tuple[str, int, bool]]:
    """``(imported module, line, is_top_level_attribute)`` of every import."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    skip = _type_checking_nodes(tree)
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno, a.name == "gradflow") for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                full = f"{source}.{alias.name}"
                if source.startswith("gradflow") and _is_module(full):
                    out.append((full, node.lineno, False))
                else:
                    out.append((source, node.lineno, source == "gradflow"))
    return out


def _layer(module: str) -> str | None:
    best = None
    for layer, prefixes in LAYERS.items():
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (
                best is None or len(p) > len(best[1])
            ):
                best = (layer, p)
    return best[0] if best else None


def _graph() -> dict[str, list[tuple[str, int, bool]]]:
    return {
        _module_name(p): imports_of(p)
        for p in sorted(PACKAGE.rglob("*.py"))
        if "experiments" not in p.parts
    }


GRAPH = _graph()


def _private_owner(target: str, importer: str) -> str | None:
    """The package whose private module ``target`` is, if ``importer`` is outside."""
    parts = target.split(".")
    for i in range(1, len(parts)):
        if parts[i].startswith("_") and not parts[i].startswith("__"):
            owner = ".".join(parts[:i])
            if importer != owner and not importer.startswith(owner + "."):
                return owner
    return None


def test_the_walker_sees_what_it_must():
    # imports inside functions are read, relative ones resolved, submodules told
    # from names, and TYPE_CHECKING blocks skipped
    sweep = {t for t, _, _ in GRAPH["gradflow.sweep._measure_kind"]}
    assert "gradflow.sweep._point" in sweep  # inside runner()
    assert "gradflow.sweep._config" in sweep
    assert "gradflow._names" in sweep  # `from gradflow import _names`
    top = {t for t, _, _ in GRAPH["gradflow"]}
    assert "gradflow.sweep" not in top and "gradflow._version" in top
    assert _private_owner("gradflow._measure._fixed", "gradflow.sweep._x") == (
        "gradflow._measure"
    )
    assert _private_owner("gradflow._measure._fixed", "gradflow._measure") is None
    assert _private_owner("gradflow._names", "gradflow.cli") is None
    assert _layer("gradflow.cells._lstm") == "cells"
    assert _layer("gradflow._measure._grad") == "measure"
    assert set(ALLOWED) == set(LAYERS)


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m != "gradflow"))
def test_imports_go_down_the_layers(module):
    layer = _layer(module)
    assert layer is not None, f"{module}: add it to a layer of LAYERS"
    bad = []
    for target, line, top_level in GRAPH[module]:
        where = f"{module}:{line} imports {target}"
        if target.startswith("jax._src"):
            bad.append(f"{where}: jax's private internals")
        if not target.startswith("gradflow"):
            continue
        if top_level:
            bad.append(f"{where}: the top-level gradflow (its lazy loader)")
            continue
        owner = _private_owner(target, module)
        if owner is not None:
            bad.append(f"{where}: a private module of {owner}")
        to = _layer(target)
        if to is not None and to not in ALLOWED[layer]:
            bad.append(f"{where}: layer {to} is not below {layer}")
    assert not bad, "\n".join(bad)


def test_no_import_circle():
    edges = {
        m: sorted({t for t, _, _ in imps if t in GRAPH and t != m})
        for m, imps in GRAPH.items()
    }
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for t in edges[m]:
            if state.get(t) == 1:
                return [*path[path.index(t) :], t]
            if t not in state:
                found = visit(t)
                if found:
                    return found
        state[m] = 2
        path.pop()
        return None

    for m in edges:
        if m not in state:
            circle = visit(m)
            assert circle is None, " -> ".join(circle)


def test_the_data_layer_names_no_module_by_string():
    # "module:function" strings were imports that neither tools nor this walk
    # could see; the registries are data and point at nothing above them.
    pattern = re.compile(r"gradflow(\.\w+)+(:\w*)?")
    found = []
    for name in LAYERS["data"]:
        path = PACKAGE.parent / (name.replace(".", "/") + ".py")
        for node in ast.walk(ast.parse(path.read_text())):
            value = getattr(node, "value", None)
            if isinstance(value, str) and pattern.fullmatch(value):
                found.append(f"{name}:{node.lineno} {value!r}")
    assert not found, found
