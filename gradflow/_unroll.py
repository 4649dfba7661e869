"""Run a cell over a time-major sequence with one ``lax.scan``."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from ._checks import check_int, check_sequence
from .cells import Cell


def check_cell(cell: Any) -> Cell:
    if not isinstance(cell, Cell):
        raise TypeError(
            f"cell must be a gradflow Cell (e.g. gf.cells.lstm(64)), "
            f"got {type(cell).__name__}"
        )
    return cell


def resolve_carry(cell: Cell, params: Any, xs: Any, carry: Any, name: str = "xs"):
    """Check ``xs`` against the cell and return ``carry`` (zeros when ``None``)."""
    check_cell(cell)
    batch = check_sequence(name, xs, cell.input_size(params))
    expected = cell.initial_carry(batch, xs.dtype)
    if carry is None:
        return expected
    want = jax.tree_util.tree_map(lambda a: (a.shape, a.dtype), expected)
    try:
        got = jax.tree_util.tree_map(
            lambda a: (tuple(jnp.shape(a)), jnp.result_type(a)), carry
        )
    except Exception as err:
        raise TypeError(f"carry must be a pytree of arrays, got {carry!r}") from err
    if jax.tree_util.tree_structure(carry) != jax.tree_util.tree_structure(expected):
        raise TypeError(
            f"carry must have the structure of cell.initial_carry(batch_shape), "
            f"{jax.tree_util.tree_structure(expected)}, got "
            f"{jax.tree_util.tree_structure(carry)}"
        )
    shapes_w = [s for s, _ in jax.tree_util.tree_leaves(want, is_leaf=_is_pair)]
    shapes_g = [s for s, _ in jax.tree_util.tree_leaves(got, is_leaf=_is_pair)]
    if shapes_w != shapes_g:
        raise ValueError(
            f"carry must have leaf shapes {shapes_w} for {name} of batch shape "
            f"{batch}, got {shapes_g}"
        )
    return carry


def _is_pair(x):
    return isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], tuple)


def unroll(
    cell: Cell,
    params: Any,
    xs: jax.Array,
    carry: Any = None,
    *,
    remat: bool | int = False,
) -> tuple[Any, jax.Array]:
    """Run ``cell`` over ``xs`` and return the final carry and every hidden output.

    Args:
        cell: a :class:`gradflow.cells.Cell`.
        params: its params (``cell.init(key, input_size)``).
        xs: ``(T, *batch, input_size)``, time-major.
        carry: the carry entering step 0; ``None`` means zeros.
        remat: ``False``, ``True`` (checkpoint chunks of ``ceil(sqrt(T))`` steps)
            or a chunk length. The backward pass then stores ``O(T/k + k)``
            states instead of ``O(T)`` and recomputes the rest.

    Returns:
        ``(carry_T, hs)`` with ``hs (T, *batch, hidden_size)``.

    Example:
        >>> cell = gf.cells.lstm(32)
        >>> params = cell.init(jax.random.key(0), input_size=4)
        >>> carry, hs = gf.unroll(cell, params, jnp.ones((100, 8, 4)))
    """
    carry = resolve_carry(cell, params, xs, carry)
    chunk = _chunk_length(remat, xs.shape[0])
    if cell.layers:
        carries = []
        for layer, p, s in zip(cell.layers, params, carry, strict=True):
            s, xs = _scan(layer, p, xs, s, chunk)
            carries.append(s)
        return tuple(carries), xs
    return _scan(cell, params, xs, carry, chunk)


def _chunk_length(remat: bool | int, steps: int) -> int:
    if remat is False:
        return 0
    if remat is True:
        return max(1, math.isqrt(steps - 1) + 1)
    return check_int("remat", remat)


def _scan(cell: Cell, params, xs, carry, chunk: int):
    xw = cell.project(params, xs)

    def body(c, x):
        return cell.recur(params, c, x)

    steps = xw.shape[0]
    if not chunk or chunk >= steps:
        return lax.scan(body, carry, xw)
    n_chunks, rest = divmod(steps, chunk)
    head = xw[: n_chunks * chunk].reshape(n_chunks, chunk, *xw.shape[1:])
    scan_chunk = jax.checkpoint(lambda c, block: lax.scan(body, c, block))
    carry, hs = lax.scan(scan_chunk, carry, head)
    hs = hs.reshape(n_chunks * chunk, *hs.shape[2:])
    if rest:
        carry, tail = lax.scan(body, carry, xw[n_chunks * chunk :])
        hs = jnp.concatenate([hs, tail], axis=0)
    return carry, hs
