"""GRU with PyTorch's layout and gate order (r, z, n)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._checks import check_int
from ._activations import tanh
from ._cell import (
    Cell,
    add_bias,
    affine,
    make_init,
    recur_from_core,
    weight_input_size,
    zero_carry,
)
from ._init import Initializer


class GRUCarry(NamedTuple):
    h: jax.Array


def gru(
    hidden_size: int,
    *,
    recurrent_init: str | Initializer = "torch",
    input_init: str | Initializer = "torch",
    bias_init: str = "torch",
    gain: float = 1.0,
) -> Cell:
    """A GRU cell with the weights and outputs of ``torch.nn.GRU``.

    ``n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))``, ``h' = (1 − z) ⊙ n + z ⊙ h``.
    Arguments as for :func:`gradflow.cells.rnn`.
    """
    check_int("hidden_size", hidden_size)
    n = hidden_size

    def project(params, x):
        return affine(x, params["W_ih"], params["b_ih"])

    def core(params, carry, xw, hh):
        gh = add_bias(hh, params["b_hh"])
        # both sigmoids as one tanh over the contiguous (r, z) block: on CPU one
        # transcendental over a whole block vectorises far better than one per
        # gate slice (sigmoid(a) = (1 + tanh(a/2)) / 2; see the LSTM)
        rz = 0.5 + 0.5 * tanh(0.5 * (xw[..., : 2 * n] + gh[..., : 2 * n]))
        r, z = jnp.split(rz, 2, axis=-1)
        new = tanh(xw[..., 2 * n :] + r * gh[..., 2 * n :])
        h = (1.0 - z) * new + z * carry.h
        return GRUCarry(h), h

    return Cell(
        kind="gru",
        hidden_size=hidden_size,
        init=make_init(
            3,
            hidden_size,
            recurrent_init=recurrent_init,
            input_init=input_init,
            bias_init=bias_init,
            gain=gain,
        ),
        initial_carry=zero_carry(GRUCarry, 1, hidden_size),
        project=project,
        recur=recur_from_core(core),
        input_size=weight_input_size,
    )
