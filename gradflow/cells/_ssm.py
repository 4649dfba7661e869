"""Mamba's selective state-space recurrence (S6), without its convolution and gate.

Per channel ``d`` and state ``n``: ``h_t[d, n] = exp(Δ_t[d] A[d, n]) h_{t-1}[d, n]
+ Δ_t[d] B_t[n] x_t[d]``, ``y_t[d] = Σ_n C_t[n] h_t[d, n] + D[d] x_t[d]``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._checks import check_int, check_key
from ._cell import Cell
from ._linear import (
    LinearScan,
    affine_elements,
    check_real_dtype,
    check_shared_options,
    uniform,
)

# Mamba's range of initial step sizes Δ (log-uniform)
DT_MIN, DT_MAX = 1e-3, 1e-1


class SSMCarry(NamedTuple):
    """The state ``h (*batch, H, N)`` (named ``state``: gradflow calls a carry's
    ``h`` the step's output, and the output here is the readout ``y``)."""

    state: jax.Array


def selective_ssm(
    hidden_size: int,
    *,
    state_size: int = 16,
    recurrent_init: str = "torch",
    input_init: str = "torch",
    bias_init: str = "torch",
    gain: float = 1.0,
) -> Cell:
    """The S6 recurrence of Mamba: input-dependent ``Δ_t``, ``B_t``, ``C_t``.

    ``Δ_t = softplus(W_delta x_t + b_delta)``, ``B_t = W_B x_t``,
    ``C_t = W_C x_t``, ``A = −exp(A_log)``, zero-order hold
    ``Ā_t = exp(Δ_t A)`` and Mamba's ``B̄_t = Δ_t B_t``. Inputs are ``H``
    channels wide (as in Mamba, where the block's projections surround it).
    Params ``W_delta (H, H)``, ``b_delta (H,)``, ``W_B (N, H)``,
    ``W_C (N, H)``, ``A_log (H, N)``, ``D (H,)``, initialised as Mamba does
    (``A = 1..N`` per channel, ``D = 1``, ``Δ`` log-uniform in
    ``[0.001, 0.1]`` through ``b_delta``).

    The carry is :class:`SSMCarry` ``state (*batch, H, N)``; the state Jacobian
    is diagonal, ``exp(Δ_t[d] A[d, n])`` per entry, so the Jacobian
    measurements use exact per-entry products and :func:`gradflow.unroll`
    runs an associative scan. The output ``y_t`` is a readout of ``h_t``,
    not part of the carry.

    Args:
        hidden_size: ``H``, the channels in and out.
        state_size: ``N``, the state per channel (Mamba's ``d_state``).
        recurrent_init, input_init, bias_init, gain: the options every cell
            builder takes; only their defaults (no ``W_hh``).
    """
    h = check_int("hidden_size", hidden_size)
    check_shared_options(
        "selective_ssm",
        recurrent_init=recurrent_init,
        input_init=input_init,
        bias_init=bias_init,
        gain=gain,
    )
    n = check_int("state_size", state_size)

    def init(key, input_size, dtype=jnp.float32):
        check_key("key", key)
        check_int("input_size", input_size)
        if input_size != h:
            raise ValueError(
                f"input_size must equal hidden_size={h} (the S6 recurrence maps "
                f"H channels to H), got input_size={input_size}"
            )
        dt = check_real_dtype(dtype)
        k = jax.random.split(key, 4)
        u = jax.random.uniform(k[0], (h,), dt)
        step = jnp.exp(u * (math.log(DT_MAX) - math.log(DT_MIN)) + math.log(DT_MIN))
        a = jnp.broadcast_to(jnp.arange(1, n + 1, dtype=dt), (h, n))
        return {
            "W_delta": uniform(k[1], (h, h), h, dt),
            # softplus⁻¹(Δ) = Δ + log(1 − exp(−Δ))
            "b_delta": step + jnp.log(-jnp.expm1(-step)),
            "W_B": uniform(k[2], (n, h), h, dt),
            "W_C": uniform(k[3], (n, h), h, dt),
            "A_log": jnp.log(a),
            "D": jnp.ones((h,), dt),
        }

    def project(params, x):
        delta = jnp.einsum("...i,oi->...o", x, params["W_delta"])
        delta = delta + jnp.broadcast_to(params["b_delta"], delta.shape)
        b = jnp.einsum("...i,ni->...n", x, params["W_B"])
        c = jnp.einsum("...i,ni->...n", x, params["W_C"])
        return jnp.concatenate([delta, b, c, x], axis=-1)

    def split(xw):
        delta = jax.nn.softplus(xw[..., :h])
        return delta, xw[..., h : h + n], xw[..., h + n : h + 2 * n], xw[..., -h:]

    def log_decay(params, delta):
        # Δ_t A: (..., H, N)
        d = delta[..., :, None]
        a = jnp.exp(params["A_log"])
        return -jnp.broadcast_to(d, (*d.shape[:-1], n)) * jnp.broadcast_to(
            a, (*d.shape[:-2], h, n)
        )

    def coefficients(params, xw):
        delta, b, _, x = split(xw)
        a = jnp.exp(log_decay(params, delta))
        return a, (delta * x)[..., :, None] * b[..., None, :]

    def readout(params, state, xw):
        _, _, c, x = split(xw)
        y = jnp.einsum("...dn,...n->...d", state, c)
        return y + x * jnp.broadcast_to(params["D"], x.shape)

    def recur(params, carry, xw):
        a, b = coefficients(params, xw)
        state = a * carry.state + b
        return SSMCarry(state), readout(params, state, xw)

    def elements(params, carry, xw):
        a, b = coefficients(params, xw)
        return affine_elements(a, b, carry.state)

    def finish(params, scanned, xw):
        states = scanned[1]
        return SSMCarry(states), readout(params, states, xw)

    def log_gains(params, xw):
        g = log_decay(params, split(xw)[0])
        return g.reshape(*g.shape[:-2], h * n)

    def initial_carry(batch_shape=(), dtype=jnp.float32):
        return SSMCarry(jnp.zeros((*tuple(batch_shape), h, n), dtype))

    return Cell(
        kind="selective_ssm",
        hidden_size=h,
        init=init,
        initial_carry=initial_carry,
        project=project,
        recur=recur,
        input_size=lambda params: int(params["W_delta"].shape[1]),
        linear=LinearScan(elements, finish, log_gains=log_gains),
    )
