"""Experiments from config files: validation, grids, the resumable sharded runner.

Example:
    >>> cfg = gf.sweep.load_config("experiments/rnn_lstm_gru.toml")
    >>> gf.sweep.run(cfg, "results/rnn_lstm_gru")

The config half (``load_config``, ``validate``, ``quick``, ``expand_grid``)
imports no jax; ``run`` does, when called.
"""

from ._config import (
    AXES,
    MEASURE_DEFAULTS,
    ConfigError,
    load_config,
    quick,
    validate,
)
from ._grid import Point, expand_grid
from ._progress import Progress
from ._runner import run

__all__ = [
    "AXES",
    "MEASURE_DEFAULTS",
    "ConfigError",
    "Point",
    "Progress",
    "expand_grid",
    "load_config",
    "quick",
    "run",
    "validate",
]
