"""GRU with PyTorch's layout and gate order (r, z, n)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._checks import check_int
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

    def project(params, x):
        return affine(x, params["W_ih"], params["b_ih"])

    def core(params, carry, xw, hh):
        x_r, x_z, x_n = jnp.split(xw, 3, axis=-1)
        h_r, h_z, h_n = jnp.split(add_bias(hh, params["b_hh"]), 3, axis=-1)
        r = jax.nn.sigmoid(x_r + h_r)
        z = jax.nn.sigmoid(x_z + h_z)
        n = jnp.tanh(x_n + r * h_n)
        h = (1.0 - z) * n + z * carry.h
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
