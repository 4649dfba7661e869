"""Cells: gradflow (jax.jit) against torch.nn.RNN/LSTM/GRU in the same process.

Forward (all hidden outputs) and forward+backward (gradient of the sum of the
outputs with respect to every parameter) of one layer, N=128, batch 32, input
32, T=100 and T=1000. Both get the same weights, the same inputs and every
core (``torch.set_num_threads(os.cpu_count())``; XLA's CPU client uses all
cores by default). jax compile time is excluded; every timed call ends with
``block_until_ready``. Each cell of the table is the median (and best) of
repeated calls, run alternately for the two frameworks so load on the machine
hits both alike.

    .venv/bin/python benchmarks/bench_cells.py            # the table
    .venv/bin/python benchmarks/bench_cells.py --quick    # T=100 only
    .venv/bin/python benchmarks/bench_cells.py --threads 1  # torch on one thread
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch

import gradflow as gf

N, BATCH, D = 128, 32, 32
TORCH = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}


def jax_programs(kind: str, steps: int):
    torch.manual_seed(0)
    module = TORCH[kind](D, N)
    cell, params = gf.from_torch(module)
    xs_np = np.random.default_rng(0).standard_normal((steps, BATCH, D), np.float32)
    xs = jnp.asarray(xs_np)

    fwd = jax.jit(lambda p, x: gf.unroll(cell, p, x)[1])
    bwd = jax.jit(jax.grad(lambda p, x: jnp.sum(gf.unroll(cell, p, x)[1])))
    jax.block_until_ready(fwd(params, xs))  # compile
    jax.block_until_ready(bwd(params, xs))

    x_t = torch.from_numpy(xs_np)
    weights = list(module.parameters())

    def torch_fwd():
        with torch.no_grad():
            return module(x_t)[0]

    def torch_bwd():
        out, _ = module(x_t)
        return torch.autograd.grad(out.sum(), weights)

    def check():
        # same function: outputs and gradients agree (float32 rounding)
        np.testing.assert_allclose(fwd(params, xs), torch_fwd().numpy(), atol=1e-4)
        names = {"W_ih": 0, "W_hh": 1, "b_ih": 2, "b_hh": 3}
        grads = bwd(params, xs)
        ref = torch_bwd()
        for k, i in names.items():
            np.testing.assert_allclose(grads[k], ref[i].numpy(), rtol=1e-3, atol=1e-2)

    return (
        {
            "forward": (
                lambda: jax.block_until_ready(fwd(params, xs)),
                torch_fwd,
            ),
            "fwd+bwd": (
                lambda: jax.block_until_ready(bwd(params, xs)),
                torch_bwd,
            ),
        },
        check,
    )


def race(jax_fn, torch_fn, budget_s: float, min_reps: int = 3, max_reps: int = 30):
    """Alternate the two until ``budget_s`` is spent; return their time lists (ms)."""
    jax_fn(), torch_fn()  # warm-up (caches, allocator)
    times: tuple[list[float], list[float]] = ([], [])
    start = time.perf_counter()
    while len(times[0]) < max_reps and (
        time.perf_counter() - start < budget_s
        # a few repeats at least, unless one call alone eats the budget
        or (len(times[0]) < min_reps and max(times[1], default=0) < 1e3 * budget_s)
    ):
        for fn, out in ((jax_fn, times[0]), (torch_fn, times[1])):
            t0 = time.perf_counter()
            fn()
            out.append(1e3 * (time.perf_counter() - t0))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="T=100 only")
    parser.add_argument("--budget", type=float, default=2.0, help="seconds per row")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="torch threads"
    )
    args = parser.parse_args()

    threads = args.threads
    torch.set_num_threads(threads)
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"jax {jax.__version__} ({jax.default_backend()}), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads)"
    )
    print(
        f"# N={N}, batch={BATCH}, input={D}; median (best) ms over repeats; "
        f"load average {os.getloadavg()[0]:.1f}\n"
    )
    print("| cell | T | pass | gradflow (jax) ms | torch.nn ms | jax/torch |")
    print("| --- | ---: | --- | ---: | ---: | ---: |")
    lengths = (100,) if args.quick else (100, 1000)
    t_start = time.perf_counter()
    for kind in ("rnn", "lstm", "gru"):
        for steps in lengths:
            programs, check = jax_programs(kind, steps)
            check()
            for name, (jax_fn, torch_fn) in programs.items():
                j, t = race(jax_fn, torch_fn, args.budget)
                ratio = np.median(j) / np.median(t)
                print(
                    f"| {kind} | {steps} | {name} | {np.median(j):.2f} ({min(j):.2f}) "
                    f"| {np.median(t):.2f} ({min(t):.2f}) | {ratio:.2f} |",
                    flush=True,
                )
    print(
        f"\n# total {time.perf_counter() - t_start:.0f} s; "
        f"load average {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
