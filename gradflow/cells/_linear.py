"""Cells linear in their state: the record :func:`gradflow.unroll` scans in parallel.

A recurrence ``s_t = a_t ⊙ s_{t-1} + b_t`` whose coefficients depend on the
inputs only composes associatively, ``(a1, b1) then (a2, b2) = (a2 a1, a2 b1 +
b2)``, so ``jax.lax.associative_scan`` runs it in ``O(log T)`` depth instead of
``T`` sequential steps. A cell says it is such a recurrence with a
:class:`LinearScan` in its ``linear`` field.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

Params = Any
Carry = Any


def affine_combine(earlier: Any, later: Any) -> Any:
    """Compose ``s ↦ a1 s + b1`` then ``s ↦ a2 s + b2``: ``(a2 a1, a2 b1 + b2)``.

    ``earlier`` and ``later`` are ``(a, b)`` pairs of pytrees of the same
    structure; each ``a`` leaf broadcasts against its ``b`` leaf (a gate per
    head against a matrix memory, say).
    """
    a1, b1 = earlier
    a2, b2 = later
    a = jax.tree_util.tree_map(jnp.multiply, a2, a1)
    b = jax.tree_util.tree_map(lambda x2, y1, y2: x2 * y1 + y2, a2, b1, b2)
    return a, b


def affine_elements(a: Any, b: Any, s0: Any) -> tuple[Any, Any]:
    """``(a, b)`` with the state entering step 0 folded in: ``b_0 ← a_0 s_0 + b_0``.

    ``a``, ``b``: pytrees with time on axis 0; ``s0``: like one step of ``b``.
    The scan of the result is then the state after each step.
    """

    def fold(a_l, b_l, s_l):
        return b_l.at[0].set(a_l[0] * s_l + b_l[0])

    return a, jax.tree_util.tree_map(fold, a, b, s0)


class LinearScan(NamedTuple):
    """How a cell linear in its state runs as an associative scan over time.

    Attributes:
        elements: ``elements(params, carry, xw (T, *batch, G)) -> elems``: the
            scan's elements (a pytree, time on axis 0) for the projected
            inputs ``xw = cell.project(params, xs)``, with the carry entering
            step 0 (leaves ``(*batch, ...)``) folded into element 0, so that
            the inclusive scan of ``elems`` at ``t`` is the state after step
            ``t`` (see :func:`affine_elements`).
        finish: ``finish(params, scanned, xw) -> (carries, hs)``: the carry
            after every step (the carry's pytree, leaves ``(T, *batch, ...)``,
            as ``lax.scan`` of ``recur`` gives them) and the outputs
            ``hs (T, *batch, N)``, from the scanned elements.
        combine: the associative operator, ``combine(earlier, later)``, on
            elements with time on axis 0 (:func:`affine_combine` by default:
            elements ``(a, b)``).
        log_gains: ``None``, or ``log_gains(params, xw (T, *batch, G)) ->
            (T, *batch, S)``: for a cell whose step Jacobian
            ``∂s_{t+1}/∂s_t`` on the flattened carry (``ravel_pytree`` order,
            ``S`` entries) is diagonal, or block diagonal with 2×2 scaled
            rotations on fixed pairs of entries (a complex diagonal), the log
            of its gain on each entry (``log|a_t|``; for a complex unit its
            ``log|λ|`` on both of its entries). Every product of Jacobians is
            then exact in log space: the singular values of
            ``∂s_T/∂s_t`` are ``exp(Σ_{u=t}^{T-1} log_gains_u)``. It must not
            depend on the state (the coefficients depend on inputs only).
    """

    elements: Callable[[Params, Carry, jax.Array], Any]
    finish: Callable[[Params, Any, jax.Array], tuple[Carry, jax.Array]]
    combine: Callable[[Any, Any], Any] = affine_combine
    log_gains: Callable[[Params, jax.Array], jax.Array] | None = None


def scan_linear(
    linear: LinearScan, params: Params, carry: Carry, xw: jax.Array
) -> tuple[Carry, jax.Array]:
    """``(carry_T, hs)`` of a linear cell by one associative scan over ``xw``."""
    elems = linear.elements(params, carry, xw)
    scanned = lax.associative_scan(linear.combine, elems, axis=0)
    carries, hs = linear.finish(params, scanned, xw)
    return jax.tree_util.tree_map(lambda c: c[-1], carries), hs


def check_real_dtype(dtype: Any) -> jnp.dtype:
    """A real floating dtype for a cell's params (a complex one is a ``TypeError``)."""
    dt = jnp.dtype(dtype)
    if not jnp.issubdtype(dt, jnp.floating):
        raise TypeError(
            f"dtype must be a real floating dtype (float32 or float64), got {dt}"
        )
    return dt


def uniform(key: jax.Array, shape: tuple[int, ...], fan_in: int, dtype) -> jax.Array:
    """``torch.nn.Linear``'s default draw, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``."""
    bound = 1.0 / jnp.sqrt(jnp.asarray(fan_in, dtype))
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def check_shared_options(kind: str, **given: Any) -> None:
    """The options every cell builder takes (``recurrent_init``, ``input_init``,
    ``bias_init``, ``gain``) at their defaults: a cell linear in its state has
    no ``W_hh`` for them to set, and its own init follows its paper."""
    defaults = {
        "recurrent_init": "torch",
        "input_init": "torch",
        "bias_init": "torch",
        "gain": 1.0,
    }
    for name, value in given.items():
        if value != defaults[name]:
            raise ValueError(
                f"{name} must be {defaults[name]!r} for a {kind} cell (it has no "
                f"W_hh and initialises as its paper does), got {value!r}"
            )
