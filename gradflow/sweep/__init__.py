"""Experiments from config files: validation, grids, the resumable sharded runner.

Example:
    >>> cfg = gf.sweep.load_config("experiments/rnn_lstm_gru.toml")
    >>> gf.sweep.run(cfg, "results/rnn_lstm_gru")

Every experiment kind (``[experiment] kind``: ``measure``, a grid of
measurements; ``clipping``, the clipping study) is an :class:`ExperimentKind`,
a record of its functions (validate, quick, grid, runner, summary, check);
:data:`KINDS` maps each name to it and ``run`` has one loop for all of them.
The config half (``load_config``, ``validate``, ``quick``, ``expand_grid``,
the clipping study's section helpers) imports no jax; ``run`` does, when
called, and so do :data:`MEASUREMENTS` (measurement name -> its function) and
:func:`register_measurement`, which load on first use.
"""

from typing import Any

from gradflow._specs import Figure, Kind, Measurement

from ._clipping import (
    CLIPPING_AXES,
    CLIPPING_DEFAULTS,
    clipping_grid,
    run_clipping_point,
    summarize_clipping,
    validate_clipping_section,
)
from ._config import ConfigError
from ._interrupt import deferred_interrupt
from ._kind import ExperimentKind, Grid, Point
from ._kinds import KINDS, load_config, quick, register_kind, validate
from ._lock import DirectoryLocked
from ._measure_kind import AXES, expand_grid, measure_defaults
from ._progress import Progress
from ._runner import GridTooLarge, RunContext, check_out, grid_points, run

__all__ = [
    "AXES",
    "CLIPPING_AXES",
    "CLIPPING_DEFAULTS",
    "KINDS",
    "MEASUREMENTS",
    "ConfigError",
    "DirectoryLocked",
    "ExperimentKind",
    "Figure",
    "Grid",
    "GridTooLarge",
    "Kind",
    "Measurement",
    "Point",
    "PointContext",
    "Progress",
    "RunContext",
    "check_out",
    "clipping_grid",
    "deferred_interrupt",
    "expand_grid",
    "grid_points",
    "load_config",
    "measure_defaults",
    "quick",
    "register_kind",
    "register_measurement",
    "run",
    "run_clipping_point",
    "summarize_clipping",
    "validate",
    "validate_clipping_section",
]

#: Names that import jax, loaded on first use (``gradflow.sweep._measures``).
_JAX = ("MEASUREMENTS", "PointContext", "register_measurement")


def __getattr__(name: str) -> Any:
    if name in _JAX:
        from . import _measures

        return getattr(_measures, name)
    raise AttributeError(f"module 'gradflow.sweep' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
