"""The API reference documents every public name, and nothing else.

The reference pages are built from each package's ``__all__`` when the site is
built (docs/_ext/gradflow_docs.py). Here the API pages alone are built
(``sphinx -t api``: no tutorials executed), with warnings as errors, and the
names in the built ``objects.inv`` and HTML are compared with ``__all__``.
"""

from __future__ import annotations

import html
import importlib
import inspect
import os
import re
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

# every package with an API page built from its __all__
PACKAGES = (
    "gradflow",
    "gradflow.cells",
    "gradflow.train",
    "gradflow.tasks",
    "gradflow.models",
    "gradflow.sweep",
    "gradflow.plots",
    "gradflow.report",
    "gradflow.cli",
)


def read_inventory(path: Path) -> dict[str, tuple[str, str]]:
    """``name -> (domain:role, uri)`` from a Sphinx ``objects.inv`` (version 2)."""
    lines = path.read_bytes().split(b"\n", 4)
    if len(lines) < 5 or lines[0] != b"# Sphinx inventory version 2":
        raise ValueError(f"{path}: not a version-2 Sphinx inventory")
    body = lines[4]  # after four header lines: zlib-compressed entries
    entries = {}
    for line in zlib.decompress(body).decode().splitlines():
        match = re.match(r"(\S+)\s+(\S+:\S+)\s+(-?\d+)\s+(\S*)\s+(.*)", line)
        if match is None:
            raise ValueError(f"objects.inv: unreadable line {line!r}")
        name, role, _, uri, _ = match.groups()
        if uri.endswith("$"):
            uri = uri[:-1] + name
        entries[name] = (role, uri)
    return entries


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("docs-api")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-t",
            "api",
            "-b",
            "html",
            "-W",
            "--keep-going",
            "-q",
            "-d",
            str(out / "doctrees"),
            str(DOCS),
            str(out / "html"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
        timeout=600,
    )
    assert proc.returncode == 0, f"sphinx -t api failed:\n{proc.stderr[-4000:]}"
    # -W turns warnings into a failure; -q leaves only warnings on stderr
    assert proc.stderr.strip() == "", proc.stderr[-4000:]
    return out / "html"


def test_inventory_reader_reads_a_known_inventory(tmp_path):
    body = (
        "gradflow.cells.rnn py:function 1 api/cells.html#$ -\n"
        "gradflow.cells py:module 0 api/cells.html#module-gradflow.cells -\n"
    )
    header = b"# Sphinx inventory version 2\n# Project: x\n# Version: 1\n# z\n"
    path = tmp_path / "objects.inv"
    path.write_bytes(header + zlib.compress(body.encode()))
    assert read_inventory(path) == {
        "gradflow.cells.rnn": ("py:function", "api/cells.html#gradflow.cells.rnn"),
        "gradflow.cells": ("py:module", "api/cells.html#module-gradflow.cells"),
    }


@pytest.mark.parametrize("package", PACKAGES)
def test_reference_documents_exactly_all(built, package):
    inventory = read_inventory(built / "objects.inv")
    module = importlib.import_module(package)
    # the names documented directly under this package (not its submodules'
    # own pages, not autodoc's aliases under private modules)
    documented = {
        name[len(package) + 1 :]
        for name, (role, _) in inventory.items()
        if name.startswith(package + ".")
        and "." not in name[len(package) + 1 :]
        and role != "py:module"
    }
    subpackages = {
        name for name in module.__all__ if inspect.ismodule(getattr(module, name))
    }
    assert documented == set(module.__all__) - subpackages
    for name in subpackages:  # each has its own page
        assert inventory[f"{package}.{name}"][0] == "py:module", name


def _entry(built: Path, uri: str) -> str:
    page, anchor = uri.split("#")
    text = (built / page).read_text(encoding="utf-8")
    match = re.search(
        rf'<dt class="sig sig-object py" id="{re.escape(anchor)}">(.*?)</dt>',
        text,
        re.S,
    )
    assert match is not None, f"{uri}: no entry in the page"
    return match.group(1)


@pytest.mark.parametrize("package", PACKAGES)
def test_functions_show_their_signature_and_type_hints(built, package):
    inventory = read_inventory(built / "objects.inv")
    module = importlib.import_module(package)
    checked = 0
    for name in module.__all__:
        value = getattr(module, name)
        if not inspect.isfunction(value):
            continue
        entry = _entry(built, inventory[f"{package}.{name}"][1])
        text = html.unescape(re.sub(r"<[^>]+>", "", entry))
        signature = inspect.signature(value)
        for param in signature.parameters.values():
            assert param.name in text, f"{package}.{name}: {param.name} not shown"
        if signature.return_annotation is not inspect.Signature.empty:
            assert "sig-return" in entry, f"{package}.{name}: no return type"
        checked += 1
    assert checked > 0


def _extension():
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        return importlib.import_module("gradflow_docs")
    finally:
        sys.path.remove(str(DOCS / "_ext"))


def test_the_build_check_finds_network_assets_and_undrawn_figures(tmp_path):
    ext = _extension()
    (tmp_path / "sub").mkdir()
    (tmp_path / "ok.html").write_text(
        '<script src="_static/a.js"></script><link rel="stylesheet" href="x.css">'
        '<a href="https://semver.org">a link is fine</a><img src="_images/f.svg">'
    )
    (tmp_path / "sub" / "bad.html").write_text(
        '<script defer src="https://cdn.example/m.js"></script>'
        '<link rel="stylesheet" href="//fonts.example/f.css" />'
        "<pre>&lt;Figure size 350x238 with 1 Axes&gt;</pre>"
    )
    found = ext.remote_assets(tmp_path)
    assert [f.split(":")[0] for f in found] == ["sub/bad.html"] * 2
    assert "cdn.example" in found[0] and "fonts.example" in found[1]
    assert ext.undrawn_figures(tmp_path) == ["sub/bad.html"]
