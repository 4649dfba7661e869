"""How a sweep batches seeds on CPU: vmap vs lax.map vs a Python loop.

One grid point (N=32 and 64, T=100, 8 seeds) per measurement and cell. Compile time is
excluded; each number is the median of 3 calls of the compiled point function.
"loop" calls a function compiled for one seed 8 times (the best a sweep without
batching could do). The sweep's default (``batching="auto"``) takes the faster
of vmap and lax.map per measurement (each spec's ``batching`` in ``gradflow._specs``).

Everything runs with the LAPACK under jax's linalg kernels on one thread, as
``gf.sweep.run`` does; ``--threaded-lapack`` leaves SciPy's OpenBLAS at its
default thread count (the setting that made batched LSTM points 10-100x slower).

    .venv/bin/python benchmarks/bench_sweep.py [--threaded-lapack]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import time

import jax
import numpy as np

from gradflow import _specs, sweep
from gradflow._measure import single_threaded_lapack
from gradflow.sweep._point import point_function

SEEDS = 8
MEASURES = {
    "grad_norms": True,
    "jacobian_norms": True,
    "lyapunov": {"k": 8, "warmup": 20},
    "param_grad_by_step": True,
}


def median_time(fn, repeats: int = 3) -> float:
    jax.block_until_ready(fn())  # compile + warm up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def bench_case(cell_kind: str, size: int, measure: str) -> tuple[float, float, float]:
    cfg = sweep.validate(
        {
            "grid": {
                "cell": cell_kind,
                "hidden_size": size,
                "length": 100,
                "seeds": SEEDS,
            },
            "measure": {measure: MEASURES[measure]},
        }
    )
    point = sweep.expand_grid(cfg)[0]
    seeds = np.arange(SEEDS, dtype=np.uint32)
    gain = np.float32(1.0)
    f_vmap = point_function(cfg, point.coords, batching="vmap")
    f_map = point_function(cfg, point.coords, batching="map")

    def loop():
        return [f_vmap(seeds[i : i + 1], None, gain) for i in range(SEEDS)]

    t_vmap = median_time(lambda: f_vmap(seeds, None, gain))
    t_map = median_time(lambda: f_map(seeds, None, gain))
    t_loop = median_time(loop)
    return t_vmap, t_map, t_loop


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threaded-lapack", action="store_true")
    args = parser.parse_args()
    pin = (
        contextlib.nullcontext([]) if args.threaded_lapack else single_threaded_lapack()
    )
    with pin as before:
        print(
            f"jax {jax.__version__}, devices: {jax.devices()}, {SEEDS} seeds, "
            f"OpenBLAS threads {before or 'default'} -> "
            f"{'default' if args.threaded_lapack else 1}"
        )
        table()


def table() -> None:
    print(
        f"{'measure':>19} {'cell':>5} {'N':>3} {'vmap ms':>9} {'lax.map ms':>11} "
        f"{'loop ms':>9} {'map/vmap':>9} {'loop/best':>10} {'auto':>5}"
    )
    for measure in MEASURES:
        for cell_kind, size in itertools.product(("rnn", "lstm"), (32, 64)):
            t_vmap, t_map, t_loop = bench_case(cell_kind, size, measure)
            print(
                f"{measure:>19} {cell_kind:>5} {size:>3} {1e3 * t_vmap:9.1f} "
                f"{1e3 * t_map:11.1f} {1e3 * t_loop:9.1f} "
                f"{t_map / t_vmap:9.2f} {t_loop / min(t_vmap, t_map):10.2f} "
                f"{_specs.MEASUREMENTS[measure].batching:>5}",
                flush=True,
            )


if __name__ == "__main__":
    main()
