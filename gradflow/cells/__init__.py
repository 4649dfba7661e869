"""Recurrent cells as pure functions (RNN, LSTM, GRU, stacks, any step function)."""

from .. import _names
from .._names import CellKind
from ._cell import Cell, check_params, state_size
from ._custom import custom
from ._gru import GRUCarry, gru
from ._hidden import layer_output_leaves, output_leaf
from ._init import (
    Initializer,
    gaussian,
    has_w_hh,
    identity,
    initializer,
    orthogonal,
    scale_w_hh,
    sparse,
    torch_uniform,
    zeros,
)
from ._linear import LinearScan, affine_combine, affine_elements, scan_linear
from ._lru import LRUCarry, lru
from ._lstm import LSTMCarry, lstm
from ._min import MinGRUCarry, MinLSTMCarry, min_gru, min_lstm
from ._mlstm import MLSTMCarry, mlstm
from ._registry import BUILDERS, make, register_cell
from ._rnn import RNNCarry, rnn
from ._ssm import SSMCarry, selective_ssm
from ._stack import stack

#: The built-in cell kinds (the registry, ``gradflow._names.CELLS``, may hold more).
CELL_KINDS = tuple(_names.CELLS)


__all__ = [
    "BUILDERS",
    "CELL_KINDS",
    "Cell",
    "CellKind",
    "GRUCarry",
    "Initializer",
    "LRUCarry",
    "LSTMCarry",
    "LinearScan",
    "MLSTMCarry",
    "MinGRUCarry",
    "MinLSTMCarry",
    "RNNCarry",
    "SSMCarry",
    "affine_combine",
    "affine_elements",
    "check_params",
    "custom",
    "gaussian",
    "gru",
    "has_w_hh",
    "identity",
    "initializer",
    "layer_output_leaves",
    "lru",
    "lstm",
    "make",
    "min_gru",
    "min_lstm",
    "mlstm",
    "orthogonal",
    "output_leaf",
    "register_cell",
    "rnn",
    "scale_w_hh",
    "scan_linear",
    "selective_ssm",
    "sparse",
    "stack",
    "state_size",
    "torch_uniform",
    "zeros",
]
