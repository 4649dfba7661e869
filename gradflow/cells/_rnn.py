"""Elman RNN, as ``torch.nn.RNN``: ``h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``.

The activation is tanh (default), relu or linear.
"""

from __future__ import annotations

from typing import NamedTuple

import jax

from .. import _names
from .._checks import check_choice, check_int
from ._activations import tanh
from ._cell import (
    Cell,
    affine,
    make_init,
    recur_from_core,
    weight_input_size,
    zero_carry,
)
from ._init import Initializer

_KIND = _names.CELLS["rnn"]  # gate blocks and carry fields

#: ``gradflow._names.ACTIVATIONS`` -> the function.
_NONLINEARITIES = {
    "tanh": tanh,
    "relu": jax.nn.relu,
    "linear": lambda a: a,
}


class RNNCarry(NamedTuple):
    h: jax.Array


def rnn(
    hidden_size: int,
    activation: str = "tanh",
    *,
    recurrent_init: str | Initializer = "torch",
    input_init: str | Initializer = "torch",
    bias_init: str = "torch",
    gain: float = 1.0,
) -> Cell:
    """An Elman RNN cell with the weights and outputs of ``torch.nn.RNN``.

    Args:
        hidden_size: ``N``.
        activation: ``"tanh"``, ``"relu"`` or ``"linear"``.
        recurrent_init: initialiser of ``W_hh (N, N)``: a name from
            :func:`gradflow.cells.initializer` or a callable.
        input_init: initialiser of ``W_ih (N, D)``.
        bias_init: ``"torch"`` (uniform) or ``"zeros"``.
        gain: scale of ``W_hh`` for any named ``recurrent_init``: the weights
            drawn at gain 1, times ``gain`` (e.g. the ``g`` of
            ``N(0, g²/N)``).

    Example:
        >>> cell = gf.cells.rnn(64, recurrent_init="orthogonal", gain=1.05)
        >>> params = cell.init(jax.random.key(0), input_size=8)
    """
    check_int("hidden_size", hidden_size)
    check_choice("activation", activation, _names.ACTIVATIONS)
    act = _NONLINEARITIES[activation]

    def project(params, x):
        return affine(x, params["W_ih"], params["b_ih"] + params["b_hh"])

    def core(params, carry, xw, hh):
        h = act(xw + hh)
        return RNNCarry(h), h

    return Cell(
        kind="rnn",
        hidden_size=hidden_size,
        init=make_init(
            _KIND.gates,
            hidden_size,
            recurrent_init=recurrent_init,
            input_init=input_init,
            bias_init=bias_init,
            gain=gain,
        ),
        initial_carry=zero_carry(RNNCarry, _KIND.state_multiplier, hidden_size),
        project=project,
        recur=recur_from_core(core),
        input_size=weight_input_size,
    )
