"""Plumbing shared by the measurements: checks, per-sequence state maps, log space."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .._checks import check_int
from .._decay import LN10
from .._unroll import resolve_carry
from ..cells import Cell, state_size

__all__ = ["LN10", "state_size"]  # re-used by the measurements beside this module


def prepare(cell: Cell, params: Any, xs: Any, carry: Any):
    """Validate ``xs``/``carry`` and return ``(carry, batch_shape)``."""
    carry = resolve_carry(cell, params, xs, carry)
    return carry, tuple(xs.shape[1:-1])


def check_loss_fn(loss_fn: Any, hs_shape: tuple[int, ...], dtype: Any) -> None:
    """``loss_fn(hs)`` must map ``hs`` of ``hs_shape`` to one real scalar."""
    if not callable(loss_fn):
        raise TypeError(
            f"loss_fn must be a callable hs -> scalar, got {type(loss_fn).__name__}"
        )
    out = jax.eval_shape(loss_fn, jax.ShapeDtypeStruct(hs_shape, dtype))
    leaves = jax.tree_util.tree_leaves(out)
    if len(leaves) != 1 or tuple(leaves[0].shape) != ():
        got = jax.tree_util.tree_map(lambda a: tuple(a.shape), out)
        raise ValueError(
            f"loss_fn must return a scalar (shape ()) for hs of shape {hs_shape}, "
            f"got {got}"
        )
    if not jnp.issubdtype(leaves[0].dtype, jnp.floating):
        raise TypeError(
            f"loss_fn must return a floating scalar, got dtype {leaves[0].dtype}"
        )


def check_k(k: Any, size: int, name: str = "k") -> int:
    """``1 <= k <= size`` (the state size)."""
    k = check_int(name, k)
    if k > size:
        raise ValueError(f"{name} must be <= the state size {size}, got {k}")
    return k


def flat(carry: Any) -> jax.Array:
    """One sequence's carry (any pytree) as a flat state vector ``(S,)``."""
    return ravel_pytree(carry)[0]


def flat_step(
    cell: Cell, params: Any, carry: Any
) -> tuple[jax.Array, Callable[[jax.Array, jax.Array], jax.Array]]:
    """The state map of one sequence on the flattened carry.

    Returns ``(s0 (S,), f)`` with ``f(s (S,), xw (G*N,)) -> s' (S,)``.
    """
    s0, unravel = ravel_pytree(carry)

    def f(s, xw):
        new, _ = cell.recur(params, unravel(s), xw)
        return flat(new)

    return s0, f


def map_batch(fn: Callable, batch: tuple[int, ...], xs, carry, out_axes):
    """Run ``fn(xs (T, D), carry)`` for every batch element.

    ``out_axes`` (a pytree of ints like the output) says where the batch axes
    go in each output; they come back as ``batch`` (possibly several axes).
    """
    if not batch:
        return fn(xs, carry)
    size = math.prod(batch)
    rank = len(batch)
    xs = xs.reshape(xs.shape[0], size, *xs.shape[1 + rank :])
    carry = jax.tree_util.tree_map(lambda a: a.reshape(size, *a.shape[rank:]), carry)
    out = jax.vmap(fn, in_axes=(1, 0), out_axes=out_axes)(xs, carry)
    return jax.tree_util.tree_map(
        lambda o, ax: o.reshape(*o.shape[:ax], *batch, *o.shape[ax + 1 :]),
        out,
        out_axes,
    )


def tiny(dtype: Any) -> float:
    """The smallest normal number of ``dtype`` (a floor that keeps logs finite)."""
    return float(np.finfo(np.dtype(dtype)).tiny)


def safe_log(x: jax.Array) -> jax.Array:
    """``log(x)`` floored at the dtype's smallest normal: never ``-inf``."""
    return jnp.log(jnp.maximum(x, tiny(x.dtype)))


def norm(x: jax.Array, axis: Any = None) -> jax.Array:
    """Euclidean norm that neither underflows nor overflows (scaled by max |x|).

    NaN anywhere gives NaN and an infinite entry ``inf``: never a finite number
    for a vector that has none.
    """
    scale = jnp.max(jnp.abs(x), axis=axis, keepdims=True)
    ok = jnp.isfinite(scale) & (scale > 0)
    safe = jnp.where(ok, scale, 1.0)
    out = safe * jnp.sqrt(jnp.sum(jnp.square(x / safe), axis=axis, keepdims=True))
    # scale is 0 (a zero vector), inf or NaN (max propagates NaN) where not ok
    out = jnp.where(ok, out, scale)
    return jnp.squeeze(out, axis=axis) if axis is not None else out.reshape(())


def tree_batch_norm(tree: Any, batch_rank: int) -> jax.Array:
    """Per batch element Euclidean norm over all leaves ``(*batch, ...)``."""
    leaves = [
        leaf.reshape(*leaf.shape[:batch_rank], -1)
        for leaf in jax.tree_util.tree_leaves(tree)
    ]
    return norm(jnp.concatenate(leaves, axis=-1), axis=-1)


def tree_scale(tree: Any, factor: jax.Array) -> Any:
    """Multiply every leaf ``(*batch, ...)`` by ``factor (*batch,)``."""

    def scale(leaf):
        f = factor.reshape(*factor.shape, *(1,) * (leaf.ndim - factor.ndim))
        return leaf * jnp.broadcast_to(f, leaf.shape).astype(leaf.dtype)

    return jax.tree_util.tree_map(scale, tree)


def hidden_struct(cell: Cell, params: Any, xs: Any, carry: Any) -> Any:
    """``hs``'s ``(T, *batch, N)`` shape and dtype, from one step traced on shapes.

    Works for any cell (a custom cell need not declare its ``hidden_size``).
    """
    x0 = jax.ShapeDtypeStruct(tuple(xs.shape[1:]), xs.dtype)
    h = jax.eval_shape(cell.step, params, carry, x0)[1]
    return jax.ShapeDtypeStruct((xs.shape[0], *h.shape), h.dtype)
