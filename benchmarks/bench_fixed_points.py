"""Fixed points: all starts at once against one optimisation per start.

A tanh RNN with N=128 units (``W_hh ~ N(0, g²/N)``, a random bias, zero
input); 1024 starts drawn from a trajectory driven by noise
(``gf.sample_states``); every start minimised to ``q = ½‖F(s) − s‖² < 1e-10``.

1. ``gf.fixed_point_candidates`` (batched Levenberg–Marquardt, one compiled
   program for all starts) against the same solver compiled for one start and
   called once per start in a Python loop: the straightforward way.
2. The choice of solver, all batched, on a subset of the starts: optax Adam on
   ``q`` (the peers' way, e.g. FixedPointFinder), run until every start has
   ``q < 1e-10`` or ``--adam-steps``, and a matrix-free Newton–GMRES(32) step
   with a line search on ``q``, next to Levenberg–Marquardt.

Compile time is excluded (each program runs once before timing); batched and
looped calls alternate, and each figure is the median of ``--repeat`` pairs.

    .venv/bin/python benchmarks/bench_fixed_points.py            # the table
    .venv/bin/python benchmarks/bench_fixed_points.py --quick    # 128 starts
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.flatten_util import ravel_pytree

import gradflow as gf
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--starts", type=int, default=1024)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--gain", type=float, default=1.2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--adam-steps", type=int, default=20000)
    ap.add_argument("--subset", type=int, default=128)
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
    one = jax.jit(lambda s: gf.fixed_point_candidates(cell, params, x, s, tol=TOL))

    def looped():
        outs = []
        for k in range(args.starts):
            start = jax.tree_util.tree_map(lambda a, k=k: a[k : k + 1], starts)
            outs.append(one(start))
        return jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *outs)

    # Compile both (the looped one compiles once: every call has K = 1).
    jax.block_until_ready(batched(starts))
    jax.block_until_ready(one(jax.tree_util.tree_map(lambda a: a[:1], starts)))
    t_batch, t_loop = [], []
    for _ in range(args.repeat):
        t, cand = clock(lambda: batched(starts))
        t_batch.append(t)
        t, loop_cand = clock(looped)
        t_loop.append(t)
    tb, tl = float(np.median(t_batch)), float(np.median(t_loop))
    conv = float(np.mean(np.asarray(cand.converged)))
    conv_loop = float(np.mean(np.asarray(loop_cand.converged)))
    fp = gf.fixed_points(cell, params, x, starts, tol=TOL)
    print(
        f"levenberg-marquardt batched   {tb * 1e3:9.1f} ms  converged {conv:.3f}  "
        f"steps max {int(np.max(cand.steps))} median "
        f"{int(np.median(cand.steps))}  distinct points {fp.states.shape[0]} "
        f"(stable {int(np.sum(fp.stable))})"
    )
    print(
        f"levenberg-marquardt per start {tl * 1e3:9.1f} ms  converged {conv_loop:.3f}  "
        f"-> batched is {tl / tb:.1f}x faster"
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
            f"-> levenberg-marquardt is {t / t_lm:.1f}x faster"
        )


if __name__ == "__main__":
    main()
