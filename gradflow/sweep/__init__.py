"""Experiments from config files: validation, grids, the resumable sharded runner.

Example:
    >>> cfg = gf.sweep.load_config("experiments/rnn_lstm_gru.toml")
    >>> gf.sweep.run(cfg, "results/rnn_lstm_gru")

Every experiment kind (``[experiment] kind``: ``measure``, a grid of
measurements; ``clipping``, the clipping study) is one module with
``validate``, ``quick``, ``points``, ``axes``, ``runner`` and ``summary``,
named in ``gradflow._specs.KINDS``; ``run`` has one loop for all of them.
The config half (``load_config``, ``validate``, ``quick``, ``expand_grid``,
the clipping study's section helpers) imports no jax; ``run`` does, when called.
"""

from gradflow._specs import Figure, Kind, Measurement, register_measurement

from ._clipping import (
    CLIPPING_AXES,
    CLIPPING_DEFAULTS,
    clipping_grid,
    run_clipping_point,
    summarize_clipping,
    validate_clipping_section,
)
from ._config import (
    AXES,
    ConfigError,
    load_config,
    measure_defaults,
    quick,
    validate,
)
from ._grid import Point, expand_grid
from ._lock import DirectoryLocked
from ._progress import Progress
from ._runner import RunContext, check_out, grid_points, run

__all__ = [
    "AXES",
    "CLIPPING_AXES",
    "CLIPPING_DEFAULTS",
    "ConfigError",
    "DirectoryLocked",
    "Figure",
    "Kind",
    "Measurement",
    "Point",
    "Progress",
    "RunContext",
    "check_out",
    "clipping_grid",
    "expand_grid",
    "grid_points",
    "load_config",
    "measure_defaults",
    "quick",
    "register_measurement",
    "run",
    "run_clipping_point",
    "summarize_clipping",
    "validate",
    "validate_clipping_section",
]
