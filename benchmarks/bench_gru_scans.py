"""The GRU's per-step measurement scans: an A/B of the step's input read.

``hidden_grad_norms``, ``jacobian_norms`` and ``lyapunov_spectrum`` step the
cell's ``recur`` one step at a time (``forward_states`` / ``reverse_states``),
not the fused whole-sequence GRU. This script times the GRU's ``recur`` as it
is (A) against variants (B...) that change only how the step reads its input
slice ``xw_t``, alternating A and B call by call in one process (compile time
excluded), and checks that every variant gives the same numbers as A. The LSTM
row is the reference the issue compares with.

    .venv/bin/python benchmarks/bench_gru_scans.py            # N=128, B=32, T=1000
    .venv/bin/python benchmarks/bench_gru_scans.py --quick
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
from gradflow._unroll import forward_states
from gradflow.cells._activations import tanh
from gradflow.cells._cell import add_bias, affine, recurrent_product


def pair_project(params, x):
    """The GRU's input projection as two arrays: the (r, z) part and the n part."""
    xw = affine(x, params["W_ih"], params["b_ih"])
    n2 = 2 * params["W_hh"].shape[1]
    return xw[..., :n2], xw[..., n2:]


def pair_recur(params, carry, xw):
    """The GRU step on ``(xw_rz, xw_n)``: each scanned slice read at one offset."""
    x_rz, x_n = xw
    h = carry.h
    n2 = 2 * h.shape[-1]
    gh = add_bias(recurrent_product(h, params["W_hh"]), params["b_hh"])
    rz = 0.5 + 0.5 * tanh(0.5 * (x_rz + gh[..., :n2]))
    r, z = jnp.split(rz, 2, axis=-1)
    new = tanh(x_n + r * gh[..., n2:])
    h = (1.0 - z) * new + z * h
    return gf.cells.GRUCarry(h), h


VARIANTS = {"pair": {"project": pair_project, "recur": pair_recur}}


def measures(cell, params, xs):
    def loss(hs):
        return jnp.sum(hs[-1] ** 2)

    carry = cell.initial_carry(xs.shape[1:-1])
    forward = jax.jit(lambda p: forward_states(cell, p, xs, carry).hs)
    return {
        "forward_states": lambda: forward(params),
        "hidden_grad_norms": lambda: (
            gf.hidden_grad_norms(cell, params, xs, loss, log10=True).log10_norms
        ),
        "lyapunov_spectrum(k=16)": lambda: (
            gf.lyapunov_spectrum(cell, params, xs, k=16).exponents
        ),
    }


def ab(fa, fb, rounds):
    """Per-round ratio b/a, alternating which goes first."""
    for f in (fa, fb):
        jax.block_until_ready(f())
    ta, tb = [], []
    for i in range(rounds):
        order = ((fa, ta), (fb, tb)) if i % 2 == 0 else ((fb, tb), (fa, ta))
        for f, acc in order:
            start = time.perf_counter()
            jax.block_until_ready(f())
            acc.append(time.perf_counter() - start)
    ta, tb = np.array(ta), np.array(tb)
    return np.median(ta), np.median(tb), tb / ta


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    n, batch, steps = (64, 8, 200) if args.quick else (128, 32, 1000)
    key = jax.random.key(0)
    xs = jax.random.normal(key, (steps, batch, 32))
    gru = gf.cells.gru(n)
    lstm = gf.cells.lstm(n)
    p_gru = gru.init(jax.random.key(1), 32)
    p_lstm = lstm.init(jax.random.key(1), 32)
    print(f"N={n} batch={batch} T={steps}, load {os.getloadavg()[0]:.1f}")
    base = measures(gru, p_gru, xs)
    ref = measures(lstm, p_lstm, xs)
    for name, fa in base.items():
        a, lstm_t, _ = ab(fa, ref[name], max(3, args.rounds // 2))
        print(
            f"{name}: gru {1e6 * a / steps:.0f} us/step, "
            f"lstm {1e6 * lstm_t / steps:.0f} us/step"
        )
    for vname, fields in VARIANTS.items():
        other = measures(gru._replace(**fields), p_gru, xs)
        for name, fa in base.items():
            fb = other[name]
            diff = float(np.max(np.abs(np.asarray(fa()) - np.asarray(fb()))))
            a, b, ratios = ab(fa, fb, args.rounds)
            q1, q3 = np.percentile(ratios, [25, 75])
            print(
                f"{vname:8s} {name}: A {1e6 * a / steps:.0f} us/step, "
                f"B {1e6 * b / steps:.0f} us/step, B/A {np.median(ratios):.2f} "
                f"[{q1:.2f}-{q3:.2f}], max |B-A| {diff:.1e}"
            )


if __name__ == "__main__":
    main()
