"""Sensitivity of the hidden state to the parameters, ``‖∂h_t/∂θ‖²``, forward mode."""

from __future__ import annotations

import functools
import math
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .._checks import check_int, check_key
from ..cells import Cell
from ._common import prepare

# Above this many selected scalars the one-step dependency pattern (a dense
# (S + n) x (S + n) probe) is not worth finding: each scalar gets its own JVP.
_COLOUR_LIMIT = 8192
# Tangent directions pushed through one scan together (the rest wait their turn,
# so memory grows with this, not with the number of directions).
_CHUNK = 64


class ParamSensitivity(NamedTuple):
    """``‖∂h_t/∂θ‖²_F`` of the selected parameters, per step and sequence.

    Attributes:
        sq_norms: ``(T, *batch)``: the squared Frobenius norm of the Jacobian
            of ``h_t`` (the cell's output at step ``t``) with respect to the
            selected parameters, exact or its Hutchinson estimate.
        stderr: ``(T, *batch)``: the estimate's standard error (the probes'
            sample standard deviation over ``sqrt(probes)``); 0 when exact,
            NaN for a one-probe estimate.
        exact: ``()`` bool: whether ``sq_norms`` is exact.
        jvps: ``()`` int32: the tangent directions pushed through the scan.
    """

    sq_norms: jax.Array
    stderr: jax.Array
    exact: jax.Array
    jvps: jax.Array


def param_sensitivity(
    cell: Cell,
    params: Any,
    xs: jax.Array,
    *,
    wrt: Any = None,
    probes: int | None = None,
    key: jax.Array | None = None,
    carry: Any = None,
) -> ParamSensitivity:
    """How strongly the hidden state depends on the parameters: ``‖∂h_t/∂θ‖²``.

    The curse of memory (Zucchet & Orvieto, 2024): as a recurrence's memory
    grows this sensitivity explodes even where ``‖∂L/∂h_t‖`` neither vanishes
    nor explodes (``E[(∂h_t/∂λ)²] = (1+λ²)/(1−λ²)³`` for ``h_t = λh_{t−1} +
    x_t`` with white-noise inputs).

    Forward mode: each tangent direction ``v`` in the selected parameters is
    pushed through the scan with the state (``jax.linearize`` of every step),
    giving ``∂h_t/∂θ · v`` for all ``t`` at once. Directions that cannot meet
    are pushed together: one step's dependency pattern (found by propagating
    NaN tangents through the step at random points) is closed over time, and
    scalars whose outputs never overlap share a direction, each with a random
    sign (so the sum is exact when the pattern holds and an unbiased estimate
    if a data-dependent branch hid a dependency). A diagonal recurrence then
    needs one direction for all its units. When the directions needed are at
    most ``probes`` the result is exact; otherwise it is Hutchinson's estimate
    ``mean_p ‖J v_p‖²`` over ``probes`` Rademacher directions, with its
    standard error.

    Args:
        cell: a :class:`gradflow.cells.Cell` (any kind, custom cells too).
        params: its params.
        xs: ``(T, *batch, input_size)``.
        wrt: a pytree of bools with the structure of ``params`` (like an optax
            mask): the leaves to differentiate by; ``None`` selects all.
        probes: the most tangent directions to push (``>= 1``); ``None``
            means exact whatever it costs.
        key: a ``jax.random`` key for the signs and probes; ``None`` uses
            ``jax.random.key(0)``, so results repeat.
        carry: the carry entering step 0; ``None`` means zeros.

    Returns:
        A :class:`ParamSensitivity`.

    Example:
        >>> wrt = {k: k == "W_hh" for k in params}
        >>> sens = gf.param_sensitivity(cell, params, xs, wrt=wrt)
        >>> sens.sq_norms          # (T, *batch)
    """
    carry, _ = prepare(cell, params, xs, carry)
    mask = _check_wrt(wrt, params)
    leaves = jax.tree_util.tree_leaves(params)
    sizes = tuple(
        int(math.prod(jnp.shape(leaf)))
        for leaf, m in zip(leaves, mask, strict=True)
        if m
    )
    n = sum(sizes)
    if n == 0:
        raise ValueError("wrt must select at least one parameter, got none")
    if probes is not None:
        probes = check_int("probes", probes)
    if key is None:
        key = jax.random.key(0)
    check_key("key", key)
    colours = _colouring(cell, params, xs, mask)
    n_colours = int(colours.max()) + 1
    exact = probes is None or n_colours <= probes
    return _sensitivity(
        cell,
        params,
        xs,
        carry,
        key,
        mask,
        tuple(colours.tolist()) if exact else None,
        n_colours if exact else probes,
    )


def _check_wrt(wrt: Any, params: Any) -> tuple[bool, ...]:
    """One bool per leaf of ``params``: whether it is differentiated."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    if wrt is None:
        mask = [True] * len(leaves)
    else:
        flags, wrt_def = jax.tree_util.tree_flatten(wrt)
        if wrt_def != treedef:
            raise ValueError(
                f"wrt must be a pytree of bools with the structure of params, "
                f"{treedef}, got {wrt_def}"
            )
        bad = [f for f in flags if not isinstance(f, (bool, np.bool_))]
        if bad:
            raise TypeError(
                f"wrt must hold Python bools (one per params leaf), got "
                f"{type(bad[0]).__name__} {bad[0]!r}"
            )
        mask = [bool(f) for f in flags]
    for leaf, m in zip(leaves, mask, strict=True):
        if m and not jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
            raise TypeError(
                f"wrt selects a params leaf of dtype {jnp.result_type(leaf)}; "
                "only floating leaves can be differentiated"
            )
    return tuple(mask)


def _colouring(cell, params, xs, mask) -> np.ndarray:
    """A colour per selected scalar; scalars of one colour never meet in ``h``."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    struct = tuple(
        (tuple(jnp.shape(leaf)), str(jnp.result_type(leaf))) for leaf in leaves
    )
    return _colouring_cached(
        cell, treedef, struct, mask, int(xs.shape[-1]), str(xs.dtype)
    )


@functools.lru_cache(maxsize=64)
def _colouring_cached(cell, treedef, struct, mask, input_size, dtype) -> np.ndarray:
    n = sum(math.prod(shape) for (shape, _), m in zip(struct, mask, strict=True) if m)
    if n > _COLOUR_LIMIT:
        return np.arange(n)
    with jax.ensure_compile_time_eval():
        pattern = _output_pattern(cell, treedef, struct, mask, input_size, dtype)
    return _greedy_colours(pattern)


def _output_pattern(cell, treedef, struct, mask, input_size, dtype) -> np.ndarray:
    """``(N, n)`` bool: may ``h_t`` (any ``t``) depend on selected scalar ``j``."""
    rng = np.random.default_rng(0)
    s0, unravel = ravel_pytree(cell.initial_carry((), jnp.dtype(dtype)))
    size = int(s0.shape[0])
    points = 4  # the pattern is the union over these random points
    values = [
        jnp.asarray(0.5 * rng.normal(size=(points, *shape)), jnp.dtype(dt))
        for shape, dt in struct
    ]
    x = jnp.asarray(rng.normal(size=(points, input_size)), jnp.dtype(dtype))
    state = jnp.asarray(rng.normal(size=(points, size)), s0.dtype)
    sel0 = [v[0] for v, m in zip(values, mask, strict=True) if m]
    theta0, unravel_sel = ravel_pytree(sel0)
    m = size + int(theta0.shape[0])

    def f(s, theta, vals, x1):
        it = iter(unravel_sel(theta))
        full = [next(it) if m else v for v, m in zip(vals, mask, strict=True)]
        p = jax.tree_util.tree_unflatten(treedef, full)
        new, h = cell.step(p, unravel(s), x1)
        return ravel_pytree(new)[0], jnp.ravel(h)

    @jax.jit
    def probe(basis, values, state, x):
        def at_point(vals, s, x1):
            sel = [v for v, m in zip(vals, mask, strict=True) if m]
            theta = ravel_pytree(sel)[0]

            def push(v):
                tangents = (v[:size].astype(s.dtype), v[size:].astype(theta.dtype))
                return jax.jvp(lambda a, b: f(a, b, vals, x1), (s, theta), tangents)[1]

            ds, dh = jax.vmap(push)(basis)
            return jnp.isnan(ds), jnp.isnan(dh)

        ds, dh = jax.vmap(at_point)(values, state, x)
        return jnp.any(ds, axis=0), jnp.any(dh, axis=0)

    blocks = []
    for start in range(0, m, 1024):
        rows = np.arange(start, min(m, start + 1024))
        basis = np.zeros((len(rows), m), np.float32)
        basis[np.arange(len(rows)), rows] = np.nan
        ds, dh = probe(jnp.asarray(basis), values, state, x)
        blocks.append((np.asarray(ds), np.asarray(dh)))
    ds = np.concatenate([blk[0] for blk in blocks]).T  # (S, S + n)
    dh = np.concatenate([blk[1] for blk in blocks]).T  # (N, S + n)
    a, b, c, d = ds[:, :size], ds[:, size:], dh[:, :size], dh[:, size:]
    # s_t's dependence on θ: the closure of R = B ∪ A R over time
    reach = b.copy()
    af = a.astype(np.float32)
    while True:
        new = b | ((af @ reach.astype(np.float32)) > 0)
        if np.array_equal(new, reach):
            break
        reach = new
    return d | ((c.astype(np.float32) @ reach.astype(np.float32)) > 0)


def _greedy_colours(pattern: np.ndarray) -> np.ndarray:
    """Colour columns so that two of one colour share no row (greedy, in order)."""
    n = pattern.shape[1]
    if np.any(np.all(pattern, axis=1)):
        return np.arange(n)  # one row meets every column: all conflict
    colours = np.empty(n, np.int64)
    used = np.zeros((0, pattern.shape[0]), bool)
    for j in range(n):
        col = pattern[:, j]
        free = ~np.any(used & col, axis=1)
        if np.any(free):
            k = int(np.argmax(free))
            used[k] |= col
        else:
            k = used.shape[0]
            used = np.concatenate([used, col[None]])
        colours[j] = k
    return colours


@partial(jax.jit, static_argnums=(0, 5, 6, 7))
def _sensitivity(cell, params, xs, carry, key, mask, colours, count):
    leaves, treedef = jax.tree_util.tree_flatten(params)
    sel = [leaf for leaf, m in zip(leaves, mask, strict=True) if m]
    theta, unravel_sel = ravel_pytree(sel)
    n = theta.shape[0]
    signs = jax.random.rademacher(key, (count, n), dtype=theta.dtype)
    if colours is not None:
        # direction c: the scalars of colour c, each with its random sign
        onehot = jnp.asarray(np.arange(count)[:, None] == np.asarray(colours)[None])
        signs = jnp.where(onehot, signs, jnp.zeros_like(signs))

    def tangent(v):
        it = iter(unravel_sel(v))
        full = [
            next(it) if m else jnp.zeros_like(leaf)
            for leaf, m in zip(leaves, mask, strict=True)
        ]
        return jax.tree_util.tree_unflatten(treedef, full)

    def scan_directions(vs):
        dps = jax.vmap(tangent)(vs)
        zero = jax.tree_util.tree_map(
            lambda a: jnp.zeros((vs.shape[0], *a.shape), a.dtype), carry
        )

        def body(state, x_t):
            c, dc = state
            (c2, _), lin = jax.linearize(lambda p, cc: cell.step(p, cc, x_t), params, c)
            dc2, dh = jax.vmap(lin)(dps, dc)
            sq = jnp.sum(jnp.square(dh), axis=-1)  # (k, *batch)
            return (c2, dc2), (jnp.sum(sq, axis=0), jnp.sum(jnp.square(sq), axis=0))

        return jax.lax.scan(body, (carry, zero), xs)[1]

    chunks = -(-count // _CHUNK)
    pad = chunks * _CHUNK - count if chunks > 1 else 0
    vs = jnp.concatenate([signs, jnp.zeros((pad, n), signs.dtype)])
    if chunks == 1:
        total, total_sq = scan_directions(vs)
    else:
        outs = jax.lax.map(scan_directions, vs.reshape(chunks, _CHUNK, n))
        total, total_sq = (jnp.sum(o, axis=0) for o in outs)
    if colours is not None:
        zeros = jnp.zeros_like(total)
        return ParamSensitivity(total, zeros, jnp.asarray(True), jnp.int32(count))
    mean = total / count
    if count > 1:
        var = jnp.maximum(total_sq / count - jnp.square(mean), 0.0)
        stderr = jnp.sqrt(var * count / (count - 1) / count)
    else:
        stderr = jnp.full_like(mean, jnp.nan)
    return ParamSensitivity(mean, stderr, jnp.asarray(False), jnp.int32(count))
