"""The modern recurrences: parallel scan and the exact diagonal Jacobian path.

1. ``gf.unroll`` of an LRU (complex state 256, width H=32, batch 32,
   T=100,000): the associative scan (``cell.linear``, blocks of
   ``gradflow._unroll.LINEAR_BLOCK`` steps, swept with ``--blocks``) against
   the sequential
   ``lax.scan`` of its ``recur`` (``cell._replace(linear=None)``), both with
   ``remat=True`` so the input projection happens per chunk (without it the
   sequential path forms the whole (T, 32, 2·256+32) projection, 6.7 GB).
2. ``jacobian_norms`` of an LRU (complex state 16, so 32 real) at
   T=100,000: the exact diagonal path (``method="auto"``) against the
   generic certified power iteration (``method="power"``), both with
   ``remat=True``; each in its own process for its peak resident memory.

Runs alternate A, B, A, B, ...; each number is the median; compile time is
excluded (one untimed call first). Prints the load average: on a shared
machine the ratios move with it.

    .venv/bin/python benchmarks/bench_modern.py            # the table
    .venv/bin/python benchmarks/bench_modern.py --quick    # T=10,000
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import resource
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import gradflow as gf
from gradflow import _unroll


def alternate(fns: dict, repeat: int) -> dict:
    """Median seconds of each ``fn()``, runs interleaved after one warm-up each."""
    for fn in fns.values():
        jax.block_until_ready(fn())
    times = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def bench_unroll(steps: int, blocks: list[int], repeat: int) -> None:
    width, state, batch = 32, 256, 32
    cell = gf.cells.lru(width, state_size=state, r_min=0.9, r_max=0.999)
    params = cell.init(jax.random.key(0), width)
    xs = jax.random.normal(jax.random.key(1), (steps, batch, width))
    seq = cell._replace(linear=None)
    fns = {"sequential": jax.jit(lambda p, x: gf.unroll(seq, p, x, remat=True)[1])}
    for block in blocks:
        _unroll.LINEAR_BLOCK = block
        fn = jax.jit(lambda p, x: gf.unroll(cell, p, x, remat=True)[1])
        fn(params, xs)  # traced now, while LINEAR_BLOCK is this block
        fns[f"associative, blocks of {block}"] = fn
    # the two paths agree before they are timed
    ref = fns["sequential"](params, xs)
    for name, fn in fns.items():
        err = float(jnp.max(jnp.abs(fn(params, xs) - ref)) / jnp.max(jnp.abs(ref)))
        assert err < 1e-4, (name, err)
    out = alternate({k: (lambda f=f: f(params, xs)) for k, f in fns.items()}, repeat)
    base = out["sequential"]
    print(f"\nLRU unroll: state {state}, H {width}, batch {batch}, T {steps:,}")
    for name, sec in out.items():
        print(f"  {name:32s} {sec:8.3f} s   {base / sec:5.2f}x vs sequential")


def _jacobian_child(method: str, steps: int) -> None:
    cell = gf.cells.lru(16, r_min=0.9, r_max=0.999)
    params = cell.init(jax.random.key(0), 16)
    xs = jax.random.normal(jax.random.key(1), (steps, 16))
    fn = jax.jit(
        lambda p, x: (
            gf.jacobian_norms(cell, p, x, method=method, remat=True).log10_norms
        )
    )
    out = alternate({method: lambda: fn(params, xs)}, 3 if method == "auto" else 1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    first = float(fn(params, xs)[0])
    print(json.dumps({"seconds": out[method], "peak_mb": peak, "first": first}))


def bench_jacobian(steps: int) -> None:
    rows = {}
    for method in ("auto", "power"):
        res = subprocess.run(
            [sys.executable, __file__, "--child", method, "--steps", str(steps)],
            capture_output=True,
            text=True,
            check=True,
        )
        rows[method] = json.loads(res.stdout.strip().splitlines()[-1])
    fast, slow = rows["auto"], rows["power"]
    print(f"\nLRU jacobian_norms: state 16 complex (32 real), T {steps:,}, remat")
    print(
        f"  diagonal (auto) {fast['seconds']:8.3f} s  peak {fast['peak_mb']:7.0f} MB"
        f"  log10 norm at t=0 {fast['first']:.4f}"
    )
    print(
        f"  generic (power) {slow['seconds']:8.3f} s  peak {slow['peak_mb']:7.0f} MB"
        f"  log10 norm at t=0 {slow['first']:.4f}"
    )
    print(f"  ratio {slow['seconds'] / fast['seconds']:.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--child")
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--blocks", default="2,4,8,16,64")
    ap.add_argument("--only", choices=("unroll", "jacobian"))
    args = ap.parse_args()
    steps = 10_000 if args.quick else args.steps
    if args.child:
        _jacobian_child(args.child, steps)
        return
    print(f"jax {jax.__version__}, {os.cpu_count()} cpus, load {os.getloadavg()}")
    if args.only != "jacobian":
        blocks = [int(b) for b in args.blocks.split(",")]
        bench_unroll(steps, blocks, 3)
    if args.only != "unroll":
        bench_jacobian(steps)
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
