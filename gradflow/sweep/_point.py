"""One grid point as one compiled function of its seeds.

``point_function`` builds, for a point's shapes, a function
``f(seeds (S,), params, gain ()) -> (arrays, metrics)`` that runs every
seed at once (``vmap``; ``lax.map`` is kept for the benchmark) and is compiled
once per shape signature: points that differ only in gain share it. ``params``
is ``None`` (made inside from each seed's key) except for initialisers that
run on the host.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import gradflow as gf
from gradflow.cells import make as make_cell

from ._config import TASK_INPUTS

# Initialisers that run on the host (eigvals) and so cannot be traced.
HOST_INITS = ("sparse",)

#: The named axes of every array a measurement writes (``axes.json``).
ARRAY_AXES = {
    "grad_norms": {"log10_grad_norms": ["seed", "step"]},
    "jacobian_norms": {"jacobian_log10_norms": ["seed", "step"]},
    "jacobian_singular_values": {
        "jacobian_log10_singular_values": ["seed", "lag", "k"]
    },
    "lyapunov": {
        "lyapunov_exponents": ["seed", "k"],
        "lyapunov_running": ["seed", "step", "k"],
    },
    "param_grad_by_step": {"param_grad_share": ["seed", "step"]},
}


def array_axes(measure: Mapping[str, Any]) -> dict[str, list[str]]:
    """``axes.json`` content for a ``[measure]`` section."""
    out: dict[str, list[str]] = {}
    for name in measure:
        out.update(ARRAY_AXES[name])
    return out


def signature(config: Mapping[str, Any], coords: Mapping[str, Any]) -> tuple:
    """What decides a compiled function's shapes: points equal here share it."""
    return (
        coords["cell"],
        coords["hidden_size"],
        coords["init"],
        coords["length"],
        coords["input"],
    )


def build_cell(config: Mapping[str, Any], coords: Mapping[str, Any]) -> gf.cells.Cell:
    """The point's cell with gain 1 (the sweep scales ``W_hh`` by the gain)."""
    opts = config["cell"]
    kwargs: dict[str, Any] = {
        "recurrent_init": coords["init"],
        "input_init": opts["input_init"],
        "bias_init": opts["bias_init"],
    }
    if coords["cell"] == "rnn":
        kwargs["activation"] = opts["activation"]
    if coords["cell"] == "lstm" and "forget_bias" in opts:
        kwargs["forget_bias"] = opts["forget_bias"]
    return make_cell(coords["cell"], coords["hidden_size"], **kwargs)


def seed_keys(seed: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(params, input, readout)`` keys of one seed: the same in every condition."""
    k_p, k_x, k_u = jax.random.split(jax.random.key(seed), 3)
    return k_p, k_x, k_u


def host_params(
    cell: gf.cells.Cell, input_size: int, seeds: np.ndarray, sharding
) -> Any:
    """Params of every seed stacked on a leading axis (gain 1), made on the host.

    For initialisers that cannot be traced (:data:`HOST_INITS`); the others are
    made inside the point's compiled function.
    """
    rows = [cell.init(seed_keys(jnp.uint32(s))[0], input_size) for s in seeds]
    stacked = jax.tree_util.tree_map(lambda *a: np.stack(a), *rows)
    return stacked if sharding is None else jax.device_put(stacked, sharding)


def input_size(config: Mapping[str, Any], coords: Mapping[str, Any]) -> int:
    """Features per step: ``[input] size`` for noise, the task's width otherwise."""
    if coords["input"] in TASK_INPUTS:
        return gf.tasks.make(coords["input"], coords["length"]).input_size
    return config["input"]["size"]


def sample_input(kind: str, key: jax.Array, shape: tuple[int, ...], scale: float):
    """One input sequence ``(T', D)``: noise of ``shape``, or a task's inputs.

    A task's sequence has the task's own number of steps (``T + 20`` for copy).
    """
    if kind in TASK_INPUTS:
        task = gf.tasks.make(kind, shape[0])
        return task.sample(key, 1).xs[:, 0].astype(jnp.float32)
    if kind == "gaussian":
        return scale * jax.random.normal(key, shape)
    if kind == "uniform":
        return jax.random.uniform(key, shape, minval=-scale, maxval=scale)
    return jnp.zeros(shape)


def make_loss(kind: str, readout: jax.Array) -> Callable[[jax.Array], jax.Array]:
    """``loss(hs (T, N)) -> ()``; the readout ``u`` has unit norm."""
    if kind == "last_linear":
        return lambda hs: jnp.dot(readout, hs[-1])
    if kind == "last_square":
        return lambda hs: 0.5 * jnp.sum(hs[-1] ** 2)
    return lambda hs: jnp.sum(hs @ readout)


#: How each measurement runs its seeds on CPU, from benchmarks/bench_sweep.py
#: (with LAPACK on one thread, as :func:`gradflow.sweep.run` pins it): ``vmap``
#: where one batched program is as fast or faster; ``lax.map`` for the Jacobian
#: products, whose exact SVD fallback, batched, runs for every seed at a step
#: where any one seed needs it (1.6x slower than ``lax.map`` for an LSTM with
#: N = 64, a tie at smaller states).
AUTO_BATCHING = {
    "grad_norms": "vmap",
    "lyapunov": "vmap",
    "jacobian_norms": "map",
    "jacobian_singular_values": "map",
    "param_grad_by_step": "vmap",
}

BATCHINGS = ("auto", "vmap", "map")


def point_function(
    config: Mapping[str, Any],
    coords: Mapping[str, Any],
    *,
    sharding=None,
    batching: str = "auto",
    compiler_options: dict[str, Any] | None = None,
) -> Callable[[jax.Array, Any, jax.Array], tuple[dict, dict]]:
    """A compiled ``f(seeds (S,), params, gain) -> (arrays, metrics)``.

    ``params`` is ``None`` (each seed's params are made inside from its key) or,
    for :data:`HOST_INITS`, the stacked params from :func:`host_params`.
    Every output has a leading seed axis (``S``, a multiple of the number of
    devices in ``sharding``'s mesh).

    ``batching``: ``"vmap"`` (every measurement as one batched computation),
    ``"map"`` (``lax.map`` over each device's seeds, ``shard_map`` across them),
    or ``"auto"`` (per measurement, :data:`AUTO_BATCHING`).
    """
    if batching not in BATCHINGS:
        raise ValueError(f"batching must be one of {BATCHINGS}, got {batching!r}")
    cell = build_cell(config, coords)
    measure = config["measure"]
    length = coords["length"]
    size = input_size(config, coords)
    scale = config["input"]["scale"]
    activation = config["cell"]["activation"] if coords["cell"] == "rnn" else "tanh"

    def prepare(seed, params, gain):
        k_p, k_x, k_u = seed_keys(seed)
        if params is None:
            params = cell.init(k_p, size)
        params = {**params, "W_hh": gain * params["W_hh"]}
        xs = sample_input(coords["input"], k_x, (length, size), scale)
        u = jax.random.normal(k_u, (cell.hidden_size,))
        return params, xs, u / jnp.linalg.norm(u)

    def grad_norms(params, xs, u):
        loss_fn = make_loss(measure["grad_norms"]["loss"], u)
        # Log space: plain norms underflow float32 within a few hundred steps.
        log10 = gf.hidden_grad_norms(cell, params, xs, loss_fn, log10=True)
        fit = gf.decay_rate(log10, log10=True)
        metrics = {
            "log10_grad_norm_step0": log10[0],
            "decay_rate": fit.rate,
            "half_life": fit.half_life,
        }
        return {"log10_grad_norms": log10}, metrics

    def jacobian_norms(params, xs, u):
        jac = gf.jacobian_norms(cell, params, xs)
        return {"jacobian_log10_norms": jac.log10_norms}, {}

    def jacobian_singular_values(params, xs, u):
        k = measure["jacobian_singular_values"]["k"]
        spec = gf.jacobian_singular_values(cell, params, xs, k=k)
        return {"jacobian_log10_singular_values": spec.log10_singular_values}, {}

    def lyapunov(params, xs, u):
        opts = measure["lyapunov"]
        lyap = gf.lyapunov_spectrum(
            cell, params, xs, k=opts["k"], warmup=opts["warmup"]
        )
        arrays = {
            "lyapunov_exponents": lyap.exponents,
            "lyapunov_running": lyap.running,
        }
        return arrays, {"lambda_max": lyap.exponents[0]}

    def param_grad_by_step(params, xs, u):
        loss = measure.get("grad_norms", {}).get("loss", "last_linear")
        by_step = gf.param_grad_by_step(cell, params, xs, make_loss(loss, u))
        return {"param_grad_share": by_step.share["W_hh"]}, {}

    def bound(params, xs, u):
        b = gf.vanishing_bound(cell, params, activation)
        return {}, {"sigma_max_whh": b.sigma_max, "pascanu_bound": b.bound}

    parts = {
        "grad_norms": grad_norms,
        "jacobian_norms": jacobian_norms,
        "jacobian_singular_values": jacobian_singular_values,
        "lyapunov": lyapunov,
        "param_grad_by_step": param_grad_by_step,
    }
    chosen = [(parts[name], _mode(batching, name)) for name in measure]

    def batched(seeds, params, gain):
        inputs = jax.vmap(prepare, in_axes=(0, 0, None))(seeds, params, gain)
        arrays: dict[str, jax.Array] = {}
        metrics: dict[str, jax.Array] = {}
        for fn, mode in [*chosen, (bound, "vmap")]:
            a, m = _batch(fn, mode, sharding)(*inputs)
            arrays.update(a)
            metrics.update(m)
        return arrays, metrics

    if sharding is None:
        return jax.jit(batched, compiler_options=compiler_options)
    return jax.jit(batched, out_shardings=sharding, compiler_options=compiler_options)


def _mode(batching: str, name: str) -> str:
    return AUTO_BATCHING[name] if batching == "auto" else batching


def _batch(fn: Callable, mode: str, sharding) -> Callable:
    """Run ``fn`` over a leading seed axis: ``vmap``, or ``lax.map`` per device."""
    if mode == "vmap":
        return jax.vmap(fn)

    def mapped(*args):
        return lax.map(lambda a: fn(*a), args)

    if sharding is None or sharding.mesh.size == 1:
        return mapped
    # Each device loops over its own seeds, so each seed takes the Jacobian
    # products' SVD fallback only where it needs it.
    # check_vma=False: the measurements start scans from fresh zero carries,
    # which the varying-axis type check would reject; every seed is independent.
    spec = sharding.spec
    return jax.shard_map(
        mapped, mesh=sharding.mesh, in_specs=spec, out_specs=spec, check_vma=False
    )
