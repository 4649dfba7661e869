"""``param_sensitivity`` (exact, 256 diagonal parameters) vs one ``jax.grad``.

The issue's target: for a diagonal recurrence ``h_t = λ ⊙ h_{t−1} + B x_t``
with ``λ`` of 256 entries, T = 1000, batch 32, the exact ``‖∂h_t/∂λ‖²`` must
cost at most 3x one ``jax.grad`` of a loss of the hidden states (with respect
to all params). Also shown: the same exact answer with one JVP per scalar (the
colouring switched off: 256 directions in chunks of 64), and the one-off cost
of finding the colouring (cached per cell and shapes afterwards).

Runs alternate (sensitivity, grad, sensitivity, ...); each number is the median
of the repeats; compile time is excluded (one untimed call first).

    .venv/bin/python benchmarks/bench_sensitivity.py [--quick]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import gradflow as gf
from gradflow._measure import _sensitivity


def _step(p, h, x):
    h = p["lam"] * h + p["B"] @ x
    return h, h


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n, d = 256, 32
    steps, batch, repeat = (200, 8, 3) if args.quick else (1000, 32, 7)
    cell = gf.cells.custom(_step, jnp.zeros(n), input_size=d)
    k1, k2 = jax.random.split(jax.random.key(0))
    params = {
        "lam": jax.random.uniform(k1, (n,), minval=0.5, maxval=0.999),
        "B": jax.random.normal(k2, (n, d)) / np.sqrt(d),
    }
    xs = jax.random.normal(jax.random.key(1), (steps, batch, d))
    wrt = {"lam": True, "B": False}

    start = time.perf_counter()
    colours = _sensitivity._colouring(
        cell, params, xs, _sensitivity._check_wrt(wrt, params)
    )
    colour_s = time.perf_counter() - start
    assert int(colours.max()) + 1 == 1

    sens = jax.jit(lambda p, x: gf.param_sensitivity(cell, p, x, wrt=wrt).sq_norms)
    per_scalar = jax.jit(
        lambda p, x: (
            _sensitivity._sensitivity(
                cell,
                p,
                x,
                cell.initial_carry((batch,)),
                jax.random.key(0),
                _sensitivity._check_wrt(wrt, params),
                tuple(range(n)),
                n,
            ).sq_norms
        )
    )

    def loss(p, x):
        return jnp.mean(jnp.square(gf.unroll(cell, p, x)[1]))

    grad = jax.jit(jax.grad(loss))
    fns = {"sensitivity": sens, "grad": grad}
    for fn in fns.values():
        jax.block_until_ready(fn(params, xs))
    times = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t = time.perf_counter()
            jax.block_until_ready(fn(params, xs))
            times[k].append(time.perf_counter() - t)
    med = {k: float(np.median(v)) for k, v in times.items()}
    # one JVP per scalar: slow, so timed fewer times
    jax.block_until_ready(per_scalar(params, xs))
    slow = []
    for _ in range(2 if not args.quick else 1):
        t = time.perf_counter()
        jax.block_until_ready(per_scalar(params, xs))
        slow.append(time.perf_counter() - t)
    np.testing.assert_allclose(
        sens(params, xs), per_scalar(params, xs), rtol=1e-4, atol=1e-6
    )
    load = os.getloadavg()[0]
    print(f"n={n} T={steps} batch={batch} load={load:.1f}")
    print(f"colouring (once per cell and shapes): {colour_s * 1e3:.0f} ms")
    print(f"param_sensitivity exact (1 direction): {med['sensitivity'] * 1e3:.1f} ms")
    print(f"jax.grad of the loss:                 {med['grad'] * 1e3:.1f} ms")
    print(f"ratio sensitivity / grad: {med['sensitivity'] / med['grad']:.2f}x")
    slow_s = float(np.median(slow))
    print(
        f"one JVP per scalar (256 directions): {slow_s * 1e3:.0f} ms "
        f"= {slow_s / med['grad']:.0f}x grad"
    )


if __name__ == "__main__":
    main()
