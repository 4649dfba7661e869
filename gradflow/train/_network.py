"""A cell with the input embedding and readout a task needs (a minimal model).

Private: :func:`gradflow.train.train` builds one from a cell and a task.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .._unroll import check_cell, unroll
from ..cells import Cell
from ..tasks import Task


class Network(NamedTuple):
    """``xs → inputs → cell → head``: pure functions over a params dict.

    Attributes:
        cell: the recurrent cell.
        init: ``init(key) -> params`` with ``params["cell"]`` the cell's params,
            ``params["readout"] = {"W": (out, N), "b": (out,)}`` and, for token
            tasks, ``params["embed"] (vocab, embed_size)``.
        inputs: ``inputs(params, xs) -> (T, *batch, D)`` floats for the cell.
        head: ``head(params, hs (T, *batch, N)) -> outputs`` (the task's readout).
    """

    cell: Cell
    init: Callable[[jax.Array], Any]
    inputs: Callable[[Any, jax.Array], jax.Array]
    head: Callable[[Any, jax.Array], jax.Array]

    def apply(self, params, xs):
        """Outputs of the network for ``xs`` (the task's ``Batch.xs``)."""
        _, hs = unroll(self.cell, params["cell"], self.inputs(params, xs))
        return self.head(params, hs)


def network(cell: Cell, task: Task, *, embed_size: int = 32) -> Network:
    """Wire ``cell`` to ``task``: embedding for tokens, a linear readout.

    The readout is ``Dense(task.output_size)`` (PyTorch ``nn.Linear``
    initialisation) on the last hidden state (``readout="last"``) or on every
    step (``"all"``); it returns logits, and the task's loss applies the sigmoid
    or softmax.
    """
    check_cell(cell)
    n, out = cell.hidden_size, task.output_size
    d = embed_size if task.tokens else task.input_size

    def init(key):
        k_cell, k_w, k_b, k_e = jax.random.split(key, 4)
        bound = 1.0 / jnp.sqrt(n)
        params = {
            "cell": cell.init(k_cell, d),
            "readout": {
                "W": jax.random.uniform(k_w, (out, n), minval=-bound, maxval=bound),
                "b": jax.random.uniform(k_b, (out,), minval=-bound, maxval=bound),
            },
        }
        if task.tokens:
            params["embed"] = jax.random.normal(k_e, (task.input_size, embed_size))
        return params

    def inputs(params, xs):
        if task.tokens:
            return jnp.take(params["embed"], xs, axis=0)
        return xs

    def head(params, hs):
        h = hs[-1] if task.readout == "last" else hs
        y = jnp.einsum("...n,on->...o", h, params["readout"]["W"])
        return y + jnp.broadcast_to(params["readout"]["b"], y.shape)

    return Network(cell, init, inputs, head)
