"""GRU with PyTorch's layout and gate order (r, z, n)."""

from __future__ import annotations

from typing import NamedTuple

import jax

from .. import _names
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
from ._fused import gru_gates, gru_sequence
from ._init import Initializer

_KIND = _names.CELLS["gru"]  # gate blocks and carry fields


class GRUCarry(NamedTuple):
    h: jax.Array


def gru(
    hidden_size: int,
    *,
    recurrent_init: str | Initializer = "torch",
    input_init: str | Initializer = "torch",
    bias_init: str = "torch",
    gain: float = 1.0,
    fused: bool = True,
) -> Cell:
    """A GRU cell with the weights and outputs of ``torch.nn.GRU``.

    ``n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))``, ``h' = (1 − z) ⊙ n + z ⊙ h``.
    Arguments as for :func:`gradflow.cells.rnn`, and ``fused`` as for
    :func:`gradflow.cells.lstm`.
    """
    check_int("hidden_size", hidden_size)

    def project(params, x):
        return affine(x, params["W_ih"], params["b_ih"])

    def core(params, carry, xw, hh):
        h = gru_gates(carry.h, xw, add_bias(hh, params["b_hh"]))[0]
        return GRUCarry(h), h

    def sequence(params, carry, xw):
        h, hs = gru_sequence(params["W_hh"], params["b_hh"], carry.h, xw)
        return GRUCarry(h), hs

    return Cell(
        kind="gru",
        hidden_size=hidden_size,
        init=make_init(
            _KIND.gates,
            hidden_size,
            recurrent_init=recurrent_init,
            input_init=input_init,
            bias_init=bias_init,
            gain=gain,
        ),
        initial_carry=zero_carry(GRUCarry, _KIND.state_multiplier, hidden_size),
        project=project,
        recur=recur_from_core(core),
        input_size=weight_input_size,
        sequence=sequence if fused else None,
    )
