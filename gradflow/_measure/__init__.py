"""Measurements: gradient norms, Jacobian products, Lyapunov spectra, fixed points."""

from ._fixed import (
    FixedPointCandidates,
    FixedPoints,
    eigenvalues_at,
    fixed_point_candidates,
    fixed_points,
    sample_states,
    visited_states,
)
from ._grad import GradNormRangeWarning, GradNorms, hidden_grad_norms
from ._horizon import memory_horizon
from ._jacobian import (
    JacobianNorms,
    JacobianSpectrum,
    jacobian_norms,
    jacobian_singular_values,
)
from ._lapack import single_threaded_lapack
from ._lyapunov import LyapunovSpectrum, SpectrumTooShortWarning, lyapunov_spectrum
from ._params import ParamGradByStep, param_grad_by_step
from ._sensitivity import ParamSensitivity, param_sensitivity
from ._summary import DecayFit, VanishingBound, decay_rate, vanishing_bound

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
    "decay_rate",
    "eigenvalues_at",
    "fixed_point_candidates",
    "fixed_points",
    "hidden_grad_norms",
    "jacobian_norms",
    "jacobian_singular_values",
    "lyapunov_spectrum",
    "memory_horizon",
    "param_grad_by_step",
    "param_sensitivity",
    "sample_states",
    "single_threaded_lapack",
    "vanishing_bound",
    "visited_states",
]
