"""The records every experiment kind is made of: its points and its functions.

An experiment kind (``[experiment] kind``: ``measure``, ``clipping``) is an
:class:`ExperimentKind`, a record of the functions the runner calls; the
registry (``gradflow.sweep.KINDS``) maps each kind's name to it. What a kind
writes and draws (metric headers, figures with captions) is data, in
``gradflow._specs.KINDS`` under the same name. This module imports no jax.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple


class Point(NamedTuple):
    """One grid point: a condition and every seed it runs with.

    Attributes:
        id: stable, filename-safe id (``gradflow.results.point_id(coords)``).
        coords: the condition, axis name -> value, in the config's axis order.
        seeds: the seeds, one row of every array per seed.
    """

    id: str
    coords: dict[str, Any]
    seeds: tuple[int, ...]


class Grid(NamedTuple):
    """A resolved config's grid, expanded once per run.

    Attributes:
        points: every point, in a fixed order.
        seeds: the seeds every point runs with.
        axes: array name -> its named axes, seed first (``axes.json``).
    """

    points: list[Point]
    seeds: list[int]
    axes: dict[str, list[str]]


def _nothing(config: Mapping[str, Any]) -> None:
    return None


class ExperimentKind(NamedTuple):
    """One experiment kind: the functions the runner calls, in the order it calls them.

    Attributes:
        validate: ``validate(where, raw, experiment) -> config``: the parsed
            TOML (``raw``) checked whole and resolved, every default filled
            in; ``experiment`` is the already checked ``[experiment]`` table.
            Raises ``ConfigError`` naming ``where``, the key and what was
            expected. No jax.
        quick: ``quick(config) -> config``: shrunk to run in seconds (``--quick``);
            gets a deep copy it may change. No jax.
        grid: ``grid(config) -> Grid``: the points, seeds and array axes. No jax.
        runner: ``runner(config, ctx) -> run``, where ``run(point) -> (arrays,
            metrics)`` runs every seed of one point (numpy, leading axis seed)
            and ``ctx`` is a ``gradflow.sweep.RunContext``; ``run`` may have an
            ``order(points) -> points`` attribute (the order to run them in).
            May import jax.
        summary: ``summary(records) -> dict | None``: ``summary.json`` from
            every point's ``metrics.jsonl`` record (``None``: none is written).
        check: ``check(config)``: what can only be checked with the compute
            layer (e.g. building a user's cell), before the run touches its
            directory; raises ``ConfigError``. May import jax.
    """

    validate: Callable[[str, Mapping[str, Any], dict[str, Any]], dict[str, Any]]
    quick: Callable[[dict[str, Any]], dict[str, Any]]
    grid: Callable[[Mapping[str, Any]], Grid]
    runner: Callable[[Mapping[str, Any], Any], Callable[[Point], tuple[dict, dict]]]
    summary: Callable[[Sequence[Mapping[str, Any]]], dict[str, Any] | None]
    check: Callable[[Mapping[str, Any]], None] = _nothing
