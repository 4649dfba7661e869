"""gradflow: measure how gradients vanish or explode through time in RNNs.

Subpackages and functions load on first use, so a process that only draws
figures (``gradflow.plots``, ``gradflow report``) never imports jax.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gradflow._version import __version__

if TYPE_CHECKING:  # what the lazy loader below gives, for type checkers and IDEs
    from gradflow import cells, cli, models, plots, report, results, sweep, tasks, train
    from gradflow._measure import (
        DecayFit,
        FixedPointCandidates,
        FixedPoints,
        GradNormRangeWarning,
        GradNorms,
        JacobianNorms,
        JacobianSpectrum,
        LyapunovSpectrum,
        ParamGradByStep,
        ParamSensitivity,
        SpectrumTooShortWarning,
        VanishingBound,
        decay_rate,
        fixed_point_candidates,
        fixed_points,
        hidden_grad_norms,
        jacobian_norms,
        jacobian_singular_values,
        lyapunov_spectrum,
        memory_horizon,
        param_grad_by_step,
        param_sensitivity,
        sample_states,
        vanishing_bound,
    )
    from gradflow._unroll import unroll
    from gradflow.cells._equinox import from_equinox
    from gradflow.cells._flax import from_flax
    from gradflow.cells._torch import from_state_dict, from_torch

_SUBPACKAGES = (
    "cells",
    "models",
    "tasks",
    "train",
    "sweep",
    "plots",
    "report",
    "results",
    "cli",
)

# name -> private module that defines it (the one public path is ``gradflow.<name>``)
_FUNCTIONS = {
    "unroll": "gradflow._unroll",
    "from_torch": "gradflow.cells._torch",
    "from_state_dict": "gradflow.cells._torch",
    "from_equinox": "gradflow.cells._equinox",
    "from_flax": "gradflow.cells._flax",
    # measurement core (gradflow._measure)
    "hidden_grad_norms": "gradflow._measure",
    "param_grad_by_step": "gradflow._measure",
    "jacobian_norms": "gradflow._measure",
    "jacobian_singular_values": "gradflow._measure",
    "lyapunov_spectrum": "gradflow._measure",
    "decay_rate": "gradflow._measure",
    "fixed_points": "gradflow._measure",
    "memory_horizon": "gradflow._measure",
    "fixed_point_candidates": "gradflow._measure",
    "sample_states": "gradflow._measure",
    "vanishing_bound": "gradflow._measure",
    "GradNorms": "gradflow._measure",
    "GradNormRangeWarning": "gradflow._measure",
    "JacobianNorms": "gradflow._measure",
    "JacobianSpectrum": "gradflow._measure",
    "LyapunovSpectrum": "gradflow._measure",
    "ParamGradByStep": "gradflow._measure",
    "ParamSensitivity": "gradflow._measure",
    "param_sensitivity": "gradflow._measure",
    "SpectrumTooShortWarning": "gradflow._measure",
    "DecayFit": "gradflow._measure",
    "FixedPoints": "gradflow._measure",
    "FixedPointCandidates": "gradflow._measure",
    "VanishingBound": "gradflow._measure",
}

# Written out (not built from the tables above) so that tools see every name;
# tests/test_names.py keeps the three lists equal.
__all__ = [
    "DecayFit",
    "FixedPointCandidates",
    "FixedPoints",
    "GradNormRangeWarning",
    "GradNorms",
    "JacobianNorms",
    "JacobianSpectrum",
    "LyapunovSpectrum",
    "ParamGradByStep",
    "ParamSensitivity",
    "SpectrumTooShortWarning",
    "VanishingBound",
    "__version__",
    "cells",
    "cli",
    "decay_rate",
    "fixed_point_candidates",
    "fixed_points",
    "from_equinox",
    "from_flax",
    "from_state_dict",
    "from_torch",
    "hidden_grad_norms",
    "jacobian_norms",
    "jacobian_singular_values",
    "lyapunov_spectrum",
    "memory_horizon",
    "models",
    "param_grad_by_step",
    "param_sensitivity",
    "plots",
    "report",
    "results",
    "sample_states",
    "sweep",
    "tasks",
    "train",
    "unroll",
    "vanishing_bound",
]


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"gradflow.{name}")
    if name in _FUNCTIONS:
        value = getattr(importlib.import_module(_FUNCTIONS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gradflow' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
