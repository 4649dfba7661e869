"""The shipped experiments: find them, list them, resolve a name to a config file.

The configs live at the top of the repository (``experiments/*.toml``); a wheel
carries copies in ``gradflow/experiments/`` (setup.py's build step). This module
looks in the package first and then, for a source checkout or an editable
install, in the repository folder beside the package. It imports no jax.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import NamedTuple

_PACKAGE = Path(__file__).resolve().parent


class ShippedExperiment(NamedTuple):
    """One shipped experiment config.

    Attributes:
        name: the file name without ``.toml`` (what ``gradflow run NAME`` takes).
        path: the config file.
        description: its ``[experiment] description`` ("" when it has none).
    """

    name: str
    path: Path
    description: str


def shipped_dir() -> Path | None:
    """The folder holding the shipped ``*.toml`` configs, or ``None`` if none does.

    An installed wheel: ``gradflow/experiments/``. A source checkout or an
    editable install: the repository's ``experiments/`` (recognised by the
    ``pyproject.toml`` beside it).
    """
    packaged = _PACKAGE / "experiments"
    if any(packaged.glob("*.toml")):
        return packaged
    repo = _PACKAGE.parent
    if (repo / "pyproject.toml").is_file() and (repo / "experiments").is_dir():
        return repo / "experiments"
    return None


def _description(path: Path) -> str:
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return ""  # load_config reports the error properly when it is run
    text = raw.get("experiment", {}).get("description", "")
    return " ".join(str(text).split())


def shipped() -> list[ShippedExperiment]:
    """Every shipped experiment, sorted by name (empty if none can be found)."""
    folder = shipped_dir()
    if folder is None:
        return []
    return [
        ShippedExperiment(p.stem, p, _description(p))
        for p in sorted(folder.glob("*.toml"))
    ]


def resolve(config: str | Path) -> Path:
    """The config file that ``gradflow run CONFIG`` means.

    An existing file is itself; otherwise a bare name (no folder, no ``.toml``)
    is the shipped experiment of that name.

    Raises:
        FileNotFoundError: ``config`` looks like a path and no such file exists,
            or is a name that no shipped experiment has (the message lists them).
    """
    path = Path(config)
    if path.is_file():
        return path
    text = str(config)
    looks_like_name = path.name == text and path.suffix != ".toml"
    names = {e.name: e.path for e in shipped()}
    if looks_like_name and text in names:
        return names[text]
    known = ", ".join(sorted(names)) or "none found in this installation"
    if looks_like_name:
        raise FileNotFoundError(
            f"CONFIG must be a TOML file or a shipped experiment's name "
            f"({known}), got {text!r}"
        )
    raise FileNotFoundError(
        f"no such config file: {text} (shipped experiments, run by name: {known})"
    )
