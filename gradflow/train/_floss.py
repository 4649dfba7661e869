"""Gradient flossing: keep the first Lyapunov exponents near zero (Engelken, 2023)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from .._checks import check_float, check_int, check_key
from .._unroll import resolve_carry
from ..cells import Cell


class Flossing(NamedTuple):
    """How :func:`gradflow.train.train` flosses (made by :func:`flossing`).

    Attributes:
        k: how many exponents are pulled toward zero.
        weight: the flossing loss's weight added to the task loss.
        every: add it at training steps ``0, every, 2·every, …`` (0: never).
        before: flossing-only optimiser steps before training (0: none).
        examples: sequences of each batch the exponents are computed on
            (``None``: all).
        warmup: steps of each sequence that align the state and the frame
            and are not averaged (``None``: ``T // 10``).
    """

    k: int
    weight: float
    every: int
    before: int
    examples: int | None
    warmup: int | None

    def exponents(
        self, cell: Cell, params: Any, xs: jax.Array, *, key: jax.Array | None = None
    ) -> jax.Array:
        """The ``k`` exponents of one differentiable QR pass, ``(*batch, k)``.

        Benettin's method over ``xs`` from the zero carry: ``k`` tangent
        directions pushed through every step's Jacobian and re-orthonormalised
        by QR; each exponent is the mean of ``log |R_ii|`` over the steps
        past ``warmup`` (nats per step; ``|R_ii|`` floored at the smallest
        normal number so the logarithm stays finite), in the order of the
        frame's columns (the largest first once the frame has aligned).
        Differentiable in ``params`` (QR has a derivative), so a loss of the
        exponents trains.

        Args:
            cell: the model's recurrent cell; its whole carry is the state.
            params: its params.
            xs: ``(T, *batch, input_size)``: the cell's inputs.
            key: for the initial orthonormal frame; ``None``: ``key(0)``.
        """
        carry = resolve_carry(cell, params, xs, None)
        size = int(ravel_pytree(cell.initial_carry((), xs.dtype))[0].shape[0])
        if self.k > size:
            raise ValueError(
                f"k must be <= the state size {size} of the cell, got {self.k}"
            )
        steps = xs.shape[0]
        warmup = steps // 10 if self.warmup is None else self.warmup
        if warmup >= steps:
            raise ValueError(
                f"warmup must be < the number of steps T={steps}, got {warmup}"
            )
        if self.examples is not None and xs.ndim > 2:
            xs = xs[:, : self.examples]
            carry = jax.tree_util.tree_map(lambda a: a[: self.examples], carry)
        if key is None:
            key = jax.random.key(0)
        check_key("key", key)
        return _exponents(cell, params, xs, carry, key, self.k, size, warmup)

    def loss(
        self, cell: Cell, params: Any, xs: jax.Array, *, key: jax.Array | None = None
    ) -> jax.Array:
        """``Σ_{i≤k} λ_i²``, averaged over the sequences: a scalar."""
        lam = self.exponents(cell, params, xs, key=key)
        return jnp.mean(jnp.sum(jnp.square(lam), axis=-1))


def flossing(
    k: int,
    *,
    weight: float = 1.0,
    every: int = 1,
    before: int = 0,
    examples: int | None = None,
    warmup: int | None = None,
) -> Flossing:
    """Gradient flossing for :func:`gradflow.train.train`.

    The flossing loss ``Σ_{i≤k} λ_i²`` pulls the first ``k`` Lyapunov
    exponents of the model's own recurrent dynamics, driven by its training
    inputs, toward zero, so that products of ``k`` directions' Jacobians
    neither vanish nor explode (Engelken, NeurIPS 2023). The exponents come
    from a differentiable QR pass (:meth:`Flossing.exponents`).

    Args:
        k: exponents to floss, ``1 <= k <=`` the state size (checked against
            the cell when used).
        weight: the loss's weight during training, ``>= 0``.
        every: add ``weight · Σ λ_i²`` to the task loss at every this many
            training steps (0: only before training).
        before: optimiser steps on the flossing loss alone before training
            ("preflossing"), on fresh batches of the task.
        examples: how many sequences of each batch feed the QR pass
            (``None``: all of them; the first batch axis is cut).
        warmup: steps not averaged (``None``: a tenth of the sequence).

    Returns:
        A :class:`Flossing`, for ``train(..., flossing=...)`` or to call
        ``.loss(cell, params, xs)`` directly.

    Example:
        >>> floss = gf.train.flossing(4, weight=0.1, every=10, before=100)
        >>> res = gf.train.train(cell, task, key=key, steps=1000, flossing=floss)
    """
    return Flossing(
        k=check_int("k", k),
        weight=check_float("weight", weight, minimum=0.0),
        every=check_int("every", every, minimum=0),
        before=check_int("before", before, minimum=0),
        examples=None if examples is None else check_int("examples", examples),
        warmup=None if warmup is None else check_int("warmup", warmup, minimum=0),
    )


def _exponents(cell, params, xs, carry, key, k, size, warmup):
    dtype = xs.dtype
    frame = jnp.linalg.qr(jax.random.normal(key, (size, k), dtype))[0]
    batch = xs.shape[1:-1]
    xw = cell.project(params, xs)

    def single(xw1, c0):
        s0, unravel = ravel_pytree(c0)

        def f(s, xw_t):
            new, _ = cell.recur(params, unravel(s), xw_t)
            return ravel_pytree(new)[0]

        def body(state, xw_t):
            s, q = state
            s2, lin = jax.linearize(lambda z: f(z, xw_t), s)
            q2, r = jnp.linalg.qr(jax.vmap(lin, in_axes=1, out_axes=1)(q))
            diag = jnp.maximum(jnp.abs(jnp.diagonal(r)), jnp.finfo(dtype).tiny)
            return (s2, q2), jnp.log(diag)

        logs = jax.lax.scan(body, (s0, frame), xw1)[1]
        return jnp.mean(logs[warmup:], axis=0)

    if not batch:
        return single(xw, carry)
    flat_xw = xw.reshape(xw.shape[0], -1, xw.shape[-1])
    flat_c = jax.tree_util.tree_map(
        lambda a: a.reshape(-1, *a.shape[len(batch) :]), carry
    )
    out = jax.vmap(single, in_axes=(1, 0))(flat_xw, flat_c)
    return out.reshape(*batch, k)
