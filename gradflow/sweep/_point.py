"""The ``measure`` kind's jax half: each grid point as compiled programs of its seeds.

:func:`runner` runs the points of a config, one compiled function per shape
signature. ``point_function`` builds, for a point's shapes, a function
``f(seeds (S,), params, gain ()) -> (arrays, metrics)`` that runs every
seed at once (``vmap`` or ``lax.map``, per measurement) and whose programs are
compiled once per shape signature: points that differ only in gain share them.
``params`` is ``None`` (made inside from each seed's key) except for
initialisers that run on the host.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gradflow import _names, _specs, cells

from ._inputs import input_size, sample_input
from ._kind import Point
from ._measures import MEASUREMENTS, PointContext
from ._user_cells import build as user_cell
from ._user_cells import traced


def runner(config: Mapping[str, Any], ctx: Any) -> Callable[[Point], tuple]:
    """The point runner: one compiled function per shape signature (points that
    differ only in gain share it), seeds batched and sharded over ``ctx``'s mesh.

    Returns ``run(point) -> (arrays, metrics)`` (numpy, leading axis seed) with
    an ``order(points)`` attribute that groups points of one signature, so each
    compiles once and only one signature's host-made params are held at a time.
    """
    state: dict[str, Any] = {"sig": None, "fn": None, "params": None}

    def prepare(point: Point) -> None:
        sig = signature(config, point.coords)
        if sig != state["sig"]:
            state["sig"] = sig
            key = ctx.cache_key(
                {k: config[k] for k in ("cell", "input", "measure")}, sig
            )
            if key not in ctx.cache:
                ctx.cache[key] = point_function(
                    config,
                    point.coords,
                    sharding=ctx.sharding,
                    batching=ctx.batching,
                    compiler_options=ctx.compiler_options,
                )
            state["fn"] = ctx.cache[key]
            state["params"] = None
            if point.coords["init"] in _names.HOST_INITS:
                cell = build_cell(config, point.coords)
                size = input_size(config, point.coords)
                rows = host_params(cell, size, ctx.padded_seeds, None)
                state["params"] = jax.tree_util.tree_map(
                    lambda a: ctx.to_global(np.asarray(a)), rows
                )

    def run(point: Point) -> tuple[dict, dict]:
        prepare(point)
        # The gain is an argument, not a constant: one compile per signature.
        out = state["fn"](
            ctx.seed_array, state["params"], np.float32(point.coords["gain"])
        )
        arrays, metrics = ctx.to_host(out)
        n = len(point.seeds)  # drop the padding to a multiple of the devices
        return {k: v[:n] for k, v in arrays.items()}, {
            k: v[:n] for k, v in metrics.items()
        }

    def order(todo: list[Point]) -> list[Point]:
        first: dict[Any, int] = {}
        for p in todo:
            first.setdefault(signature(config, p.coords), len(first))
        return sorted(todo, key=lambda p: first[signature(config, p.coords)])

    def shapes(point: Point) -> dict[str, tuple[int, ...]]:
        """Each array's shape after the seed axis, traced (nothing computed)."""
        prepare(point)
        arrays = state["fn"].shapes(ctx.seed_array, state["params"], np.float32(1.0))
        return {k: tuple(v.shape[1:]) for k, v in arrays.items()}

    run.order = order  # type: ignore[attr-defined]
    run.shapes = shapes  # type: ignore[attr-defined]
    return run


def signature(config: Mapping[str, Any], coords: Mapping[str, Any]) -> tuple:
    """What decides a compiled function's shapes: points equal here share it."""
    return (
        coords["cell"],
        coords["hidden_size"],
        coords["init"],
        coords["length"],
        coords["input"],
        coords.get("layers", 1),
    )


def build_cell(config: Mapping[str, Any], coords: Mapping[str, Any]) -> cells.Cell:
    """The point's cell with gain 1 (the sweep scales ``W_hh`` by the gain).

    With a ``layers`` coordinate above 1, a stack of that many such cells.
    """
    opts = config["cell"]
    kwargs: dict[str, Any] = {
        "recurrent_init": coords["init"],
        "input_init": opts["input_init"],
        "bias_init": opts["bias_init"],
    }
    if _names.is_factory(coords["cell"]):
        cell = user_cell(coords["cell"], coords["hidden_size"], kwargs)
    else:
        kind, own = _names.cell_variant(coords["cell"])
        for key in _names.CELLS[kind].options:
            if key in opts:
                kwargs[key] = opts[key]
        # a variant's own options ("lru(r_min=0.99)") over the [cell] table's
        cell = cells.make(kind, coords["hidden_size"], **{**kwargs, **own})
    layers = coords.get("layers", 1)
    return cells.stack([cell] * layers) if layers > 1 else cell


def seed_keys(seed: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(params, input, readout)`` keys of one seed: the same in every condition."""
    k_p, k_x, k_u = jax.random.split(jax.random.key(seed), 3)
    return k_p, k_x, k_u


def host_params(cell: cells.Cell, input_size: int, seeds: np.ndarray, sharding) -> Any:
    """Params of every seed stacked on a leading axis (gain 1), made on the host.

    For initialisers that cannot be traced (``gradflow._names.HOST_INITS``);
    the others are made inside the point's compiled function.
    """
    rows = [cell.init(seed_keys(jnp.uint32(s))[0], input_size) for s in seeds]
    stacked = jax.tree_util.tree_map(lambda *a: np.stack(a), *rows)
    return stacked if sharding is None else jax.device_put(stacked, sharding)


BATCHINGS = ("auto", *_specs.BATCHINGS)


def point_function(
    config: Mapping[str, Any],
    coords: Mapping[str, Any],
    *,
    sharding=None,
    batching: str = "auto",
    compiler_options: dict[str, Any] | None = None,
) -> Callable[[jax.Array, Any, jax.Array], tuple[dict, dict]]:
    """``f(seeds (S,), params, gain) -> (arrays, metrics)``, of compiled programs.

    ``params`` is ``None`` (each seed's params are made inside from its key) or,
    for ``gradflow._names.HOST_INITS``, the stacked params from :func:`host_params`.
    Every output has a leading seed axis (``S``, a multiple of the number of
    devices in ``sharding``'s mesh).

    ``batching``: ``"vmap"`` (every measurement as one batched computation),
    ``"map"`` (``lax.map`` over each device's seeds, ``shard_map`` across them),
    or ``"auto"`` (per measurement, its spec's ``batching``: whichever
    benchmarks/bench_sweep.py found faster on CPU with LAPACK on one thread).
    """
    if batching not in BATCHINGS:
        raise ValueError(f"batching must be one of {BATCHINGS}, got {batching!r}")
    cell = build_cell(config, coords)
    measure = config["measure"]
    length = coords["length"]
    size = input_size(config, coords)
    scale = config["input"]["scale"]
    takes = _names.cell_kind(coords["cell"]).options
    activation = config["cell"]["activation"] if "activation" in takes else "tanh"
    # A custom cell may leave its width to its step: read it off one traced step.
    width = cell.hidden_size or int(traced(cell, size)[2].shape[-1])

    def prepare(seed, params, gain):
        k_p, k_x, k_u = seed_keys(seed)
        if params is None:
            params = cell.init(k_p, size)
        # a user's cell without W_hh only runs at gain 1 (_user_cells.check)
        params = cells.scale_w_hh(params, gain)
        xs = sample_input(coords["input"], k_x, (length, size), scale)
        u = jax.random.normal(k_u, (width,))
        return params, xs, u / jnp.linalg.norm(u)

    # The switched-on measurements in the config's order, then those that
    # always run; each batched over seeds as its spec (or ``batching``) says.
    names = [*measure, *(k for k, v in _specs.MEASUREMENTS.items() if v.always)]
    chosen = []
    for name in names:
        spec = _specs.MEASUREMENTS[name]
        ctx = PointContext(cell, measure.get(name, {}), measure, activation)
        fn = functools.partial(MEASUREMENTS[name], ctx)
        chosen.append((fn, spec.batching if batching == "auto" else batching))

    def inputs_of(seeds, params, gain):
        return jax.vmap(prepare, in_axes=(0, 0, None))(seeds, params, gain)

    jit = functools.partial(jax.jit, compiler_options=compiler_options)
    if sharding is not None:
        jit = functools.partial(jit, out_shardings=sharding)
    make_inputs = jit(inputs_of)
    # One program per measurement, run one after the other (each waited for):
    # XLA:CPU runs independent ops of one program concurrently, and two batched
    # LAPACK calls at once (e.g. the bound's SVD beside the fixed points' eig)
    # each waited for helper tasks on the thread pool the other one held, so
    # `gradflow demo` hung with every thread idle (jaxlib 0.10.2, 2 cores).
    programs = [jit(_batch(fn, mode, sharding)) for fn, mode in chosen]

    def point(seeds, params, gain):
        inputs = make_inputs(seeds, params, gain)
        arrays: dict[str, jax.Array] = {}
        metrics: dict[str, jax.Array] = {}
        for program in programs:
            a, m = jax.block_until_ready(program(*inputs))
            arrays.update(a)
            metrics.update(m)
        return arrays, metrics

    def shapes(seeds, params, gain) -> dict[str, Any]:
        """The arrays ``point`` returns, as shapes: traced, nothing compiled."""
        inputs = make_inputs.trace(seeds, params, gain).out_info
        arrays: dict[str, Any] = {}
        for program in programs:
            arrays.update(program.trace(*inputs).out_info[0])
        return arrays

    point.shapes = shapes  # type: ignore[attr-defined]
    return point


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
