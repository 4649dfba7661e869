"""How much each time step contributes to each parameter's gradient."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .._unroll import chunk_length, forward_states, reverse_states, unroll
from ..cells import Cell
from ._common import check_loss_fn, hidden_struct, norm, prepare
from ._grad import GradNormRangeWarning


class ParamGradByStep(NamedTuple):
    """Per-step contributions ``C_t`` to ``∂L/∂θ`` (``Σ_t C_t = jax.grad``).

    Every field but ``contributions`` is a pytree shaped like ``params``.

    Attributes:
        norms: ``(T,)`` per parameter: ``‖C_t‖`` (Frobenius).
        share: ``(T,)`` per parameter: ``‖C_t‖ / Σ_s ‖C_s‖`` (non-negative,
            sums to 1): how much of the gradient's mass step ``t`` carries.
        alignment: ``(T,)`` per parameter: ``⟨C_t, g⟩ / ‖g‖²`` with ``g`` the
            ordinary gradient (signed, sums to 1): each step's part of ``g``.
        grad: the sum of the contributions (equals ``jax.grad`` of the loss).
        contributions: ``(T, *shape)`` per parameter when asked for, else
            ``None``.
    """

    norms: Any
    share: Any
    alignment: Any
    grad: Any
    contributions: Any = None


def param_grad_by_step(
    cell: Cell,
    params: Any,
    xs: jax.Array,
    loss_fn: Callable[[jax.Array], jax.Array],
    *,
    carry: Any = None,
    contributions: bool = False,
    remat: bool | int = False,
) -> ParamGradByStep:
    """Split the gradient of every parameter into one term per time step.

    The parameters are shared by all steps, so ``∂L/∂θ = Σ_t C_t`` where
    ``C_t`` is the gradient that flows through step ``t``'s use of ``θ`` (its
    ``recur`` and its input projection). ``C_t`` is the vector-Jacobian product
    of step ``t`` with the total cotangent of its outputs, computed in one
    reverse scan (no ``T`` copies of the params). A weight whose gradient is
    dominated by the last few steps learns only short-term dependencies.

    Args:
        cell: a :class:`gradflow.cells.Cell`.
        params: its params.
        xs: ``(T, *batch, input_size)``; the batch is summed (as the loss is).
        loss_fn: ``loss_fn(hs (T, *batch, N)) -> scalar`` (an index past
            ``T`` is clamped by JAX, see :func:`gradflow.hidden_grad_norms`).
        carry: the carry entering step 0; ``None`` means zeros.
        contributions: also return every ``C_t`` (``T`` times the params'
            memory). A :class:`GradNormRangeWarning` (once per call) says when
            a norm overflowed float32 (inf; its shares read NaN or inf).
        remat: ``True`` or a chunk length: keep one carry per chunk and
            recompute the rest, in the reverse scan and in the gradient.

    Returns:
        A :class:`ParamGradByStep`.

    Example:
        >>> by_step = gf.param_grad_by_step(cell, params, xs, loss)
        >>> by_step.share["W_hh"]        # (T,), sums to 1
    """
    carry, _ = prepare(cell, params, xs, carry)
    hs = hidden_struct(cell, params, xs, carry)
    check_loss_fn(loss_fn, hs.shape, hs.dtype)
    chunk = chunk_length(remat, xs.shape[0])
    out = _by_step(cell, params, xs, loss_fn, carry, contributions, chunk)
    paths, _ = jax.tree_util.tree_flatten_with_path(out.norms)
    names = tuple(jax.tree_util.keystr(path) for path, _ in paths)
    bad = [jnp.sum(~jnp.isfinite(leaf)) for _, leaf in paths]
    # NaN in gives NaN out, silently; a finite input that gives none is news.
    finite_in = jnp.all(
        jnp.asarray([jnp.all(jnp.isfinite(v)) for v in jax.tree.leaves((params, xs))])
    )
    jax.debug.callback(partial(_warn_overflow, names, xs.shape[0]), bad, finite_in)
    return out


def _warn_overflow(names: tuple[str, ...], steps: int, bad: list, finite_in) -> None:
    hit = [
        f"{name} at {int(n)} of {steps} steps"
        for name, n in zip(names, bad, strict=True)
        if n
    ]
    if hit and bool(finite_in):
        warnings.warn(
            f"param_grad_by_step: per-step contributions are not finite "
            f"({'; '.join(hit)}) though params and xs are: "
            "float32 overflowed (or the loss is not finite), so their norms read "
            "inf or NaN and their shares and alignments NaN; scale the weights "
            "or the loss down, or measure in float64 "
            "(jax.config.update('jax_enable_x64', True))",
            GradNormRangeWarning,
            stacklevel=2,
        )


@partial(jax.jit, static_argnums=(0, 3, 5, 6))
def _by_step(cell, params, xs, loss_fn, carry, contributions, chunk):
    remat = chunk or False
    fwd = forward_states(cell, params, xs, carry, remat=remat)
    direct = jax.grad(loss_fn)(fwd.hs)

    def total_loss(p):
        return loss_fn(unroll(cell, p, xs, carry, remat=remat)[1])

    total = jax.grad(total_loss)(params)
    total_sq = jax.tree_util.tree_map(lambda g: jnp.sum(jnp.square(g)), total)

    def body(state, inp):
        ct_carry, acc = state
        c_t, _, (x_t, d_t) = inp
        _, vjp = jax.vjp(lambda p, c: cell.step(p, c, x_t), params, c_t)
        ct_p, ct_carry = vjp((ct_carry, d_t))
        acc = jax.tree_util.tree_map(jnp.add, acc, ct_p)
        out = (
            jax.tree_util.tree_map(norm, ct_p),
            jax.tree_util.tree_map(
                lambda c, g, sq: jnp.vdot(c, g) / jnp.where(sq == 0, 1.0, sq),
                ct_p,
                total,
                total_sq,
            ),
            ct_p if contributions else None,
        )
        return (ct_carry, acc), out

    zeros_c = jax.tree_util.tree_map(jnp.zeros_like, carry)
    zeros_p = jax.tree_util.tree_map(jnp.zeros_like, params)
    (_, grad), (norms, alignment, per_step) = reverse_states(
        cell,
        params,
        xs,
        fwd.saved,
        body,
        (zeros_c, zeros_p),
        (xs, direct),
        remat=remat,
    )

    def share(n):
        s = jnp.sum(n)
        # NaN stays NaN (a NaN gradient has no shares)
        return n / jnp.where(s == 0, 1.0, s)

    return ParamGradByStep(
        norms=norms,
        share=jax.tree_util.tree_map(share, norms),
        alignment=alignment,
        grad=grad,
        contributions=per_step,
    )
