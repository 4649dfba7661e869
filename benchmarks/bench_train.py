"""Training seeds: one vmapped program vs a Python loop over seeds (CPU).

The clipping study's set-up (tanh RNN, N=32, adding problem T=100, SGD, global-
norm clipping, minibatch 20) for 100 steps with S seeds. Compile time is
excluded and reported apart (``gf.train.train`` compiles once per call); each
number is the median of 3 calls. The loop calls a program compiled for one seed
S times (the best a per-seed loop can do).

    .venv/bin/python benchmarks/bench_train.py
"""

from __future__ import annotations

import platform
import time

import jax
import numpy as np

import gradflow as gf
from gradflow.train import _loop


def median_time(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def programs(cell, n_seeds: int, steps: int):
    task = gf.tasks.adding(100)
    keys = jax.random.split(jax.random.key(0), n_seeds)
    run, keys, _ = _loop._prepare(
        cell,
        task,
        "sgd",
        key=keys,
        steps=steps,
        learning_rate=0.05,
        clip=gf.train.clipper("global_norm", 1.0),
        batch_size=20,
        record_every=0,
        profile_batch_size=None,
        divergence_factor=100.0,
        grad_divergence_factor=None,
        batches=None,
    )
    t0 = time.perf_counter()
    vmapped = jax.jit(jax.vmap(run, in_axes=(0, None))).lower(keys, None).compile()
    t_vmap = time.perf_counter() - t0
    t0 = time.perf_counter()
    one = jax.jit(run).lower(keys[0], None).compile()
    t_one = time.perf_counter() - t0

    def loop():
        return [one(k, None) for k in keys]

    return (lambda: vmapped(keys, None)), loop, t_vmap, t_one


def main() -> None:
    print(
        f"machine: {platform.processor() or platform.machine()}, "
        f"{jax.device_count()} x {jax.devices()[0].device_kind}"
    )
    print(
        "| cell | seeds | vmap (s) | loop (s) | loop / vmap | compile vmap / one (s) |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for kind in ("rnn", "lstm"):
        cell = gf.cells.make(kind, 32)
        for n in (4, 8):
            vm, loop, c_vm, c_one = programs(cell, n, steps=100)
            jax.block_until_ready(vm())
            jax.block_until_ready(loop())
            t_vm, t_loop = median_time(vm), median_time(loop)
            print(
                f"| {kind} | {n} | {t_vm:.3f} | {t_loop:.3f} | "
                f"{t_loop / t_vm:.2f} | {c_vm:.1f} / {c_one:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
