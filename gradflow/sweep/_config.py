"""Experiment configs: read a TOML file, check every key, fill in defaults.

A config is checked whole before anything runs. Every error is a ``ValueError``
that names the file, the key and what was expected. The resolved config (all
defaults filled in, every range expanded to its list) is what a results
directory's ``config.toml`` holds, so it is also what decides whether a resumed
run is "the same experiment".

This module imports no jax.
"""

from __future__ import annotations

import copy
import math
import numbers
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

KINDS = ("measure", "clipping")
CELLS = ("rnn", "lstm", "gru")
INITS = ("torch", "gaussian", "orthogonal", "identity", "sparse", "zeros")
#: Input distributions: noise (``[input] size`` features, ``scale``) or the
#: inputs of a task from ``gradflow.tasks`` (its own width; ``copy`` runs
#: ``length + 20`` steps).
NOISE_INPUTS = ("gaussian", "uniform", "zeros")
TASK_INPUTS = ("adding", "copy", "temporal_order")
INPUTS = NOISE_INPUTS + TASK_INPUTS
ACTIVATIONS = ("tanh", "relu", "linear")
LOSSES = ("last_linear", "last_square", "sum_linear")

#: The grid axes of a ``measure`` experiment, in the order point ids use.
AXES = ("cell", "hidden_size", "init", "gain", "length", "input")

#: Measurements a ``[measure]`` section may switch on, with their options and
#: defaults (``True`` in the file means "on, with these defaults").
MEASURE_DEFAULTS: dict[str, dict[str, Any]] = {
    "grad_norms": {"loss": "last_linear"},
    "jacobian_norms": {},
    "jacobian_singular_values": {"k": 4},
    "lyapunov": {"k": 8, "warmup": 50},
    "param_grad_by_step": {},
}

GRID_DEFAULTS: dict[str, Any] = {
    "cell": ["rnn"],
    "hidden_size": [32],
    "init": ["torch"],
    "gain": [1.0],
    "length": [100],
    "input": ["gaussian"],
    "seeds": [0, 1, 2, 3],
}

CELL_DEFAULTS: dict[str, Any] = {
    "activation": "tanh",
    "input_init": "torch",
    "bias_init": "torch",
}

INPUT_DEFAULTS: dict[str, Any] = {"size": 8, "scale": 1.0}

#: What ``--quick`` keeps: two seeds, one value of every shape axis (the first
#: cell, init and input, the shortest length and narrowest width, capped) and
#: the first and last gain (gains share one compiled function); so any config
#: runs in seconds. A config's ``[quick]`` table can override any axis.
QUICK_LIMITS = {"seeds": 2, "cells": 1, "length": 24, "hidden_size": 8}

SECTIONS_MEASURE = ("experiment", "grid", "cell", "input", "measure", "quick")


class ConfigError(ValueError):
    """A config file that cannot run: names the file, the key and what was expected."""


def _fail(where: str, key: str, expected: str, got: Any) -> ConfigError:
    shown = f"{type(got).__name__} {got!r}" if not isinstance(got, str) else repr(got)
    return ConfigError(f"{where}: {key}: expected {expected}, got {shown}")


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _check_keys(where: str, section: str, table: Any, allowed) -> Mapping[str, Any]:
    if not isinstance(table, Mapping):
        raise _fail(where, f"[{section}]", "a table", table)
    unknown = [k for k in table if k not in allowed]
    if unknown:
        raise ConfigError(
            f"{where}: [{section}] {unknown[0]}: unknown key; expected one of "
            f"{', '.join(sorted(allowed))}"
        )
    return table


def _as_list(v: Any) -> list[Any]:
    return list(v) if isinstance(v, list) else [v]


def _choices(where, key, value, choices) -> list[str]:
    out = []
    for v in _as_list(value):
        if not isinstance(v, str) or v not in choices:
            raise _fail(where, key, f"one of {', '.join(choices)} (or a list)", v)
        out.append(v)
    return _unique(where, key, out)


def _unique(where: str, key: str, values: list[Any]) -> list[Any]:
    if not values:
        raise _fail(where, key, "at least one value", values)
    if len(set(values)) != len(values):
        raise _fail(where, key, "distinct values", values)
    return values


def _ints(where, key, value, *, minimum: int, maximum: int | None = None) -> list[int]:
    out = []
    for v in _as_list(value):
        if not _is_int(v):
            raise _fail(where, key, "an integer (or a list of integers)", v)
        if v < minimum or (maximum is not None and v > maximum):
            bound = f">= {minimum}" + (f" and <= {maximum}" if maximum else "")
            raise _fail(where, key, f"integers {bound}", v)
        out.append(int(v))
    return _unique(where, key, out)


def _range(where: str, key: str, table: Mapping[str, Any]) -> list[float]:
    _check_keys(where, key, table, ("start", "stop", "num", "log"))
    for k in ("start", "stop", "num"):
        if k not in table:
            raise ConfigError(
                f"{where}: {key}.{k}: missing; a range needs start, stop and num"
            )
    start, stop, num = table["start"], table["stop"], table["num"]
    log = table.get("log", False)
    if not _is_real(start) or not _is_real(stop):
        raise _fail(where, f"{key}.start/stop", "numbers", (start, stop))
    if not _is_int(num) or num < 1:
        raise _fail(where, f"{key}.num", "an integer >= 1", num)
    if not isinstance(log, bool):
        raise _fail(where, f"{key}.log", "true or false", log)
    if log and (start <= 0 or stop <= 0):
        raise _fail(where, f"{key}", "start > 0 and stop > 0 for log = true", table)
    space = np.geomspace if log else np.linspace
    # Rounded so a resolved config written to TOML and read back is identical.
    return [round(float(v), 6) for v in space(start, stop, num)]


def _floats(where, key, value, *, minimum: float, strict: bool) -> list[float]:
    values = _range(where, key, value) if isinstance(value, Mapping) else value
    out = []
    for v in _as_list(values):
        if not _is_real(v) or not math.isfinite(v):
            raise _fail(where, key, "a finite number, a list, or {start, stop, num}", v)
        if v < minimum or (strict and v == minimum):
            raise _fail(where, key, f"numbers {'>' if strict else '>='} {minimum}", v)
        out.append(float(v))
    return _unique(where, key, out)


def _seeds(where: str, value: Any) -> list[int]:
    if _is_int(value):
        if value < 1:
            raise _fail(where, "[grid] seeds", "a count >= 1 or a list of seeds", value)
        return list(range(int(value)))
    return _ints(where, "[grid] seeds", value, minimum=0, maximum=2**32 - 1)


def _experiment(where: str, raw: Any, default_name: str) -> dict[str, Any]:
    table = _check_keys(
        where, "experiment", raw, ("name", "kind", "description", "figures", "quick")
    )
    out = {
        "name": table.get("name", default_name),
        "kind": table.get("kind", "measure"),
        "description": table.get("description", ""),
        "figures": table.get("figures", []),
        "quick": table.get("quick", False),
    }
    if not isinstance(out["quick"], bool):
        raise _fail(where, "[experiment] quick", "true or false", out["quick"])
    if not isinstance(out["name"], str) or not out["name"].strip():
        raise _fail(where, "[experiment] name", "a non-empty string", out["name"])
    if out["kind"] not in KINDS:
        raise _fail(
            where, "[experiment] kind", f"one of {', '.join(KINDS)}", out["kind"]
        )
    if not isinstance(out["description"], str):
        raise _fail(where, "[experiment] description", "a string", out["description"])
    figures = out["figures"]
    if not isinstance(figures, list) or not all(isinstance(f, str) for f in figures):
        raise _fail(where, "[experiment] figures", "a list of figure names", figures)
    known = _known_figures() if figures else None
    for f in figures:
        if known is not None and f not in known:
            raise _fail(where, "[experiment] figures", f"names from {sorted(known)}", f)
    return out


def _known_figures() -> tuple[str, ...] | None:
    """The figure names ``gradflow.report`` can draw (``None`` if not installed)."""
    try:
        from gradflow import report
    except ImportError:
        return None
    names = getattr(report, "FIGURES", None)
    return tuple(names) if names is not None else None


def _grid(where: str, raw: Any) -> dict[str, Any]:
    table = _check_keys(where, "grid", raw, (*AXES, "seeds"))
    g = {**GRID_DEFAULTS, **table}
    return {
        "cell": _choices(where, "[grid] cell", g["cell"], CELLS),
        "hidden_size": _ints(
            where, "[grid] hidden_size", g["hidden_size"], minimum=1, maximum=4096
        ),
        "init": _choices(where, "[grid] init", g["init"], INITS),
        "gain": _floats(where, "[grid] gain", g["gain"], minimum=0.0, strict=False),
        "length": _ints(where, "[grid] length", g["length"], minimum=1, maximum=10**6),
        "input": _choices(where, "[grid] input", g["input"], INPUTS),
        "seeds": _seeds(where, g["seeds"]),
    }


def _cell(where: str, raw: Any) -> dict[str, Any]:
    allowed = (*CELL_DEFAULTS, "forget_bias")
    table = _check_keys(where, "cell", raw, allowed)
    out = {**CELL_DEFAULTS, **table}
    if out["activation"] not in ACTIVATIONS:
        raise _fail(
            where,
            "[cell] activation",
            f"one of {', '.join(ACTIVATIONS)}",
            out["activation"],
        )
    if out["input_init"] not in INITS:
        raise _fail(
            where, "[cell] input_init", f"one of {', '.join(INITS)}", out["input_init"]
        )
    if out["bias_init"] not in ("torch", "zeros"):
        raise _fail(where, "[cell] bias_init", "one of torch, zeros", out["bias_init"])
    if "forget_bias" in out:
        fb = out["forget_bias"]
        if not _is_real(fb) or not math.isfinite(fb):
            raise _fail(where, "[cell] forget_bias", "a finite number (LSTM only)", fb)
        out["forget_bias"] = float(fb)
    return out


def _input(where: str, raw: Any) -> dict[str, Any]:
    table = _check_keys(where, "input", raw, tuple(INPUT_DEFAULTS))
    out = {**INPUT_DEFAULTS, **table}
    if not _is_int(out["size"]) or out["size"] < 1:
        raise _fail(where, "[input] size", "an integer >= 1", out["size"])
    scale = out["scale"]
    if not _is_real(scale) or not math.isfinite(scale) or scale < 0:
        raise _fail(where, "[input] scale", "a finite number >= 0", scale)
    out["scale"] = float(scale)
    return out


def _measure(where: str, raw: Any, lengths: list[int], state: int) -> dict[str, Any]:
    table = _check_keys(where, "measure", raw, tuple(MEASURE_DEFAULTS))
    out: dict[str, Any] = {}
    for name, value in table.items():
        key = f"[measure] {name}"
        if value is False:
            continue
        if value is True:
            value = {}
        opts = _check_keys(
            where, f"measure.{name}", value, tuple(MEASURE_DEFAULTS[name])
        )
        out[name] = {**MEASURE_DEFAULTS[name], **opts}
        o = out[name]
        if "loss" in o and o["loss"] not in LOSSES:
            raise _fail(where, f"{key}.loss", f"one of {', '.join(LOSSES)}", o["loss"])
        if "k" in o and (not _is_int(o["k"]) or not 1 <= o["k"] <= state):
            raise _fail(
                where,
                f"{key}.k",
                f"an integer from 1 to the smallest state size ({state})",
                o["k"],
            )
        if "warmup" in o:
            w = o["warmup"]
            if not _is_int(w) or not 0 <= w < min(lengths):
                raise _fail(
                    where,
                    f"{key}.warmup",
                    "an integer from 0 to the shortest length - 1 "
                    f"({min(lengths) - 1})",
                    w,
                )
    if not out:
        raise ConfigError(
            f"{where}: [measure]: expected at least one measurement switched on, "
            f"from {', '.join(MEASURE_DEFAULTS)}"
        )
    return out


def _quick_section(where: str, raw: Any) -> dict[str, Any]:
    return dict(_check_keys(where, "quick", raw, (*AXES, "seeds")))


def state_size(cell: str, hidden_size: int) -> int:
    """The size of the flattened carry (an LSTM carries ``h`` and ``c``)."""
    return 2 * hidden_size if cell == "lstm" else hidden_size


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
    exp = _experiment(where, raw.get("experiment", {}), default_name)
    if exp["kind"] == "clipping":
        return _validate_clipping(where, raw, exp)
    _check_keys(where, "<top level>", raw, SECTIONS_MEASURE)
    grid = _grid(where, raw.get("grid", {}))
    smallest = min(state_size(c, n) for c in grid["cell"] for n in grid["hidden_size"])
    out = {
        "experiment": exp,
        "grid": grid,
        "cell": _cell(where, raw.get("cell", {})),
        "input": _input(where, raw.get("input", {})),
        "measure": _measure(
            where, raw.get("measure", {"grad_norms": True}), grid["length"], smallest
        ),
    }
    if "forget_bias" in out["cell"] and "lstm" not in grid["cell"]:
        raise ConfigError(
            f"{where}: [cell] forget_bias: applies to LSTM cells only, and "
            f"[grid] cell is {grid['cell']}"
        )
    if "quick" in raw:
        quick = _quick_section(where, raw["quick"])
        # The overrides must themselves be valid grid values; kept resolved.
        merged = _grid(where, {**grid, **quick})
        out["quick"] = {k: merged[k] for k in quick}
    return out


def _validate_clipping(where: str, raw: Mapping[str, Any], exp: dict) -> dict[str, Any]:
    _check_keys(where, "<top level>", raw, ("experiment", "clipping"))
    try:
        from gradflow import train
    except ImportError as err:  # pragma: no cover - train ships with gradflow
        raise ConfigError(
            f"{where}: [experiment] kind = 'clipping' needs gradflow.train, which "
            f"could not be imported ({err})"
        ) from err
    section = train.validate_clipping_section(raw.get("clipping", {}), where)
    return {"experiment": exp, "clipping": section}


def load_config(path: str | Path) -> dict[str, Any]:
    """Read and validate a TOML experiment file; returns the resolved config.

    Raises:
        FileNotFoundError: no such file.
        ConfigError (a ``ValueError``): invalid TOML or an invalid config, with
            the file, the key and what was expected.
    """
    path = Path(path)
    text = path.read_text()
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from err
    return validate(raw, str(path), default_name=path.stem)


def quick(config: Mapping[str, Any]) -> dict[str, Any]:
    """Shrink a resolved config so it runs in seconds (``gradflow run --quick``).

    Keeps two seeds, the first cell, init and input, the shortest length
    (at most 24) and narrowest width (at most 8), the first and last gain; then
    applies the config's own ``[quick]`` overrides. The result is marked
    ``experiment.quick = true`` so it never resumes into a full run's directory.
    """
    config = copy.deepcopy(dict(config))
    config["experiment"]["quick"] = True
    if config["experiment"]["kind"] == "clipping":
        from gradflow import train

        config["clipping"] = train.quick(config["clipping"])
        return config
    grid = config["grid"]
    lim = QUICK_LIMITS
    # Every distinct shape compiles once: keep few of them; gains share one.
    grid["cell"] = grid["cell"][: lim["cells"]]
    for axis in ("init", "input"):
        grid[axis] = grid[axis][:1]
    grid["gain"] = _ends(grid["gain"], 2)
    grid["seeds"] = grid["seeds"][: lim["seeds"]]
    grid["length"] = [min(min(grid["length"]), lim["length"])]
    grid["hidden_size"] = [min(min(grid["hidden_size"]), lim["hidden_size"])]
    for key, value in config.pop("quick", {}).items():
        grid[key] = value
    measure = config["measure"]
    if "lyapunov" in measure:
        measure["lyapunov"]["warmup"] = min(
            measure["lyapunov"]["warmup"], min(grid["length"]) // 2
        )
    smallest = min(state_size(c, n) for c in grid["cell"] for n in grid["hidden_size"])
    for opts in measure.values():
        if "k" in opts:
            opts["k"] = min(opts["k"], smallest)
    return config


def _ends(values: list[Any], n: int) -> list[Any]:
    if len(values) <= n:
        return list(values)
    return [values[0], values[-1]]
