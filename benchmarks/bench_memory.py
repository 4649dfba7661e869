"""Peak memory of the measurements against sequence length, with and without remat.

Each (measurement, T, remat) runs in a fresh process (peak RSS is per process),
on a tanh RNN with N = 256 and one sequence (``xs (T, 1, 8)``):

- ``hidden_grad_norms(log10=True)``: the forward pass keeps ``hs`` (the loss
  needs it) and, without remat, every carry; with remat one carry per chunk of
  ``ceil(sqrt(T))`` steps, recomputed chunk by chunk in the reverse scan.
- ``jacobian_norms`` (``method="power"``): the same forward pass, no ``hs``
  needed, and an ``S × S`` product in the reverse scan.

Prints one row per run: peak RSS of the whole process (MiB, ``ru_maxrss``),
the RSS after importing jax and building the inputs (the baseline), and the
wall time including compilation. Usage::

    python benchmarks/bench_memory.py                  # the README table
    python benchmarks/bench_memory.py --steps 1000000 --remat 1 --what grad
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def one(what: str, steps: int, remat: bool) -> None:
    import jax
    import jax.numpy as jnp

    import gradflow as gf

    n = 256
    cell = gf.cells.rnn(n, recurrent_init="orthogonal")
    params = cell.init(jax.random.key(6), 8)
    xs = jax.random.normal(jax.random.key(7), (steps, 1, 8))
    jax.block_until_ready(xs)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def loss(hs):
        return jnp.sum(hs[-1])

    if what == "grad":
        # called as users call it (not inside a jit of ours): its own
        # programs then hand hs's buffer to the loss's cotangent
        def fn(p, x):
            return gf.hidden_grad_norms(
                cell, p, x, loss, log10=True, remat=remat
            ).log10_norms

    else:
        fn = jax.jit(
            lambda p, x: gf.jacobian_norms(cell, p, x, remat=remat).log10_norms
        )
    start = time.perf_counter()
    out = jax.block_until_ready(fn(params, xs))
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    finite = bool(jnp.all(jnp.isfinite(out)))
    print(
        f"{what:5s} T={steps:>9,d} remat={int(remat)} peak={peak:7.0f} MiB "
        f"base={base:5.0f} MiB wall={wall:6.1f} s finite={finite}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--what", choices=("grad", "jac"))
    parser.add_argument("--steps", type=int)
    parser.add_argument("--remat", type=int, choices=(0, 1))
    args = parser.parse_args()
    if args.what is not None:
        one(args.what, args.steps, bool(args.remat))
        return
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    runs = [("grad", t) for t in (10_000, 100_000, 1_000_000)]
    runs += [("jac", t) for t in (1_000, 10_000, 100_000)]
    for what, steps in runs:
        for remat in (0, 1):
            cmd = [sys.executable, __file__, "--what", what, "--steps", str(steps)]
            done = subprocess.run(
                [*cmd, "--remat", str(remat)], env=env, check=False, timeout=1800
            )
            if done.returncode:
                print(f"{what} T={steps:,} remat={remat}: exit {done.returncode}")


if __name__ == "__main__":
    main()
