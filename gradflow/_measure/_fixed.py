"""Fixed points and slow points of ``s ↦ step(params, s, x)`` for a constant input.

All ``K`` starts are solved at once by a batched Levenberg–Marquardt iteration
on ``q(s) = ½‖F(s) − s‖²``: the Jacobian ``∂F/∂s`` of every start by forward
mode, one damped Gauss–Newton step each, in chunks of 32 starts; before every
sweep the starts still running are sorted to the front and only their chunks
are stepped. Chosen by measurement (``benchmarks/bench_fixed_points.py``):
optax's Adam does not reach ``q < 1e-10`` in 20,000 steps; a matrix-free
Newton–GMRES step costs as much per start on a CPU and needs more steps;
Newton's step by LU (a third of the flops of ``AᵀA`` and its Cholesky, with a
line search and this damped step as fallback) was slower, 1.4–1.7x at 1024
starts on a CPU: LAPACK's LU of a 128×128 matrix costs about as much as ``AᵀA``
and its Cholesky there, not a third, and it takes 11% more steps.
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
from .._unroll import check_cell, describe_mismatch, forward_states, resolve_carry
from ..cells import Cell


class FixedPointCandidates(NamedTuple):
    """Where each of ``K`` starts ended (fixed shapes: ``jit``/``vmap``-able).

    Attributes:
        states: ``(K, S)`` the end points, carry flattened with ``ravel_pytree``.
        speeds: ``(K,)`` ``q = ½‖F(s) − s‖²`` at each end point.
        converged: ``(K,)`` ``speeds <= tol``.
        steps: ``(K,)`` iterations each start took before it stopped.
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

    ``F(s) = step(params, s, x)`` on the flattened carry. Each step forms
    ``A = ∂F/∂s − I`` (``S`` forward-mode products) and solves
    ``(AᵀA + μ I) δ = −Aᵀ(F(s) − s)`` by Cholesky; a step that lowers ``q``
    is taken and ``μ`` shrinks (towards Newton's step, quadratic convergence
    at a regular fixed point), otherwise ``μ`` grows (towards a short
    gradient step). A start stops when ``q <= tol``, at a minimum of ``q``
    (no damping lowers it, or the step is below rounding: a slow point when
    ``q > tol``), or after ``max_steps``. Stopped starts stop costing work:
    the starts run in chunks of 32, and before each sweep those still running
    are sorted to the front and only their chunks are stepped, so the cost is
    ``O(S³)`` per start and step it takes (about the sum of the starts' steps,
    not ``K`` times the slowest start's). Fixed shapes, so it runs under
    ``jax.jit`` and ``jax.vmap``; :func:`fixed_points` keeps the distinct
    ones.

    Args:
        cell: a :class:`gradflow.cells.Cell`.
        params: its params.
        x: ``(D,)`` the constant input; ``None`` means zeros (the autonomous
            map).
        initial: the starts, a carry with a leading ``K`` axis on every leaf
            (e.g. from :func:`sample_states`).
        tol: convergence threshold on ``q``; ``None`` means ``½ S (32 ε)²``
            (every unit of ``F(s) − s`` within 32 rounding units of the dtype).
        max_steps: most iterations per start.

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
        max_steps: most iterations per start.
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

    Runs ``cell`` over ``xs`` (the shared forward pass of the measurements)
    and draws ``k`` of the ``T · B`` carries entering each step (every batch
    element's, ``s_0`` included), without replacement.

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
    visited = forward_states(cell, params, xs, carry).saved
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
        want, given = describe_mismatch(expected, initial)
        raise TypeError(
            f"initial must be shaped like cell.initial_carry(({count},)), {want}, "
            f"got {given}"
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
    dim = cell.input_size(params)  # None: a custom cell that takes any width
    want = f"({'D' if dim is None else dim},)"
    if x is None:
        if dim is None:
            raise ValueError(
                f"x must be given for cell {cell.name!r}, which does not know its "
                "input size (gf.cells.custom without input_size)"
            )
        x = jnp.zeros((dim,), dtype)
    shape = getattr(x, "shape", None)
    if shape is None or not hasattr(x, "dtype"):
        raise TypeError(f"x must be an array of shape {want}, got {type(x).__name__}")
    if len(shape) != 1 or (dim is not None and shape[0] != dim):
        raise ValueError(
            f"x must have shape {want} (one constant input), got {tuple(shape)}"
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


class _Search(NamedTuple):
    """Per-start state of the solve: every field has a leading ``K`` axis."""

    s: jax.Array  # (K, S) the iterate
    r: jax.Array  # (K, S) F(s) − s
    q: jax.Array  # (K,) ½‖r‖²
    mu: jax.Array  # (K,) damping, relative to max diag(AᵀA)
    nu: jax.Array  # (K,) growth factor of mu after a rejected step
    done: jax.Array  # (K,) stopped: converged, at a minimum of q, or out of steps
    steps: jax.Array  # (K,) iterations taken


# Starts per chunk, the unit of compaction: chunks that hold only stopped starts
# are skipped. 8 to 128 measured alike at K = 1024, S = 128 on a CPU
# (benchmarks/bench_fixed_points.py); smaller chunks mean more loop trips.
_CHUNK = 32


def _start(residual, s0, tol, max_steps) -> _Search:
    r0, q0 = residual(s0)
    count = s0.shape[0]
    return _Search(
        s0,
        r0,
        q0,
        jnp.full((count,), 1e-3, s0.dtype),
        jnp.full((count,), 2.0, s0.dtype),
        # A NaN q (NaN params) stops at once: nothing can lower it.
        (q0 <= tol) | jnp.isnan(q0),
        jnp.zeros((count,), jnp.int32),
    )


def _damped(residual, a, st: _Search, active):
    """One Levenberg–Marquardt step ``(AᵀA + μ max diag(AᵀA) I) δ = −Aᵀr``.

    Returns ``(δ, r, q at s + δ, accepted, μ, ν)``; μ and ν move for ``active``
    starts only.
    """
    s, r, q, mu, nu = st.s, st.r, st.q, st.mu, st.nu
    g = jnp.einsum("kij,ki->kj", a, r)  # ∇q
    # Gauss–Newton Hessian of q (a batched matmul: ~2.5x an einsum on CPU).
    h = jnp.swapaxes(a, 1, 2) @ a
    # Damping relative to the largest curvature keeps μ scale-free.
    damp = mu * jnp.max(jnp.diagonal(h, axis1=1, axis2=2), axis=-1)
    eye = jnp.eye(s.shape[1], dtype=s.dtype)
    # LAPACK reads one triangle: no symmetrising pass over the K matrices.
    chol = lax.linalg.cholesky(
        h + damp[:, None, None] * eye[None], symmetrize_input=False
    )
    half = lax.linalg.triangular_solve(chol, g[..., None], left_side=True, lower=True)
    step = -lax.linalg.triangular_solve(
        chol, half, left_side=True, lower=True, transpose_a=True
    )[..., 0]
    r_new, q_new = residual(s + step)
    predicted = 0.5 * jnp.sum(step * (damp[:, None] * step - g), axis=-1)
    gain = (q - q_new) / jnp.where(predicted > 0, predicted, 1.0)
    # A NaN step (Cholesky of a singular matrix at tiny μ) is a rejection.
    ok = active & jnp.isfinite(q_new) & (q_new < q)
    # Nielsen's update: shrink μ after a good step, double its growth after
    # each rejection.
    shrink = jnp.maximum(1.0 / 3.0, 1.0 - (2.0 * gain - 1.0) ** 3)
    mu = jnp.where(ok, mu * shrink, jnp.where(active, mu * nu, mu))
    nu = jnp.where(ok, 2.0, jnp.where(active, 2.0 * nu, nu))
    return step, r_new, q_new, ok, mu, nu


def _advance(st: _Search, step, r_new, q_new, ok, mu, nu, tol, max_steps) -> _Search:
    """Take the accepted steps; stop starts at tol, a minimum of q, or max_steps."""
    eps = jnp.finfo(st.s.dtype).eps
    tiny = jnp.max(jnp.abs(step), axis=-1) <= 4 * eps * (
        jnp.max(jnp.abs(st.s), axis=-1) + 4 * eps
    )
    s = jnp.where(ok[:, None], st.s + step, st.s)
    r = jnp.where(ok[:, None], r_new, st.r)
    q = jnp.where(ok, q_new, st.q)
    steps = st.steps + jnp.logical_not(st.done).astype(st.steps.dtype)
    # A minimum of q (no damping lowers it, or the step is below rounding) is a
    # slow point when q > tol.
    done = st.done | (q <= tol) | (mu > 1e12) | (ok & tiny) | (steps >= max_steps)
    return _Search(s, r, q, mu, nu, done, steps)


def _iterate(
    body, state: _Search, compact: bool = True, chunk: int | None = _CHUNK
) -> _Search:
    """Run ``body`` until every start has stopped, ``chunk`` starts at a time.

    Compacted: before each sweep a stable sort puts the starts still running
    first, and the body runs on just the chunks that hold them, so stopped
    starts stop costing work (about the sum of the starts' steps, not ``K``
    times the slowest start's). Each start's arithmetic is that of one batch
    of all ``K``. Without ``compact`` every chunk runs every sweep; with
    ``chunk=None``, one batch of all ``K``. The batch is padded with stopped
    copies of start 0 to a multiple of ``chunk``. Fixed shapes: ``jit`` and
    ``vmap`` (under ``vmap`` a sweep runs as many chunks as its busiest member).
    """

    def running(st):
        return jnp.any(jnp.logical_not(st.done))

    count = state.done.shape[0]
    if chunk is None or count <= chunk:
        return lax.while_loop(running, body, state)
    pad = -count % chunk
    state = jax.tree_util.tree_map(
        lambda a: jnp.concatenate([a, jnp.repeat(a[:1], pad, axis=0)]), state
    )
    state = state._replace(done=state.done.at[count:].set(True))

    def on_chunk(i, st):
        part = jax.tree_util.tree_map(
            lambda a: lax.dynamic_slice_in_dim(a, i * chunk, chunk), st
        )
        return jax.tree_util.tree_map(
            lambda a, b: lax.dynamic_update_slice_in_dim(a, b, i * chunk, 0),
            st,
            body(part),
        )

    def sweep(carry):
        st, where = carry
        if compact:
            first = jnp.argsort(st.done.astype(jnp.int32), stable=True)
            st = jax.tree_util.tree_map(lambda a: a[first], st)
            where = where[first]
            busy = jnp.sum(jnp.logical_not(st.done))
            return lax.fori_loop(0, (busy + chunk - 1) // chunk, on_chunk, st), where
        return lax.fori_loop(0, (count + pad) // chunk, on_chunk, st), where

    where = jnp.arange(count + pad)  # each slot's start
    state, where = lax.while_loop(lambda c: running(c[0]), sweep, (state, where))
    back = jnp.argsort(where)[:count]
    return jax.tree_util.tree_map(lambda a: a[back], state)


def _residual_and_jacobian(cell, params, x, initial):
    """``(s0 (K, S), residual, jacobian)`` of the flattened map for a batch."""
    dtype = jax.tree_util.tree_leaves(initial)[0].dtype
    _, unravel = ravel_pytree(cell.initial_carry((), dtype))
    s0 = jax.vmap(lambda c: ravel_pytree(c)[0])(initial)
    f = _flat_map(cell, params, x, unravel)
    eye = jnp.eye(s0.shape[1], dtype=dtype)

    def residual(s):
        r = jax.vmap(f)(s) - s
        return r, 0.5 * jnp.sum(r * r, axis=-1)

    def jacobian(s):  # A = ∂(F − s)/∂s, (K, S, S)
        return jax.vmap(lambda v: jax.jacfwd(f)(v) - eye)(s)

    return s0, residual, jacobian


@partial(jax.jit, static_argnums=(0,), static_argnames=("compact", "chunk"))
def _solve(cell, params, x, initial, tol, max_steps, *, compact=True, chunk=_CHUNK):
    s0, residual, jacobian = _residual_and_jacobian(cell, params, x, initial)

    def body(st):
        active = jnp.logical_not(st.done)
        moved = _damped(residual, jacobian(st.s), st, active)
        return _advance(st, *moved, tol, max_steps)

    state = _iterate(body, _start(residual, s0, tol, max_steps), compact, chunk)
    return FixedPointCandidates(state.s, state.q, state.q <= tol, state.steps)


def eigenvalues_at(cell: Cell, params: Any, x: jax.Array, states: jax.Array):
    """``(K, S)`` complex eigenvalues of ``∂F/∂s`` at ``states (K, S)``, by modulus.

    Traceable (for a sweep under ``jit``); ``jnp.linalg.eigvals`` runs on CPU.
    """
    lam = jnp.linalg.eigvals(_jacobians(cell, params, x, states))
    order = jnp.argsort(-jnp.abs(lam), axis=-1)
    return jnp.take_along_axis(lam, order, axis=-1)


def visited_states(cell: Cell, params: Any, xs: jax.Array) -> jax.Array:
    """``(T, S)``: the flattened carry entering each step of one ``xs (T, D)``."""
    entering = forward_states(cell, params, xs, cell.initial_carry((), xs.dtype))
    return jax.vmap(lambda c: ravel_pytree(c)[0])(entering.saved)


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
