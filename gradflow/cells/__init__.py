"""Recurrent cells as pure functions (RNN, LSTM, GRU, stacks, any step function)."""

from ._cell import Cell
from ._custom import custom
from ._gru import GRUCarry, gru
from ._hidden import layer_output_leaves, output_leaf
from ._init import (
    Initializer,
    gaussian,
    identity,
    initializer,
    orthogonal,
    sparse,
    torch_uniform,
    zeros,
)
from ._lstm import LSTMCarry, lstm
from ._rnn import RNNCarry, rnn
from ._stack import stack

CELL_KINDS = ("rnn", "lstm", "gru")


def make(kind: str, hidden_size: int, **options) -> Cell:
    """Build a cell by name, as a config file names it: ``make("lstm", 64, ...)``."""
    builders = {"rnn": rnn, "lstm": lstm, "gru": gru}
    if not isinstance(kind, str) or kind not in builders:
        raise ValueError(f"cell kind must be one of {CELL_KINDS}, got {kind!r}")
    return builders[kind](hidden_size, **options)


__all__ = [
    "CELL_KINDS",
    "Cell",
    "GRUCarry",
    "Initializer",
    "LSTMCarry",
    "RNNCarry",
    "custom",
    "gaussian",
    "gru",
    "identity",
    "initializer",
    "layer_output_leaves",
    "lstm",
    "make",
    "orthogonal",
    "output_leaf",
    "rnn",
    "sparse",
    "stack",
    "torch_uniform",
    "zeros",
]
