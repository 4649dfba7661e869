"""The measurements of a ``measure`` sweep: :data:`MEASUREMENTS`, name -> function.

Each is ``f(ctx, params, xs, u) -> (arrays, metrics)`` for one seed, traced
under ``jit`` and batched over seeds by :func:`gradflow.sweep._point.point_function`;
``gradflow._specs.MEASUREMENTS`` says what each takes and writes (the same
names; tests/test_names.py checks it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from gradflow import _measure, _names, _specs, cells


class PointContext(NamedTuple):
    """What a measurement function knows besides its seed's data.

    Attributes:
        cell: the point's cell (gain 1; the gain is already in ``params``).
        options: this measurement's resolved options.
        measure: the whole resolved ``[measure]`` section.
        activation: the RNN's nonlinearity (``"tanh"`` for gated cells).
    """

    cell: cells.Cell
    options: Mapping[str, Any]
    measure: Mapping[str, Any]
    activation: str


def make_loss(kind: str, readout: jax.Array) -> Callable[[jax.Array], jax.Array]:
    """``loss(hs (T, N)) -> ()``, one of ``gradflow._specs.LOSSES``; the readout
    ``u`` has unit norm.

    Raises:
        ValueError: ``kind`` is not one of ``gradflow._specs.LOSSES``.
    """
    if kind == "last_linear":
        return lambda hs: jnp.dot(readout, hs[-1])
    if kind == "last_square":
        return lambda hs: 0.5 * jnp.sum(hs[-1] ** 2)
    if kind == "sum_linear":
        return lambda hs: jnp.sum(hs @ readout)
    raise ValueError(f"loss must be one of {_specs.LOSSES}, got {kind!r}")


def grad_norms(ctx: PointContext, params, xs, u):
    loss_fn = make_loss(ctx.options["loss"], u)
    # Log space: plain norms underflow float32 within a few hundred steps.
    prof = _measure.hidden_grad_norms(
        ctx.cell, params, xs, loss_fn, log10=True, of=ctx.options["of"]
    )
    log10 = prof.log10_norms
    fit = _measure.decay_rate(log10, log10=True)
    metrics = {
        "log10_grad_norm_step0": log10[0],
        "decay_rate": fit.rate,
        "half_life": fit.half_life,
        "memory_horizon": _measure.memory_horizon(log10),
    }
    return {"log10_grad_norms": log10}, metrics


def layer_grad_norms(ctx: PointContext, params, xs, u):
    loss_fn = make_loss(ctx.options["loss"], u)
    # Every layer of a stack in one reverse pass, in log space; (layers, T).
    prof = _measure.hidden_grad_norms(
        ctx.cell, params, xs, loss_fn, log10=True, layers="all"
    )
    log10 = prof.log10_norms
    return {"log10_layer_grad_norms": log10}, {
        "log10_grad_norm_step0_bottom": log10[0, 0]
    }


def jacobian_norms(ctx: PointContext, params, xs, u):
    jac = _measure.jacobian_norms(ctx.cell, params, xs)
    return {"jacobian_log10_norms": jac.log10_norms}, {}


def jacobian_singular_values(ctx: PointContext, params, xs, u):
    spec = _measure.jacobian_singular_values(ctx.cell, params, xs, k=ctx.options["k"])
    return {"jacobian_log10_singular_values": spec.log10_singular_values}, {}


def lyapunov(ctx: PointContext, params, xs, u):
    opts = ctx.options
    lyap = _measure.lyapunov_spectrum(
        ctx.cell, params, xs, k=opts["k"], warmup=opts["warmup"]
    )
    arrays = {
        "lyapunov_exponents": lyap.exponents,
        "lyapunov_running": lyap.running,
        # False where the precision cannot resolve the exponent (an upper bound)
        "lyapunov_resolved": lyap.resolved,
    }
    metrics = {
        "lambda_max": lyap.exponents[0],
        # NaN (with a warning) where the k exponents computed do not decide them
        "kaplan_yorke": lyap.kaplan_yorke,
        "entropy_rate": lyap.entropy_rate,
    }
    return arrays, metrics


def param_sensitivity(ctx: PointContext, params, xs, u):
    """``‖∂h_t/∂θ‖²`` per selected scalar, plain and with normalised inputs.

    The metrics average the second half of the sequence (past the transient
    from the zero state); "normalised" scales the inputs by
    ``γ = sqrt(1 − ‖W_hh‖₂²)`` (the LRU's input normalisation; NaN where
    ``‖W_hh‖₂ ≥ 1`` or the params have no ``W_hh``).
    """
    opts = ctx.options
    name = opts["wrt"]
    leaves = jax.tree_util.tree_leaves_with_path(params)

    def chosen(path) -> bool:
        last = path[-1]
        key = getattr(last, "key", getattr(last, "name", None))
        return name == "all" or key == name

    flags = [chosen(path) for path, _ in leaves]
    count = sum(int(leaf.size) for (_, leaf), f in zip(leaves, flags, strict=True) if f)
    if count == 0:
        raise ValueError(
            f"[measure] param_sensitivity wrt must name a parameter of the cell "
            f"(or 'all'), got {name!r}"
        )
    treedef = jax.tree_util.tree_structure(params)
    wrt = jax.tree_util.tree_unflatten(treedef, flags)

    def per_scalar(inputs):
        sens = _measure.param_sensitivity(
            ctx.cell, params, inputs, wrt=wrt, probes=opts["probes"]
        )
        return sens.sq_norms / count

    sq = per_scalar(xs)
    half = xs.shape[0] // 2
    if cells.has_w_hh(params) and not ctx.cell.layers:
        w = params["W_hh"]
        gamma = jnp.sqrt(jnp.maximum(1.0 - _spectral_norm(w) ** 2, 0.0))
        gamma = jnp.where(_spectral_norm(w) < 1.0, gamma, jnp.nan)
        normalised = jnp.log10(jnp.mean(per_scalar(gamma * xs)[half:]))
    else:
        normalised = jnp.asarray(jnp.nan, sq.dtype)
    xw = ctx.cell.project(params, xs)
    metrics = {
        "log10_param_sensitivity": jnp.log10(jnp.mean(sq[half:])),
        "log10_param_sensitivity_normalised": normalised,
        "input_power": jnp.mean(jnp.square(xw)),
    }
    return {"param_sensitivity": sq}, metrics


def _spectral_norm(w: jax.Array, iterations: int = 50) -> jax.Array:
    """``‖w‖₂`` by power iteration on ``wᵀw`` (matrix products only: no LAPACK
    call to run beside another measurement's)."""
    v = jnp.ones((w.shape[1],), w.dtype) / jnp.sqrt(w.shape[1])

    def body(_, v):
        v = w.T @ (w @ v)
        return v / jnp.maximum(jnp.linalg.norm(v), jnp.finfo(w.dtype).tiny)

    v = lax.fori_loop(0, iterations, body, v)
    return jnp.linalg.norm(w @ v)


def param_grad_by_step(ctx: PointContext, params, xs, u):
    # the loss of grad_norms (its default when it is off): the same gradient
    grad = _specs.MEASUREMENTS["grad_norms"].defaults
    loss = ctx.measure.get("grad_norms", grad)["loss"]
    by_step = _measure.param_grad_by_step(ctx.cell, params, xs, make_loss(loss, u))
    # a stack's share: its top layer's W_hh (or, for a cell without one, the
    # param of its state transition: _names.CellKind.recurrent_param)
    share = by_step.share[-1] if ctx.cell.layers else by_step.share
    top = ctx.cell.layers[-1] if ctx.cell.layers else ctx.cell
    kind = _names.CELLS.get(top.kind)
    name = kind.recurrent_param if kind is not None else "W_hh"
    return {"param_grad_share": share[name]}, {}


def bound(ctx: PointContext, params, xs, u):
    cell = ctx.cell
    if any(c.kind in _names.CELLS and not _names.CELLS[c.kind].gates
           for c in (cell, *cell.layers)):  # fmt: skip
        return {}, {}  # no W_hh (an mLSTM, say): no bound to state
    if cell.kind == "custom" or any(c.kind == "custom" for c in cell.layers):
        # A user's cell: the theorem is the tanh RNN's; only sigma_max of a
        # W_hh it names means something here.
        if cell.layers or not cells.has_w_hh(params):
            return {}, {}
        sigma = _measure.vanishing_bound(cell, params, w_hh=params["W_hh"]).sigma_max
        return {}, {"sigma_max_whh": sigma}
    if not all(cells.has_w_hh(p) for p in (params if cell.layers else (params,))):
        # the cells linear in their state: no W_hh, no σ_max(W_hh) bound
        return {}, {}
    b = _measure.vanishing_bound(cell, params, ctx.activation)
    # a stack: the largest over its layers (the layer furthest from vanishing)
    return {}, {
        "sigma_max_whh": jnp.max(b.sigma_max),
        "pascanu_bound": jnp.max(b.bound),
    }


def fixed_points(ctx: PointContext, params, xs, u):
    """Fixed points of the input-free map, started from the trajectory's states.

    Fixed shapes per seed (one entry per start): the end points, their ``q``,
    the eigenvalues of ``∂F/∂s`` there, and which starts are the first of their
    group of equal end points (``fixed_point_distinct``). The metrics take the
    point most starts reached, preferring an attracting one.
    """
    opts = ctx.options
    cell = ctx.cell
    # A short sequence (e.g. --quick) visits fewer states than starts asked for.
    count = min(opts["starts"], xs.shape[0])
    starts = _measure.sample_states(cell, params, xs, count, key=jax.random.key(0))
    cand = _measure.fixed_point_candidates(
        cell, params, None, starts, max_steps=opts["max_steps"]
    )
    zero = jnp.zeros(xs.shape[-1:], cand.states.dtype)
    eig = _measure.eigenvalues_at(cell, params, zero, cand.states)
    modulus = jnp.abs(eig[:, 0])
    conv = cand.converged
    gap = jnp.max(jnp.abs(cand.states[:, None] - cand.states[None]), axis=-1)
    same = (gap <= opts["unique_tol"]) & conv[:, None] & conv[None]
    earlier = jnp.tril(same, k=-1)
    distinct = conv & jnp.logical_not(jnp.any(earlier, axis=1))
    stable = conv & (modulus < 1.0)
    # The most visited point, an attracting one if any start found one.
    visits = jnp.sum(same, axis=1)
    score = jnp.where(stable, visits + cand.states.shape[0] + 1, visits)
    score = jnp.where(conv, score, -1)
    best = jnp.argmax(score)
    found = conv[best]
    rate = jnp.where(found, -jnp.log(modulus[best]), jnp.nan)
    arrays = {
        "fixed_point_states": cand.states,
        "fixed_point_speeds": cand.speeds,
        "fixed_point_eigenvalues": eig,
        "fixed_point_distinct": distinct,
        "fixed_point_trajectory": _measure.visited_states(cell, params, xs),
    }
    if cell.kind == "rnn":
        # After the points' eig, not beside it: two batched LAPACK calls at
        # once can deadlock XLA:CPU's thread pool (see _point.point_function).
        w_hh, _ = lax.optimization_barrier((params["W_hh"], eig))
        arrays["whh_eigenvalues"] = jnp.linalg.eigvals(w_hh)
    metrics = {
        "fixed_points": jnp.sum(distinct),
        "stable_fixed_points": jnp.sum(distinct & stable),
        "fixed_point_decay_rate": rate,
        "fixed_point_attracts": jnp.where(found, stable[best], jnp.nan),
    }
    return arrays, metrics


#: Measurement name -> its function (the names of ``gradflow._specs.MEASUREMENTS``).
MEASUREMENTS: dict[str, Callable[..., tuple[dict, dict]]] = {
    "grad_norms": grad_norms,
    "layer_grad_norms": layer_grad_norms,
    "jacobian_norms": jacobian_norms,
    "jacobian_singular_values": jacobian_singular_values,
    "lyapunov": lyapunov,
    "fixed_points": fixed_points,
    "param_sensitivity": param_sensitivity,
    "param_grad_by_step": param_grad_by_step,
    "bound": bound,
}


def register_measurement(
    name: str, spec: _specs.Measurement, run: Callable[..., tuple[dict, dict]]
) -> None:
    """Add a measurement defined outside gradflow; see docs/extending.md.

    Args:
        name: what a ``[measure]`` section switches on.
        spec: what it takes, writes and draws (``gradflow.sweep.Measurement``).
        run: ``run(ctx, params, xs, u) -> (arrays, metrics)`` for one seed,
            traced under ``jit`` (``ctx``: a ``PointContext``).

    Raises:
        ValueError: ``name`` is taken or not an identifier, or the spec is
            inconsistent (see ``gradflow._specs.register_measurement``).
        TypeError: ``run`` is not callable or ``spec`` not a ``Measurement``.
    """
    if not callable(run):
        raise TypeError(
            f"run of measurement {name!r} must be callable, got {type(run).__name__}"
        )
    _specs.register_measurement(name, spec)
    MEASUREMENTS[name] = run
