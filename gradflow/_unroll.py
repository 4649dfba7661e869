"""Run a cell over a time-major sequence with one ``lax.scan``."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._checks import check_int, check_sequence
from .cells import Cell, check_params, scan_linear


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
    check_params(cell, params, _input_size(cell, params, xs))
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
        want, got = describe_mismatch(expected, carry)
        raise TypeError(
            f"carry must be shaped like cell.initial_carry({batch}), {want}, got {got}"
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


def _input_size(cell: Cell, params: Any, xs: Any) -> int | None:
    """``D`` as the params say (else as ``xs`` says) to check the params by."""
    try:
        return int(cell.input_size(params))
    except (KeyError, IndexError, TypeError, AttributeError):
        shape = getattr(xs, "shape", None)
        return int(shape[-1]) if shape else None


def describe_mismatch(expected: Any, given: Any) -> tuple[str, str]:
    """Two carries of different structure, described so that they differ."""
    want, got = _describe(expected), _describe(given)
    if want == got and type(expected) is not type(given):
        # The same shapes in look-alike containers (two classes of one name).
        want = f"{want} (a {_qualified(type(expected))})"
        got = f"{got} (a {_qualified(type(given))})"
    elif want == got:
        want = f"{want} in {jax.tree_util.tree_structure(expected)}"
        got = f"{got} in {jax.tree_util.tree_structure(given)}"
    elif isinstance(given, jax.Array | np.ndarray):
        got = f"a plain array of shape {got} (build the cell's carry type from it)"
    return want, got


def _qualified(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def _describe(tree: Any) -> str:
    """``LSTMCarry(h=(8, 64), c=(8, 64))``: the structure with leaf shapes.

    Only called on trees whose leaves already passed ``jnp.shape``.
    """
    return repr(jax.tree_util.tree_map(lambda a: tuple(jnp.shape(a)), tree))


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

    A cell linear in its state (``cell.linear``, e.g. :func:`gradflow.cells.lru`)
    runs as ``jax.lax.associative_scan`` over blocks of ``LINEAR_BLOCK``
    steps, the state carried from block to block;
    ``cell._replace(linear=None)`` steps it sequentially instead (the same
    numbers to rounding).

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


# Steps per associative scan of a linear cell; a lax.scan carries the state
# from block to block. Short blocks measured fastest on CPU (LRU, state 256,
# batch 32: blocks of 8 about 2x the sequential scan, blocks of 512 half of
# it; see benchmarks/README.md): the scan's log-depth passes over a long
# block move its elements through memory many times.
LINEAR_BLOCK = 8


def _scan_linear(cell: Cell, params, xs, carry):
    """``(carry, hs)`` of a linear cell by associative scans over short blocks."""

    def run(c, block):
        return scan_linear(cell.linear, params, c, cell.project(params, block))

    if xs.shape[0] <= LINEAR_BLOCK:
        return run(carry, xs)
    return scan_chunks(run, carry, xs, LINEAR_BLOCK)


def _scan(cell: Cell, params, xs, carry):
    if cell.linear is not None:
        return _scan_linear(cell, params, xs, carry)
    if cell.sequence is not None:
        # the cell's fused recurrence: its backward pass keeps the weight
        # gradient out of the reverse loop (see gradflow/cells/_fused.py)
        return cell.sequence(params, carry, cell.project(params, xs))

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
        if cell.linear is not None:
            return _scan_linear(cell, params, block, c)
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
    head, tail = _split_blocks(xs, chunk)
    carry, ys = lax.scan(run, carry, head)
    ys = _join_blocks(ys)
    if tail is not None:
        carry, ys_tail = run(carry, tail)
        ys = _append(ys, ys_tail)
    return carry, ys


class Forward(NamedTuple):
    """What one forward pass keeps for the measurements built on it.

    Attributes:
        carry: the final carry ``s_T``.
        hs: ``(T, *batch, N)``, every hidden output.
        saved: the carry entering every step (leaves ``(T, *batch, ...)``)
            or, with remat, entering every chunk (``(ceil(T/k), *batch, ...)``):
            what :func:`reverse_states` revisits the states from.
        along: ``(state, ys)`` of the ``along`` scan, or ``None``.
    """

    carry: Any
    hs: jax.Array
    saved: Any
    along: Any = None


def forward_states(
    cell: Cell,
    params: Any,
    xs: jax.Array,
    carry: Any,
    *,
    remat: bool | int = False,
    along: tuple[Callable, Any] | None = None,
) -> Forward:
    """The one forward pass every measurement builds on (no argument checks).

    Runs ``cell`` over ``xs`` once and keeps what a reverse pass needs to see
    the carry entering every step again: all of them (``remat=False``), or
    one per chunk of ``k`` steps (``remat=True`` for ``k = ceil(sqrt(T))``, or
    an int ``k``), from which :func:`reverse_states` recomputes each chunk's
    carries when it gets there. The carry may be any pytree.

    Args:
        cell: a :class:`gradflow.cells.Cell`.
        params: its params.
        xs: ``(T, *batch, input_size)``, time-major.
        carry: the carry entering step 0 (already resolved).
        remat: ``False``, ``True`` or a chunk length ``k``.
        along: ``(body, init)`` to run in the same scan:
            ``body(state, (carry_t, xw_t)) -> (state, y_t)`` with ``carry_t``
            the carry entering step ``t`` and ``xw_t`` its projected input.

    Returns:
        A :class:`Forward`. With remat the input projection happens per chunk,
        so no ``(T, *batch, G*N)`` array is formed.
    """
    steps = xs.shape[0]
    chunk = chunk_length(remat, steps)
    visit, state = along if along is not None else (None, None)

    def body(c_and_v, xw_t):
        c, v = c_and_v
        new, h = cell.recur(params, c, xw_t)
        if visit is not None:
            v, y = visit(v, (c, xw_t))
        else:
            y = None
        return (new, v), (c, h, y)

    if not chunk or chunk >= steps:
        (carry, state), (saved, hs, ys) = lax.scan(
            body, (carry, state), cell.project(params, xs)
        )
        return Forward(carry, hs, saved, None if visit is None else (state, ys))

    # Each chunk's outputs are written into one (T, ...) buffer in place (a
    # concatenation of the chunks, or a slice of a padded buffer, would copy
    # it: twice the memory of hs at the peak).
    head, tail = divmod(steps, chunk)

    def run_block(state, start, length):
        c_and_v, bufs = state
        block = lax.dynamic_slice_in_dim(xs, start, length)
        new, (_, hs, ys) = lax.scan(body, c_and_v, cell.project(params, block))
        bufs = jax.tree_util.tree_map(
            lambda buf, y: lax.dynamic_update_slice_in_dim(buf, y, start, 0),
            bufs,
            (hs, ys),
        )
        return (new, bufs), c_and_v[0]

    shapes = jax.eval_shape(
        lambda: lax.scan(body, (carry, state), cell.project(params, xs[:1]))[1][1:]
    )
    bufs = jax.tree_util.tree_map(
        lambda a: jnp.zeros((steps, *a.shape[1:]), a.dtype), shapes
    )
    ((carry, state), bufs), saved = lax.scan(
        lambda st, b: run_block(st, b * chunk, chunk),
        ((carry, state), bufs),
        jnp.arange(head),
    )
    if tail:
        ((carry, state), bufs), last = run_block(
            ((carry, state), bufs), head * chunk, tail
        )
        saved = _append(saved, jax.tree_util.tree_map(lambda a: a[None], last))
    hs, ys = bufs
    return Forward(carry, hs, saved, None if visit is None else (state, ys))


def reverse_states(
    cell: Cell,
    params: Any,
    xs: jax.Array,
    saved: Any,
    body: Callable,
    init: Any,
    extra: Any = None,
    *,
    remat: bool | int = False,
) -> tuple[Any, Any]:
    """Scan ``body`` backwards in time over the states of a :class:`Forward`.

    ``body(state, (carry_t, xw_t, extra_t)) -> (state, y_t)`` runs for
    ``t = T−1, …, 0`` with ``carry_t`` the carry entering step ``t``, ``xw_t``
    its projected input and ``extra_t`` step ``t`` of ``extra`` (a pytree with
    time on axis 0, or ``None``). With remat (the same value given to
    :func:`forward_states`), each chunk's carries are recomputed from its saved
    entry carry just before the chunk is visited, so memory stays
    ``O(T/k + k)`` carries.

    Returns:
        ``(state, ys)``: the final state and every ``y_t`` stacked on axis 0
        in time order.
    """
    steps = xs.shape[0]
    chunk = chunk_length(remat, steps)
    if not chunk or chunk >= steps:
        return lax.scan(
            body, init, (saved, cell.project(params, xs), extra), reverse=True
        )

    # Blocks are read out of xs and extra with dynamic slices, not split off
    # beforehand (a slice of (T, ...) arrays up front would copy them).
    head, tail = divmod(steps, chunk)

    def run_block(state, entering, start, length):
        block = lax.dynamic_slice_in_dim(xs, start, length)
        extra_b = jax.tree_util.tree_map(
            lambda a: lax.dynamic_slice_in_dim(a, start, length), extra
        )
        xw = cell.project(params, block)
        carries = lax.scan(lambda c, x: (cell.recur(params, c, x)[0], c), entering, xw)[
            1
        ]
        return lax.scan(body, state, (carries, xw, extra_b), reverse=True)

    state = init
    ys_tail = None
    if tail:
        last = jax.tree_util.tree_map(lambda a: a[head], saved)
        state, ys_tail = run_block(state, last, head * chunk, tail)
    first = jax.tree_util.tree_map(lambda a: a[:head], saved)
    state, ys = lax.scan(
        lambda st, inp: run_block(st, inp[0], inp[1] * chunk, chunk),
        state,
        (first, jnp.arange(head)),
        reverse=True,
    )
    ys = _join_blocks(ys)
    if ys_tail is not None:
        ys = _append(ys, ys_tail)
    return state, ys


def _split_blocks(xs: Any, chunk: int) -> tuple[Any, Any]:
    """``xs`` (time on axis 0) as ``(n, chunk, ...)`` blocks and the rest (or None)."""
    steps = jax.tree_util.tree_leaves(xs)[0].shape[0]
    n = steps // chunk
    cut = n * chunk
    head = jax.tree_util.tree_map(lambda a: a[:cut].reshape(n, chunk, *a.shape[1:]), xs)
    tail = jax.tree_util.tree_map(lambda a: a[cut:], xs) if cut < steps else None
    return head, tail


def _join_blocks(ys: Any) -> Any:
    return jax.tree_util.tree_map(
        lambda a: a.reshape(a.shape[0] * a.shape[1], *a.shape[2:]), ys
    )


def _append(a: Any, b: Any) -> Any:
    return jax.tree_util.tree_map(lambda x, y: jnp.concatenate([x, y], axis=0), a, b)
