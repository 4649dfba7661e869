"""Summaries next to the measurements: fitted decay rates and Pascanu's bound."""

from __future__ import annotations

import math
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_choice, check_int
from .._decay import fit_line
from ..cells import Cell
from ._grad import GradNorms
from ._jacobian import JacobianNorms

# max |act'|: the γ of Pascanu, Mikolov & Bengio (2013).
GAMMAS = {"tanh": 1.0, "relu": 1.0, "linear": 1.0, "sigmoid": 0.25}


class DecayFit(NamedTuple):
    """A straight line through ``ln ‖g‖`` against the distance back in time.

    Attributes:
        rate: ``(*batch,)`` nats per step; positive means the norm shrinks as
            it flows back (vanishing), negative means it grows (exploding).
        half_life: ``(*batch,)`` steps for the norm to halve, ``ln 2 / rate``;
            ``inf`` when the norm does not decay (``rate <= 0``): it never
            halves.
        r2: ``(*batch,)`` coefficient of determination of the fit (1 = a
            perfect exponential).
        intercept: ``(*batch,)`` fitted ``ln ‖g‖`` at distance 0 (the last
            entry).

    Every field is NaN where the fit is undefined (fewer than 2 usable
    steps, e.g. an all-zero or all-NaN profile) or the profile holds a NaN
    or ``+inf`` in the fitted window (NaN in, NaN out).
    """

    rate: jax.Array
    half_life: jax.Array
    r2: jax.Array
    intercept: jax.Array


class VanishingBound(NamedTuple):
    """Pascanu et al. (2013): ``σ_max(W_hh) < 1/γ`` is sufficient for vanishing.

    ``‖∂h_{t+1}/∂h_t‖ ≤ γ σ_max(W_hh)`` for an RNN, so the gradient shrinks by
    at least ``rate_bound = −ln(γ σ_max)`` nats per step: a measured
    :class:`DecayFit` rate of an RNN is at least this. For LSTM/GRU the
    numbers are the same formula applied to the whole ``W_hh`` (all gates)
    with ``γ = 1``; that is the RNN condition, not a theorem about gated
    cells (``exact`` is False). Stacks give one entry per layer (``(L,)``).

    Attributes:
        sigma_max: largest singular value of ``W_hh``.
        gamma: the bound on ``|act'|`` used.
        bound: ``1 / γ``.
        satisfied: ``sigma_max < bound``.
        rate_bound: ``−ln(γ σ_max)`` nats per step.
        exact: True where the cell is an RNN (the condition is the theorem's).
    """

    sigma_max: jax.Array
    gamma: jax.Array
    bound: jax.Array
    satisfied: jax.Array
    rate_bound: jax.Array
    exact: jax.Array


def decay_rate(
    norms: Any,
    *,
    log10: bool = False,
    start: int = 0,
    stop: int | None = None,
) -> DecayFit:
    """Fit ``ln ‖g_t‖ ≈ a − rate · (distance back in time)`` by least squares.

    Args:
        norms: a :class:`GradNorms` record from
            :func:`gradflow.hidden_grad_norms` (its log10 norms are fitted; step
            ``t`` is ``T − 1 − t`` steps back), a :class:`JacobianNorms` record,
            or a ``(T, *batch)`` array of norms (or of their log10, with
            ``log10=True``).
        log10: ``norms`` holds log10 values.
        start, stop: fit only steps ``t`` in ``[start, stop)`` (e.g. skip
            the first steps' transient). A norm of exactly 0 (log ``-inf``)
            is left out of the fit.

    Returns:
        A :class:`DecayFit` with fields ``(*batch,)``.

    Example:
        >>> fit = gf.decay_rate(gf.hidden_grad_norms(cell, params, xs, loss))
        >>> fit.rate, fit.half_life
    """
    if isinstance(norms, JacobianNorms | GradNorms):
        values, log10 = norms.log10_norms, True
    else:
        values = norms
    if getattr(values, "ndim", 0) < 1:
        raise TypeError(
            "norms must be an array (T, *batch) or a GradNorms or JacobianNorms "
            f"record, got {type(norms).__name__}"
        )
    steps = values.shape[0]
    start = check_int("start", start, minimum=0)
    stop = steps if stop is None else check_int("stop", stop, minimum=0)
    if not stop - start >= 2 or stop > steps:
        raise ValueError(
            f"start, stop must select at least 2 of the T={steps} steps, "
            f"got start={start}, stop={stop}"
        )
    return _fit(jnp.asarray(values), log10, start, stop)


@partial(jax.jit, static_argnums=(1, 2, 3))
def _fit(values, log10, start, stop):
    steps = values.shape[0]
    if not jnp.issubdtype(values.dtype, jnp.floating):
        values = values.astype(jnp.float32)
    logs = values * math.log(10.0) if log10 else jnp.log(values)
    logs = logs[start:stop]
    dist = (steps - 1 - jnp.arange(start, stop)).astype(logs.dtype)
    dist = jnp.broadcast_to(dist.reshape(-1, *(1,) * (logs.ndim - 1)), logs.shape)
    # The same formula as the figures' legends (gradflow.plots.fit_decay).
    # -inf (an exact 0: no gradient path) is left out there; a NaN or +inf (an
    # overflowed plain norm) would make any fitted number wrong: NaN in, NaN out.
    poison = jnp.any(jnp.isnan(logs) | (logs == jnp.inf), axis=0)
    fit = fit_line(jnp, logs, dist)
    return DecayFit(*(jnp.where(poison, jnp.nan, f) for f in fit))


def vanishing_bound(
    cell: Cell,
    params: Any,
    activation: str = "tanh",
    *,
    w_hh: Any = None,
) -> VanishingBound:
    """Pascanu et al. (2013)'s sufficient condition for vanishing gradients.

    Args:
        cell: a :class:`gradflow.cells.Cell`.
        params: its params (``W_hh`` is read; a stack's per layer).
        activation: the RNN's nonlinearity, which sets ``γ = max |act'|``:
            ``"tanh"``, ``"relu"``, ``"linear"`` (γ = 1) or ``"sigmoid"``
            (γ = 1/4). Gated cells always use γ = 1 (see
            :class:`VanishingBound`).
        w_hh: the recurrent matrix to use instead of ``params["W_hh"]``: for
            a custom, Equinox or Flax cell, whose params gradflow cannot read
            a ``W_hh`` from (e.g. ``params.weight_hh`` of an Equinox GRU).
            Such a cell without ``w_hh`` is an error that says so. ``exact``
            is False for it (the theorem is the tanh RNN's).

    Returns:
        A :class:`VanishingBound` (scalars; ``(L,)`` for a stack).

    Example:
        >>> gf.vanishing_bound(cell, params).satisfied
    """
    check_choice("activation", activation, tuple(GAMMAS))
    if not isinstance(cell, Cell):
        raise TypeError(f"cell must be a gradflow Cell, got {type(cell).__name__}")
    if w_hh is not None:
        shape = getattr(w_hh, "shape", None)
        if shape is None or len(shape) != 2 or shape[0] % shape[1]:
            raise ValueError(
                "w_hh must be a recurrent matrix of shape (G*N, N), got "
                f"{shape if shape is not None else type(w_hh).__name__}"
            )
        if cell.layers:
            raise ValueError("w_hh is for one cell, got a stack; pass its layers")
        return _layer_bound(cell, {"W_hh": jnp.asarray(w_hh)}, activation)
    if cell.kind == "custom":
        label = cell.name or cell.kind
        raise TypeError(
            f"vanishing_bound needs the recurrent matrix, and cell {label!r} "
            "(custom) has no W_hh gradflow can read: pass w_hh= (e.g. "
            "params.weight_hh of an Equinox cell)"
        )
    if cell.layers:
        parts = [
            _layer_bound(c, p, activation)
            for c, p in zip(cell.layers, params, strict=True)
        ]
        return VanishingBound(*(jnp.stack(f) for f in zip(*parts, strict=True)))
    return _layer_bound(cell, params, activation)


def _layer_bound(cell: Cell, params: Any, activation: str) -> VanishingBound:
    if not isinstance(params, dict) or "W_hh" not in params:
        raise TypeError(
            f"params of a {cell.kind} cell must be a dict with 'W_hh', "
            f"got {type(params).__name__}"
        )
    exact = cell.kind == "rnn"
    gamma = GAMMAS[activation] if exact else 1.0
    sigma = jnp.linalg.norm(params["W_hh"], 2)
    gamma_a = jnp.asarray(gamma, sigma.dtype)
    bound = 1.0 / gamma_a
    rate = -jnp.log(jnp.maximum(gamma_a * sigma, np.finfo(np.float32).tiny))
    return VanishingBound(
        sigma, gamma_a, bound, sigma < bound, rate, jnp.asarray(exact)
    )
