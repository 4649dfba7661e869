"""The memory horizon: how far back a gradient still adds to a float32 sum."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._checks import check_float

#: float32 keeps about 7 decimal digits: a term 1e7 below the largest one no
#: longer changes their sum.
DECADES = 7.0


def memory_horizon(log10_norms: jax.Array, decades: float = DECADES) -> jax.Array:
    """Steps back from the largest ``‖∂L/∂h_t‖`` to where it is ``10^decades`` smaller.

    With ``t*`` the step of the largest norm, the horizon is ``t* − t`` for the
    latest earlier step ``t`` whose norm is at least ``decades`` decades below
    it: from there on back, float32 can no longer add that step's contribution
    to the gradient. ``inf`` when no earlier step falls that far within the
    sequence (the memory outlasts the ``T`` steps measured, or the gradient
    grows back in time); NaN when any norm is NaN.

    Args:
        log10_norms: ``(T, *batch)`` ``log10 ‖∂L/∂h_t‖`` (``gf.hidden_grad_norms``
            with ``log10=True``).
        decades: how many decades down; 7 by default (float32's precision).

    Returns:
        ``(*batch,)`` the horizon in steps (float: ``inf`` is a value).
    """
    decades = check_float("decades", decades, minimum=0.0, strict=True)
    logs = jnp.asarray(log10_norms)
    if logs.ndim < 1 or logs.shape[0] < 1:
        raise ValueError(
            f"log10_norms must have shape (T, *batch) with T >= 1, got {logs.shape}"
        )
    if not jnp.issubdtype(logs.dtype, jnp.floating):
        raise TypeError(f"log10_norms must be floating, got {logs.dtype}")
    return _horizon(logs, decades)


@jax.jit
def _horizon(logs, decades):
    steps = jnp.broadcast_to(
        jnp.arange(logs.shape[0]).reshape(-1, *(1,) * (logs.ndim - 1)), logs.shape
    )
    # -inf (an exact zero) is a norm too; only NaN is unknown.
    known = jnp.where(jnp.isnan(logs), -jnp.inf, logs)
    peak = jnp.argmax(known, axis=0)
    top = jnp.max(known, axis=0)
    below = (steps < peak[None]) & (logs <= top[None] - decades)
    cross = jnp.max(jnp.where(below, steps, -1), axis=0)
    horizon = jnp.where(cross >= 0, peak - cross, jnp.inf).astype(logs.dtype)
    return jnp.where(jnp.any(jnp.isnan(logs), axis=0), jnp.nan, horizon)
