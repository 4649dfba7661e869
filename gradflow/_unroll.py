"""Run a cell over a time-major sequence with one ``lax.scan``."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
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
    try:
        leaves = [
            (tuple(jnp.shape(a)), jnp.result_type(a))
            for a in jax.tree_util.tree_leaves(carry)
        ]
    except TypeError as err:
        raise TypeError(f"carry must be a pytree of arrays, got {carry!r}") from err
    if jax.tree_util.tree_structure(carry) != jax.tree_util.tree_structure(expected):
        raise TypeError(
            f"carry must be shaped like cell.initial_carry({batch}), "
            f"{_describe(expected)}, got {_describe(carry)}"
        )
    want = [tuple(a.shape) for a in jax.tree_util.tree_leaves(expected)]
    if want != [shape for shape, _ in leaves]:
        raise ValueError(
            f"carry must have leaf shapes {want} for {name} of batch shape "
            f"{batch}, got {_describe(carry)}"
        )
    bad = [dtype for _, dtype in leaves if dtype != xs.dtype]
    if bad:
        raise TypeError(
            f"carry must have the dtype of {name}, {xs.dtype}, got {bad[0]}"
        )
    return carry


def _describe(tree: Any) -> str:
    """``LSTMCarry(h=(8, 64), c=(8, 64))``: the structure with leaf shapes."""
    try:
        return repr(jax.tree_util.tree_map(lambda a: tuple(jnp.shape(a)), tree))
    except TypeError:
        return f"{type(tree).__name__}"


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
    steps = xs.shape[0]
    chunk = chunk_length(remat, steps)
    if chunk and chunk < steps:
        return _scan_remat(cell, params, xs, carry, chunk)
    if cell.layers:
        # One scan per layer: each layer's input projection is then a single
        # matrix product over all steps, which is faster than stepping jointly.
        carries = []
        for layer, p, s in zip(cell.layers, params, carry, strict=True):
            s, xs = _scan(layer, p, xs, s)
            carries.append(s)
        return tuple(carries), xs
    return _scan(cell, params, xs, carry)


def chunk_length(remat: bool | int, steps: int) -> int:
    """0 (no remat), ``ceil(sqrt(T))`` for ``True``, or the given chunk length."""
    if remat is False:
        return 0
    if remat is True:
        return max(1, math.isqrt(steps - 1) + 1)
    return check_int("remat", remat)


def _scan(cell: Cell, params, xs, carry):
    # For the backward pass keep only the step's matrix product and recompute
    # the elementwise gate math: storing every gate activation per step costs
    # more memory traffic than recomputing it (LSTM fwd+bwd ~1.6x faster on
    # CPU; see benchmarks/README.md). Without differentiation this is a no-op.
    @partial(jax.checkpoint, policy=jax.checkpoint_policies.dots_saveable)
    def body(c, xw_t):
        return cell.recur(params, c, xw_t)

    return lax.scan(body, carry, cell.project(params, xs))


def _scan_remat(cell: Cell, params, xs, carry, chunk: int):
    """Checkpointed chunks of ``chunk`` steps: the backward pass keeps one carry per
    chunk and recomputes the chunk's steps.

    The input projection happens inside each chunk (and a stack steps all its
    layers jointly) so no ``(T, *batch, G*N)`` intermediate outlives a chunk.
    """

    @jax.checkpoint
    def run(c, block):
        return lax.scan(
            lambda c, xw: cell.recur(params, c, xw), c, cell.project(params, block)
        )

    return scan_chunks(run, carry, xs, chunk)


def scan_chunks(run: Callable, carry: Any, xs: Any, chunk: int):
    """Scan ``run(carry, block) -> (carry, ys)`` over blocks of ``chunk`` steps.

    ``xs`` is a pytree with time on axis 0; the last block holds the rest when
    ``chunk`` does not divide ``T``; ``ys`` come back on one time axis.
    Wrapped in ``jax.checkpoint``, ``run`` makes the backward pass keep one
    carry per block and recompute the block's steps.
    """
    steps = jax.tree_util.tree_leaves(xs)[0].shape[0]
    n_chunks = steps // chunk
    cut = n_chunks * chunk
    head = jax.tree_util.tree_map(
        lambda a: a[:cut].reshape(n_chunks, chunk, *a.shape[1:]), xs
    )
    carry, ys = lax.scan(run, carry, head)
    ys = jax.tree_util.tree_map(lambda a: a.reshape(cut, *a.shape[2:]), ys)
    if cut < steps:
        carry, tail = run(carry, jax.tree_util.tree_map(lambda a: a[cut:], xs))
        ys = jax.tree_util.tree_map(
            lambda a, b: jnp.concatenate([a, b], axis=0), ys, tail
        )
    return carry, ys
