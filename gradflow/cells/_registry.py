"""The builder of every registered cell kind, and :func:`make` by name.

The data about a kind (state size, gate blocks, config options, PyTorch twin)
is ``gradflow._names.CELLS``; the function that builds it is here, so the
jax-free registry never names a module above it. The two tables hold the same
names (tests/test_names.py).
"""

from __future__ import annotations

from collections.abc import Callable

from .. import _names
from ._cell import Cell
from ._gru import gru
from ._lru import lru
from ._lstm import lstm
from ._min import min_gru, min_lstm
from ._mlstm import mlstm
from ._rnn import rnn
from ._ssm import selective_ssm

#: Cell kind -> ``builder(hidden_size, *, recurrent_init, input_init, bias_init,
#: gain, **options) -> Cell``.
BUILDERS: dict[str, Callable[..., Cell]] = {
    "rnn": rnn,
    "lstm": lstm,
    "gru": gru,
    "lru": lru,
    "min_gru": min_gru,
    "min_lstm": min_lstm,
    "selective_ssm": selective_ssm,
    "mlstm": mlstm,
}


def make(kind: str, hidden_size: int, **options) -> Cell:
    """Build a cell by name, as a config file names it: ``make("lstm", 64, ...)``.

    ``kind`` is any registered cell kind (``gradflow._names.CELLS``).

    Raises:
        ValueError: ``kind`` is not a registered cell kind.
    """
    _names.lookup("cell kind", _names.CELLS, kind)
    return BUILDERS[kind](hidden_size, **options)


def register_cell(
    name: str, builder: Callable[..., Cell], kind: _names.CellKind | None = None
) -> None:
    """Add a cell kind defined outside gradflow; see docs/extending.md.

    Args:
        name: the name a config's ``[grid] cell`` uses.
        builder: ``builder(hidden_size, *, recurrent_init, input_init,
            bias_init, **options) -> Cell``.
        kind: what the experiment layer knows about it (state size, gate
            blocks, the ``[cell]`` options it takes); default ``CellKind()``.

    Raises:
        ValueError: ``name`` is already registered or not an identifier.
        TypeError: ``builder`` is not callable or ``kind`` not a ``CellKind``.
    """
    if not callable(builder):
        raise TypeError(
            f"builder of cell kind {name!r} must be callable, got "
            f"{type(builder).__name__}"
        )
    _names.register_cell_kind(name, _names.CellKind() if kind is None else kind)
    BUILDERS[name] = builder
