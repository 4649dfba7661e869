"""The README and docs/*.md say what the code has: key lists, shipped experiments,
array and metric names, file names. Read from the specs, ``experiments/`` and the
tree, so a new measurement, axis, experiment or file cannot leave them behind.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gradflow import _specs
from gradflow.sweep import AXES, CLIPPING_AXES

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DOCS = sorted(p for p in (ROOT / "docs").rglob("*.md") if "_build" not in p.parts)


def _parenthesised(text: str, opening: str) -> str:
    """The text inside the parentheses right after ``opening`` (nesting kept)."""
    start = text.index(opening) + len(opening)
    assert text[start] == "(", f"expected '(' after {opening!r}"
    depth, i = 0, start
    while True:
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[start + 1 : i]
        i += 1


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z][a-z0-9_]*", text))


def test_readme_lists_every_measurement_and_only_those():
    listed = _words(_parenthesised(README, "`[measure]` "))
    assert listed == set(_specs.switchable())


def test_readme_lists_every_grid_key():
    listed = _words(_parenthesised(README, "`[grid]` "))
    keys = {*AXES, "seeds"}
    assert keys <= listed, sorted(keys - listed)
    # a snake_case word there is a key: a renamed one is caught too
    assert {w for w in listed if "_" in w} <= keys


def test_readme_lists_every_shipped_experiment():
    paragraph = README[README.index("Shipped (") :].split("\n\n")[0]
    listed = set(re.findall(r"`([a-z0-9_]+)`", paragraph))
    shipped = {p.stem for p in (ROOT / "experiments").glob("*.toml")}
    assert listed == shipped


def test_results_format_names_every_array_and_metric():
    text = (ROOT / "docs" / "results-format.md").read_text()
    named = set(re.findall(r"`([a-z0-9_]+)`", text))
    arrays = {a for m in _specs.MEASUREMENTS.values() for a in m.arrays}
    arrays |= set(CLIPPING_AXES)
    assert arrays <= named, sorted(arrays - named)
    metrics = set(_specs.metric_headers())
    assert metrics <= named, sorted(metrics - named)


#: Files the docs write as examples of what a user adds.
EXAMPLES = {"gradflow/cells/_mgu.py"}


def _paths(text: str) -> set[str]:
    """Backticked file names: ``a/b.py``, ``docs/x.md``, ``experiments/y.toml``."""
    found = set()
    for token in re.findall(r"`([^`\s]+)`", text):
        token = token.split("::")[0]
        if re.fullmatch(r"[\w./-]+\.(py|md|toml)", token) and "/" in token:
            found.add(token)
    return found


@pytest.mark.parametrize(
    "path", [ROOT / "README.md", *DOCS], ids=lambda p: str(p.relative_to(ROOT))
)
def test_every_file_a_document_names_exists(path):
    missing = []
    for name in sorted(_paths(path.read_text())):
        if "NAME" in name or name.startswith(("DIR/", "mypkg/")) or name in EXAMPLES:
            continue  # a placeholder, not a file of this tree
        roots = (ROOT, ROOT / "gradflow", path.parent)
        if not any((r / name).exists() for r in roots):
            missing.append(name)
    assert not missing, f"{path.name} names files that do not exist: {missing}"


def test_every_shipped_figures_folder_says_which_files_gradflow_wrote():
    """``make figures`` refuses a folder without a manifest (it cannot tell its
    own files from a user's), so each shipped experiment's folder has one, and
    it lists exactly the figures there."""
    import json

    from gradflow.cli._figure_copies import MANIFEST

    for toml in sorted((ROOT / "experiments").glob("*.toml")):
        folder = ROOT / "figures" / toml.stem
        if not folder.exists():
            continue
        manifest = json.loads((folder / MANIFEST).read_text())
        assert manifest["experiment"] == toml.stem
        figures = {
            p.name for p in folder.iterdir() if p.suffix in (".pdf", ".png", ".svg")
        }
        assert set(manifest["files"]) == figures, folder
