"""Load trained ``torch.nn`` recurrent layers as gradflow cells and params.

torch is imported only inside :func:`from_torch`; :func:`from_state_dict` needs
it only to read torch tensors (numpy arrays work without it).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from .. import _names
from .._checks import check_choice
from ._cell import Cell
from ._registry import make
from ._stack import stack

_TORCH_MODES = {
    "RNN_TANH": ("rnn", "tanh"),
    "RNN_RELU": ("rnn", "relu"),
    "LSTM": ("lstm", "tanh"),
    "GRU": ("gru", "tanh"),
}


def from_torch(module: Any) -> tuple[Cell, Any]:
    """Turn a ``torch.nn.RNN/LSTM/GRU`` (or ``RNNCell/LSTMCell/GRUCell``) into gradflow.

    The weights are copied (as float arrays of the module's dtype), so the
    returned cell and params give the module's outputs to float rounding. A
    module with ``num_layers > 1`` becomes a :func:`gradflow.cells.stack` whose
    params are a tuple of per-layer dicts. gradflow is time-major: for a
    ``batch_first=True`` module feed ``xs = x.swapaxes(0, 1)`` (a warning says
    so: a batch-first ``x (B, T, D)`` runs without error as ``B`` steps of ``T``
    sequences, and gives other numbers). Dropout between
    layers is a training-time effect and is not carried over (eval semantics).
    ``bias=False`` gives zero biases, which is the same function.

    Args:
        module: a ``torch.nn.RNN`` (``nonlinearity`` tanh or relu),
            ``torch.nn.LSTM``, ``torch.nn.GRU`` or one of their ``*Cell``
            counterparts. Bidirectional modules and LSTMs with ``proj_size > 0``
            are rejected.

    Returns:
        ``(cell, params)``.

    Example:
        >>> lstm = torch.nn.LSTM(8, 64, num_layers=2)
        >>> cell, params = gf.from_torch(lstm)
        >>> carry, hs = gf.unroll(cell, params, xs)   # xs (T, *batch, 8)
    """
    import torch

    if isinstance(module, torch.nn.RNNBase):
        if module.mode not in _TORCH_MODES:
            raise ValueError(
                f"module must be a torch.nn.RNN, LSTM or GRU, got mode {module.mode!r}"
            )
        if module.bidirectional:
            raise ValueError(
                "module must be unidirectional (gradflow cells run forward in "
                f"time), got a bidirectional {type(module).__name__}; load each "
                "direction's weights with from_state_dict instead"
            )
        if getattr(module, "proj_size", 0):
            raise ValueError(
                f"module must have proj_size=0 (no LSTM projection), got "
                f"proj_size={module.proj_size}"
            )
        kind, activation = _TORCH_MODES[module.mode]
        if module.batch_first:
            warnings.warn(
                f"module is a batch_first {type(module).__name__}; gradflow is "
                "time-major: feed xs = x.swapaxes(0, 1) (T, B, D), not its "
                "batch-first x (B, T, D), which runs without error but treats "
                "the batch as time",
                UserWarning,
                stacklevel=2,
            )
    elif isinstance(module, torch.nn.RNNCellBase):
        if isinstance(module, torch.nn.LSTMCell):
            kind, activation = "lstm", "tanh"
        elif isinstance(module, torch.nn.GRUCell):
            kind, activation = "gru", "tanh"
        elif isinstance(module, torch.nn.RNNCell):
            kind, activation = "rnn", module.nonlinearity
        else:
            raise TypeError(
                "module must be a torch.nn.RNNCell, LSTMCell or GRUCell, got "
                f"{type(module).__name__}"
            )
    else:
        raise TypeError(
            "module must be a torch.nn.RNN, LSTM or GRU (or their *Cell), got "
            f"{type(module).__name__}"
        )
    return from_state_dict(module.state_dict(), kind, activation=activation)


def from_state_dict(
    state_dict: Mapping[str, Any],
    kind: str,
    *,
    activation: str = "tanh",
    prefix: str = "",
) -> tuple[Cell, Any]:
    """Build a cell and params from a PyTorch recurrent state dict.

    Reads ``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``,
    ``bias_hh_l{k}`` for ``k = 0, 1, …`` (a ``torch.nn.RNN/LSTM/GRU``), or
    ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh`` (a ``*Cell``). Missing
    biases (``bias=False``) become zeros. Values may be torch tensors or arrays.

    Args:
        state_dict: the mapping, e.g. ``torch.load(path)`` or
            ``model.state_dict()``.
        kind: ``"rnn"``, ``"lstm"`` or ``"gru"``.
        activation: the RNN's nonlinearity, ``"tanh"`` or ``"relu"`` (ignored
            for LSTM/GRU).
        prefix: the module's key prefix inside a larger model's state dict,
            e.g. ``"encoder.rnn."``.

    Returns:
        ``(cell, params)``: one cell for one layer, a stack for several.

    Example:
        >>> sd = torch.load("model.pt")
        >>> cell, params = gf.from_state_dict(sd, "lstm", prefix="rnn.")
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(
            f"state_dict must be a mapping of names to tensors, got "
            f"{type(state_dict).__name__}"
        )
    check_choice("kind", kind, _torch_kinds())
    if kind == "rnn":
        check_choice("activation", activation, _names.ACTIVATIONS)
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
    sd = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if any(k.endswith("_reverse") for k in sd):
        raise ValueError(
            "state_dict must be of a unidirectional module, got keys ending in "
            "'_reverse' (bidirectional); gradflow cells run forward in time"
        )
    if any(k.startswith("weight_hr") for k in sd):
        raise ValueError(
            "state_dict must be of an LSTM with proj_size=0, got weight_hr_* keys"
        )

    if "weight_ih_l0" in sd:
        suffixes = []
        while f"weight_ih_l{len(suffixes)}" in sd:
            suffixes.append(f"_l{len(suffixes)}")
    elif "weight_ih" in sd:
        suffixes = [""]
    else:
        near = sorted(k for k in state_dict if re.search(r"weight_ih(_l0)?$", k))
        hint = f"; keys that end so: {near} (set prefix=)" if near else ""
        raise ValueError(
            f"state_dict must hold '{prefix}weight_ih_l0' (or '{prefix}weight_ih'), "
            f"got keys {sorted(state_dict)[:8]}{hint}"
        )

    gates = _names.CELLS[kind].gates
    cells, params, width = [], [], None
    for suffix in suffixes:
        layer = {
            name: _array(sd, f"{key}{suffix}", prefix)
            for name, key in (("W_ih", "weight_ih"), ("W_hh", "weight_hh"))
        }
        w_hh = layer["W_hh"]
        if w_hh.ndim != 2 or w_hh.shape[0] != gates * w_hh.shape[1]:
            raise ValueError(
                f"{prefix}weight_hh{suffix} must have shape ({gates}*N, N) for a "
                f"{kind}, got {tuple(w_hh.shape)}"
            )
        n = int(w_hh.shape[1])
        w_ih = layer["W_ih"]
        if w_ih.ndim != 2 or w_ih.shape[0] != gates * n:
            raise ValueError(
                f"{prefix}weight_ih{suffix} must have shape ({gates * n}, D), got "
                f"{tuple(w_ih.shape)}"
            )
        if width is not None and w_ih.shape[1] != width:
            raise ValueError(
                f"{prefix}weight_ih{suffix} must have {width} columns (the layer "
                f"below's hidden size), got {tuple(w_ih.shape)}"
            )
        has_bias = [f"{key}{suffix}" in sd for key in ("bias_ih", "bias_hh")]
        if any(has_bias) and not all(has_bias):
            raise ValueError(
                f"state_dict must hold both {prefix}bias_ih{suffix} and "
                f"{prefix}bias_hh{suffix} or neither, got only one"
            )
        for name, key in (("b_ih", "bias_ih"), ("b_hh", "bias_hh")):
            if all(has_bias):
                b = _array(sd, f"{key}{suffix}", prefix)
                if b.shape != (gates * n,):
                    raise ValueError(
                        f"{prefix}{key}{suffix} must have shape ({gates * n},), got "
                        f"{tuple(b.shape)}"
                    )
            else:
                b = np.zeros((gates * n,), w_hh.dtype)
            layer[name] = b
        params.append({k: jnp.asarray(v) for k, v in layer.items()})
        cells.append(_cell(kind, n, activation))
        width = n

    if len(cells) == 1:
        return cells[0], params[0]
    return stack(cells), tuple(params)


def _array(sd: Mapping[str, Any], key: str, prefix: str) -> np.ndarray:
    if key not in sd:
        raise ValueError(f"state_dict must hold '{prefix}{key}', it is missing")
    value = sd[key]
    if hasattr(value, "detach"):  # a torch tensor, possibly on a GPU
        value = value.detach().cpu().numpy()
    value = np.asarray(value)
    if not np.issubdtype(value.dtype, np.floating):
        raise TypeError(
            f"state_dict['{prefix}{key}'] must be floating, got dtype {value.dtype}"
        )
    return value


def _torch_kinds() -> tuple[str, ...]:
    """Registered cell kinds with a ``torch.nn`` twin (the same weights)."""
    return tuple(k for k, v in _names.CELLS.items() if v.torch_name)


def _cell(kind: str, hidden_size: int, activation: str) -> Cell:
    entry = _names.CELLS[kind]
    options = {"activation": activation} if "activation" in entry.options else {}
    return make(kind, hidden_size, **options)
