"""LSTM with PyTorch's layout and gate order (i, f, g, o)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .. import _names
from .._checks import check_float, check_int
from ._activations import tanh
from ._cell import (
    Cell,
    affine,
    make_init,
    recur_from_core,
    weight_input_size,
    zero_carry,
)
from ._fused import lstm_gates, lstm_sequence
from ._init import Initializer

_KIND = _names.CELLS["lstm"]  # gate blocks and carry fields


class LSTMCarry(NamedTuple):
    h: jax.Array
    c: jax.Array


def lstm(
    hidden_size: int,
    *,
    recurrent_init: str | Initializer = "torch",
    input_init: str | Initializer = "torch",
    bias_init: str = "torch",
    gain: float = 1.0,
    forget_bias: float | None = None,
    chrono_tmax: float | None = None,
    fused: bool = True,
) -> Cell:
    """An LSTM cell with the weights and outputs of ``torch.nn.LSTM``.

    ``c_t = f ⊙ c_{t-1} + i ⊙ g``, ``h_t = o ⊙ tanh(c_t)``; the carry is
    ``LSTMCarry(h, c)`` and the state a Jacobian sees is both.

    Args:
        hidden_size: ``N``.
        recurrent_init, input_init, bias_init, gain: as for
            :func:`gradflow.cells.rnn`, applied to each gate's block.
        forget_bias: if set, the forget gate's total bias (``b_ih + b_hh``) is
            this constant (Gers et al. 2000; Jozefowicz et al. 2015 use 1).
        chrono_tmax: if set, chrono initialisation (Tallec & Ollivier 2018):
            ``b_f = log(U(1, T_max − 1))``, ``b_i = −b_f``.
        fused: :func:`gradflow.unroll` runs the whole sequence with a
            hand-written backward pass (the weight gradient as one product
            after the reverse loop; faster, same numbers). It has no
            forward-mode rule: pass ``False`` to ``jax.jvp`` through ``unroll``.
            Measurements differentiate the per-step ``recur`` either way.
    """
    check_int("hidden_size", hidden_size)
    if forget_bias is not None and chrono_tmax is not None:
        raise ValueError("give at most one of forget_bias and chrono_tmax")
    if forget_bias is not None:
        forget_bias = check_float("forget_bias", forget_bias)
    if chrono_tmax is not None:
        chrono_tmax = check_float("chrono_tmax", chrono_tmax, minimum=2.0, strict=True)
    n = hidden_size

    def bias_hook(key, params):
        b_ih, b_hh = params["b_ih"], params["b_hh"]
        f = slice(n, 2 * n)
        if forget_bias is not None:
            b_ih = b_ih.at[f].set(forget_bias)
            b_hh = b_hh.at[f].set(0.0)
        elif chrono_tmax is not None:
            b_f = jnp.log(
                jax.random.uniform(key, (n,), b_ih.dtype, 1.0, chrono_tmax - 1.0)
            )
            b_ih = b_ih.at[f].set(b_f).at[:n].set(-b_f)
            b_hh = b_hh.at[f].set(0.0).at[:n].set(0.0)
        return {**params, "b_ih": b_ih, "b_hh": b_hh}

    def project(params, x):
        return affine(x, params["W_ih"], params["b_ih"] + params["b_hh"])

    def core(params, carry, xw, hh):
        *_, o, c = lstm_gates(carry.c, xw + hh)
        h = o * tanh(c)
        return LSTMCarry(h, c), h

    def sequence(params, carry, xw):
        (h, c), hs = lstm_sequence(params["W_hh"], carry.h, carry.c, xw)
        return LSTMCarry(h, c), hs

    return Cell(
        kind="lstm",
        hidden_size=hidden_size,
        init=make_init(
            _KIND.gates,
            hidden_size,
            recurrent_init=recurrent_init,
            input_init=input_init,
            bias_init=bias_init,
            gain=gain,
            bias_hook=bias_hook,
        ),
        initial_carry=zero_carry(LSTMCarry, _KIND.state_multiplier, hidden_size),
        project=project,
        recur=recur_from_core(core),
        input_size=weight_input_size,
        sequence=sequence if fused else None,
    )
