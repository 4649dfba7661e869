"""Fixed points and slow points of ``s ↦ step(params, s, x)`` for a constant input.

All ``K`` starts are solved at once: a batched Newton–Krylov iteration on
``F(s) − s = 0`` whose line search minimises ``q(s) = ½‖F(s) − s‖²``. The
Krylov solve needs only Jacobian-vector products, and for ``K`` starts each one
is a single matrix product shared by the whole batch (see
``benchmarks/bench_fixed_points.py`` for the measured choice against optax and
against a dense Levenberg–Marquardt step).
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.flatten_util import ravel_pytree

from .._checks import check_float, check_int, is_concrete
from .._unroll import check_cell, resolve_carry
from ..cells import Cell

# Krylov subspace per Newton step: exact Newton for states of up to this size.
KRYLOV = 32
# Step lengths tried along each Newton direction (the best one is taken).
_STEPS = (1.0, 0.5, 0.25, 0.125, 1 / 16, 1 / 64, 1 / 256, 1 / 1024)


class FixedPointCandidates(NamedTuple):
    """Where each of ``K`` starts ended (fixed shapes: ``jit``/``vmap``-able).

    Attributes:
        states: ``(K, S)`` the end points, carry flattened with ``ravel_pytree``.
        speeds: ``(K,)`` ``q = ½‖F(s) − s‖²`` at each end point.
        converged: ``(K,)`` ``speeds <= tol``.
        steps: ``(K,)`` Newton steps each start took before it stopped.
    """

    states: jax.Array
    speeds: jax.Array
    converged: jax.Array
    steps: jax.Array


class FixedPoints(NamedTuple):
    """The distinct fixed points found, their linearisation, and the rest.

    Attributes:
        states: ``(M, S)`` the distinct fixed points, flattened carries, most
            often reached first.
        carries: the same points as carries (leaves with a leading ``M`` axis).
        speeds: ``(M,)`` ``q`` at each point (``<= tol``).
        eigenvalues: ``(M, S)`` complex: eigenvalues of ``∂F/∂s`` at each
            point, by modulus, descending.
        stable: ``(M,)`` ``max |λ| < 1``: the point attracts.
        counts: ``(M,)`` how many starts converged to each point.
        unconverged_states: ``(U, S)`` where the starts that did not reach
            ``q <= tol`` stopped; local minima of ``q`` there are slow points.
        unconverged_speeds: ``(U,)`` their ``q``.
    """

    states: jax.Array
    carries: Any
    speeds: jax.Array
    eigenvalues: jax.Array
    stable: jax.Array
    counts: jax.Array
    unconverged_states: jax.Array
    unconverged_speeds: jax.Array


def default_tol(size: int, dtype: Any) -> float:
    """``½ S (32 ε)²``: every unit of ``F(s) − s`` within 32 rounding units."""
    eps = float(np.finfo(np.dtype(dtype)).eps)
    return 0.5 * size * (32.0 * eps) ** 2


def fixed_point_candidates(
    cell: Cell,
    params: Any,
    x: jax.Array | None,
    initial: Any,
    *,
    tol: float | None = None,
    max_steps: int = 100,
) -> FixedPointCandidates:
    """Minimise ``q(s) = ½‖F(s) − s‖²`` from every start at once.

    ``F(s) = step(params, s, x)`` on the flattened carry. Each Newton step
    solves ``(∂F/∂s − I) δ = −(F(s) − s)`` by GMRES in a Krylov space of up to
    32 Jacobian-vector products (exact Newton for states of up to 32 numbers),
    then takes the best of eight step lengths along ``δ`` (only a decrease of
    ``q`` is accepted). A start stops when ``q <= tol``, when no step length
    lowers ``q`` (a minimum of ``q``: a slow point when ``q > 0``), or after
    ``max_steps``; the batch stops when every start has. Fixed shapes, so it
    runs under ``jax.jit`` and ``jax.vmap``; :func:`fixed_points` keeps the
    distinct ones.

    Args:
        cell: a :class:`gradflow.cells.Cell`.
        params: its params.
        x: ``(D,)`` the constant input; ``None`` means zeros (the autonomous
            map).
        initial: the starts, a carry with a leading ``K`` axis on every leaf
            (e.g. from :func:`sample_states`).
        tol: convergence threshold on ``q``; ``None`` means ``½ S (32 ε)²``
            (every unit of ``F(s) − s`` within 32 rounding units of the dtype).
        max_steps: most Newton steps per start.

    Returns:
        A :class:`FixedPointCandidates` with ``states (K, S)``.
    """
    x, s0, _, size = _check(cell, params, x, initial)
    tol = default_tol(size, s0.dtype) if tol is None else _check_tol(tol)
    max_steps = check_int("max_steps", max_steps)
    return _solve(cell, params, x, initial, tol, max_steps)


def fixed_points(
    cell: Cell,
    params: Any,
    x: jax.Array | None,
    initial: Any,
    *,
    tol: float | None = None,
    max_steps: int = 100,
    unique_tol: float = 1e-3,
) -> FixedPoints:
    """The fixed points of ``s ↦ step(params, s, x)`` reached from ``initial``.

    Runs :func:`fixed_point_candidates` (compiled, all starts at once), keeps
    the converged end points that differ by more than ``unique_tol`` in every
    pair (max-abs difference of the flattened carries), and linearises the
    map at each: ``∂F/∂s`` by forward-mode autodiff, its eigenvalues on the
    host. Called eagerly (the number of distinct points depends on the data).

    Args:
        cell: a :class:`gradflow.cells.Cell`; the state is its whole carry
            (``(h, c)`` for an LSTM, every layer's carry for a stack).
        params: its params.
        x: ``(D,)`` the constant input; ``None`` means zeros.
        initial: the starts, a carry with a leading ``K`` axis on every leaf.
        tol: convergence threshold on ``q``; see :func:`fixed_point_candidates`.
        max_steps: most Newton steps per start.
        unique_tol: two converged points closer than this in every unit are one.

    Returns:
        A :class:`FixedPoints` with ``states (M, S)``.

    Example:
        >>> starts = gf.sample_states(cell, params, xs, 64)
        >>> fp = gf.fixed_points(cell, params, None, starts)
        >>> fp.eigenvalues[fp.stable]     # (stable points, S), |λ| < 1
    """
    x, s0, unravel, size = _check(cell, params, x, initial)
    if not is_concrete(s0):
        raise TypeError(
            "fixed_points runs eagerly (the number of distinct points depends on "
            "the data); call it outside jax.jit, or use fixed_point_candidates "
            "(fixed shapes) inside"
        )
    tol = default_tol(size, s0.dtype) if tol is None else _check_tol(tol)
    max_steps = check_int("max_steps", max_steps)
    unique_tol = check_float("unique_tol", unique_tol, minimum=0.0, strict=True)
    cand = _solve(cell, params, x, initial, tol, max_steps)
    states = np.asarray(cand.states)
    speeds = np.asarray(cand.speeds)
    done = np.asarray(cand.converged)
    keep, counts = _distinct(states[done], speeds[done], unique_tol)
    points = states[done][keep]
    dtype = states.dtype
    if points.shape[0]:
        jac = np.asarray(_jacobians(cell, params, x, jnp.asarray(points)))
        eig = np.stack([_sorted_eigenvalues(j) for j in jac])
    else:
        eig = np.zeros((0, size), np.result_type(dtype, np.complex64))
    stable = np.max(np.abs(eig), axis=-1, initial=0.0) < 1.0
    order = np.lexsort((speeds[done][keep], -counts))
    points = jnp.asarray(points[order])
    return FixedPoints(
        states=points,
        carries=jax.vmap(unravel)(points),
        speeds=jnp.asarray(speeds[done][keep][order]),
        eigenvalues=jnp.asarray(eig[order]),
        stable=jnp.asarray(stable[order]),
        counts=jnp.asarray(counts[order]),
        unconverged_states=jnp.asarray(states[~done]),
        unconverged_speeds=jnp.asarray(speeds[~done]),
    )


def sample_states(
    cell: Cell,
    params: Any,
    xs: jax.Array,
    k: int,
    carry: Any = None,
    *,
    key: jax.Array | None = None,
    noise: float = 0.0,
) -> Any:
    """``k`` carries drawn from those a trajectory visits: starts for fixed points.

    Runs ``cell`` over ``xs`` and draws ``k`` of the ``T · B`` carries leaving
    each step (every batch element's), without replacement.

    Args:
        cell: a :class:`gradflow.cells.Cell`.
        params: its params.
        xs: ``(T, *batch, input_size)``, time-major.
        k: how many carries (at most ``T`` times the batch size).
        carry: the carry entering step 0; ``None`` means zeros.
        key: a ``jax.random`` key for the draw (and the noise); ``None`` uses
            ``jax.random.key(0)``, so results repeat.
        noise: standard deviation of Gaussian noise added to every unit.

    Returns:
        A carry whose leaves have a leading ``k`` axis (``initial`` of
        :func:`fixed_points`).
    """
    carry = resolve_carry(cell, params, xs, carry)
    total = int(np.prod(xs.shape[:-1]))
    k = check_int("k", k)
    if k > total:
        raise ValueError(
            f"k must be <= the number of visited states T * batch = {total} "
            f"(xs of shape {tuple(xs.shape)}), got {k}"
        )
    noise = check_float("noise", noise, minimum=0.0)
    if key is None:
        key = jax.random.key(0)
    return _sample(cell, params, xs, carry, key, k, noise)


@partial(jax.jit, static_argnums=(0, 5))
def _sample(cell, params, xs, carry, key, k, noise):
    def body(c, xw_t):
        c, _ = cell.recur(params, c, xw_t)
        return c, c

    _, visited = lax.scan(body, carry, cell.project(params, xs))
    rank = xs.ndim - 1  # time and batch axes
    flat = jax.tree_util.tree_map(lambda a: a.reshape(-1, *a.shape[rank:]), visited)
    total = jax.tree_util.tree_leaves(flat)[0].shape[0]
    pick_key, noise_key = jax.random.split(key)
    pick = jax.random.choice(pick_key, total, (k,), replace=False)
    leaves, tree = jax.tree_util.tree_flatten(flat)
    keys = jax.random.split(noise_key, len(leaves))
    out = [
        a[pick] + noise * jax.random.normal(kk, (k, *a.shape[1:]), a.dtype)
        for a, kk in zip(leaves, keys, strict=True)
    ]
    return jax.tree_util.tree_unflatten(tree, out)


def _check_tol(tol: Any) -> float:
    return check_float("tol", tol, minimum=0.0, strict=True)


def _check(cell: Cell, params: Any, x: Any, initial: Any):
    """Validate; return ``(x (D,), starts (K, S), unravel, S)``."""
    check_cell(cell)
    leaves = jax.tree_util.tree_leaves(initial)
    if not leaves or any(not hasattr(a, "shape") for a in leaves):
        raise TypeError(
            "initial must be a carry whose leaves are arrays with a leading K "
            f"axis (e.g. gf.sample_states(...)), got {type(initial).__name__}"
        )
    first = leaves[0]
    if first.ndim < 1:
        raise ValueError(
            "initial must have a leading K axis (the starts) on every leaf, got "
            f"a leaf of shape {tuple(first.shape)}"
        )
    count = int(first.shape[0])
    dtype = first.dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"initial must have a floating dtype, got {dtype}")
    one = cell.initial_carry((), dtype)
    expected = cell.initial_carry((count,), dtype)
    got = jax.tree_util.tree_map(lambda a: tuple(a.shape), initial)
    if jax.tree_util.tree_structure(initial) != jax.tree_util.tree_structure(expected):
        raise TypeError(
            f"initial must be shaped like cell.initial_carry(({count},)), "
            f"{jax.tree_util.tree_map(lambda a: tuple(a.shape), expected)}, "
            f"got {got}"
        )
    want = [tuple(a.shape) for a in jax.tree_util.tree_leaves(expected)]
    if want != [tuple(a.shape) for a in leaves]:
        single = [tuple(a.shape) for a in jax.tree_util.tree_leaves(one)]
        raise ValueError(
            f"initial must have leaf shapes {want}: a leading K axis (here "
            f"K={count} starts) before one sequence's carry {single}, got {got}"
        )
    bad = [a.dtype for a in leaves if a.dtype != dtype]
    if bad:
        raise TypeError(
            f"initial must have one floating dtype on every leaf, got {dtype} "
            f"and {bad[0]}"
        )
    if count < 1:
        raise ValueError("initial must hold at least one start, got K=0")
    _, unravel = ravel_pytree(one)
    starts = jax.vmap(lambda c: ravel_pytree(c)[0])(initial)
    if is_concrete(starts):
        arr = np.asarray(starts)
        if not np.all(np.isfinite(arr)):
            k = int(np.argwhere(~np.isfinite(arr))[0][0])
            raise ValueError(
                f"initial contains NaN or inf (first in start {k}); every start "
                "must be finite"
            )
    size = int(starts.shape[1])
    dim = cell.input_size(params)
    if x is None:
        x = jnp.zeros((dim,), dtype)
    shape = getattr(x, "shape", None)
    if shape is None or not hasattr(x, "dtype"):
        raise TypeError(f"x must be an array of shape ({dim},), got {type(x).__name__}")
    if tuple(shape) != (dim,):
        raise ValueError(
            f"x must have shape ({dim},) (one constant input), got {tuple(shape)}"
        )
    if x.dtype != dtype:
        raise TypeError(f"x must have the dtype of initial, {dtype}, got {x.dtype}")
    if is_concrete(x) and not bool(np.all(np.isfinite(np.asarray(x)))):
        raise ValueError("x contains NaN or inf; the constant input must be finite")
    return x, starts, unravel, size


def _flat_map(cell: Cell, params: Any, x: jax.Array, unravel):
    """``F(s (S,)) -> (S,)``: one step on the flattened carry, input held at x."""
    xw = cell.project(params, x)

    def f(s):
        new, _ = cell.recur(params, unravel(s), xw)
        return ravel_pytree(new)[0]

    return f


@partial(jax.jit, static_argnums=(0,))
def _solve(cell, params, x, initial, tol, max_steps):
    dtype = jax.tree_util.tree_leaves(initial)[0].dtype
    _, unravel = ravel_pytree(cell.initial_carry((), dtype))
    s0 = jax.vmap(lambda c: ravel_pytree(c)[0])(initial)
    f = jax.vmap(_flat_map(cell, params, x, unravel))
    size = s0.shape[1]
    dim = min(KRYLOV, size)

    def residual(s):
        r = f(s) - s
        return r, 0.5 * jnp.sum(r * r, axis=-1)

    def newton_direction(s, r):
        # GMRES for (J − I) δ = −r, one Krylov basis per start.
        _, jvp = jax.linearize(f, s)

        def apply(v):
            return jvp(v) - v

        beta = jnp.sqrt(jnp.sum(r * r, axis=-1))
        basis = jnp.zeros((s.shape[0], dim + 1, size), dtype)
        basis = basis.at[:, 0].set(-r / jnp.where(beta > 0, beta, 1.0)[:, None])
        hess = jnp.zeros((s.shape[0], dim + 1, dim), dtype)

        def arnoldi(j, state):
            basis, hess = state
            w = apply(lax.dynamic_index_in_dim(basis, j, axis=1, keepdims=False))
            scale = jnp.sqrt(jnp.sum(w * w, axis=-1))
            col = jnp.zeros((s.shape[0], dim + 1), dtype)
            # Classical Gram–Schmidt twice: the rows past j are still zero.
            for _ in range(2):
                h = jnp.einsum("kis,ks->ki", basis, w)
                w = w - jnp.einsum("kis,ki->ks", basis, h)
                col = col + h
            nw = jnp.sqrt(jnp.sum(w * w, axis=-1))
            # A new direction lost in rounding (breakdown) is dropped, not scaled up.
            live = nw > 16 * jnp.finfo(dtype).eps * scale
            col = col.at[:, j + 1].set(jnp.where(live, nw, 0.0))
            nxt = jnp.where(live[:, None], w / jnp.where(live, nw, 1.0)[:, None], 0.0)
            basis = lax.dynamic_update_index_in_dim(basis, nxt, j + 1, axis=1)
            hess = lax.dynamic_update_index_in_dim(hess, col, j, axis=2)
            return basis, hess

        basis, hess = lax.fori_loop(0, dim, arnoldi, (basis, hess))
        rhs = jnp.zeros((s.shape[0], dim + 1), dtype).at[:, 0].set(beta)
        y = jax.vmap(_hessenberg_lstsq)(hess, rhs)
        return jnp.einsum("kis,ki->ks", basis[:, :dim], y)

    def cond(state):
        _, _, _, done, _, it = state
        return jnp.logical_not(jnp.all(done)) & (it < max_steps)

    def body(state):
        s, r, q, done, steps, it = state
        delta = newton_direction(s, r)

        def trial(best, a):
            # One loop over the step lengths: F is compiled once, not eight times.
            best_s, best_r, best_q = best
            cand = s + a * delta
            r_t, q_t = residual(cand)
            better = jnp.isfinite(q_t) & (q_t < best_q)
            return (
                jnp.where(better[:, None], cand, best_s),
                jnp.where(better[:, None], r_t, best_r),
                jnp.where(better, q_t, best_q),
            ), None

        lengths = jnp.asarray(_STEPS, dtype)
        (best_s, best_r, best_q), _ = lax.scan(trial, (s, r, q), lengths)
        active = jnp.logical_not(done)
        moved = best_q < q
        s = jnp.where(active[:, None], best_s, s)
        r = jnp.where(active[:, None], best_r, r)
        q = jnp.where(active, best_q, q)
        steps = steps + active.astype(steps.dtype)
        done = done | (q <= tol) | jnp.logical_not(moved)
        return s, r, q, done, steps, it + 1

    r0, q0 = residual(s0)
    # A NaN q (NaN params) stops at once: nothing can lower it.
    start = (
        s0,
        r0,
        q0,
        (q0 <= tol) | jnp.isnan(q0),
        jnp.zeros(q0.shape, jnp.int32),
        jnp.asarray(0, jnp.int32),
    )
    s, _, q, _, steps, _ = lax.while_loop(cond, body, start)
    return FixedPointCandidates(s, q, q <= tol, steps)


def _hessenberg_lstsq(hess: jax.Array, rhs: jax.Array) -> jax.Array:
    """``argmin_y ‖rhs − H y‖`` for ``H (m+1, m)`` upper Hessenberg, by QR.

    After a breakdown at step ``j`` the columns past ``j`` are zero; their
    ``y`` is set to 0 (the triangular factor's zero diagonal is replaced by 1
    and its right-hand side by 0), which is the least-squares solution.
    """
    qmat, rmat = jnp.linalg.qr(hess)
    diag = jnp.diagonal(rmat)
    scale = jnp.max(jnp.abs(diag))
    live = jnp.abs(diag) > 64 * jnp.finfo(hess.dtype).eps * scale
    rmat = rmat + jnp.diag(jnp.where(live, 0.0, 1.0 - diag))
    b = jnp.where(live, qmat.T @ rhs, 0.0)
    return jax.scipy.linalg.solve_triangular(rmat, b, lower=False)


@partial(jax.jit, static_argnums=(0,))
def _jacobians(cell, params, x, points):
    _, unravel = ravel_pytree(cell.initial_carry((), points.dtype))
    return jax.vmap(jax.jacfwd(_flat_map(cell, params, x, unravel)))(points)


def _sorted_eigenvalues(jac: np.ndarray) -> np.ndarray:
    # numpy returns a real array when every eigenvalue is real: always complex.
    lam = np.linalg.eigvals(jac).astype(np.result_type(jac.dtype, np.complex64))
    # By modulus, descending; a conjugate pair puts +imag first.
    return lam[np.lexsort((-lam.imag, -np.abs(lam)))]


def _distinct(
    states: np.ndarray, speeds: np.ndarray, unique_tol: float
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of distinct states (best ``q`` of each group kept) and group sizes."""
    order = np.argsort(speeds, kind="stable")
    kept: list[int] = []
    counts: list[int] = []
    for i in order:
        if kept:
            gap = np.max(np.abs(states[kept] - states[i]), axis=-1)
            j = int(np.argmin(gap))
            if gap[j] <= unique_tol:
                counts[j] += 1
                continue
        kept.append(int(i))
        counts.append(1)
    return np.asarray(kept, dtype=np.int64), np.asarray(counts, dtype=np.int64)
