"""Fixed points: all starts at once against one optimisation per start.

A tanh RNN with N=128 units (``W_hh ~ N(0, g²/N)``, a random bias, zero
input); 1024 starts drawn from a trajectory driven by noise
(``gf.sample_states``); every start minimised to ``q = ½‖F(s) − s‖² < 1e-10``.

1. ``gf.fixed_point_candidates`` (batched Levenberg–Marquardt on chunks of 32
   starts, only the chunks holding running starts, re-sorted every sweep)
   against:
   - the same solve as one batch (it runs until its slowest start: the
     solver before compaction), and in chunks of 32 that all run every sweep;
   - Newton's step by LU with a backtracking line search and the damped step
     as fallback, compacted the same way (the alternative measured);
   - the same solver compiled for one start and called once per start in a
     Python loop (the hard baseline: the same arithmetic, no batching);
   - ``scipy.optimize.root(method="hybr")`` and
     ``scipy.optimize.least_squares(method="lm")`` per start, with the
     residual and Jacobian from jitted jax functions (the straightforward way a
     researcher would write it), default tolerances;
   - minimising ``q`` itself per start (one round): ``scipy.optimize.minimize``
     BFGS with the gradient from jitted jax, and
     ``jax.scipy.optimize.minimize`` BFGS compiled for one start.
2. The choice of solver, all batched, on a subset of the starts: optax Adam on
   ``q`` (the peers' way, e.g. FixedPointFinder), run until every start has
   ``q < 1e-10`` or ``--adam-steps``, and a matrix-free Newton–GMRES(32) step
   with a line search on ``q``, next to Levenberg–Marquardt.
3. Where a batched step's time goes: each piece of one Levenberg–Marquardt
   step's linear algebra on all starts at once, per start, against the same
   piece on one start.

Compile time is excluded (each program runs once before timing) and printed;
the ways alternate in every round, and each figure is the median of
``--repeat`` rounds.

    .venv/bin/python benchmarks/bench_fixed_points.py            # the table
    .venv/bin/python benchmarks/bench_fixed_points.py --quick    # 128 starts
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import platform
import time
import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.optimize
from jax import lax
from jax.flatten_util import ravel_pytree
from jax.scipy.optimize import minimize as jax_minimize

import gradflow as gf
from gradflow._measure._fixed import (
    _CHUNK,
    _advance,
    _damped,
    _iterate,
    _residual_and_jacobian,
    _solve,
    _start,
)
from gradflow._measure._fixed import _flat_map as flat_map

TOL = 1e-10


def network(n: int, gain: float):
    cell = gf.cells.rnn(n, recurrent_init="gaussian", gain=gain)
    params = cell.init(jax.random.key(0), 1)
    return cell, params


def starts_for(cell, params, k: int):
    xs = 0.5 * jax.random.normal(jax.random.key(1), (max(4 * k, 200), 1))
    return gf.sample_states(cell, params, xs, k, key=jax.random.key(2))


def clock(fn):
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return time.perf_counter() - start, out


# Fractions of Newton's step tried, longest first.
NEWTON_LENGTHS = (1.0, 0.5, 0.25, 0.125, 1 / 16, 1 / 64)


@partial(jax.jit, static_argnums=(0,))
def newton_solve(cell, params, x, initial, tol, max_steps):
    """Newton's step by LU, backtracking on q; the damped step where none lowers q.

    The damped step (the library's) is computed only in iterations where some
    start needs it; compacted like ``gf.fixed_point_candidates``.
    """
    s0, residual, jacobian = _residual_and_jacobian(cell, params, x, initial)

    def body(st):
        active = jnp.logical_not(st.done)
        a = jacobian(st.s)
        direction = jnp.linalg.solve(a, -st.r[..., None])[..., 0]
        lengths = jnp.asarray(NEWTON_LENGTHS, st.s.dtype)
        trial = st.s[None] + lengths[:, None, None] * direction[None]
        r_t, q_t = jax.vmap(residual)(trial)
        lower = jnp.isfinite(q_t) & (q_t < st.q[None])
        first = jnp.argmax(lower, axis=0)
        step_n = lengths[first][:, None] * direction
        r_n = jnp.take_along_axis(r_t, first[None, :, None], axis=0)[0]
        q_n = jnp.take_along_axis(q_t, first[None], axis=0)[0]
        take = active & jnp.any(lower, axis=0)
        need = active & jnp.logical_not(take)
        step, r_new, q_new, ok, mu, nu = lax.cond(
            jnp.any(need),
            lambda: _damped(residual, a, st, need),
            lambda: (step_n, r_n, q_n, jnp.zeros_like(take), st.mu, st.nu),
        )
        step = jnp.where(take[:, None], step_n, step)
        r_new = jnp.where(take[:, None], r_n, r_new)
        q_new = jnp.where(take, q_n, q_new)
        mu = jnp.where(take, mu / 3.0, mu)
        nu = jnp.where(take, 2.0, nu)
        return _advance(st, step, r_new, q_new, ok | take, mu, nu, tol, max_steps)

    state = _iterate(body, _start(residual, s0, tol, max_steps), True)
    return gf.FixedPointCandidates(state.s, state.q, state.q <= tol, state.steps)


def scipy_solvers(cell, params, x):
    """Per-start scipy solvers on the float32 residual and Jacobian from jax."""
    _, unravel = ravel_pytree(cell.initial_carry((), jnp.float32))
    f = flat_map(cell, params, x, unravel)
    size = cell.initial_carry((), jnp.float32).h.shape[0]
    eye = jnp.eye(size)
    res = jax.jit(lambda s: f(s) - s)
    jac = jax.jit(lambda s: jax.jacfwd(f)(s) - eye)
    both = jax.jit(lambda s: (f(s) - s, jax.jacfwd(f)(s) - eye))
    for fn in (res, jac, both):  # compile outside the timed loops
        jax.block_until_ready(fn(jnp.zeros((size,))))

    def fun(v):
        return np.asarray(res(jnp.asarray(v, jnp.float32)), np.float64)

    def dfun(v):
        return np.asarray(jac(jnp.asarray(v, jnp.float32)), np.float64)

    def fun_and_jac(v):
        r, a = both(jnp.asarray(v, jnp.float32))
        return np.asarray(r, np.float64), np.asarray(a, np.float64)

    def root(v):
        return scipy.optimize.root(fun_and_jac, v, jac=True, method="hybr").x

    def lsq(v):
        return scipy.optimize.least_squares(fun, v, jac=dfun, method="lm").x

    def looped(solve, starts):
        def run():
            ends = np.stack([solve(v) for v in np.asarray(starts, np.float64)])
            r = np.asarray(jax.vmap(res)(jnp.asarray(ends, jnp.float32)))
            return ends, 0.5 * np.sum(r.astype(np.float64) ** 2, axis=-1)

        return run

    return {
        "scipy.optimize.root hybr, per start": partial(looped, root),
        "scipy least_squares lm, per start": partial(looped, lsq),
    }


def q_minimisers(cell, params, x):
    """Per-start minimisers of ``q`` itself, the issue's "one optimisation per start".

    ``scipy.optimize.minimize(method="BFGS")`` on ``q`` and its gradient from a
    jitted ``jax.value_and_grad`` (``gtol=1e-8``: at the default ``1e-5`` no start
    reaches ``q < 1e-10``), and ``jax.scipy.optimize.minimize(method="BFGS")``
    compiled for one start, called per start.
    """
    _, unravel = ravel_pytree(cell.initial_carry((), jnp.float32))
    f = flat_map(cell, params, x, unravel)

    def q(s):
        r = f(s) - s
        return 0.5 * jnp.sum(r * r)

    value_and_grad = jax.jit(jax.value_and_grad(q))
    jax_bfgs = jax.jit(
        lambda s: (
            jax_minimize(q, s, method="BFGS", tol=1e-12, options={"maxiter": 5000}).x
        )
    )

    def fun(v):
        val, g = value_and_grad(jnp.asarray(v, jnp.float32))
        return float(val), np.asarray(g, np.float64)

    def scipy_bfgs(v):
        with warnings.catch_warnings():  # precision-loss warnings near the end
            warnings.simplefilter("ignore")
            return scipy.optimize.minimize(
                fun, v, jac=True, method="BFGS", options={"gtol": 1e-8, "maxiter": 5000}
            ).x

    def looped(solve, starts):
        def run():
            ends = [np.asarray(solve(v)) for v in np.asarray(starts)]
            qs = [float(q(jnp.asarray(e, jnp.float32))) for e in ends]
            return np.stack(ends), np.asarray(qs)

        return run

    first = jnp.zeros((int(ravel_pytree(cell.initial_carry((), jnp.float32))[0].size),))
    jax.block_until_ready((value_and_grad(first), jax_bfgs(first)))  # compile
    return {
        "scipy minimize BFGS on q, per start": partial(looped, scipy_bfgs),
        "jax.scipy minimize BFGS on q, jit, per start": partial(looped, jax_bfgs),
    }


def adam_solver(cell, params, steps: int, lr: float):
    """Batched Adam on q (per start), stopping each start once q < TOL."""
    x = jnp.zeros((1,))
    opt = optax.adam(lr)

    def q_one(s):
        new, _ = cell.step(params, gf.cells.RNNCarry(s), x)
        r = new.h - s
        return 0.5 * jnp.sum(r * r)

    @jax.jit
    def run(s0):
        def cond(state):
            _, _, q, it = state
            return jnp.any(q >= TOL) & (it < steps)

        def body(state):
            s, o, _, it = state
            q, g = jax.vmap(jax.value_and_grad(q_one))(s)
            u, o = opt.update(g, o, s)
            s = jnp.where((q < TOL)[:, None], s, optax.apply_updates(s, u))
            return s, o, q, it + 1

        q0 = jax.vmap(q_one)(s0)
        s, _, _, it = lax.while_loop(cond, body, (s0, opt.init(s0), q0, 0))
        return s, jax.vmap(q_one)(s), it

    return run


# Step lengths tried along each Newton direction (the best one is taken).
STEPS = (1.0, 0.5, 0.25, 0.125, 1 / 16, 1 / 64, 1 / 256, 1 / 1024)


def gmres_solver(cell, params, steps: int):
    """Batched Newton–GMRES(32) with a line search on q (matrix-free)."""
    x = jnp.zeros((1,))
    return jax.jit(
        lambda s0: _gmres_solve(cell, params, x, gf.cells.RNNCarry(s0), TOL, steps)
    )


def _gmres_solve(cell, params, x, initial, tol, max_steps):
    dtype = jax.tree_util.tree_leaves(initial)[0].dtype
    _, unravel = ravel_pytree(cell.initial_carry((), dtype))
    s0 = jax.vmap(lambda c: ravel_pytree(c)[0])(initial)
    f = jax.vmap(flat_map(cell, params, x, unravel))
    size = s0.shape[1]
    dim = min(32, size)

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
        y = jax.vmap(lambda h, e: jnp.linalg.lstsq(h, e)[0])(hess, rhs)
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

        lengths = jnp.asarray(STEPS, dtype)
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
    return s, q, jnp.max(steps)


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


def candidates_stats(cand) -> str:
    steps = np.asarray(cand.steps)
    return f"steps max {steps.max()} median {np.median(steps):.0f} sum {steps.sum()}"


def pieces(cell, params, x, starts, repeat: int) -> None:
    """Each piece of one damped step, per start: a chunk at once vs one a call.

    The solver runs its steps on chunks of ``_CHUNK`` starts; here the pieces
    run on every chunk of the starts in turn, against one start per call.
    """
    s0, _, jacobian = _residual_and_jacobian(cell, params, x, starts)
    eye = jnp.eye(s0.shape[1], dtype=s0.dtype)
    a = jax.jit(jacobian)(s0)
    h = jnp.swapaxes(a, 1, 2) @ a + 1e-3 * eye
    chol = lax.linalg.cholesky(h, symmetrize_input=False)
    rhs = s0[..., None]

    def solves(c, b):
        half = lax.linalg.triangular_solve(c, b, left_side=True, lower=True)
        return lax.linalg.triangular_solve(
            c, half, left_side=True, lower=True, transpose_a=True
        )

    work = {
        "jacobian (jacfwd)": (jacobian, (s0,)),
        "A^T A (batched matmul)": (lambda m: jnp.swapaxes(m, 1, 2) @ m, (a,)),
        "cholesky (LAPACK)": (
            partial(lax.linalg.cholesky, symmetrize_input=False),
            (h,),
        ),
        "two triangular solves": (solves, (chol, rhs)),
        "LU (LAPACK, Newton's step)": (lambda m: lax.linalg.lu(m)[0], (a,)),
    }
    count = s0.shape[0] - s0.shape[0] % _CHUNK
    few = min(count, 64)
    print(f"# one step's pieces, us per start: {_CHUNK} at once vs 1 per call")
    for name, (fn, operands) in work.items():
        fn = jax.jit(fn)

        def cut(size, stop, operands=operands):
            return [
                tuple(o[k : k + size] for o in operands) for k in range(0, stop, size)
            ]

        chunks, ones = cut(_CHUNK, count), cut(1, few)
        jax.block_until_ready(fn(*chunks[0]))
        jax.block_until_ready(fn(*ones[0]))
        t_all, t_one = [], []
        for _ in range(repeat):
            t_all.append(clock(lambda fn=fn, c=chunks: [fn(*o) for o in c])[0] / count)
            t_one.append(clock(lambda fn=fn, c=ones: [fn(*o) for o in c])[0] / few)
        ta, to = float(np.median(t_all)), float(np.median(t_one))
        print(
            f"{name:28s} {ta * 1e6:8.1f} us  one a call {to * 1e6:8.1f} us  "
            f"-> {to / ta:.1f}x"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--starts", type=int, default=1024)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--gain", type=float, default=1.2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--adam-steps", type=int, default=20000)
    ap.add_argument("--subset", type=int, default=128)
    ap.add_argument("--no-scipy", action="store_true", help="skip the scipy loops")
    ap.add_argument("--quick", action="store_true", help="128 starts, 1 repeat")
    args = ap.parse_args()
    if args.quick:
        args.starts, args.repeat, args.subset = 128, 1, 32
    print(
        f"# jax {jax.__version__}, {platform.machine()}, {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.1f}; tanh RNN N={args.hidden} g={args.gain}, "
        f"{args.starts} starts, q < {TOL:g}",
        flush=True,
    )
    cell, params = network(args.hidden, args.gain)
    starts = starts_for(cell, params, args.starts)
    x = jnp.zeros((1,))

    batched = jax.jit(lambda s: gf.fixed_point_candidates(cell, params, x, s, tol=TOL))
    solve = partial(_solve, cell, params, x, tol=TOL, max_steps=100)
    whole = jax.jit(lambda s: solve(s, compact=False, chunk=None))
    uncompacted = jax.jit(lambda s: solve(s, compact=False))
    newton = jax.jit(lambda s: newton_solve(cell, params, x, s, TOL, 100))
    one = jax.jit(lambda s: gf.fixed_point_candidates(cell, params, x, s, tol=TOL))

    def looped():
        outs = []
        for k in range(args.starts):
            start = jax.tree_util.tree_map(lambda a, k=k: a[k : k + 1], starts)
            outs.append(one(start))
        return jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *outs)

    ways = {
        "gf.fixed_point_candidates (compacted LM)": lambda: batched(starts),
        "the same, no compaction, no chunks (before)": lambda: whole(starts),
        "the same in chunks of 32, not compacted": lambda: uncompacted(starts),
        "Newton by LU + damped fallback, compacted": lambda: newton(starts),
        "the same LM compiled for 1 start, Python loop": looped,
    }
    if not args.no_scipy:
        for name, make in scipy_solvers(cell, params, x).items():
            ways[name] = make(starts.h)
    # Compile (the looped one compiles once: every call has K = 1; the scipy
    # loops compile their residual and Jacobian on the first start).
    jax.block_until_ready(one(jax.tree_util.tree_map(lambda a: a[:1], starts)))
    for name, fn in ways.items():
        if name.startswith("scipy"):
            continue
        t, _ = clock(fn)
        print(f"# first call (compile + run) {t:6.1f} s  {name}", flush=True)
    times = {name: [] for name in ways}
    outs = {}
    for _ in range(args.repeat):
        for name, fn in ways.items():
            t, outs[name] = clock(fn)
            times[name].append(t)
    base = float(np.median(times[next(iter(ways))]))
    print(f"# medians of {args.repeat} rounds, load now {os.getloadavg()[0]:.1f}")
    for name, ts in times.items():
        t = float(np.median(ts))
        out = outs[name]
        if not isinstance(out, gf.FixedPointCandidates):  # scipy: (ends, q)
            conv, extra = float(np.mean(out[1] < TOL)), ""
        else:
            conv, extra = (
                float(np.mean(np.asarray(out.converged))),
                (
                    candidates_stats(out)
                    + f"  {t / np.sum(np.asarray(out.steps)) * 1e6:.0f} us/start-step"
                ),
            )
        ratio = "baseline" if t == base else f"batched {t / base:.1f}x faster"
        print(
            f"{name:46s} {t:8.2f} s  {t / args.starts * 1e3:6.2f} ms/start  "
            f"converged {conv:.3f}  {extra}  -> {ratio}",
            flush=True,
        )
    if not args.no_scipy:
        # Minimising q per start: one round (about two minutes for scipy's BFGS).
        for name, make in q_minimisers(cell, params, x).items():
            t, (_, q) = clock(make(starts.h))
            print(
                f"{name:46s} {t:8.2f} s  {t / args.starts * 1e3:6.2f} ms/start  "
                f"converged {np.mean(q < TOL):.3f}  median q {np.median(q):.1e}  "
                f"(one round) -> batched {t / base:.1f}x faster",
                flush=True,
            )
    fp = gf.fixed_points(cell, params, x, starts, tol=TOL)
    print(
        f"# distinct points {fp.states.shape[0]} (stable {int(np.sum(fp.stable))})",
        flush=True,
    )

    # The solver choice, all batched, on the same subset of the starts.
    part = starts.h[: args.subset]
    sub = gf.cells.RNNCarry(part)
    print(f"# solver choice on the first {args.subset} starts, batched:")
    jax.block_until_ready(batched(sub))
    t_lm, cand = clock(lambda: batched(sub))
    conv = float(np.mean(np.asarray(cand.converged)))
    print(
        f"levenberg-marquardt    {t_lm * 1e3:9.1f} ms  converged {conv:.3f}  "
        f"steps {int(np.max(cand.steps))}"
    )
    for name, solver in (
        ("newton-gmres(32)", gmres_solver(cell, params, 200)),
        ("optax adam lr=1e-2", adam_solver(cell, params, args.adam_steps, 1e-2)),
    ):
        jax.block_until_ready(solver(part))
        t, (_, q, it) = clock(lambda solver=solver: solver(part))
        q = np.asarray(q)
        print(
            f"{name:22s} {t * 1e3:9.1f} ms  converged {np.mean(q < TOL):.3f}  "
            f"steps {int(it)}  median q {np.median(q):.1e}  "
            f"-> levenberg-marquardt is {t / t_lm:.1f}x faster",
            flush=True,
        )
    pieces(cell, params, x, starts, args.repeat)


if __name__ == "__main__":
    main()
