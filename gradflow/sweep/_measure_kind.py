"""The ``measure`` sweep kind: a grid of conditions, every measurement per point.

As every experiment kind (``gradflow._specs.KINDS``), this module gives the
runner ``validate``, ``quick``, ``seeds``, ``points``, ``axes``, ``summary`` and
``runner``. It imports no jax until :func:`runner` is called.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gradflow import _specs

from ._config import quick_measure as quick
from ._config import validate_measure as validate
from ._grid import Point, expand_grid

__all__ = ["axes", "points", "quick", "runner", "seeds", "summary", "validate"]


def seeds(config: Mapping[str, Any]) -> list[int]:
    return list(config["grid"]["seeds"])


def points(config: Mapping[str, Any]) -> list[Point]:
    return expand_grid(config)


def axes(config: Mapping[str, Any]) -> dict[str, list[str]]:
    return _specs.array_axes(config["measure"])


def summary(records: Sequence[Mapping[str, Any]]) -> None:
    """A measurement grid writes no ``summary.json``."""
    return None


def runner(config: Mapping[str, Any], ctx: Any):
    """The point runner: one compiled function per shape signature (points that
    differ only in gain share it), seeds batched and sharded over ``ctx``'s mesh.

    Returns ``run(point) -> (arrays, metrics)`` (numpy, leading axis seed) with
    an ``order(points)`` attribute that groups points of one signature, so each
    compiles once and only one signature's host-made params are held at a time.
    """
    from gradflow import _names

    from ._point import (
        build_cell,
        host_params,
        input_size,
        point_function,
        signature,
    )

    state: dict[str, Any] = {"sig": None, "fn": None, "params": None}

    def run(point: Point) -> tuple[dict, dict]:
        import jax
        import numpy as np

        sig = signature(config, point.coords)
        if sig != state["sig"]:
            state["sig"] = sig
            key = ctx.cache_key(
                {k: config[k] for k in ("cell", "input", "measure")}, sig
            )
            if key not in ctx.cache:
                ctx.cache[key] = point_function(
                    config,
                    point.coords,
                    sharding=ctx.sharding,
                    batching=ctx.batching,
                    compiler_options=ctx.compiler_options,
                )
            state["fn"] = ctx.cache[key]
            state["params"] = None
            if point.coords["init"] in _names.HOST_INITS:
                cell = build_cell(config, point.coords)
                size = input_size(config, point.coords)
                rows = host_params(cell, size, ctx.padded_seeds, None)
                state["params"] = jax.tree_util.tree_map(
                    lambda a: ctx.to_global(np.asarray(a)), rows
                )
        # The gain is an argument, not a constant: one compile per signature.
        out = state["fn"](
            ctx.seed_array, state["params"], np.float32(point.coords["gain"])
        )
        arrays, metrics = ctx.to_host(out)
        n = len(point.seeds)  # drop the padding to a multiple of the devices
        return {k: v[:n] for k, v in arrays.items()}, {
            k: v[:n] for k, v in metrics.items()
        }

    def order(todo: list[Point]) -> list[Point]:
        first: dict[Any, int] = {}
        for p in todo:
            first.setdefault(signature(config, p.coords), len(first))
        return sorted(todo, key=lambda p: first[signature(config, p.coords)])

    run.order = order  # type: ignore[attr-defined]
    return run
