"""The ``measure`` experiment kind: a grid of conditions, every measurement per point.

:data:`MEASURE` is its :class:`~gradflow.sweep.ExperimentKind`: the checks of
its ``[grid]``, ``[cell]``, ``[input]``, ``[measure]`` and ``[quick]``
sections, its ``--quick`` shrink, its grid, and (importing jax only when
called) its point runner (``_point.py``) and its check of users' cells
(``_user_cells.py``). The rules of each measurement (options, losses, minimum
length, ``W_hh``) are read from its spec in ``gradflow._specs``.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gradflow import _names, _specs, results

from ._config import (
    ConfigError,
    _as_list,
    _check_keys,
    _choices,
    _fail,
    _ints,
    _is_int,
    _is_real,
    _seeds,
    _unique,
)
from ._kind import ExperimentKind, Grid, Point

#: Input distributions: noise (``[input] size`` features, ``scale``) or the
#: inputs of a task from ``gradflow.tasks`` (its own width; ``copy`` runs
#: ``length + 20`` steps).
NOISE_INPUTS = ("gaussian", "uniform", "zeros")

#: The grid axes, in the order point ids use. ``layers`` (cells stacked, each
#: of ``hidden_size``) is an axis only in configs that name it, so a config
#: without it has the same point ids with or without that axis existing.
AXES = ("cell", "hidden_size", "init", "gain", "length", "input", "layers")

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

SECTIONS = ("experiment", "grid", "cell", "input", "measure", "quick")


def inputs() -> tuple[str, ...]:
    """Every name ``[grid] input`` accepts: noise, or a task's inputs."""
    return NOISE_INPUTS + _names.task_inputs()


def measure_defaults() -> dict[str, dict[str, Any]]:
    """Measurements a ``[measure]`` section may switch on, with their options and
    defaults (``True`` in the file means "on, with these defaults")."""
    return {k: dict(v.defaults) for k, v in _specs.switchable().items()}


# -- validate ---------------------------------------------------------------------


def _cells(where: str, value: Any) -> list[str]:
    """Registered cell kinds, or ``"module:function"`` factories of the user's.

    A factory's module must be findable now; it is imported and its cell built
    (on shapes) when the run starts, before any point (:func:`check`).
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
            except (Exception, SystemExit) as err:  # a parent package's import
                problem = f"{type(err).__name__}: {err}"
            if problem:
                raise _fail(
                    where,
                    "[grid] cell",
                    f"a cell factory 'module:function' whose module can be "
                    f"imported ({problem})",
                    v,
                )
        else:
            _check_variant(where, v)
        out.append(v)
    return _unique(where, "[grid] cell", out)


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
    specs = _specs.switchable()
    table = _check_keys(where, "measure", raw, tuple(specs))
    out: dict[str, Any] = {}
    for name, value in table.items():
        if value is False:
            continue
        if value is True:
            value = {}
        spec = specs[name]
        opts = _check_keys(where, f"measure.{name}", value, tuple(spec.defaults))
        out[name] = {**spec.defaults, **opts}
        for opt, v in out[name].items():
            _option(where, f"[measure] {name}.{opt}", opt, v, spec)
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
            f"from {', '.join(specs)}"
        )
    return out


def _option(where: str, key: str, name: str, value: Any, spec: Any) -> None:
    """An option of a measurement: ``loss`` is one of the spec's losses; others
    have the type of their default (``k`` and ``warmup`` are then range-checked),
    and are positive where their default is."""
    default = spec.defaults[name]
    if name == "loss":
        if value not in spec.losses:
            raise _fail(where, key, f"one of {', '.join(spec.losses)}", value)
        return
    if name == "of":
        if value not in ("output", "state"):
            raise _fail(where, key, "one of output, state", value)
        return
    if name in ("k", "warmup"):
        return  # range-checked by the caller
    # A count or a tolerance whose default is positive must be positive too: 0
    # starts or 0 steps failed inside the first point, after files were written.
    if _is_int(default):
        if not _is_int(value):
            raise _fail(where, key, "an integer", value)
        if default >= 1 and value < 1:
            raise _fail(where, key, "an integer >= 1", value)
    elif _is_real(default):
        if not _is_real(value) or not math.isfinite(value):
            raise _fail(where, key, "a finite number", value)
        if default > 0 and value <= 0:
            raise _fail(where, key, "a number > 0", value)
    elif not isinstance(value, type(default)):
        raise _fail(where, key, f"a {type(default).__name__}", value)


def _check_variant(where: str, v: Any) -> None:
    """A registered kind, or one with options of its own: ``"lru(r_min=0.99)"``."""
    parsed = _names.cell_variant(v)
    if parsed is None or parsed[0] not in _names.CELLS:
        raise _fail(
            where,
            "[grid] cell",
            f"one of {', '.join(_names.CELLS)}, such a kind with options of its "
            f"own ('lru(r_min=0.99)'), or a cell factory 'module:function' "
            f"(or a list)",
            v,
        )
    kind, options = parsed
    takes = _names.CELLS[kind].options
    for key in options:
        if key not in takes:
            raise _fail(
                where,
                "[grid] cell",
                f"options of {kind} ({', '.join(takes) or 'none'})",
                f"{key} in {v}",
            )


def _smallest_state(grid: Mapping[str, Any]) -> int:
    """Of the registered cells; a user's factory's is checked once it is built."""
    sizes = [
        _names.cell_kind(c).state_multiplier * n
        for c in grid["cell"]
        if not _names.is_factory(c)
        for n in grid["hidden_size"]
    ]
    return min(grid.get("layers", [1])) * min(sizes, default=2**31)


def _check_lengths(
    where: str, grid: Mapping[str, Any], measure: Mapping[str, Any], key: str = ""
) -> None:
    """Lengths every point can run with: caught here, not at point 37 of 40."""
    key = key or "[grid] length"
    shortest = min(grid["length"])
    for name in measure:
        least = _specs.MEASUREMENTS[name].min_length
        if shortest < least:
            raise _fail(where, key, f"lengths >= {least} with {name}", shortest)
    for task in grid["input"]:
        least = _names.TASKS[task].min_length if task in _names.TASKS else 1
        if shortest < least:
            raise _fail(where, key, f"lengths >= {least} with input {task}", shortest)


def validate(where: str, raw: Mapping[str, Any], exp: dict[str, Any]) -> dict[str, Any]:
    """A whole ``kind = "measure"`` config, resolved."""
    _check_keys(where, "<top level>", raw, SECTIONS)
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
    _check_linear_cells(where, grid, out["cell"])
    if "quick" in raw:
        quick_table = dict(_check_keys(where, "quick", raw["quick"], (*AXES, "seeds")))
        # The overrides must themselves be valid grid values; kept resolved.
        merged = _grid(where, {**grid, **quick_table})
        _check_lengths(where, merged, out["measure"], "[quick] length")
        out["quick"] = {k: merged[k] for k in quick_table}
    return out


def _check_linear_cells(
    where: str, grid: Mapping[str, Any], cell: Mapping[str, Any]
) -> None:
    """Cells without ``W_hh`` (``gates == 0``: the LRU, minGRU, minLSTM, the
    selective SSM) initialise as their papers do: no init, gain or weight
    options apply; the LRU's and the SSM's inputs are ``hidden_size`` wide
    (noise of that width; a task's inputs are refused)."""
    for name in grid["cell"]:
        if _names.is_factory(name):
            continue
        kind = _names.cell_kind(name)
        if kind.gates:
            continue
        for key, values in (
            ("[grid] init", grid["init"]),
            ("[grid] gain", grid["gain"]),
            ("[cell] input_init", [cell["input_init"]]),
            ("[cell] bias_init", [cell["bias_init"]]),
        ):
            default = 1.0 if key == "[grid] gain" else "torch"
            bad = [v for v in values if v != default]
            if bad:
                raise _fail(
                    where,
                    key,
                    f"{default!r} only with cell {name!r} (it has no W_hh and "
                    "initialises as its paper does)",
                    bad[0],
                )
        tasks_in = [i for i in grid["input"] if i in _names.task_inputs()]
        if kind.width_bound and tasks_in:
            raise _fail(
                where,
                "[grid] input",
                f"noise with cell {name!r} (its inputs are hidden_size wide, "
                "so [input] size does not apply to it)",
                tasks_in[0],
            )


# -- quick, grid ------------------------------------------------------------------


def quick(config: dict[str, Any]) -> dict[str, Any]:
    """A resolved config shrunk to run in seconds (in place), as :data:`QUICK_LIMITS`
    says, then the config's own ``[quick]`` overrides."""
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


def expand_grid(config: Mapping[str, Any]) -> list[Point]:
    """The points of a resolved ``measure`` config, in a fixed order.

    Axes vary slowest-first in the order ``cell, hidden_size, init, gain,
    length, input`` (then ``layers`` where the config has it); every point
    carries all the config's seeds.

    Example:
        >>> cfg = gf.sweep.validate({"grid": {"cell": ["rnn", "gru"], "seeds": 2}})
        >>> [p.id for p in gf.sweep.expand_grid(cfg)][0]
        'cell=rnn,hidden_size=32,init=torch,gain=1.0,length=100,input=gaussian'
    """
    if config["experiment"]["kind"] != "measure":
        raise ValueError(
            f"expand_grid needs a 'measure' config, got kind "
            f"{config['experiment']['kind']!r}"
        )
    grid = config["grid"]
    seeds = tuple(int(s) for s in grid["seeds"])
    points = []
    axes = [a for a in AXES if a in grid]  # layers: only where a config names it
    for values in itertools.product(*(grid[a] for a in axes)):
        coords = dict(zip(axes, values, strict=True))
        points.append(Point(results.point_id(coords), coords, seeds))
    return points


def grid(config: Mapping[str, Any]) -> Grid:
    """The points (:func:`expand_grid`), seeds and ``axes.json`` of a config."""
    return Grid(
        expand_grid(config),
        list(config["grid"]["seeds"]),
        _specs.array_axes(config["measure"]),
    )


def summary(records: Sequence[Mapping[str, Any]]) -> None:
    """A measurement grid writes no ``summary.json``."""
    return None


# -- the jax half, imported when a run starts ---------------------------------------


def runner(config: Mapping[str, Any], ctx: Any):
    """The point runner (``_point.runner``): imports jax."""
    from ._point import runner as point_runner

    return point_runner(config, ctx)


def check(config: Mapping[str, Any]) -> None:
    """Users' cells built on shapes (``_user_cells.check``): imports jax."""
    from ._user_cells import check as check_user_cells

    check_user_cells(config)


MEASURE = ExperimentKind(
    validate=validate,
    quick=quick,
    grid=grid,
    runner=runner,
    summary=summary,
    check=check,
)
