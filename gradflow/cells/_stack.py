"""Stacked cells: layer ``l`` reads the hidden outputs of layer ``l − 1``."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from ._cell import Cell


def stack(cells: Sequence[Cell]) -> Cell:
    """Stack cells bottom-first into one cell (like ``torch.nn.LSTM(num_layers=L)``).

    Params are a tuple of the layers' param dicts, the carry a tuple of their
    carries, and ``h`` the top layer's output. :func:`gradflow.unroll` runs a
    stack layer by layer (one scan each), which gives the same numbers as
    stepping all layers together.

    Example:
        >>> cell = gf.cells.stack([gf.cells.lstm(64), gf.cells.lstm(64)])
    """
    cells = tuple(cells)
    if not cells:
        raise ValueError("stack needs at least one cell, got an empty sequence")
    for i, c in enumerate(cells):
        if not isinstance(c, Cell):
            raise TypeError(f"cells[{i}] must be a Cell, got {type(c).__name__}")
        if c.kind == "stack":
            raise ValueError(f"cells[{i}] is itself a stack; pass its layers instead")

    def init(key: jax.Array, input_size: int, dtype=jnp.float32):
        keys = jax.random.split(key, len(cells))
        params, d = [], input_size
        for k, c in zip(keys, cells, strict=True):
            params.append(c.init(k, d, dtype))
            d = c.hidden_size
        return tuple(params)

    def initial_carry(batch_shape: tuple[int, ...] = (), dtype=jnp.float32):
        return tuple(c.initial_carry(batch_shape, dtype) for c in cells)

    def project(params, x):
        return x

    def recur(params, carry, x):
        new = []
        for c, p, s in zip(cells, params, carry, strict=True):
            s, x = c.step(p, s, x)
            new.append(s)
        return tuple(new), x

    return Cell(
        kind="stack",
        hidden_size=cells[-1].hidden_size,
        init=init,
        initial_carry=initial_carry,
        project=project,
        recur=recur,
        input_size=lambda params: cells[0].input_size(params[0]),
        layers=cells,
    )
