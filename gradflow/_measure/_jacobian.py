"""Norms and singular values of ``∂s_T/∂s_t``, products of Jacobians in log space."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._checks import check_choice, check_int
from ..cells import Cell
from ._common import (
    LN10,
    check_k,
    flat_step,
    map_batch,
    norm,
    prepare,
    safe_log,
    state_size,
    states_entering,
)

METHODS = ("power", "eigh", "svd")


class JacobianNorms(NamedTuple):
    """``log10 ‖∂s_T/∂s_t‖₂`` for ``t = 0..T-1``.

    Attributes:
        log10_norms: ``(T, *batch)``; entry ``t`` spans ``T − t`` steps.
        lags: ``(T,)``, ``T − t``: the number of steps each entry spans.
    """

    log10_norms: jax.Array
    lags: jax.Array


class JacobianSpectrum(NamedTuple):
    """Top-``k`` singular values of ``∂s_T/∂s_t``, in log10.

    Attributes:
        log10_singular_values: ``(T, *batch, k)``, descending along ``k``.
        log10_floor: ``(T, *batch)``: the rounding floor ``σ_1 · S · eps`` of
            the dtype. Values near or below it are not resolved (a float32
            product keeps about 7 decades below its largest singular value).
        lags: ``(T,)``, ``T − t``.
    """

    log10_singular_values: jax.Array
    log10_floor: jax.Array
    lags: jax.Array


def jacobian_norms(
    cell: Cell,
    params: Any,
    xs: jax.Array,
    carry: Any = None,
    *,
    method: str = "power",
    power_iters: int = 4,
) -> JacobianNorms:
    """``log10 ‖∂s_T/∂s_t‖₂``, ``s_t`` the whole carry entering step ``t``.

    ``s_t`` is the carry flattened with ``ravel_pytree`` (``(h, c)`` for an
    LSTM, every layer's carry for a stack), ``s_0`` the initial carry and
    ``s_T`` the final one. One reverse scan accumulates
    ``M_t = M_{t+1} J_t`` (``J_t = ∂s_{t+1}/∂s_t``, one batched vector-Jacobian
    product per row, never all ``T`` Jacobians at once) as
    ``exp(log_scale) · U_t`` with ``U_t`` renormalised every step, so products
    that leave float32's range come back finite.

    The spectral norm of each ``U_t``:

    - ``"power"`` (default): power iterations on ``U Uᵀ`` warm-started from the
      previous step's top left singular vector. The left singular vectors of
      ``M_t`` converge as ``t`` moves back (new factors enter on the right),
      so a few ``O(S²)`` iterations per step replace an ``O(S³)``
      decomposition. The estimate is a lower bound; it is checked against SVD
      to 1e-3 in log10 in the tests (RNN, LSTM, GRU, stacks).
    - ``"eigh"``: the largest eigenvalue of the Gram matrix (exact, ``O(S³)``).
    - ``"svd"``: the largest singular value (exact, slowest).

    Args:
        cell: a :class:`gradflow.cells.Cell`.
        params: its params.
        xs: ``(T, *batch, input_size)``.
        carry: the carry entering step 0; ``None`` means zeros.
        method: ``"power"``, ``"eigh"`` or ``"svd"``.
        power_iters: power iterations per step for ``method="power"``.

    Returns:
        A :class:`JacobianNorms` with ``log10_norms (T, *batch)``.

    Example:
        >>> jac = gf.jacobian_norms(cell, params, xs)
        >>> jac.log10_norms[0]      # log10 of the norm across all T steps
    """
    carry, batch = prepare(cell, params, xs, carry)
    check_choice("method", method, METHODS)
    power_iters = check_int("power_iters", power_iters)
    size = state_size(cell, xs.dtype)
    xw = cell.project(params, xs)

    def single(xw1, carry1):
        return _reverse_products(
            cell, params, xw1, carry1, size, _norm_fn(method, power_iters)
        )

    out = map_batch(single, batch, xw, carry, 1)
    return JacobianNorms(out, _lags(xs.shape[0]))


def jacobian_singular_values(
    cell: Cell,
    params: Any,
    xs: jax.Array,
    k: int | None = None,
    carry: Any = None,
) -> JacobianSpectrum:
    """The top-``k`` singular values of ``∂s_T/∂s_t`` for every ``t``, in log10.

    The same reverse scan as :func:`jacobian_norms`, with one SVD of the
    renormalised product per step.

    Args:
        cell: a :class:`gradflow.cells.Cell`.
        params: its params.
        xs: ``(T, *batch, input_size)``.
        k: how many singular values (at most the state size ``S``); ``None``
            means all ``S``.
        carry: the carry entering step 0; ``None`` means zeros.

    Returns:
        A :class:`JacobianSpectrum` with ``log10_singular_values (T, *batch, k)``.
    """
    carry, batch = prepare(cell, params, xs, carry)
    size = state_size(cell, xs.dtype)
    k = size if k is None else check_k(k, size)
    eps = float(np.finfo(np.dtype(xs.dtype)).eps)

    def values(u, state):
        sv = jnp.linalg.svd(u, compute_uv=False)
        logs = safe_log(sv[:k])
        floor = safe_log(sv[0] * (size * eps))
        return jnp.concatenate([logs, floor[None]]), state

    xw = cell.project(params, xs)

    def single(xw1, carry1):
        return _reverse_products(cell, params, xw1, carry1, size, (values, None))

    out = map_batch(single, batch, xw, carry, 1)
    return JacobianSpectrum(out[..., :k], out[..., k], _lags(xs.shape[0]))


def _lags(steps: int) -> jax.Array:
    return jnp.arange(steps, 0, -1)


def _norm_fn(method: str, iters: int):
    if method == "svd":
        return (lambda u, state: (safe_log(jnp.linalg.norm(u, 2)), state)), None
    if method == "eigh":

        def top_eig(u, state):
            gram = u @ u.T
            return 0.5 * safe_log(jnp.linalg.eigvalsh(gram)[-1]), state

        return top_eig, None

    def power(u, v):
        # v: unit estimate of the top left singular vector, kept across steps.
        for _ in range(iters):
            w = u @ (u.T @ v)
            v = w / jnp.maximum(norm(w), jnp.finfo(w.dtype).tiny)
        return safe_log(norm(u.T @ v)), v

    return power, "vector"


def _reverse_products(cell, params, xw, carry, size, norm_fn):
    """Scan ``M_t = M_{t+1} J_t`` backwards; emit ``norm_fn`` of each ``M_t``."""
    measure, aux = norm_fn
    s0, f = flat_step(cell, params, carry)
    states = states_entering(f, s0, xw)
    dtype = s0.dtype
    eye = jnp.eye(size, dtype=dtype)
    if aux == "vector":
        # A fixed generic start: not orthogonal to the top vector in practice.
        aux = jax.random.normal(jax.random.key(0), (size,), dtype)
        aux = aux / norm(aux)

    def body(state, inp):
        u, log_scale, extra = state
        s_t, xw_t = inp
        _, vjp = jax.vjp(lambda s: f(s, xw_t), s_t)
        # Row i of M_{t+1} J_t is J_tᵀ m_i: one vector-Jacobian product per row.
        prod = jax.vmap(lambda row: vjp(row)[0])(u)
        scale = norm(prod)
        u = prod / jnp.where(scale > 0, scale, 1.0)
        log_scale = log_scale + jnp.log(scale)
        log_n, extra = measure(u, extra)
        return (u, log_scale, extra), (log_scale + log_n) / LN10

    start = (eye / jnp.sqrt(size), jnp.asarray(0.5 * np.log(size), dtype), aux)
    _, out = lax.scan(body, start, (states, xw), reverse=True)
    return out
