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
import importlib
import importlib.util
import math
import numbers
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gradflow import _names, _specs

#: Input distributions: noise (``[input] size`` features, ``scale``) or the
#: inputs of a task from ``gradflow.tasks`` (its own width; ``copy`` runs
#: ``length + 20`` steps).
NOISE_INPUTS = ("gaussian", "uniform", "zeros")
LOSSES = ("last_linear", "last_square", "sum_linear")

#: The grid axes of a ``measure`` experiment, in the order point ids use.
#: ``layers`` (cells stacked, each of ``hidden_size``) is an axis only in
#: configs that name it, so the point ids of the others stay as they were.
AXES = ("cell", "hidden_size", "init", "gain", "length", "input", "layers")


def task_inputs() -> tuple[str, ...]:
    """Tasks whose inputs a ``measure`` sweep may use as its ``input`` axis."""
    return tuple(k for k, v in _names.TASKS.items() if v.as_input)


def inputs() -> tuple[str, ...]:
    return NOISE_INPUTS + task_inputs()


def measure_defaults() -> dict[str, dict[str, Any]]:
    """Measurements a ``[measure]`` section may switch on, with their options and
    defaults (``True`` in the file means "on, with these defaults")."""
    return {k: dict(v.defaults) for k, v in _specs.switchable().items()}


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


def _cells(where: str, value: Any) -> list[str]:
    """Registered cell kinds, or ``"module:function"`` factories of the user's.

    A factory's module must be findable now; it is imported and its cell built
    (on shapes) when the run starts, before any point (``_user_cells.check``).
    """
    out = []
    for v in _as_list(value):
        if _names.is_factory(v):
            module = v.split(":")[0]
            try:
                problem = (
                    ""
                    if importlib.util.find_spec(module)
                    else f"No module named {module!r}"
                )
            except (ImportError, ValueError) as err:
                problem = str(err)
            if problem:
                raise _fail(
                    where,
                    "[grid] cell",
                    f"a cell factory 'module:function' whose module can be "
                    f"imported ({problem})",
                    v,
                )
        elif not isinstance(v, str) or v not in _names.CELLS:
            raise _fail(
                where,
                "[grid] cell",
                f"one of {', '.join(_names.CELLS)} or a cell factory "
                f"'module:function' (or a list)",
                v,
            )
        out.append(v)
    return _unique(where, "[grid] cell", out)


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


def _seeds(where: str, value: Any, key: str = "[grid] seeds") -> list[int]:
    if _is_int(value):
        if value < 1:
            raise _fail(where, key, "a count >= 1 or a list of seeds", value)
        return list(range(int(value)))
    return _ints(where, key, value, minimum=0, maximum=2**32 - 1)


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
    if out["kind"] not in _specs.KINDS:
        raise _fail(
            where,
            "[experiment] kind",
            f"one of {', '.join(_specs.KINDS)}",
            out["kind"],
        )
    if not isinstance(out["description"], str):
        raise _fail(where, "[experiment] description", "a string", out["description"])
    figures = out["figures"]
    if not isinstance(figures, list) or not all(isinstance(f, str) for f in figures):
        raise _fail(where, "[experiment] figures", "a list of figure names", figures)
    known = _specs.figures()
    for f in figures:
        if f not in known:
            raise _fail(where, "[experiment] figures", f"names from {sorted(known)}", f)
    return out


def _grid(where: str, raw: Any) -> dict[str, Any]:
    table = _check_keys(where, "grid", raw, (*AXES, "seeds"))
    g = {**GRID_DEFAULTS, **table}
    return {
        "cell": _cells(where, g["cell"]),
        "hidden_size": _ints(
            where, "[grid] hidden_size", g["hidden_size"], minimum=1, maximum=4096
        ),
        "init": _choices(where, "[grid] init", g["init"], _names.INITS),
        "gain": _floats(where, "[grid] gain", g["gain"], minimum=0.0, strict=False),
        "length": _ints(where, "[grid] length", g["length"], minimum=1, maximum=10**6),
        "input": _choices(where, "[grid] input", g["input"], inputs()),
        "seeds": _seeds(where, g["seeds"]),
        **(
            {
                "layers": _ints(
                    where, "[grid] layers", g["layers"], minimum=1, maximum=16
                )
            }
            if "layers" in g
            else {}
        ),
    }


def _cell(where: str, raw: Any, cells: list[str]) -> dict[str, Any]:
    options = {o for c in _names.CELLS.values() for o in c.options}
    allowed = (*CELL_DEFAULTS, *sorted(options - set(CELL_DEFAULTS)))
    table = _check_keys(where, "cell", raw, allowed)
    out = {**CELL_DEFAULTS, **table}
    for key, choices in (
        ("activation", _names.ACTIVATIONS),
        ("input_init", _names.INITS),
        ("bias_init", _names.BIAS_INITS),
    ):
        if out[key] not in choices:
            raise _fail(
                where, f"[cell] {key}", f"one of {', '.join(choices)}", out[key]
            )
    if "forget_bias" in out:
        fb = out["forget_bias"]
        if not _is_real(fb) or not math.isfinite(fb):
            raise _fail(where, "[cell] forget_bias", "a finite number (LSTM only)", fb)
        out["forget_bias"] = float(fb)
    if "heads" in out:
        h = out["heads"]
        if isinstance(h, bool) or not isinstance(h, int) or h < 1:
            raise _fail(where, "[cell] heads", "an int >= 1 (mLSTM only)", h)
    for key in table:
        takers = [c for c in cells if key in _names.cell_kind(c).options]
        if key not in CELL_DEFAULTS and not takers:
            owners = [k for k, v in _names.CELLS.items() if key in v.options]
            raise ConfigError(
                f"{where}: [cell] {key}: applies to "
                f"{', '.join(o.upper() for o in owners)} cells "
                f"only, and [grid] cell is {cells}"
            )
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
    defaults = measure_defaults()
    table = _check_keys(where, "measure", raw, tuple(defaults))
    out: dict[str, Any] = {}
    for name, value in table.items():
        if value is False:
            continue
        if value is True:
            value = {}
        opts = _check_keys(where, f"measure.{name}", value, tuple(defaults[name]))
        out[name] = {**defaults[name], **opts}
        for opt, v in out[name].items():
            _option(where, f"[measure] {name}.{opt}", opt, v, defaults[name][opt])
        o = out[name]
        key = f"[measure] {name}"
        if "k" in o and (not _is_int(o["k"]) or not 1 <= o["k"] <= state):
            raise _fail(
                where,
                f"{key}.k",
                f"an integer from 1 to the smallest state size ({state})",
                o["k"],
            )
        w = o.get("warmup", 0)
        if "warmup" in o and (not _is_int(w) or not 0 <= w < min(lengths)):
            raise _fail(
                where,
                f"{key}.warmup",
                f"an integer from 0 to the shortest length - 1 ({min(lengths) - 1})",
                o["warmup"],
            )
    if not out:
        raise ConfigError(
            f"{where}: [measure]: expected at least one measurement switched on, "
            f"from {', '.join(defaults)}"
        )
    return out


def _option(where: str, key: str, name: str, value: Any, default: Any) -> None:
    """An option of a measurement: ``loss`` is a loss name; others have the
    type of their default (``k`` and ``warmup`` are then range-checked)."""
    if name == "loss":
        if value not in LOSSES:
            raise _fail(where, key, f"one of {', '.join(LOSSES)}", value)
        return
    if name in ("k", "warmup"):
        return  # range-checked by the caller
    if _is_int(default):
        if not _is_int(value):
            raise _fail(where, key, "an integer", value)
    elif _is_real(default):
        if not _is_real(value) or not math.isfinite(value):
            raise _fail(where, key, "a finite number", value)
    elif not isinstance(value, type(default)):
        raise _fail(where, key, f"a {type(default).__name__}", value)


def _quick_section(where: str, raw: Any) -> dict[str, Any]:
    return dict(_check_keys(where, "quick", raw, (*AXES, "seeds")))


def _smallest_state(grid: Mapping[str, Any]) -> int:
    """Of the registered cells; a user's factory's is checked once it is built."""
    sizes = [
        _names.state_size(c, n)
        for c in grid["cell"]
        if not _names.is_factory(c)
        for n in grid["hidden_size"]
    ]
    return min(grid.get("layers", [1])) * min(sizes, default=2**31)


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
    return kind_module(exp["kind"]).validate(where, raw, exp)


def kind_module(kind: str) -> Any:
    """The module of an experiment kind (``gradflow._specs.KINDS``)."""
    return importlib.import_module(_specs.KINDS[kind].module)


def validate_measure(
    where: str, raw: Mapping[str, Any], exp: dict[str, Any]
) -> dict[str, Any]:
    """A whole ``kind = "measure"`` config, resolved."""
    _check_keys(where, "<top level>", raw, SECTIONS_MEASURE)
    grid = _grid(where, raw.get("grid", {}))
    out = {
        "experiment": exp,
        "grid": grid,
        "cell": _cell(where, raw.get("cell", {}), grid["cell"]),
        "input": _input(where, raw.get("input", {})),
        "measure": _measure(
            where,
            raw.get("measure", {"grad_norms": True}),
            grid["length"],
            _smallest_state(grid),
        ),
    }
    _check_lengths(where, grid, out["measure"])
    _check_w_hh(where, grid, out["measure"])
    if "quick" in raw:
        quick = _quick_section(where, raw["quick"])
        # The overrides must themselves be valid grid values; kept resolved.
        merged = _grid(where, {**grid, **quick})
        _check_lengths(where, merged, out["measure"], "[quick] length")
        out["quick"] = {k: merged[k] for k in quick}
    return out


def _check_w_hh(
    where: str, grid: Mapping[str, Any], measure: Mapping[str, Any]
) -> None:
    """A cell kind without ``W_hh`` takes no gain and no W_hh measurement."""
    kinds = [c for c in grid["cell"] if c in _names.NO_W_HH]
    if not kinds:
        return
    gains = [g for g in grid["gain"] if g != 1.0]
    if gains:
        raise ConfigError(
            f"{where}: [grid] gain scales params['W_hh'], and {kinds[0]} cells "
            f"have none; use gain = [1.0] (got {grid['gain']})"
        )
    if "param_grad_by_step" in measure:
        raise ConfigError(
            f"{where}: [measure] param_grad_by_step records the share of "
            f"params['W_hh'], and {kinds[0]} cells have none; measure them "
            "without it (gf.param_grad_by_step itself works on any cell)"
        )


def _check_lengths(
    where: str, grid: Mapping[str, Any], measure: Mapping[str, Any], key: str = ""
) -> None:
    """Lengths every point can run with: caught here, not at point 37 of 40."""
    key = key or "[grid] length"
    shortest = min(grid["length"])
    if "grad_norms" in measure and shortest < 2:
        raise _fail(
            where, key, "lengths >= 2 with grad_norms (its decay fit)", shortest
        )
    for task in grid["input"]:
        least = _names.TASKS[task].min_length if task in _names.TASKS else 1
        if shortest < least:
            raise _fail(where, key, f"lengths >= {least} with input {task}", shortest)


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
    return kind_module(config["experiment"]["kind"]).quick(config)


def quick_measure(config: dict[str, Any]) -> dict[str, Any]:
    """:func:`quick` of a ``measure`` config (in place)."""
    grid = config["grid"]
    lim = QUICK_LIMITS
    # Every distinct shape compiles once: keep few of them; gains share one.
    grid["cell"] = grid["cell"][: lim["cells"]]
    for axis in ("init", "input"):
        grid[axis] = grid[axis][:1]
    grid["gain"] = _ends(grid["gain"], 2)
    if "layers" in grid:
        grid["layers"] = _ends(grid["layers"], 2)
    grid["seeds"] = grid["seeds"][: lim["seeds"]]
    grid["length"] = [min(min(grid["length"]), lim["length"])]
    grid["hidden_size"] = [min(min(grid["hidden_size"]), lim["hidden_size"])]
    for key, value in config.pop("quick", {}).items():
        grid[key] = value
    smallest = _smallest_state(grid)
    for opts in config["measure"].values():
        if "warmup" in opts:
            opts["warmup"] = min(opts["warmup"], min(grid["length"]) // 2)
        if "k" in opts:
            opts["k"] = min(opts["k"], smallest)
    return config


def _ends(values: list[Any], n: int) -> list[Any]:
    if len(values) <= n:
        return list(values)
    return [values[0], values[-1]]
