"""Measurement core: gradflow's measurements against the obvious baselines.

Every ratio is measured side by side in one process; jax compile time is
excluded (each program runs once before timing) and every timed call ends
with ``block_until_ready``. Each number is the median of repeated calls.

1. ``hidden_grad_norms`` (one backward pass with respect to zero perturbations
   of every ``h_t``) vs one ``jax.grad`` of the same loss with respect to the
   params: N=128, batch 32, input 32, T=1000, tanh RNN and LSTM.
2. ``jacobian_norms`` at T=1000, N=64 (tanh RNN, state size 64) vs
   (a) the naive compiled way: ``jax.jit(jax.jacrev(s_t -> s_T))`` and its
   spectral norm for each t, (b) ``torch.autograd.functional.jacobian`` per t
   (the faster of ``vectorize=False/True`` at each lag). Both baselines cost
   ``a + c·(T − t)`` per t; they are timed at a few lags, fitted, and the sum
   over all T lags is extrapolated from the fit (said so in the table).
   Also against ``method="svd"``, the straightforward one-SVD-per-step scan.
3. ``lyapunov_spectrum``: top-16 and all 128 exponents, N=128, T=1000; the
   full spectrum next to a scan of T bare 128×128 QRs (its cost floor).
4. Memory: ``jacobian_norms`` and ``hidden_grad_norms(log10=True)`` at
   T=10,000, N=256, with the process's peak resident memory.

OpenBLAS (which jax's CPU LAPACK calls use) busy-waits its threads; on a
loaded 2-core machine that made one 128×128 ``eigh`` take 100+ ms, so this
script pins ``OPENBLAS_NUM_THREADS=1`` before importing jax (both sides).

    .venv/bin/python benchmarks/bench_measure.py           # the table
    .venv/bin/python benchmarks/bench_measure.py --quick   # smaller, no memory
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import platform
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
from jax import lax

import gradflow as gf

ROWS: list[tuple[str, str, str, str]] = []


def timed(fn, *args, repeat=5):
    """Median seconds of ``fn(*args)`` after one untimed (compiling) call."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def row(what, ours, baseline, ratio):
    ROWS.append((what, ours, baseline, ratio))
    print(f"{what:58s} {ours:>12s} {baseline:>22s} {ratio:>10s}", flush=True)


def ms(seconds):
    return f"{seconds * 1e3:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"


def bench_grad_norms(steps, repeat):
    n, batch, d = 128, 32, 32
    xs = jax.random.normal(jax.random.key(0), (steps, batch, d))

    def loss(hs):
        return jnp.mean(hs**2)

    for kind in ("rnn", "lstm"):
        cell = gf.cells.make(kind, n)
        params = cell.init(jax.random.key(1), d)
        ours = jax.jit(lambda p, x, c=cell: gf.hidden_grad_norms(c, p, x, loss))
        logs = jax.jit(
            lambda p, x, c=cell: gf.hidden_grad_norms(c, p, x, loss, log10=True)
        )
        base = jax.jit(jax.grad(lambda p, x, c=cell: loss(gf.unroll(c, p, x)[1])))
        # Alternate so that load on the machine hits both alike.
        t_base, t_ours, t_logs = [], [], []
        for _ in range(3):
            t_base.append(timed(base, params, xs, repeat=repeat))
            t_ours.append(timed(ours, params, xs, repeat=repeat))
            t_logs.append(timed(logs, params, xs, repeat=repeat))
        b, o, lg = np.median(t_base), np.median(t_ours), np.median(t_logs)
        what = f"hidden_grad_norms {kind} N={n} B={batch} T={steps}"
        row(what, ms(o), f"jax.grad params {ms(b)}", f"{o / b:.2f}x")
        row(what + " log10=True", ms(lg), f"jax.grad params {ms(b)}", f"{lg / b:.2f}x")


def _fit_total(lags, seconds, steps):
    """Sum over lags 1..T of a + c·lag, from timings at a few lags."""
    c, a = np.polyfit(np.asarray(lags, float), np.asarray(seconds), 1)
    all_lags = np.arange(1, steps + 1)
    return float(np.sum(a + c * all_lags))


def bench_jacobian(steps, repeat, lags):
    n, d = 64, 8
    torch.manual_seed(0)
    module = torch.nn.RNN(d, n)
    cell, params = gf.from_torch(module)
    xs = jax.random.normal(jax.random.key(2), (steps, d))

    ours = jax.jit(lambda p, x: gf.jacobian_norms(cell, p, x).log10_norms)
    svd = jax.jit(lambda p, x: gf.jacobian_norms(cell, p, x, method="svd").log10_norms)
    t_ours = timed(ours, params, xs, repeat=repeat)
    t_svd = timed(svd, params, xs, repeat=max(1, repeat // 2))

    # Naive: s_T as a function of s_t, jacrev, spectral norm; one program per lag.
    carry0 = cell.initial_carry(())
    _, hs = gf.unroll(cell, params, xs, carry0)
    states = jnp.concatenate([jnp.zeros((1, n)), hs[:-1]], axis=0)  # s_t = h_{t-1}
    xw = cell.project(params, xs)

    def run_from(s, xw_tail):
        def body(h, x):
            c, _ = cell.recur(params, gf.cells.RNNCarry(h), x)
            return c.h, None

        return lax.scan(body, s, xw_tail)[0]

    naive = jax.jit(
        lambda s, xw_tail: jnp.log10(
            jnp.linalg.norm(jax.jacrev(run_from)(s, xw_tail), 2)
        )
    )
    t_naive = [
        timed(naive, states[steps - lag], xw[steps - lag :], repeat=2) for lag in lags
    ]
    # Same numbers as ours (spot check at the shortest lag: at long lags the
    # naive float32 product underflows to 0 and its log10 is -inf).
    ref = float(naive(states[steps - lags[0]], xw[steps - lags[0] :]))
    got = float(ours(params, xs)[steps - lags[0]])
    assert abs(ref - got) < 1e-3, (ref, got)
    naive_total = _fit_total(lags, t_naive, steps)

    # torch: the same RNN stepped by hand, jacobian of s_T wrt s_t.
    w_ih, w_hh, b_ih, b_hh = (p.detach() for p in module.parameters())
    x_t = torch.from_numpy(np.array(xs))
    xw_t = x_t @ w_ih.T + b_ih + b_hh

    def torch_norm(lag, vectorize):
        tail = xw_t[steps - lag :]

        def run(h):
            for x in tail:
                h = torch.tanh(x + h @ w_hh.T)
            return h

        s = torch.from_numpy(np.array(states[steps - lag]))
        jac = torch.autograd.functional.jacobian(run, s, vectorize=vectorize)
        return torch.linalg.matrix_norm(jac, 2)

    # The faster of torch's two modes at each lag (one warm-up call each).
    t_torch = []
    for lag in lags:
        best = np.inf
        for vectorize in (False, True):
            torch_norm(lag, vectorize)
            start = time.perf_counter()
            val = torch_norm(lag, vectorize)
            best = min(best, time.perf_counter() - start)
        t_torch.append(float(best))
        if lag == lags[0]:
            want = float(ours(params, xs)[steps - lag])
            assert abs(float(torch.log10(val)) - want) < 1e-3
    torch_total = _fit_total(lags, t_torch, steps)

    what = f"jacobian_norms rnn N={n} T={steps} (all T lags)"
    row(what, ms(t_ours), f"method='svd' {ms(t_svd)}", f"{t_svd / t_ours:.0f}x faster")
    row(
        what,
        ms(t_ours),
        f"jax.jacrev per t {ms(naive_total)}*",
        f"{naive_total / t_ours:.0f}x faster",
    )
    row(
        what,
        ms(t_ours),
        f"torch jacobian per t {ms(torch_total)}*",
        f"{torch_total / t_ours:.0f}x faster",
    )
    print(
        f"  * extrapolated: timed at lags {list(lags)} "
        f"(jax {[ms(t) for t in t_naive]}, torch {[ms(t) for t in t_torch]}), "
        "fitted a + c·lag, summed over all lags 1..T",
        flush=True,
    )
    return lags, t_naive, t_torch


def bench_lyapunov(steps, repeat):
    n = 128
    cell = gf.cells.rnn(n, recurrent_init="gaussian", gain=1.5)
    params = cell.init(jax.random.key(3), 8)
    xs = jax.random.normal(jax.random.key(4), (steps, 8))
    top = jax.jit(lambda p, x: gf.lyapunov_spectrum(cell, p, x, k=16).exponents)
    full = jax.jit(lambda p, x: gf.lyapunov_spectrum(cell, p, x).exponents)
    t_top = timed(top, params, xs, repeat=repeat)
    t_full = timed(full, params, xs, repeat=max(1, repeat // 2))
    mats = jax.random.normal(jax.random.key(5), (steps, n, n))

    @jax.jit
    def qr_only(mats):
        # Chained so XLA cannot hoist or drop any of the T factorisations.
        def body(q, m):
            q, r = jnp.linalg.qr(m @ q)
            return q, jnp.diagonal(r)

        return lax.scan(body, jnp.eye(n), mats)[1]

    t_qr = timed(qr_only, mats, repeat=max(1, repeat // 2))
    row(f"lyapunov_spectrum rnn N={n} T={steps} k=16", ms(t_top), "goal < 60 ms", "")
    row(
        f"lyapunov_spectrum rnn N={n} T={steps} k=128 (full)",
        ms(t_full),
        f"T matmul+QR 128x128 {ms(t_qr)}",
        f"{t_full / t_qr:.2f}x",
    )


def bench_memory(steps):
    n = 256
    cell = gf.cells.rnn(n, recurrent_init="orthogonal")
    params = cell.init(jax.random.key(6), 8)
    xs = jax.random.normal(jax.random.key(7), (steps, 8))
    jac = jax.jit(lambda p, x: gf.jacobian_norms(cell, p, x).log10_norms)
    start = time.perf_counter()
    out = jax.block_until_ready(jac(params, xs))
    t_jac = time.perf_counter() - start
    assert np.all(np.isfinite(out))

    def loss(hs):
        return jnp.sum(hs[-1])

    grads = jax.jit(
        lambda p, x: gf.hidden_grad_norms(cell, p, x, loss, log10=True).log10_norms
    )
    start = time.perf_counter()
    out = jax.block_until_ready(grads(params, xs[:, None]))
    t_grad = time.perf_counter() - start
    assert np.all(np.isfinite(out))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row(
        f"jacobian_norms rnn N={n} T={steps} (incl. compile)",
        ms(t_jac),
        f"peak RSS {peak:.0f} MiB",
        "",
    )
    row(
        f"hidden_grad_norms log10 N={n} T={steps} (incl. compile)",
        ms(t_grad),
        f"peak RSS {peak:.0f} MiB",
        "",
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    steps = 200 if args.quick else 1000
    repeat = 3 if args.quick else 5
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"jax {jax.__version__}, torch {torch.__version__}, "
        f"load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    bench_grad_norms(steps, repeat)
    lags = (25, 100, 200) if args.quick else (50, 250, 500)
    bench_jacobian(steps, repeat, lags)
    bench_lyapunov(steps, repeat)
    if not args.quick:
        bench_memory(10_000)
    print("\n| measurement | gradflow | baseline | ratio |\n| --- | --- | --- | --- |")
    for r in ROWS:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
