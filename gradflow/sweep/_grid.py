"""Grid expansion: a resolved config → its points (one condition, all seeds)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, NamedTuple

from gradflow import results

from ._config import AXES


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
