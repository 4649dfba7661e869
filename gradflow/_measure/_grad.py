"""Per-step gradient norms ``‖∂L/∂h_t‖`` in one reverse pass, in log space."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_choice
from .._unroll import chunk_length, forward_states, reverse_states
from ..cells import Cell, layer_output_leaves
from ._common import (
    LN10,
    check_loss_fn,
    hidden_struct,
    norm,
    prepare,
    tree_batch_norm,
    tree_scale,
)

LAYERS = ("top", "all")
OF = ("output", "state")


class GradNormRangeWarning(RuntimeWarning):
    """Plain gradient norms left the dtype's range (they read ``inf`` or 0)."""


class GradNorms(NamedTuple):
    """``‖∂L/∂h_t‖`` for every step ``t``.

    With ``layers="all"`` every field gains a leading layer axis: ``(L, T,
    *batch)`` norms and ``(L, *batch)`` counts, layer 0 nearest the input.

    Attributes:
        norms: ``(T, *batch)`` plain norms (``None`` with ``log10=True``):
            ``inf`` where the norm is above the dtype's largest number, 0
            where it is below the smallest normal one (counted in
            ``overflow``/``underflow``), otherwise equal to
            ``10 ** log10_norms`` to rounding. NaN where the maths met a NaN.
        log10_norms: ``(T, *batch)`` ``log10 ‖∂L/∂h_t‖``, computed in log
            space: finite for any ``T`` wherever the norm is nonzero and
            finite (``-inf`` only for an exact 0, i.e. no path to the loss).
        overflow: ``(*batch,)`` int32, how many steps' plain norm is ``inf``
            although its log10 is finite.
        underflow: ``(*batch,)`` int32, how many steps' plain norm is 0
            although its log10 is finite.
    """

    norms: jax.Array | None
    log10_norms: jax.Array
    overflow: jax.Array
    underflow: jax.Array


def hidden_grad_norms(
    cell: Cell,
    params: Any,
    xs: jax.Array,
    loss_fn: Callable[[jax.Array], jax.Array],
    *,
    carry: Any = None,
    log10: bool = False,
    remat: bool | int = False,
    layers: str = "top",
    of: str = "output",
) -> GradNorms:
    """``‖∂L/∂h_t‖`` for every step: the total derivative of the loss by ``h_t``.

    ``L = loss_fn(hs)`` with ``hs (T, *batch, N)`` the hidden outputs. Entry
    ``t`` includes every path from ``h_t`` to the loss (its own term and all
    later steps through the carry), per batch element. One forward pass and
    one reverse scan of vector-Jacobian products (no parameter gradient is
    formed); the reverse scan renormalises the cotangent every step and
    carries the log of its scale, so the log10 norms stay finite and right
    for any ``T`` (plain float32 norms underflow after a few hundred steps of
    vanishing and overflow when exploding).

    ``h_t`` is what the step outputs; for any cell whose output is also a
    leaf of its carry (the built-in cells' ``h``, an LSTM's ``h`` of ``(h,
    c)``, a custom step that returns its new carry's leaf as ``h``) the
    later steps reach it through that leaf. A custom step whose output is no
    leaf of its carry (a readout) feeds only the loss: its total derivative is
    its own term, and a ``UserWarning`` says so. Such a cell (the LRU and
    the selective SSM, whose output is a readout of their state) carries its
    gradient through time in its state: ``of="state"`` measures that.

    Args:
        cell: a :class:`gradflow.cells.Cell` (any kind, see
            :func:`gradflow.cells.custom`).
        params: the cell's params.
        xs: ``(T, *batch, input_size)``, time-major.
        loss_fn: ``loss_fn(hs (T, *batch, N)) -> scalar``. Indexing ``hs``
            follows JAX: an index past ``T`` (``hs[100]`` with ``T = 20``) is
            clamped to the last step without an error, so check it yourself.
        carry: the carry entering step 0; ``None`` means zeros.
        log10: only log10 norms (``norms`` is ``None``). Otherwise plain norms
            come too, and a :class:`GradNormRangeWarning` (once per call) says
            when any left the dtype's range.
        remat: ``True`` or a chunk length ``k`` (``True``: ``ceil(sqrt(T))``)
            keeps one carry per chunk and recomputes each chunk's carries in
            the reverse scan: memory ``O(T/k + k)`` carries besides ``hs``.
        layers: for a stack, ``"top"`` (default) measures the top layer's
            ``h``; ``"all"`` measures every layer's ``h_{l,t}`` in the same
            reverse pass (each including its paths through the layers above
            and through later steps): fields ``(L, T, *batch)``, for
            :func:`gradflow.plots.layer_heatmap`. Other cells count as one
            layer.
        of: ``"output"`` (default): ``‖∂L/∂h_t‖`` of the step's output;
            ``"state"``: ``‖∂L/∂s_t‖`` of the whole carry entering step ``t``
            (flattened, as :func:`gradflow.jacobian_norms` takes it: ``s_0`` is
            the initial carry), the gradient that flows back through time for
            any cell. Not with ``layers="all"``.

    Returns:
        A :class:`GradNorms` with ``(T, *batch)`` fields (``(L, T, *batch)``
        with ``layers="all"``).

    Example:
        >>> loss = lambda hs: jnp.sum(hs[-1] ** 2)
        >>> prof = gf.hidden_grad_norms(cell, params, xs, loss)
        >>> prof.log10_norms        # (T, batch)
    """
    carry, batch = prepare(cell, params, xs, carry)
    check_choice("layers", layers, LAYERS)
    check_choice("of", of, OF)
    if of == "state" and layers == "all":
        raise ValueError(
            "of='state' measures the whole carry, so it takes layers='top', "
            "got layers='all'"
        )
    hs = hidden_struct(cell, params, xs, carry)
    check_loss_fn(loss_fn, hs.shape, hs.dtype)
    chunk = chunk_length(remat, xs.shape[0])
    x0 = jax.ShapeDtypeStruct(tuple(xs.shape[1:]), xs.dtype)
    found = layer_output_leaves(
        cell, params, carry, jax.eval_shape(cell.project, params, x0), len(batch)
    )
    if of == "output":
        _warn_not_in_carry(cell, found if layers == "all" else found[-1:])
    # Three programs, so that outside jit the loss's cotangent takes over the
    # buffer of hs (donated): at T = 10⁶ both at once would double the peak.
    hs, saved = _forward(cell, params, xs, carry, chunk)
    direct = _direct(loss_fn, hs)
    del hs
    out = _reverse(
        cell, params, xs, saved, direct, carry, len(batch), chunk, found,
        layers == "all", of == "state",
    )  # fmt: skip
    if log10:
        return out._replace(norms=None)
    jax.debug.callback(_warn_range, out.overflow, out.underflow, xs.shape[0])
    return out


def _warn_range(overflow: np.ndarray, underflow: np.ndarray, steps: int) -> None:
    over, under = int(np.sum(overflow)), int(np.sum(underflow))
    if over or under:
        total = steps * max(1, np.size(overflow))
        warnings.warn(
            f"hidden_grad_norms: {over} of {total} norms overflowed (norms reads "
            f"inf there) and {under} underflowed (norms reads 0 there); pass "
            "log10=True (or read .log10_norms) for their values",
            GradNormRangeWarning,
            stacklevel=2,
        )


def _warn_not_in_carry(cell: Cell, found: tuple[int | None, ...]) -> None:
    missing = [i for i, leaf in enumerate(found) if leaf is None]
    if missing:
        label = cell.name or cell.kind
        warnings.warn(
            f"hidden_grad_norms: the output h of cell {label!r} (layer(s) "
            f"{missing}) is no leaf of its carry, so no later step depends on "
            "it and ||dL/dh_t|| is its own term in the loss only; return the "
            "carry's leaf itself as h to measure the gradient through time, or "
            "use jacobian_norms for the carry",
            UserWarning,
            stacklevel=3,
        )


def _pick(u: Any, leaf: int | None, other: jax.Array) -> jax.Array:
    """``u``'s leaf number ``leaf`` plus ``other`` (just ``other`` for ``None``)."""
    if leaf is None:
        return other
    return jax.tree_util.tree_leaves(u)[leaf] + other


@partial(jax.jit, static_argnums=(0, 4))
def _forward(cell, params, xs, carry, chunk):
    fwd = forward_states(cell, params, xs, carry, remat=chunk or False)
    return fwd.hs, fwd.saved


@partial(jax.jit, static_argnums=0, donate_argnums=1, keep_unused=True)
def _direct(loss_fn, hs):
    # keep_unused: a loss whose gradient does not read hs (e.g. sum(hs[-1]))
    # still hands over hs's buffer.
    return jax.grad(loss_fn)(hs)


@partial(jax.jit, static_argnums=(0, 6, 7, 8, 9, 10))
def _reverse(
    cell, params, xs, saved, direct, carry, batch_rank, chunk, found, per_layer,
    of_state,
):  # fmt: skip

    def log_norm(x):
        return jnp.log(norm(x, axis=-1))

    def unit(x, n):
        safe = jnp.where(n > 0, n, 1.0)
        return x / jnp.broadcast_to(safe[..., None], x.shape)

    def body(state, inp):
        # state: the cotangent of the carry leaving step t, as exp(log_scale) * u.
        u, log_scale = state
        c_t, xw_t, d_t = inp
        d_norm = norm(d_t, axis=-1)
        d_unit = unit(d_t, d_norm)
        log_d = jnp.log(d_norm)
        # Bring both terms to the larger scale so neither exp() can overflow.
        # Both -inf (no gradient yet): any finite scale; NaN stays NaN.
        top = jnp.maximum(log_scale, log_d)
        top = jnp.where(top == -jnp.inf, 0.0, top)
        w_carry = jnp.exp(log_scale - top)
        w_direct = jnp.exp(log_d - top)
        u = tree_scale(u, w_carry)
        d_scaled = tree_scale(d_unit, w_direct)
        if per_layer and cell.layers:
            ct, log_g = _layer_vjps(cell, params, c_t, xw_t, u, d_scaled, offsets)
            log_g = top[None] + log_g  # (L, *batch)
        else:
            g_t = _pick(u, found[-1], d_scaled)
            log_g = top + log_norm(g_t)
            # The step's Jacobian at the carry entering it (c_t, not c_{t+1}).
            _, vjp = jax.vjp(lambda c: cell.recur(params, c, xw_t), c_t)
            (ct,) = vjp((u, d_scaled))
            if per_layer:
                log_g = log_g[None]
        ct_norm = tree_batch_norm(ct, batch_rank)
        safe = jnp.where(ct_norm > 0, ct_norm, 1.0)
        u = tree_scale(ct, 1.0 / safe)
        log_ct = top + jnp.log(ct_norm)
        # ct is the total cotangent of the carry entering step t: ∂L/∂s_t
        return (u, log_ct), (log_ct if of_state else log_g) / LN10

    offsets = _layer_offsets(cell, carry, found)
    zero = jax.tree_util.tree_map(jnp.zeros_like, carry)
    start = jnp.full(direct.shape[1:-1], -jnp.inf, direct.dtype)
    _, logs = reverse_states(
        cell,
        params,
        xs,
        saved,
        body,
        (zero, start),
        direct,
        remat=chunk or False,
    )
    plain, over, under = _plain(logs)
    if per_layer:  # (T, L, *batch) -> (L, T, *batch)
        logs, plain = (jnp.moveaxis(a, 0, 1) for a in (logs, plain))
    return GradNorms(plain, logs, over, under)


def _layer_offsets(cell: Cell, carry: Any, found) -> tuple[int | None, ...]:
    """Each layer's output leaf counted within that layer's own carry."""
    if not cell.layers:
        return found
    out, offset = [], 0
    for c, leaf in zip(carry, found, strict=True):
        out.append(None if leaf is None else leaf - offset)
        offset += len(jax.tree_util.tree_leaves(c))
    return tuple(out)


def _layer_vjps(cell: Cell, params, c_t, x_t, u, d_top, leaves):
    """One step of a stack, backwards layer by layer.

    ``u`` is the (scaled) cotangent of the carry leaving the step, ``d_top``
    the loss's direct cotangent of the top output. Layer ``l``'s output
    ``h_l`` reaches the loss through its carry leaf (``u[l]``) and through the
    layer above at this step (or the loss, on top): its total cotangent is
    their sum. Returns the cotangent of the carry entering the step and
    ``(L, *batch)`` log norms of every layer's total cotangent.
    """
    vjps, x = [], x_t
    for i, (layer, p, c) in enumerate(zip(cell.layers, params, c_t, strict=True)):
        if i == 0:  # nothing below the input needs its cotangent
            (_, h), vjp = jax.vjp(lambda c, p=p, f=layer.step, x=x: f(p, c, x), c)
        else:
            (_, h), vjp = jax.vjp(lambda c, x, p=p, f=layer.step: f(p, c, x), c, x)
        vjps.append(vjp)
        x = h
    above, cts, logs = d_top, [None] * len(vjps), [None] * len(vjps)
    for i in reversed(range(len(vjps))):
        g = _pick(u[i], leaves[i], above)
        logs[i] = jnp.log(norm(g, axis=-1))
        back = vjps[i]((u[i], above))
        cts[i] = back[0]
        if i:
            above = back[1]
    return tuple(cts), jnp.stack(logs)


def _plain(logs: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``10 ** logs`` as ``inf``/0 outside the dtype's normal range, and counts."""
    finfo = jnp.finfo(logs.dtype)
    plain = jnp.power(jnp.asarray(10.0, logs.dtype), logs)
    finite = jnp.isfinite(logs)
    over = finite & jnp.isinf(plain)
    under = finite & (plain < finfo.tiny)
    plain = jnp.where(under, 0.0, plain)
    count = partial(jnp.sum, axis=0, dtype=jnp.int32)
    return plain, count(over), count(under)
