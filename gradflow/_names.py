"""The one registry of names: cell kinds, inits, activations, tasks, optimisers, clips.

Every list of names in gradflow is read from here, so a config file, the cells,
the sweep and the training loop can never disagree about what ``"lstm"`` or
``"adam"`` means. This module imports neither jax nor matplotlib: checking a
config reads it in a process that never computes. Builders are named by
``"module:function"`` strings and imported on first use (:func:`resolve`).

Adding a cell kind is one module (its builder) and one entry in :data:`CELLS`
(or a call of :func:`register_cell`); see ``docs/extending.md``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple


class CellKind(NamedTuple):
    """What the experiment layer needs to know about one kind of cell.

    Attributes:
        builder: ``"module:function"`` (or the function itself) of the builder,
            ``builder(hidden_size, *, recurrent_init, input_init, bias_init,
            **options) -> Cell``.
        state_multiplier: the flattened carry has ``state_multiplier *
            hidden_size`` entries (an LSTM carries ``h`` and ``c``: 2).
        gates: gate blocks stacked in ``W_ih``/``W_hh`` in PyTorch's layout
            (RNN 1, LSTM 4: i, f, g, o; GRU 3: r, z, n).
        options: the ``[cell]`` keys of a config that this kind's builder
            takes beyond the shared ones (``activation``, ``forget_bias``).
        torch_name: the ``torch.nn`` class with the same weights (``"LSTM"``),
            or ``None``.
    """

    builder: str | Callable[..., Any]
    state_multiplier: int = 1
    gates: int = 1
    options: tuple[str, ...] = ()
    torch_name: str | None = None


#: Cell kinds by the name a config file uses.
CELLS: dict[str, CellKind] = {
    "rnn": CellKind("gradflow.cells._rnn:rnn", 1, 1, ("activation",), "RNN"),
    "lstm": CellKind("gradflow.cells._lstm:lstm", 2, 4, ("forget_bias",), "LSTM"),
    "gru": CellKind("gradflow.cells._gru:gru", 1, 3, (), "GRU"),
    # linear in their state (no W_hh); state_multiplier at the default options
    "lru": CellKind(
        "gradflow.cells._lru:lru", 2, 1, ("state_size", "r_min", "r_max", "max_phase")
    ),
    "min_gru": CellKind("gradflow.cells._min:min_gru", 1, 2, ("candidate",)),
    "min_lstm": CellKind("gradflow.cells._min:min_lstm", 1, 3, ("candidate",)),
    "selective_ssm": CellKind(
        "gradflow.cells._ssm:selective_ssm", 16, 1, ("state_size",)
    ),
}

#: Weight initialisers by name (``gradflow.cells.initializer``). ``gain`` is
#: the scale of ``W_hh`` for every one of them: ``W_hh = gain * init(gain=1)``.
INITS = ("torch", "gaussian", "orthogonal", "identity", "sparse", "zeros")
#: Initialisers that run on the host (an eigenvalue solve), not under ``jit``.
HOST_INITS = ("sparse",)
BIAS_INITS = ("torch", "zeros")
#: RNN nonlinearities (``gradflow.cells.rnn(activation=...)``).
ACTIVATIONS = ("tanh", "relu", "linear")


class TaskKind(NamedTuple):
    """A synthetic task.

    Attributes:
        builder: ``"module:function"``, ``builder(length, **options) -> Task``.
        min_length: the shortest sequence the task is defined for.
        as_input: whether a measurement sweep may use its inputs as the
            ``input`` axis (real-valued inputs; not token ids).
    """

    builder: str | Callable[..., Any]
    min_length: int = 1
    as_input: bool = True


TASKS: dict[str, TaskKind] = {
    "adding": TaskKind("gradflow.tasks._generators:adding", 4),
    "copy": TaskKind("gradflow.tasks._generators:copy", 1),
    "temporal_order": TaskKind("gradflow.tasks._generators:temporal_order", 10),
    "sentiment": TaskKind("gradflow.tasks._generators:sentiment", 2, False),
}

#: Optimisers: name -> (``optax`` function, its keyword arguments besides the
#: learning rate).
OPTIMIZERS: dict[str, tuple[str, dict[str, Any]]] = {
    "sgd": ("sgd", {}),
    "sgd_momentum": ("sgd", {"momentum": 0.9}),
    "nesterov": ("sgd", {"momentum": 0.9, "nesterov": True}),
    "adam": ("adam", {}),
    "adamw": ("adamw", {}),
    "rmsprop": ("rmsprop", {}),
    "adagrad": ("adagrad", {}),
}

#: Clip kinds (``gradflow.train.clipper``): name -> what its level is
#: (``None``: no level; ``"threshold"``: a number > 0 in the gradient's units;
#: ``"percentile"``: in (0, 100]; ``"zscore"``: a z-score > 0).
CLIPS: dict[str, str | None] = {
    "none": None,
    "global_norm": "threshold",
    "value": "threshold",
    "agc": "threshold",
    "autoclip": "percentile",
    "zclip": "zscore",
}
#: Clip kinds that take a numeric threshold.
THRESHOLD_CLIPS = tuple(k for k, v in CLIPS.items() if v == "threshold")


def state_size(kind: str, hidden_size: int) -> int:
    """The size of a cell's flattened carry (an LSTM carries ``h`` and ``c``).

    Raises:
        ValueError: ``kind`` is not a registered cell kind.
    """
    return _get("cell kind", CELLS, kind).state_multiplier * hidden_size


def is_factory(name: Any) -> bool:
    """Whether ``name`` is ``"module:function"``: a user's cell factory in a config."""
    if not isinstance(name, str) or name.count(":") != 1:
        return False
    module, function = name.split(":")
    return function.isidentifier() and all(p.isidentifier() for p in module.split("."))


def cell_kind(name: str) -> CellKind:
    """The registry's entry for ``name``; for a factory name, what is known before
    it is built (no options, no PyTorch twin; its state size comes from the built
    cell, ``gradflow.sweep._user_cells``).

    Raises:
        ValueError: ``name`` is neither registered nor ``"module:function"``.
    """
    if is_factory(name):
        return CellKind(name)
    return _get("cell kind", CELLS, name)


def resolve(target: str | Callable[..., Any]) -> Callable[..., Any]:
    """A builder from its ``"module:function"`` name (a callable passes through)."""
    if callable(target):
        return target
    if not isinstance(target, str) or ":" not in target:
        raise TypeError(
            f"target must be a callable or a 'module:function' string, got {target!r}"
        )
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def register_cell(name: str, kind: CellKind) -> None:
    """Add a cell kind (for a cell defined outside gradflow); see docs/extending.md.

    Raises:
        ValueError: ``name`` is already registered or not an identifier.
        TypeError: ``kind`` is not a :class:`CellKind`.
    """
    _register("cell kind", CELLS, name, kind, CellKind)


def _register(what: str, table: dict, name: str, entry: Any, cls: type) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"{what} name must be an identifier string, got {name!r}")
    if name in table:
        raise ValueError(f"{what} {name!r} is already registered")
    if not isinstance(entry, cls):
        raise TypeError(
            f"{what} {name!r} must be a {cls.__name__}, got {type(entry).__name__}"
        )
    table[name] = entry


def _get(what: str, table: Mapping[str, Any], name: Any) -> Any:
    if not isinstance(name, str) or name not in table:
        raise ValueError(f"{what} must be one of {tuple(table)}, got {name!r}")
    return table[name]
