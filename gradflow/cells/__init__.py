"""Recurrent cells as pure functions (RNN, LSTM, GRU, stacks, any step function)."""

from .. import _names
from .._names import CellKind, register_cell
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
from ._linear import LinearScan, affine_combine, affine_elements
from ._lru import LRUCarry, lru
from ._lstm import LSTMCarry, lstm
from ._min import MinGRUCarry, MinLSTMCarry, min_gru, min_lstm
from ._rnn import RNNCarry, rnn
from ._ssm import SSMCarry, selective_ssm
from ._stack import stack

#: The built-in cell kinds (the registry, ``gradflow._names.CELLS``, may hold more).
CELL_KINDS = tuple(_names.CELLS)


def make(kind: str, hidden_size: int, **options) -> Cell:
    """Build a cell by name, as a config file names it: ``make("lstm", 64, ...)``.

    ``kind`` is any registered cell kind (``gradflow._names.CELLS``).
    """
    entry = _names._get("cell kind", _names.CELLS, kind)
    return _names.resolve(entry.builder)(hidden_size, **options)


__all__ = [
    "CELL_KINDS",
    "Cell",
    "CellKind",
    "GRUCarry",
    "Initializer",
    "LRUCarry",
    "LSTMCarry",
    "LinearScan",
    "MinGRUCarry",
    "MinLSTMCarry",
    "RNNCarry",
    "SSMCarry",
    "affine_combine",
    "affine_elements",
    "custom",
    "gaussian",
    "gru",
    "identity",
    "initializer",
    "layer_output_leaves",
    "lru",
    "lstm",
    "make",
    "min_gru",
    "min_lstm",
    "orthogonal",
    "output_leaf",
    "register_cell",
    "rnn",
    "selective_ssm",
    "sparse",
    "stack",
    "torch_uniform",
    "zeros",
]
