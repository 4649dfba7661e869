"""Seeds through one compiled function: vmap vs lax.map vs a Python loop (CPU).

One grid point (tanh RNN / LSTM, N=32, T=200; grad norms, Jacobian norms,
top-8 Lyapunov exponents) with S seeds. Compile time is excluded; each number
is the median of 5 calls. The Python loop calls a function compiled for one
seed S times (what a sweep without batching would do at best).

    .venv/bin/python benchmarks/bench_sweep.py
"""

from __future__ import annotations

import time

import jax
import numpy as np

from gradflow import sweep
from gradflow.sweep._point import build_cell, init_params, point_function


def median_time(fn, repeats: int = 5) -> float:
    jax.block_until_ready(fn())  # compile + warm up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def bench_case(cell_kind: str, n_seeds: int) -> tuple[float, float, float]:
    cfg = sweep.validate(
        {
            "grid": {
                "cell": cell_kind,
                "hidden_size": 32,
                "length": 200,
                "seeds": n_seeds,
            },
            "measure": {
                "grad_norms": True,
                "jacobian_norms": True,
                "lyapunov": {"k": 8, "warmup": 20},
            },
        }
    )
    point = sweep.expand_grid(cfg)[0]
    seeds = np.arange(n_seeds, dtype=np.uint32)
    cell = build_cell(cfg, point.coords)
    params = init_params(cell, "torch", 8, seeds, None)
    gain = np.float32(1.0)
    f_vmap = point_function(cfg, point.coords, batching="vmap")
    f_map = point_function(cfg, point.coords, batching="map")
    rows = [
        jax.tree_util.tree_map(lambda a, i=i: a[i : i + 1], params)
        for i in range(n_seeds)
    ]

    def loop():
        return [f_vmap(seeds[i : i + 1], rows[i], gain) for i in range(n_seeds)]

    t_vmap = median_time(lambda: f_vmap(seeds, params, gain))
    t_map = median_time(lambda: f_map(seeds, params, gain))
    t_loop = median_time(loop)
    return t_vmap, t_map, t_loop


def main() -> None:
    print(f"jax {jax.__version__}, devices: {jax.devices()}")
    print(
        f"{'cell':>5} {'S':>4} {'vmap ms':>9} {'lax.map ms':>11} {'loop ms':>9} "
        f"{'map/vmap':>9} {'loop/vmap':>10}"
    )
    for cell_kind in ("rnn", "lstm"):
        for n_seeds in (4, 16):
            t_vmap, t_map, t_loop = bench_case(cell_kind, n_seeds)
            print(
                f"{cell_kind:>5} {n_seeds:>4} {1e3 * t_vmap:9.1f} "
                f"{1e3 * t_map:11.1f} {1e3 * t_loop:9.1f} "
                f"{t_map / t_vmap:9.2f} {t_loop / t_vmap:10.2f}"
            )


if __name__ == "__main__":
    main()
