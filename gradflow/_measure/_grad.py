"""Per-step gradient norms ``‖∂L/∂h_t‖`` in one backward pass."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from .._unroll import chunk_length
from ..cells import Cell
from ._common import (
    LN10,
    check_has_h,
    check_loss_fn,
    norm,
    prepare,
    scan_remat,
    top_h,
    tree_batch_norm,
    tree_scale,
    with_top_h,
)


def hidden_grad_norms(
    cell: Cell,
    params: Any,
    xs: jax.Array,
    loss_fn: Callable[[jax.Array], jax.Array],
    carry: Any = None,
    *,
    log10: bool = False,
    remat: bool | int = False,
) -> jax.Array:
    """``‖∂L/∂h_t‖`` for every step: the total derivative of the loss by ``h_t``.

    ``L = loss_fn(hs)`` with ``hs (T, *batch, N)`` the hidden outputs. Entry
    ``t`` includes every path from ``h_t`` to the loss (its own term and all
    later steps through the carry), per batch element. It costs one backward
    pass: a zero perturbation is added to each ``h_t`` (output and carry) and
    ``jax.grad`` is taken with respect to the perturbations; no parameter
    gradient is formed.

    Args:
        cell: a :class:`gradflow.cells.Cell` (a stack perturbs its top layer).
        params: the cell's params.
        xs: ``(T, *batch, input_size)``, time-major.
        loss_fn: ``loss_fn(hs (T, *batch, N)) -> scalar``.
        carry: the carry entering step 0; ``None`` means zeros.
        log10: return ``log10 ‖∂L/∂h_t‖`` computed in log space instead. Plain
            norms underflow float32 after a few hundred steps of vanishing (or
            overflow when exploding); this mode runs a reverse scan of
            vector-Jacobian products that renormalises the cotangent every
            step and carries the log of its scale, so the result stays finite
            and right for any ``T``. It costs about one forward pass more.
        remat: for the default mode, ``True`` or a chunk length checkpoints the
            forward scan (memory ``O(T/k + k)`` carries instead of ``O(T)``).

    Returns:
        ``(T, *batch)``: the norms (or their log10 with ``log10=True``).

    Example:
        >>> loss = lambda hs: jnp.sum(hs[-1] ** 2)
        >>> norms = gf.hidden_grad_norms(cell, params, xs, loss)  # (T, batch)
    """
    carry, batch = prepare(cell, params, xs, carry)
    check_has_h(cell, carry)
    hs_shape = (xs.shape[0], *batch, cell.hidden_size)
    check_loss_fn(loss_fn, hs_shape, top_h(cell, carry).dtype)
    chunk = chunk_length(remat, xs.shape[0])
    if log10:
        return _log10_grad_norms(cell, params, xs, loss_fn, carry, len(batch))
    return _grad_norms(cell, params, xs, loss_fn, carry, chunk)


@partial(jax.jit, static_argnums=(0, 3, 5))
def _grad_norms(cell, params, xs, loss_fn, carry, chunk):
    xw = cell.project(params, xs)

    def loss_of(eps):
        def body(c, inp):
            xw_t, e_t = inp
            c, h = cell.recur(params, c, xw_t)
            return with_top_h(cell, c, top_h(cell, c) + e_t), h + e_t

        _, hs = scan_remat(body, carry, (xw, eps), chunk)
        return loss_fn(hs)

    hs_shape = (*xw.shape[:-1], cell.hidden_size)
    eps = jnp.zeros(hs_shape, top_h(cell, carry).dtype)
    return norm(jax.grad(loss_of)(eps), axis=-1)


@partial(jax.jit, static_argnums=(0, 3, 5))
def _log10_grad_norms(cell, params, xs, loss_fn, carry, batch_rank):
    xw = cell.project(params, xs)

    def forward(c, xw_t):
        new, h = cell.recur(params, c, xw_t)
        return new, (c, h)

    _, (entering, hs) = lax.scan(forward, carry, xw)
    direct = jax.grad(loss_fn)(hs)

    def log_norm(x):
        return jnp.log(norm(x, axis=-1))

    def unit(x, n):
        safe = jnp.where(n > 0, n, 1.0)
        return x / jnp.broadcast_to(safe[..., None], x.shape)

    def body(state, inp):
        # state: the cotangent of the carry leaving step t, as exp(log_scale) * u.
        u, log_scale = state
        c_t, xw_t, d_t = inp
        d_norm = norm(d_t, axis=-1)
        d_unit = unit(d_t, d_norm)
        log_d = jnp.log(d_norm)
        # Bring both terms to the larger scale so neither exp() can overflow.
        top = jnp.maximum(log_scale, log_d)
        top = jnp.where(jnp.isfinite(top), top, 0.0)
        w_carry = jnp.exp(log_scale - top)
        w_direct = jnp.exp(log_d - top)
        u = tree_scale(u, w_carry)
        d_scaled = tree_scale(d_unit, w_direct)
        g_t = top_h(cell, u) + d_scaled
        log_g = top + log_norm(g_t)
        _, vjp = jax.vjp(lambda c: cell.recur(params, c, xw_t), c_t)
        (ct,) = vjp((u, d_scaled))
        ct_norm = tree_batch_norm(ct, batch_rank)
        safe = jnp.where(ct_norm > 0, ct_norm, 1.0)
        u = tree_scale(ct, 1.0 / safe)
        return (u, top + jnp.log(ct_norm)), log_g / LN10

    zero = jax.tree_util.tree_map(jnp.zeros_like, carry)
    batch_shape = direct.shape[1:-1]
    start = jnp.full(batch_shape, -jnp.inf, direct.dtype)
    _, out = lax.scan(body, (zero, start), (entering, xw, direct), reverse=True)
    return out
