"""Adapters: gradflow on ``eqx.nn.GRUCell`` against ``gf.cells.gru`` with its weights.

The same GRU two ways: Equinox's module through :func:`gradflow.from_equinox`
(a per-example step that gradflow vmaps over the batch), and gradflow's own
cell with the module's weights copied into PyTorch's layout (``b_hh`` holds
Equinox's ``bias_n`` in its n block and zeros elsewhere: the same function).
Each measurement runs on both; the script prints the largest difference of
their results and the time of each (median of alternating calls after one
compiling call, so load on the machine hits both alike), and the ratio
Equinox / gradflow.

    .venv/bin/python benchmarks/bench_adapters.py            # N=64, T=200
    .venv/bin/python benchmarks/bench_adapters.py --quick    # N=32, T=50
"""

from __future__ import annotations

import argparse
import platform
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import gradflow as gf


def copied(module: eqx.nn.GRUCell) -> tuple[gf.cells.Cell, dict]:
    n = module.hidden_size
    params = {
        "W_ih": module.weight_ih,
        "W_hh": module.weight_hh,
        "b_ih": module.bias,
        "b_hh": jnp.concatenate([jnp.zeros(2 * n), module.bias_n]),
    }
    return gf.cells.gru(n), params


def log10_profile(result):
    return getattr(result, "log10_norms", result)


def measurements(loss):
    return {
        "unroll": lambda c, p, xs: gf.unroll(c, p, xs)[1],
        "hidden_grad_norms": lambda c, p, xs: log10_profile(
            gf.hidden_grad_norms(c, p, xs, loss, log10=True)
        ),
        "jacobian_norms": lambda c, p, xs: gf.jacobian_norms(c, p, xs).log10_norms,
        "lyapunov_spectrum": lambda c, p, xs: (
            gf.lyapunov_spectrum(c, p, xs, k=8).exponents
        ),
        "param_grad_by_step": lambda c, p, xs: (
            gf.param_grad_by_step(c, p, xs, loss).grad
        ),
    }


def same_grad(eqx_grad, gf_grad, n: int) -> float:
    """Largest difference of the two gradients, mapped to one layout."""
    pairs = [
        (eqx_grad.weight_ih, gf_grad["W_ih"]),
        (eqx_grad.weight_hh, gf_grad["W_hh"]),
        (eqx_grad.bias, gf_grad["b_ih"]),
        (eqx_grad.bias_n, gf_grad["b_hh"][2 * n :]),
    ]
    return max(float(jnp.max(jnp.abs(a - b))) for a, b in pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    n, steps, batch, d = (32, 50, 8, 8) if args.quick else (64, 200, 16, 16)

    module = eqx.nn.GRUCell(d, n, key=jax.random.key(0))
    eqx_cell, eqx_params = gf.from_equinox(module)
    gf_cell, gf_params = copied(module)
    xs = jax.random.normal(jax.random.key(1), (steps, batch, d))

    def loss(hs):
        return jnp.sum(hs[-1] ** 2)

    print(
        f"# eqx.nn.GRUCell vs gf.cells.gru, N={n}, T={steps}, batch {batch}, "
        f"input {d}; jax {jax.__version__}, equinox {eqx.__version__}, "
        f"{platform.machine()}"
    )
    print(
        "| measurement | max abs difference | equinox (ms) | gradflow (ms) "
        "| equinox / gradflow |"
    )
    print("| --- | --- | --- | --- | --- |")
    for name, measure in measurements(loss).items():
        run_eqx = jax.jit(lambda p, xs, m=measure: m(eqx_cell, p, xs))
        run_gf = jax.jit(lambda p, xs, m=measure: m(gf_cell, p, xs))
        a = jax.block_until_ready(run_eqx(eqx_params, xs))  # compiles
        b = jax.block_until_ready(run_gf(gf_params, xs))
        if name == "param_grad_by_step":
            diff = same_grad(a, b, n)
        else:
            diff = float(jnp.max(jnp.abs(a - b)))
        times = {"eqx": [], "gf": []}
        for _ in range(args.repeats):
            for key, fn, p in (("eqx", run_eqx, eqx_params), ("gf", run_gf, gf_params)):
                start = time.perf_counter()
                jax.block_until_ready(fn(p, xs))
                times[key].append(time.perf_counter() - start)
        t_eqx, t_gf = (1e3 * float(np.median(times[k])) for k in ("eqx", "gf"))
        print(
            f"| {name} | {diff:.1e} | {t_eqx:.1f} | {t_gf:.1f} | {t_eqx / t_gf:.2f} |"
        )


if __name__ == "__main__":
    main()
