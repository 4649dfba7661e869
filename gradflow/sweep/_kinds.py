"""The registry of experiment kinds, and a config from a TOML file to a kind's run.

:data:`KINDS` maps each ``[experiment] kind`` to its
:class:`~gradflow.sweep.ExperimentKind`; :func:`load_config` and
:func:`validate` check ``[experiment]`` and hand the rest to that kind, and
:func:`quick` shrinks a resolved config by its kind. A resolved config (all
defaults filled in, every range expanded to its list) is what a results
directory's ``config.toml`` holds, so it is also what decides whether a resumed
run is "the same experiment". This module imports no jax.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gradflow import _names, _specs

from ._clipping import CLIPPING
from ._config import ConfigError, _fail, experiment
from ._kind import ExperimentKind
from ._measure_kind import MEASURE

#: Experiment kinds by the name ``[experiment] kind`` uses (what each writes
#: and draws: ``gradflow._specs.KINDS``, the same names).
KINDS: dict[str, ExperimentKind] = {"measure": MEASURE, "clipping": CLIPPING}


def register_kind(name: str, kind: ExperimentKind, spec: _specs.Kind) -> None:
    """Add an experiment kind (for one defined outside gradflow).

    Args:
        name: what ``[experiment] kind`` names it.
        kind: its functions.
        spec: what it writes and draws (metric headers, figures with captions).

    Raises:
        ValueError: ``name`` is taken or not an identifier.
        TypeError: ``kind`` is not an ``ExperimentKind`` or ``spec`` not a
            ``gradflow.sweep.Kind``.
    """
    if not isinstance(kind, ExperimentKind):
        raise TypeError(
            f"experiment kind {name!r} must be an ExperimentKind, got "
            f"{type(kind).__name__}"
        )
    _names.register("experiment kind", _specs.KINDS, name, spec, _specs.Kind)
    KINDS[name] = kind


def kind_of(config: Mapping[str, Any]) -> ExperimentKind:
    """The kind a resolved config belongs to."""
    return KINDS[config["experiment"]["kind"]]


def validate(
    raw: Mapping[str, Any], where: str = "<config>", *, default_name: str = "experiment"
) -> dict[str, Any]:
    """Check a parsed config and return it resolved (every default filled in).

    Args:
        raw: the parsed TOML.
        where: a name for messages (the file path).
        default_name: the experiment name when ``[experiment] name`` is missing.

    Returns:
        The resolved config, a plain dict that ``tomli_w`` can write.

    Raises:
        ConfigError (a ``ValueError``): an unknown key, a wrong type or an
            impossible value, naming ``where``, the key and what was expected.
    """
    if not isinstance(raw, Mapping):
        raise _fail(where, "<top level>", "a table", raw)
    exp = experiment(where, raw.get("experiment", {}), default_name, tuple(KINDS))
    return KINDS[exp["kind"]].validate(where, raw, exp)


def load_config(path: str | Path, *, quick: bool = False) -> dict[str, Any]:
    """Read and validate a TOML experiment file; returns the resolved config.

    With ``quick``, the config shrunk by :func:`quick` (``gradflow run --quick``).

    Raises:
        FileNotFoundError: no such file.
        ConfigError (a ``ValueError``): invalid TOML or an invalid config, with
            the file, the key and what was expected.
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        # An editor's byte-order mark is no reason to refuse a file.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {data[err.start]:#04x} at line {line}, "
            f"column {column}); TOML files are UTF-8: save it as UTF-8"
        ) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from err
    if not raw:
        raise ConfigError(
            f"{path}: holds no settings (it is empty or only comments); write "
            f"the experiment's [experiment], [grid] and [measure] tables (see the "
            f"shipped experiments: gradflow run --list)"
        )
    config = validate(raw, str(path), default_name=path.stem)
    return _shrunk(config) if quick else config


def quick(config: Mapping[str, Any]) -> dict[str, Any]:
    """Shrink a resolved config so it runs in seconds (``gradflow run --quick``).

    For a ``measure`` config: two seeds, the first cell, init and input, the
    shortest length (at most 24) and narrowest width (at most 8), the first and
    last gain, then the config's own ``[quick]`` overrides; for a ``clipping``
    config, see ``gradflow.sweep._clipping.quick_section``. The result is
    marked ``experiment.quick = true`` so it never resumes into a full run's
    directory.
    """
    return _shrunk(config)


def _shrunk(config: Mapping[str, Any]) -> dict[str, Any]:
    config = copy.deepcopy(dict(config))
    config["experiment"]["quick"] = True
    return kind_of(config).quick(config)
