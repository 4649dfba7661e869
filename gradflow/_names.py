"""The one registry of names: cell kinds, inits, activations, tasks, optimisers, clips.

Every list of names in gradflow is read from here, so a config file, the cells,
the sweep and the training loop can never disagree about what ``"lstm"`` or
``"adam"`` means. This module is data only: it imports neither jax nor
matplotlib (checking a config reads it in a process that never computes) and
names no module above it. The functions behind the names live with their
layer: cell builders in ``gradflow.cells`` (``BUILDERS``), task builders in
``gradflow.tasks``.

Adding a cell kind is one module (its builder), one entry in :data:`CELLS` and
one in ``gradflow.cells.BUILDERS`` (or one call of
``gradflow.cells.register_cell``); see ``docs/extending.md``.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import Any, NamedTuple


class CellKind(NamedTuple):
    """What the experiment layer needs to know about one kind of cell.

    Attributes:
        state_multiplier: the flattened carry has ``state_multiplier *
            hidden_size`` entries (an LSTM carries ``h`` and ``c``: 2).
        gates: gate blocks stacked in ``W_ih``/``W_hh`` in PyTorch's layout
            (RNN 1, LSTM 4: i, f, g, o; GRU 3: r, z, n).
        options: the ``[cell]`` keys of a config that this kind's builder
            takes beyond the shared ones (``activation``, ``forget_bias``).
        torch_name: the ``torch.nn`` class with the same weights (``"LSTM"``),
            or ``None``.
        width_bound: its inputs must be ``hidden_size`` wide (a layer that
            maps width H to H: the LRU, the selective SSM).
        recurrent_param: the param that sets the state transition, whose
            gradient shares a ``param_grad_by_step`` measurement reports:
            ``W_hh``; for the cells without one the param of ``a_t`` in
            ``s_t = a_t ⊙ s_{t-1} + b_t`` (the LRU's ``nu_log``, i.e. ``|λ|``;
            minGRU's ``W_z``; minLSTM's ``W_f``; the selective SSM's
            ``A_log``).
        label: how figures and reports name it (``None``: the name in
            capitals, ``LSTM``).
    """

    state_multiplier: int = 1
    gates: int = 1
    options: tuple[str, ...] = ()
    torch_name: str | None = None
    width_bound: bool = False
    recurrent_param: str = "W_hh"
    label: str | None = None


#: Cell kinds by the name a config file uses.
CELLS: dict[str, CellKind] = {
    "rnn": CellKind(1, 1, ("activation",), "RNN"),
    "lstm": CellKind(2, 4, ("forget_bias",), "LSTM"),
    "gru": CellKind(1, 3, (), "GRU"),
    # Linear in their state: no W_hh (0 gate blocks); state_multiplier holds
    # at their default state_size.
    "lru": CellKind(
        2, 0, ("state_size", "r_min", "r_max", "max_phase"), None, True, "nu_log"
    ),
    "min_gru": CellKind(1, 0, ("candidate",), recurrent_param="W_z", label="minGRU"),
    "min_lstm": CellKind(1, 0, ("candidate",), recurrent_param="W_f", label="minLSTM"),
    "selective_ssm": CellKind(
        16, 0, ("state_size",), None, True, "A_log", label="selective SSM"
    ),
    # its carry is N²/H + N + H entries (H heads): 1 * N is a lower bound,
    # which is what the config's check of a measurement's k needs
    "mlstm": CellKind(1, 0, ("heads",), recurrent_param="W_f", label="mLSTM"),
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
        min_length: the shortest sequence the task is defined for.
        as_input: whether a measurement sweep may use its inputs as the
            ``input`` axis (real-valued inputs; not token ids).
    """

    min_length: int = 1
    as_input: bool = True


TASKS: dict[str, TaskKind] = {
    "adding": TaskKind(4),
    "copy": TaskKind(1),
    "temporal_order": TaskKind(10),
    "sentiment": TaskKind(2, False),
}


def task_inputs() -> tuple[str, ...]:
    """Tasks whose inputs a ``measure`` sweep may use as its ``input`` axis."""
    return tuple(k for k, v in TASKS.items() if v.as_input)


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
#: ``"percentile"``: in (0, 100]; ``"zscore"``: a z-score > 0; ``"relative"``: a
#: multiple > 0 of each tensor's own EMA norm).
CLIPS: dict[str, str | None] = {
    "none": None,
    "global_norm": "threshold",
    "value": "threshold",
    "agc": "threshold",
    "autoclip": "percentile",
    "zclip": "zscore",
    "adagc": "relative",
}


def is_factory(name: Any) -> bool:
    """Whether ``name`` is ``"module:function"``: a user's cell factory in a config."""
    if not isinstance(name, str) or name.count(":") != 1:
        return False
    module, function = name.split(":")
    return function.isidentifier() and all(p.isidentifier() for p in module.split("."))


def cell_variant(name: Any) -> tuple[str, dict[str, Any]] | None:
    """``"lru(r_min=0.99)"`` as ``("lru", {"r_min": 0.99})``: a registered kind
    with options of its own, so one grid can hold the same kind several ways.

    Plain names come back as ``(name, {})``; ``None`` when ``name`` is not of
    the form ``kind(key=literal, ...)`` (values are Python literals).
    """
    if not isinstance(name, str):
        return None
    if "(" not in name:
        return name, {}
    try:
        call = ast.parse(name.strip(), mode="eval").body
    except SyntaxError:
        return None
    if (
        not isinstance(call, ast.Call)
        or not isinstance(call.func, ast.Name)
        or call.args
        or any(k.arg is None for k in call.keywords)
    ):
        return None
    try:
        options = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    except ValueError:
        return None
    return call.func.id, options


def base_kind(name: str) -> str:
    """The registered kind of a plain name or a variant (``"lru(r_min=0.9)"``)."""
    parsed = cell_variant(name)
    return parsed[0] if parsed else name


def cell_kind(name: str) -> CellKind:
    """The registry's entry for ``name``; for a factory name, what is known before
    it is built (no options, no PyTorch twin; its state size comes from the built
    cell).

    Raises:
        ValueError: ``name`` is neither registered nor ``"module:function"``.
    """
    if is_factory(name):
        return CellKind()
    return lookup("cell kind", CELLS, base_kind(name))


def register_cell_kind(name: str, kind: CellKind) -> None:
    """Add a cell kind's entry (``gradflow.cells.register_cell`` adds its builder too).

    Raises:
        ValueError: ``name`` is already registered or not an identifier.
        TypeError: ``kind`` is not a :class:`CellKind`.
    """
    register("cell kind", CELLS, name, kind, CellKind)


def register(what: str, table: dict, name: str, entry: Any, cls: type) -> None:
    """``table[name] = entry``, refusing a taken or non-identifier name or a wrong type.

    Raises:
        ValueError: ``name`` is already in ``table`` or not an identifier.
        TypeError: ``entry`` is not a ``cls``.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"{what} name must be an identifier string, got {name!r}")
    if name in table:
        raise ValueError(f"{what} {name!r} is already registered")
    if not isinstance(entry, cls):
        raise TypeError(
            f"{what} {name!r} must be a {cls.__name__}, got {type(entry).__name__}"
        )
    table[name] = entry


def lookup(what: str, table: Mapping[str, Any], name: Any) -> Any:
    """``table[name]``; a ``ValueError`` naming ``what`` and the choices if absent."""
    if not isinstance(name, str) or name not in table:
        raise ValueError(f"{what} must be one of {tuple(table)}, got {name!r}")
    return table[name]
