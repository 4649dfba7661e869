"""Norms and singular values of ``∂s_T/∂s_t``, products of Jacobians in log space."""

from __future__ import annotations

import math
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._checks import check_choice, check_int
from .._unroll import chunk_length, forward_states, reverse_states
from ..cells import Cell
from ._common import (
    LN10,
    check_k,
    flat,
    flat_step,
    map_batch,
    norm,
    prepare,
    safe_log,
    state_size,
)

METHODS = ("auto", "power", "eigh", "svd", "diagonal")
SPECTRUM_METHODS = ("auto", "svd", "diagonal")


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
            ``-inf`` from the exact diagonal path, which has no such floor.
        lags: ``(T,)``, ``T − t``.
    """

    log10_singular_values: jax.Array
    log10_floor: jax.Array
    lags: jax.Array


def jacobian_norms(
    cell: Cell,
    params: Any,
    xs: jax.Array,
    *,
    carry: Any = None,
    method: str = "auto",
    power_iters: int = 2,
    block: int = 8,
    remat: bool | int = False,
) -> JacobianNorms:
    """``log10 ‖∂s_T/∂s_t‖₂``, ``s_t`` the whole carry entering step ``t``.

    ``s_t`` is the carry flattened with ``ravel_pytree`` (``(h, c)`` for an
    LSTM, every layer's carry for a stack), ``s_0`` the initial carry and
    ``s_T`` the final one. One reverse scan accumulates
    ``M_t = M_{t+1} J_t`` (``J_t = ∂s_{t+1}/∂s_t``, one batched vector-Jacobian
    product per row, never all ``T`` Jacobians at once) as
    ``exp(log_scale) · U_t`` with ``‖U_t‖_F = 1``, so products that leave
    float32's range come back finite. Memory is ``O(T·S + S²)``, or
    ``O((T/k + k)·S + S²)`` with ``remat`` (the states of each chunk of ``k``
    steps are recomputed when the reverse scan reaches it).

    The spectral norm of each ``U_t``:

    - ``"auto"`` (default): ``"diagonal"`` for a cell that declares its
      Jacobians diagonal (``cell.linear.log_gains``: the LRU, minGRU, minLSTM
      and selective SSM), else ``"power"``.
    - ``"diagonal"``: no product of matrices at all. Each step's Jacobian is
      diagonal (or complex diagonal), so ``‖∂s_T/∂s_t‖ = max_j exp(Σ_{u≥t}
      log|a_{u,j}|)``: one reverse cumulative sum of the per-entry log gains,
      exact in log space for any ``T`` (no power iteration, no SVD). Memory
      ``O(T·S)``, or ``O(k·S + T)`` with ``remat``.
    - ``"power"``: ``power_iters`` steps of subspace iteration on
      ``U Uᵀ`` with ``block`` vectors, warm-started from the previous step
      (the left singular vectors of ``M_t`` settle as ``t`` moves back, since
      new factors enter on the right), then Rayleigh-Ritz. The Ritz values
      ``θ_1 ≥ … ≥ θ_p`` bound the top eigenvalue from both sides,
      ``θ_1 ≤ σ_1² ≤ ‖U‖_F² − θ_2 − … − θ_p`` (Cauchy interlacing), and
      whenever that bracket is wider than 5e-4 in log10 for any batch element
      the step falls back to an exact SVD of ``U``. So every entry is
      certified to 5e-4 (plus rounding); the ``O(S³)`` decomposition runs only
      where the spectrum is flat (short lags, near-orthogonal dynamics).
      Under ``jax.vmap`` (e.g. over params of several seeds) it stays a real
      branch, taken when any element is loose (a custom batching rule; a
      plain ``lax.cond`` would become a select and run the SVD every step).
    - ``"eigh"``: the largest eigenvalue of ``U Uᵀ`` at every step.
    - ``"svd"``: the largest singular value at every step (slowest).

    Args:
        cell: a :class:`gradflow.cells.Cell`.
        params: its params.
        xs: ``(T, *batch, input_size)``.
        carry: the carry entering step 0; ``None`` means zeros.
        method: ``"auto"``, ``"power"``, ``"eigh"``, ``"svd"`` or
            ``"diagonal"`` (only for a cell with ``cell.linear.log_gains``).
        power_iters: subspace iterations per step for ``method="power"``.
        block: subspace size for ``method="power"`` (at most the state size).
        remat: ``True`` (chunks of ``ceil(sqrt(T))`` steps) or a chunk length:
            keep one state per chunk instead of all ``T``.

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
    block = min(check_int("block", block), size)
    chunk = chunk_length(remat, xs.shape[0])
    method = _resolve(cell, method, "power")
    if method == "diagonal":
        out = _diagonal_scan(cell, params, xs, None, chunk)
    elif method == "power":
        out = _power_scan(
            cell, params, xs, carry, batch, size, block, power_iters, chunk
        )
    else:
        out = _exact_scan(cell, params, xs, carry, batch, size, method, chunk)
    return JacobianNorms(out, _lags(xs.shape[0]))


def jacobian_singular_values(
    cell: Cell,
    params: Any,
    xs: jax.Array,
    *,
    k: int | None = None,
    carry: Any = None,
    remat: bool | int = False,
    method: str = "auto",
) -> JacobianSpectrum:
    """The top-``k`` singular values of ``∂s_T/∂s_t`` for every ``t``, in log10.

    The same reverse scan as :func:`jacobian_norms`, with one SVD of the
    renormalised product per step; for a cell with diagonal Jacobians
    (``method="auto"`` or ``"diagonal"``, see :func:`jacobian_norms`) the
    singular values are the largest ``k`` per-entry products, exact, from one
    reverse cumulative sum of the log gains.

    Args:
        cell: a :class:`gradflow.cells.Cell`.
        params: its params.
        xs: ``(T, *batch, input_size)``.
        k: how many singular values (at most the state size ``S``); ``None``
            means all ``S``.
        carry: the carry entering step 0; ``None`` means zeros.
        remat: as for :func:`jacobian_norms`.
        method: ``"auto"`` (default), ``"svd"`` or ``"diagonal"``.

    Returns:
        A :class:`JacobianSpectrum` with ``log10_singular_values (T, *batch, k)``.
    """
    carry, batch = prepare(cell, params, xs, carry)
    check_choice("method", method, SPECTRUM_METHODS)
    size = state_size(cell, xs.dtype)
    k = size if k is None else check_k(k, size)
    chunk = chunk_length(remat, xs.shape[0])
    if _resolve(cell, method, "svd") == "diagonal":
        out = _diagonal_scan(cell, params, xs, k, chunk)
        floor = jnp.full(out.shape[:-1], -jnp.inf, out.dtype)
        return JacobianSpectrum(out, floor, _lags(xs.shape[0]))
    out = _exact_scan(cell, params, xs, carry, batch, size, k, chunk)
    return JacobianSpectrum(out[..., :k], out[..., k], _lags(xs.shape[0]))


def _resolve(cell: Cell, method: str, generic: str) -> str:
    """``"auto"`` as the cell allows; ``"diagonal"`` only where it is exact."""
    diagonal = cell.linear is not None and cell.linear.log_gains is not None
    if method == "auto":
        return "diagonal" if diagonal else generic
    if method == "diagonal" and not diagonal:
        raise ValueError(
            f"method='diagonal' needs a cell with diagonal Jacobians "
            f"(cell.linear.log_gains: lru, min_gru, min_lstm, selective_ssm), "
            f"got a {cell.kind} cell"
        )
    return method


@partial(jax.jit, static_argnums=(0, 3, 4))
def _diagonal_scan(cell, params, xs, k, chunk):
    """Reverse cumulative sums of the log gains, reduced per step.

    ``k=None``: ``log10`` of the largest product per step, ``(T, *batch)``;
    else the top ``k`` in log10, ``(T, *batch, k)``. With ``chunk`` the
    gains of one chunk of steps exist at a time, and the running sum between
    chunks is compensated (Neumaier), so its rounding does not grow with the
    number of chunks.
    """

    def reduce(sums):
        if k is None:
            return jnp.max(sums, axis=-1) / LN10
        return lax.top_k(sums, k)[0] / LN10

    def block(state, xs_b):
        total, comp = state
        gains = cell.linear.log_gains(params, cell.project(params, xs_b))
        sums = lax.cumsum(gains.astype(xs.dtype), axis=0, reverse=True)
        out = reduce(sums + jnp.broadcast_to(total + comp, sums.shape))
        part = sums[0]
        new = total + part
        # Neumaier: the low bits lost in total + part
        big = jnp.abs(total) >= jnp.abs(part)
        comp = comp + jnp.where(big, (total - new) + part, (part - new) + total)
        return (new, comp), out

    one = jax.eval_shape(
        lambda: cell.linear.log_gains(params, cell.project(params, xs[:1]))
    )
    zero = jnp.zeros(one.shape[1:], xs.dtype)
    steps = xs.shape[0]
    if not chunk or chunk >= steps:
        return block((zero, zero), xs)[1]
    head, tail = divmod(steps, chunk)
    state = (zero, zero)
    outs = []
    if tail:
        state, last = block(state, xs[head * chunk :])
        outs.append(last)

    def run(state, start):
        return block(state, lax.dynamic_slice_in_dim(xs, start, chunk))

    _, ys = lax.scan(run, state, jnp.arange(head) * chunk, reverse=True)
    ys = ys.reshape(head * chunk, *ys.shape[2:])
    return jnp.concatenate([ys, *outs], axis=0)


@partial(jax.jit, static_argnums=(0, 4, 5, 6, 7))
def _exact_scan(cell, params, xs, carry, batch, size, what, chunk):
    """Per batch element; ``what``: ``"svd"``/``"eigh"`` norms or top-``k`` values."""
    measure = _exact_norm(what) if isinstance(what, str) else _top_values(what, size)

    def single(xs1, carry1):
        return _reverse_products(cell, params, xs1, carry1, size, measure, chunk)

    return map_batch(single, batch, xs, carry, 1)


@partial(jax.jit, static_argnums=(0, 4, 5, 6, 7, 8))
def _power_scan(cell, params, xs, carry, batch, size, block, iters, chunk):
    flat = math.prod(batch)
    xs = xs.reshape(xs.shape[0], flat, *xs.shape[1 + len(batch) :])
    carry = jax.tree_util.tree_map(
        lambda a: a.reshape(flat, *a.shape[len(batch) :]), carry
    )
    out, _ = _certified_norms(cell, params, xs, carry, size, block, iters, chunk)
    return out.reshape(out.shape[0], *batch)


def _top_values(k: int, size: int):
    def values(u):
        eps = jnp.finfo(u.dtype).eps
        sv = jnp.linalg.svd(u, compute_uv=False)
        floor = safe_log(sv[0] * (size * eps))
        return jnp.concatenate([safe_log(sv[:k]), floor[None]])

    return values


def _lags(steps: int) -> jax.Array:
    return jnp.arange(steps, 0, -1)


def _exact_norm(method: str):
    if method == "svd":
        return lambda u: safe_log(jnp.linalg.norm(u, 2))

    def top_eig(u):
        return 0.5 * safe_log(jnp.linalg.eigvalsh(u @ u.T)[-1])

    return top_eig


# Half the 1e-3 (log10) promise, in eigenvalues of U Uᵀ (twice the log).
_CERTIFY = 10.0 ** (2 * 5e-4)


def _certified_norms(cell, params, xs, carry, size, block, iters, chunk):
    """Batched reverse scan: bracketed subspace iteration, exact where loose.

    ``xs (T, B, D)``, ``carry`` leaves ``(B, ...)``; returns ``(T, B)``.
    The fallback is a ``lax.cond`` on one scalar for the whole batch, so it
    is really skipped, also under ``vmap`` (see :func:`_top_or_exact`).
    Also returns ``(T,)``: True where the bracket was tight (no fallback).
    """

    remat = chunk or False
    s0, step = flat_step(cell, params, jax.tree_util.tree_map(lambda a: a[0], carry))
    fwd = forward_states(cell, params, xs, carry, remat=remat)
    dtype = s0.dtype
    batch = xs.shape[1]

    def advance(u, c_t, xw_t):
        # the step's Jacobian at the state entering it
        _, vjp = jax.vjp(lambda s: step(s, xw_t), flat(c_t))
        prod = jax.vmap(lambda row: vjp(row)[0])(u)
        scale = norm(prod)
        return prod / jnp.where(scale > 0, scale, 1.0), jnp.log(scale)

    def bracket(u, v):
        for _ in range(iters):
            v = jnp.linalg.qr(u @ (u.T @ v))[0]
        b = u.T @ v
        theta = jnp.linalg.eigvalsh(b.T @ b)
        upper = jnp.sum(u * u) - jnp.sum(theta[:-1])
        return theta[-1], upper, v

    def body(state, inp):
        u, log_scale, v = state
        c_t, xw_t, _ = inp
        u, log_step = jax.vmap(advance)(u, c_t, xw_t)
        log_scale = log_scale + log_step
        lower, upper, v_new = jax.vmap(bracket)(u, v)
        tight = jnp.all(upper <= lower * _CERTIFY)
        top = _top_or_exact(tight, lower, u)
        out = (log_scale + 0.5 * safe_log(top)) / LN10
        return (u, log_scale, v_new), (out, tight)

    eye = jnp.eye(size, dtype=dtype) / jnp.sqrt(jnp.asarray(size, dtype))
    v0 = jnp.linalg.qr(jax.random.normal(jax.random.key(0), (size, block), dtype))[0]
    start = (
        jnp.broadcast_to(eye, (batch, size, size)),
        jnp.full((batch,), 0.5 * np.log(size), dtype),
        jnp.broadcast_to(v0, (batch, size, block)),
    )
    _, out = reverse_states(cell, params, xs, fwd.saved, body, start, remat=remat)
    return out


def _exact_top(u):
    """``σ_1(U)²`` of each ``U (..., S, S)``."""
    # The subspace keeps iterating, so no singular vectors are needed here.
    return jnp.square(jnp.linalg.svd(u, compute_uv=False)[..., 0])


@jax.custom_batching.custom_vmap
def _top_or_exact(tight, lower, u):
    """``lower (B,)`` where the bracket is ``tight ()``, else exact: ``(B,)``."""
    return lax.cond(tight, lambda: lower, lambda: _exact_top(u))


@_top_or_exact.def_vmap
def _top_or_exact_vmap(axis_size, in_batched, tight, lower, u):
    # Under vmap (e.g. over the seeds of a sweep) a plain lax.cond becomes a
    # select and the SVD runs at every step for every element. Instead branch
    # once on "tight everywhere" and pick per element: the same numbers as the
    # unbatched function, element by element.
    tight, lower, u = (
        x if batched else jnp.broadcast_to(x, (axis_size, *x.shape))
        for x, batched in zip((tight, lower, u), in_batched, strict=True)
    )
    each = jnp.broadcast_to(
        tight.reshape(axis_size, *(1,) * (lower.ndim - 1)), lower.shape
    )
    top = lax.cond(
        jnp.all(tight),
        lambda: lower,
        lambda: jnp.where(each, lower, _exact_top(u)),
    )
    return top, True


def _reverse_products(cell, params, xs, carry, size, measure, chunk):
    """Scan ``M_t = M_{t+1} J_t`` backwards; emit ``measure`` of each ``M_t``.

    One sequence: ``xs (T, D)``, an unbatched ``carry``.
    """
    remat = chunk or False
    s0, f = flat_step(cell, params, carry)
    fwd = forward_states(cell, params, xs, carry, remat=remat)
    dtype = s0.dtype
    eye = jnp.eye(size, dtype=dtype)

    def body(state, inp):
        u, log_scale = state
        c_t, xw_t, _ = inp
        # the step's Jacobian at the state entering it
        _, vjp = jax.vjp(lambda s: f(s, xw_t), flat(c_t))
        # Row i of M_{t+1} J_t is J_tᵀ m_i: one vector-Jacobian product per row.
        prod = jax.vmap(lambda row: vjp(row)[0])(u)
        scale = norm(prod)
        u = prod / jnp.where(scale > 0, scale, 1.0)
        log_scale = log_scale + jnp.log(scale)
        return (u, log_scale), (log_scale + measure(u)) / LN10

    start = (eye / jnp.sqrt(size), jnp.asarray(0.5 * np.log(size), dtype))
    _, out = reverse_states(cell, params, xs, fwd.saved, body, start, remat=remat)
    return out
