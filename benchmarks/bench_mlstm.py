"""The mLSTM's ``unroll``: associative scan (blocks of ``LINEAR_BLOCK`` steps)
against the sequential ``lax.scan`` of its step, alternating in one process.

    .venv/bin/python benchmarks/bench_mlstm.py   # N=64, 4 heads, batch 8, T=2000
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import time

import jax
import jax.numpy as jnp
import numpy as np

import gradflow as gf


def main(n=64, heads=4, batch=8, steps=2000, rounds=9) -> None:
    cell = gf.cells.mlstm(n, heads=heads)
    params = cell.init(jax.random.key(0), 32)
    xs = jax.random.normal(jax.random.key(1), (steps, batch, 32))
    seq = cell._replace(linear=None)

    def loss(c):
        return lambda p: jnp.sum(gf.unroll(c, p, xs)[1] ** 2)

    fns = {
        "forward": (
            jax.jit(lambda p: gf.unroll(cell, p, xs)[1]),
            jax.jit(lambda p: gf.unroll(seq, p, xs)[1]),
        ),
        "fwd+bwd": (jax.jit(jax.grad(loss(cell))), jax.jit(jax.grad(loss(seq)))),
    }
    print(f"N={n} heads={heads} batch={batch} T={steps}, load {os.getloadavg()[0]:.1f}")
    for name, (par, sq) in fns.items():
        jax.block_until_ready((par(params), sq(params)))
        tp, ts = [], []
        for i in range(rounds):
            order = ((par, tp), (sq, ts)) if i % 2 == 0 else ((sq, ts), (par, tp))
            for f, acc in order:
                start = time.perf_counter()
                jax.block_until_ready(f(params))
                acc.append(time.perf_counter() - start)
        ratio = np.array(tp) / np.array(ts)
        q1, q3 = np.percentile(ratio, [25, 75])
        print(
            f"{name}: associative {1e3 * np.median(tp):.1f} ms, sequential "
            f"{1e3 * np.median(ts):.1f} ms, ratio {np.median(ratio):.2f} "
            f"[{q1:.2f}-{q3:.2f}]"
        )


if __name__ == "__main__":
    main()
