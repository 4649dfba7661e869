"""Sphinx directives that build gradflow's reference pages from the code itself.

``.. gradflow-api:: gradflow.cells`` documents every name in the module's
``__all__`` (read when the page is built, so a new public name appears without
editing any page); ``.. gradflow-cli::`` prints ``gradflow --help`` and each
sub-command's ``--help``. After an HTML build, a page that loads a script or a
style sheet from the network fails the build (the site must work offline), and
so does a tutorial figure shown as its text repr instead of drawn.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import os
import re
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

# A data value whose repr is longer than this is documented without it.
_MAX_VALUE_REPR = 100

_GROUPS = ("Subpackages", "Functions", "Classes", "Exceptions", "Constants")


def public_names(module_name: str) -> list[str]:
    """The module's ``__all__``, which every API page documents in full."""
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    if names is None:
        raise ExtensionError(f"{module_name} has no __all__ to document")
    return list(names)


def _kind(value: object) -> str:
    if inspect.ismodule(value):
        return "Subpackages"
    if inspect.isclass(value):
        return "Exceptions" if issubclass(value, BaseException) else "Classes"
    if inspect.isroutine(value) or (callable(value) and hasattr(value, "__wrapped__")):
        return "Functions"
    return "Constants"


def _directive(full: str, kind: str, value: object) -> list[str]:
    if kind == "Functions":
        return [f".. autofunction:: {full}"]
    if kind == "Exceptions":
        return [f".. autoexception:: {full}", "   :members:"]
    if kind == "Classes":
        lines = [f".. autoclass:: {full}", "   :members:"]
        if dataclasses.is_dataclass(value) or _is_namedtuple(value):
            # the fields are described in the class docstring's Attributes
            lines = lines[:1]
        return lines
    lines = [f".. autodata:: {full}"]
    text = repr(value)
    if len(text) > _MAX_VALUE_REPR or " at 0x" in text:
        lines.append("   :no-value:")
    return lines


def _is_namedtuple(value: type) -> bool:
    return issubclass(value, tuple) and hasattr(value, "_fields")


def api_rst(module_name: str) -> list[str]:
    """reStructuredText documenting each name of the module's ``__all__``."""
    module = importlib.import_module(module_name)
    groups: dict[str, list[tuple[str, object]]] = {g: [] for g in _GROUPS}
    for name in public_names(module_name):
        value = getattr(module, name)
        groups[_kind(value)].append((name, value))
    lines = [f".. automodule:: {module_name}", ""]
    for group in _GROUPS:
        entries = groups[group]
        if not entries:
            continue
        lines += [group, "-" * len(group), ""]
        if group == "Subpackages":
            for name, _ in entries:
                lines.append(f"- :mod:`{module_name}.{name}`")
            lines.append("")
            continue
        lines += [".. autosummary::", "   :nosignatures:", ""]
        # relative to the current module, which automodule above set
        lines += [f"   {name}" for name, _ in entries]
        lines.append("")
        for name, value in entries:
            lines += [*_directive(f"{module_name}.{name}", group, value), ""]
    return lines


class ApiDirective(SphinxDirective):
    """``.. gradflow-api:: MODULE``: every name of ``MODULE.__all__``."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        module_name = self.arguments[0]
        module = importlib.import_module(module_name)
        self.env.note_dependency(module.__file__)
        return _parse(self, api_rst(module_name))


def _subcommands(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def cli_rst() -> list[str]:
    """``gradflow --help`` and each sub-command's, as literal blocks."""
    from gradflow.cli import build_parser

    # argparse wraps at the terminal's width: a fixed one keeps pages stable
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "80"
    try:
        parser = build_parser()
        sections = [("gradflow", parser.format_help())]
        sections += [
            (f"gradflow {name}", sub.format_help())
            for name, sub in _subcommands(parser)
        ]
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old
    lines: list[str] = []
    for title, text in sections:
        lines += [
            f"``{title}``",
            "-" * (len(title) + 4),
            "",
            ".. code-block:: text",
            "",
        ]
        lines += [f"   {line}".rstrip() for line in text.splitlines()]
        lines.append("")
    return lines


class CliDirective(SphinxDirective):
    """``.. gradflow-cli::``: the help of the command and its sub-commands."""

    def run(self) -> list[nodes.Node]:
        import gradflow.cli

        self.env.note_dependency(gradflow.cli.__file__)
        return _parse(self, cli_rst())


def _parse(directive: SphinxDirective, lines: list[str]) -> list[nodes.Node]:
    source = directive.get_source_info()[0]
    content = StringList(lines, source=source)
    node = nodes.section()
    node.document = directive.state.document
    nested_parse_with_titles(directive.state, content, node)
    return node.children


def _skip_namedtuple_fields(app, what, name, obj, skip, options):
    # NamedTuple fields show up as members whose docstring is "Alias for field
    # number N"; the class docstring already describes them.
    doc = getattr(obj, "__doc__", None) or ""
    if doc.startswith("Alias for field number"):
        return True
    return None


def _drop_type_docstring(app, what, name, obj, options, lines):
    # A constant without a ``#:`` comment would show its type's docstring
    # (dict's, tuple's): it says nothing about the constant.
    if what not in ("data", "attribute") or inspect.isclass(obj):
        return
    own = inspect.cleandoc(type(obj).__doc__ or "").splitlines()
    if [line.rstrip() for line in lines if line.strip()] == [
        line.rstrip() for line in own if line.strip()
    ]:
        lines.clear()


# a <script src=...> or a style sheet <link href=...> on another host
_REMOTE = re.compile(
    r"<script[^>]*\ssrc=\"(?:https?:)?//[^\"]*\""
    r"|<link[^>]*\shref=\"(?:https?:)?//[^\"]*\"[^>]*>"
)


def remote_assets(outdir: Path) -> list[str]:
    """``file: tag`` for every script or style sheet loaded from the network."""
    found = []
    for page in sorted(outdir.rglob("*.html")):
        for match in _REMOTE.finditer(page.read_text(encoding="utf-8")):
            found.append(f"{page.relative_to(outdir)}: {match.group(0)}")
    return found


def undrawn_figures(outdir: Path) -> list[str]:
    """Pages where a cell's figure came out as its text repr, not an image."""
    return [
        str(page.relative_to(outdir))
        for page in sorted(outdir.rglob("*.html"))
        if "&lt;Figure size" in page.read_text(encoding="utf-8")
    ]


def _check_pages(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    outdir = Path(app.outdir)
    found = remote_assets(outdir)
    if found:
        raise ExtensionError(
            "pages load scripts or styles from the network (the site must work "
            "offline):\n  " + "\n  ".join(found[:20])
        )
    undrawn = undrawn_figures(outdir)
    if undrawn:
        raise ExtensionError(
            "a tutorial figure was shown as text, not drawn (is the kernel's "
            "inline backend configured? see conf.py): " + ", ".join(undrawn)
        )


def setup(app: Sphinx) -> dict:
    app.add_directive("gradflow-api", ApiDirective)
    app.add_directive("gradflow-cli", CliDirective)
    app.connect("autodoc-skip-member", _skip_namedtuple_fields)
    app.connect("autodoc-process-docstring", _drop_type_docstring)
    app.connect("build-finished", _check_pages)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
