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
from ._lstm import LSTMCarry, lstm
from ._mlstm import MLSTMCarry, mlstm
from ._rnn import RNNCarry, rnn
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
    "LSTMCarry",
    "LinearScan",
    "MLSTMCarry",
    "RNNCarry",
    "affine_combine",
    "affine_elements",
    "custom",
    "gaussian",
    "gru",
    "identity",
    "initializer",
    "layer_output_leaves",
    "lstm",
    "make",
    "mlstm",
    "orthogonal",
    "output_leaf",
    "register_cell",
    "rnn",
    "sparse",
    "stack",
    "torch_uniform",
    "zeros",
]
