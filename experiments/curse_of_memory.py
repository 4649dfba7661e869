"""The curse of memory (Zucchet & Orvieto, 2024): ``E‖∂h_t/∂θ‖²`` against memory.

Measured with :func:`gradflow.param_sensitivity` at the last step of ``T``
steps of white-noise input, averaged over sequences (and per parameter
scalar / unit as labelled), next to the closed forms of the linear
recurrence ``h_t = λ h_{t−1} + γ x_t``:

* diagonal, ``γ = 1``: ``(1+λ²)/(1−λ²)³`` per unit (∂/∂λ_i);
* diagonal, ``γ = sqrt(1−λ²)`` differentiated with λ (input normalisation):
  ``1/(1−λ²)²``;
* tanh RNN with ``W_hh = g·I`` and inputs of std ``σ = 0.1``: per entry of
  ``W_hh`` over ``σ²``, the linear recurrence would give the first curve,
  ``(1+g²)/(1−g²)³``; tanh saturates below it;
* LSTM: memory from the forget-gate bias, ``λ ≈ sigmoid(b_f)`` (no closed form);
* LRU (nearly real λ, ``γ = sqrt(1−|λ|²)`` a separate parameter): per unit,
  by ``ν`` rescaled to ``∂/∂|λ|`` (``∂|λ|/∂ν = |λ| log|λ|``); its guide is the
  fixed-γ form ``(1+λ²)/(1−λ²)²``.

    PYTHONPATH=. .venv/bin/python experiments/curse_of_memory.py [--quick]

writes ``figures/curse_of_memory_lambda/curse_of_memory.{png,svg,pdf}`` and
``.../curse_of_memory.json`` (every measured number).
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import jax
import jax.numpy as jnp
import numpy as np

import gradflow as gf


def _diag(normalise: bool) -> gf.cells.Cell:
    def step(p, h, x):
        lam = p["lam"]
        gamma = jnp.sqrt(1 - lam**2) if normalise else 1.0
        h = lam * h + gamma * x
        return h, h

    return gf.cells.custom(step, jnp.zeros(8), input_size=8)


def _stats(sq: np.ndarray, per: float) -> tuple[float, float]:
    """Mean and standard error over sequences of the last step, per ``per``."""
    last = np.asarray(sq, np.float64)[-1].reshape(-1) / per
    return float(last.mean()), float(last.std(ddof=1) / np.sqrt(last.size))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="figures/curse_of_memory_lambda")
    parser.add_argument(
        "--replot", action="store_true", help="redraw from the saved JSON"
    )
    args = parser.parse_args()
    if args.replot:
        with open(os.path.join(args.out, "curse_of_memory.json")) as f:
            _draw(json.load(f)["series"], args.out)
        return
    steps, batch = (400, 32) if args.quick else (2000, 256)
    lams = [0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99]
    n = 8
    key = jax.random.key(0)
    xs = jax.random.normal(key, (steps, batch, n))
    out: dict[str, dict[str, list[float]]] = {}

    def record(label, memory, mean, err, seconds):
        row = out.setdefault(label, {"memory": [], "mean": [], "stderr": []})
        row["memory"].append(memory)
        row["mean"].append(mean)
        row["stderr"].append(err)
        print(
            f"{label:28s} memory {memory:7.1f}  {mean:.4g} ± {err:.2g}  "
            f"({seconds:.1f} s)",
            flush=True,
        )

    for normalise, label in ((False, "linear diagonal"), (True, "linear, normalised")):
        cell = _diag(normalise)
        run = jax.jit(lambda p, cell=cell: gf.param_sensitivity(cell, p, xs).sq_norms)
        for lam in lams:
            t = time.perf_counter()
            sq = run({"lam": jnp.full((n,), lam)})
            record(label, 1 / (1 - lam), *_stats(sq, n), time.perf_counter() - t)

    sigma = 0.1
    small = sigma * xs
    rnn = gf.cells.rnn(n, "tanh", bias_init="zeros")
    base = rnn.init(key, n)
    wrt = {k: k == "W_hh" for k in base}
    for g in lams:
        params = {**base, "W_ih": jnp.eye(n), "W_hh": g * jnp.eye(n)}
        t = time.perf_counter()
        sq = gf.param_sensitivity(rnn, params, small, wrt=wrt, probes=16).sq_norms
        record(
            "tanh RNN, W_hh = gI",
            1 / (1 - g),
            *_stats(sq, n * n * sigma**2),
            time.perf_counter() - t,
        )

    lstm = gf.cells.lstm(n)
    lbase = lstm.init(key, n)
    lwrt = {k: k == "W_hh" for k in lbase}
    for lam in lams:
        bias = np.zeros(4 * n, np.float32)
        bias[n : 2 * n] = np.log(lam / (1 - lam))  # forget gate: sigmoid(b) = λ
        params = {**lbase, "b_ih": jnp.asarray(bias), "b_hh": jnp.zeros(4 * n)}
        t = time.perf_counter()
        sq = gf.param_sensitivity(lstm, params, xs, wrt=lwrt, probes=16).sq_norms
        record(
            "LSTM, sigmoid(b_f) = λ",
            1 / (1 - lam),
            *_stats(sq, 4 * n * n),
            time.perf_counter() - t,
        )

    if hasattr(gf.cells, "lru"):
        for lam in lams:
            cell = gf.cells.lru(n, r_min=lam * (1 - 1e-6), r_max=lam, max_phase=1e-3)
            params = cell.init(key, n)
            wrt = {k: k == "nu_log" for k in params}
            t = time.perf_counter()
            sq = gf.param_sensitivity(cell, params, xs, wrt=wrt).sq_norms
            per = n * (lam * np.log(lam)) ** 2  # per unit, as ∂/∂|λ|
            record(
                "LRU (∂/∂|λ|)", 1 / (1 - lam), *_stats(sq, per), time.perf_counter() - t
            )

    _draw(out, args.out)
    meta = {"steps": steps, "batch": batch, "units": n, "input_std_rnn": sigma}
    with open(os.path.join(args.out, "curse_of_memory.json.tmp"), "w") as f:
        json.dump({"setup": meta, "series": out}, f, indent=1)
    os.replace(
        os.path.join(args.out, "curse_of_memory.json.tmp"),
        os.path.join(args.out, "curse_of_memory.json"),
    )


def _draw(out: dict, folder: str) -> None:
    grid = np.linspace(0.45, 0.995, 200)
    q = grid**2
    tau = 1 / (1 - grid)
    forms = {
        "linear diagonal": (tau, (1 + q) / (1 - q) ** 3),
        "linear, normalised": (tau, 1 / (1 - q) ** 2),
        "LRU (∂/∂|λ|)": (tau, (1 + q) / (1 - q) ** 2),
    }
    if "LRU (∂/∂|λ|)" not in out:
        del forms["LRU (∂/∂|λ|)"]
    fig = gf.plots.sensitivity_vs_memory(
        {k: v["memory"] for k, v in out.items()},
        {k: v["mean"] for k, v in out.items()},
        stderr={k: v["stderr"] for k, v in out.items()},
        closed_forms=forms,
        column="double",
    )
    os.makedirs(folder, exist_ok=True)
    gf.plots.save(fig, os.path.join(folder, "curse_of_memory"))


if __name__ == "__main__":
    main()
