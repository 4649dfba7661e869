"""Where a step's output ``h`` sits in its carry.

The hidden-output measurements (``‖∂L/∂h_t‖``) need the total derivative by
``h_t``: its own term in the loss plus every later step it reaches through the
carry. For that they must know which leaf of the carry *is* ``h``: the ``h``
field of the built-in carries, and for a custom cell the carry leaf its step
returns as ``h`` (found by tracing the step once on shapes). When a step's
output is no leaf of its carry, nothing later depends on it and its total
derivative is its own term.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ._cell import Carry, Cell, Params


def output_leaf(
    cell: Cell, params: Params, carry: Carry, xw: Any, batch_rank: int = 0
) -> int | None:
    """Which leaf of ``tree_leaves(carry)`` is the step's output ``h``.

    Args:
        cell: any cell (for a stack: its top layer's ``h``).
        params: its params (arrays or tracers; only shapes are read).
        carry: a carry (leaves ``(*batch, ...)``).
        xw: the step's projected input ``(*batch, G)`` (for custom cells the
            input itself).
        batch_rank: how many leading batch axes ``carry`` and ``xw`` have.

    Returns:
        The leaf index, or ``None`` when ``h`` is not in the carry.
    """
    return layer_output_leaves(cell, params, carry, xw, batch_rank)[-1]


def layer_output_leaves(
    cell: Cell, params: Params, carry: Carry, xw: Any, batch_rank: int = 0
) -> tuple[int | None, ...]:
    """:func:`output_leaf` for every layer of a stack (one entry otherwise).

    Indices count in the leaves of the whole carry, bottom layer first.
    """
    carry1 = _one(carry, batch_rank)
    x1 = _one(xw, batch_rank)
    if not cell.layers:
        return (_own_leaf(cell, _one(params, 0), carry1, x1),)
    found, offset = [], 0
    x = x1  # a stack's project is the identity: x1 is the bottom layer's input
    for layer, p, c in zip(cell.layers, params, carry1, strict=True):
        xw_l = jax.eval_shape(layer.project, _one(p, 0), x)
        i = _own_leaf(layer, _one(p, 0), c, xw_l)
        found.append(None if i is None else offset + i)
        offset += len(jax.tree_util.tree_leaves(c))
        x = jax.eval_shape(layer.recur, _one(p, 0), c, xw_l)[1]
    return tuple(found)


def _own_leaf(cell: Cell, params: Params, carry: Carry, xw: Any) -> int | None:
    if cell.locate_h is not None:
        return cell.locate_h(params, carry, xw)
    paths = jax.tree_util.tree_flatten_with_path(carry)[0]
    for i, (path, _) in enumerate(paths):
        key = path[-1] if path else None
        if isinstance(key, jax.tree_util.GetAttrKey) and key.name == "h":
            return i
    return None


def _one(tree: Any, batch_rank: int) -> Any:
    """Shape stand-ins for one example: the leading ``batch_rank`` axes dropped."""
    return jax.tree_util.tree_map(
        lambda a: jax.ShapeDtypeStruct(
            tuple(jnp.shape(a)[batch_rank:]), jnp.result_type(a)
        ),
        tree,
    )
