"""minGRU and minLSTM (Feng et al. 2024, "Were RNNs all we needed?").

The gates see only the input, so both are linear in their state: ``h_t = a_t ⊙
h_{t-1} + b_t`` with a diagonal Jacobian ``diag(a_t)``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._checks import check_choice, check_int, check_key
from ._cell import Cell, affine
from ._linear import (
    LinearScan,
    affine_elements,
    check_real_dtype,
    check_shared_options,
    uniform,
)

CANDIDATES = ("linear", "g")


class MinGRUCarry(NamedTuple):
    h: jax.Array


class MinLSTMCarry(NamedTuple):
    h: jax.Array


def _g(x: jax.Array) -> jax.Array:
    # the paper's positive candidate for its log-space mode (appendix B.3)
    return jnp.where(x >= 0, x + 0.5, jax.nn.sigmoid(x))


def min_gru(
    hidden_size: int,
    *,
    candidate: str = "linear",
    recurrent_init: str = "torch",
    input_init: str = "torch",
    bias_init: str = "torch",
    gain: float = 1.0,
) -> Cell:
    """minGRU: ``z_t = σ(W_z x_t + b_z)``, ``h_t = (1 − z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t``.

    ``h̃_t = W_h x_t + b_h`` (the paper's sequential mode). Params
    ``W_z (N, D)``, ``b_z (N,)``, ``W_h (N, D)``, ``b_h (N,)``, drawn as
    ``torch.nn.Linear`` draws them. The state Jacobian is ``diag(1 − z_t)``:
    :func:`gradflow.unroll` runs an associative scan and the Jacobian
    measurements are exact per-unit products.

    Args:
        hidden_size: ``N``.
        candidate: ``"linear"`` (default) or ``"g"``: ``h̃_t = g(W_h x_t +
            b_h)`` with the paper's ``g(x) = x + 0.5`` for ``x ≥ 0``, ``σ(x)``
            otherwise, which keeps the states positive for its log-space
            parallel mode (what ``minGRU-pytorch`` computes, there with no
            biases and ``[W_h; W_z]`` in one ``Linear``).
        recurrent_init, input_init, bias_init, gain: the options every cell
            builder takes; only their defaults (no ``W_hh``).
    """
    n = check_int("hidden_size", hidden_size)
    check_shared_options(
        "min_gru",
        recurrent_init=recurrent_init,
        input_init=input_init,
        bias_init=bias_init,
        gain=gain,
    )
    cand = _g if check_choice("candidate", candidate, CANDIDATES) == "g" else None

    def init(key, input_size, dtype=jnp.float32):
        check_key("key", key)
        d = check_int("input_size", input_size)
        dt = check_real_dtype(dtype)
        k = jax.random.split(key, 4)
        return {
            "W_z": uniform(k[0], (n, d), d, dt),
            "b_z": uniform(k[1], (n,), d, dt),
            "W_h": uniform(k[2], (n, d), d, dt),
            "b_h": uniform(k[3], (n,), d, dt),
        }

    def project(params, x):
        z = affine(x, params["W_z"], params["b_z"])
        h = affine(x, params["W_h"], params["b_h"])
        return jnp.concatenate([z, h if cand is None else cand(h)], axis=-1)

    def coefficients(xw):
        k, h_new = xw[..., :n], xw[..., n:]
        # 1 − σ(k) as σ(−k): no cancellation when the gate saturates
        return jax.nn.sigmoid(-k), jax.nn.sigmoid(k) * h_new

    return _diagonal_cell(
        "min_gru",
        n,
        init,
        project,
        coefficients,
        lambda xw: jax.nn.log_sigmoid(-xw[..., :n]),
        MinGRUCarry,
    )


def min_lstm(
    hidden_size: int,
    *,
    candidate: str = "linear",
    recurrent_init: str = "torch",
    input_init: str = "torch",
    bias_init: str = "torch",
    gain: float = 1.0,
) -> Cell:
    """minLSTM: ``h_t = f'_t ⊙ h_{t-1} + i'_t ⊙ h̃_t`` with normalised gates.

    ``f_t = σ(W_f x_t + b_f)``, ``i_t = σ(W_i x_t + b_i)``, ``f'_t = f_t /
    (f_t + i_t)``, ``i'_t = i_t / (f_t + i_t)``, ``h̃_t = W_h x_t + b_h``.
    Params ``W_f, b_f, W_i, b_i, W_h, b_h`` (``(N, D)`` and ``(N,)``). The
    state Jacobian is ``diag(f'_t)``. ``candidate`` as for
    :func:`gradflow.cells.min_gru` (``minGRU-pytorch`` packs
    ``[W_h; W_f; W_i]`` in one bias-free ``Linear``).
    """
    n = check_int("hidden_size", hidden_size)
    check_shared_options(
        "min_lstm",
        recurrent_init=recurrent_init,
        input_init=input_init,
        bias_init=bias_init,
        gain=gain,
    )
    cand = _g if check_choice("candidate", candidate, CANDIDATES) == "g" else None

    def init(key, input_size, dtype=jnp.float32):
        check_key("key", key)
        d = check_int("input_size", input_size)
        dt = check_real_dtype(dtype)
        k = jax.random.split(key, 6)
        names = ("W_f", "b_f", "W_i", "b_i", "W_h", "b_h")
        return {
            name: uniform(kk, (n, d) if name[0] == "W" else (n,), d, dt)
            for name, kk in zip(names, k, strict=True)
        }

    def project(params, x):
        f = affine(x, params["W_f"], params["b_f"])
        i = affine(x, params["W_i"], params["b_i"])
        h = affine(x, params["W_h"], params["b_h"])
        return jnp.concatenate([f, i, h if cand is None else cand(h)], axis=-1)

    def log_gates(xw):
        log_f = jax.nn.log_sigmoid(xw[..., :n])
        log_i = jax.nn.log_sigmoid(xw[..., n : 2 * n])
        total = jnp.logaddexp(log_f, log_i)
        return log_f - total, log_i - total

    def coefficients(xw):
        log_f, log_i = log_gates(xw)
        return jnp.exp(log_f), jnp.exp(log_i) * xw[..., 2 * n :]

    return _diagonal_cell(
        "min_lstm",
        n,
        init,
        project,
        coefficients,
        lambda xw: log_gates(xw)[0],
        MinLSTMCarry,
    )


def _diagonal_cell(kind, n, init, project, coefficients, log_gains, carry_type):
    """A cell ``h_t = a_t ⊙ h_{t-1} + b_t`` whose output is its state ``h``."""

    def recur(params, carry, xw):
        a, b = coefficients(xw)
        h = a * carry.h + b
        return carry_type(h), h

    def elements(params, carry, xw):
        a, b = coefficients(xw)
        return affine_elements(a, b, carry.h)

    def finish(params, scanned, xw):
        hs = scanned[1]
        return carry_type(hs), hs

    def initial_carry(batch_shape=(), dtype=jnp.float32):
        return carry_type(jnp.zeros((*tuple(batch_shape), n), dtype))

    return Cell(
        kind=kind,
        hidden_size=n,
        init=init,
        initial_carry=initial_carry,
        project=project,
        recur=recur,
        input_size=lambda params: int(params["W_h"].shape[1]),
        linear=LinearScan(elements, finish, log_gains=lambda p, xw: log_gains(xw)),
    )
