"""Flax NNX recurrent cells as gradflow cells.

flax is imported only inside :func:`from_flax` (``pip install gradflow-jax[flax]``).
A Flax Linen cell has no state of its own; measure it through
:func:`gradflow.cells.custom` with its variables as params (see the docstring
of :func:`from_flax`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from .._checks import check_int
from ._cell import Cell, Params
from ._custom import custom


def from_flax(
    module: Any,
    *,
    initial_carry: Callable[..., Any] | Any = None,
    input_size: int | None = None,
    name: str | None = None,
) -> tuple[Cell, Params]:
    """Turn a Flax NNX recurrent cell into a gradflow cell and its params.

    The module is called as Flax's cells are, ``module(carry, x) -> (carry, y)``,
    on one example (gradflow vmaps it over the batch); ``y`` is what the loss
    sees. ``params`` are its ``nnx.Param`` state (``nnx.split(module,
    nnx.Param, ...)``), so :func:`gradflow.param_grad_by_step` reports shares
    under Flax's own paths (``by_step.share["hh"]["kernel"]``); every other
    variable is held fixed.

    A Flax **Linen** cell (``flax.linen.LSTMCell`` …) is measured through
    :func:`gradflow.cells.custom` with its variables as params::

        lin = flax.linen.LSTMCell(features=64)
        variables = lin.init(key, lin.initialize_carry(key, (8,)), jnp.ones(8))
        cell = gf.cells.custom(
            lambda v, carry, x: lin.apply(v, carry, x),
            lin.initialize_carry(key, (8,)),       # one example's carry
            input_size=8,
        )
        gf.hidden_grad_norms(cell, variables, xs, loss_fn)

    Args:
        module: ``nnx.LSTMCell``, ``nnx.OptimizedLSTMCell``, ``nnx.GRUCell``,
            ``nnx.SimpleCell``, or any ``nnx.Module`` called as ``module(carry,
            x) -> (carry, y)`` with an ``initialize_carry(input_shape, rngs)``
            method (or pass ``initial_carry``).
        initial_carry: ``initial_carry(batch_shape, dtype) -> carry`` or one
            example's carry as a template; default: zeros shaped like
            ``module.initialize_carry((input_size,))`` (gradflow starts from
            zeros like every cell; pass ``carry=`` to a measurement for another
            start).
        input_size: ``D``; read from the module's ``in_features`` when it has
            one.
        name: a label (default: the module's class name).

    Returns:
        ``(cell, params)``.

    Example:
        >>> lstm = nnx.LSTMCell(8, 64, rngs=nnx.Rngs(0))
        >>> cell, params = gf.from_flax(lstm)
        >>> carry, hs = gf.unroll(cell, params, xs)      # xs (T, *batch, 8)
    """
    try:
        from flax import nnx
        from flax.errors import TraceContextError
    except ImportError as err:  # pragma: no cover - the [test] extra installs it
        raise ImportError(
            "from_flax needs flax: pip install 'gradflow-jax[flax]'"
        ) from err

    if not isinstance(module, nnx.Module):
        hint = ""
        if type(module).__module__.startswith("flax.linen"):
            hint = (
                "; a Linen cell is measured through gf.cells.custom with its "
                "variables as params (see the docstring of gf.from_flax)"
            )
        raise TypeError(
            "module must be a flax.nnx Module (e.g. nnx.LSTMCell), got "
            f"{type(module).__name__}{hint}"
        )
    kind = type(module).__name__
    if input_size is None:
        input_size = getattr(module, "in_features", None)
    if input_size is not None:
        input_size = check_int("input_size", input_size)
    if initial_carry is None:
        if not callable(getattr(module, "initialize_carry", None)):
            raise TypeError(
                f"module of kind {kind} needs initial_carry=: it has no "
                "initialize_carry method; pass initial_carry=(batch_shape, dtype)"
                " -> carry or one example's carry"
            )
        if input_size is None:
            raise TypeError(
                f"module of kind {kind} has no in_features: pass input_size= so "
                "that its initialize_carry can be called"
            )
        shapes = jax.eval_shape(
            lambda: module.initialize_carry((input_size,), rngs=nnx.Rngs(0))
        )
        initial_carry = jax.tree_util.tree_map(
            lambda s: jnp.zeros(s.shape, s.dtype), shapes
        )
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)

    def step(p, carry, x):
        try:
            return nnx.merge(graphdef, p, rest)(carry, x)
        except TraceContextError as err:
            raise TypeError(
                f"module {kind} changes its own state when called ({err}): "
                "Dropout, BatchNorm and other layers in training mode update "
                "variables (random counts, batch statistics) that a measured "
                "step cannot; call module.eval() before gf.from_flax, or build "
                "the module with deterministic=True / use_running_average=True"
            ) from None

    if input_size is not None:  # a module that mutates its state: say so now
        template = (
            initial_carry((), jnp.float32)
            if callable(initial_carry)
            else (initial_carry)
        )
        x = jax.ShapeDtypeStruct((input_size,), jnp.float32)
        jax.eval_shape(step, params, template, x)
    hidden_size = getattr(module, "hidden_features", None)
    cell = custom(
        step,
        initial_carry,
        hidden_size=hidden_size if isinstance(hidden_size, int) else None,
        input_size=input_size,
        name=name if name is not None else kind,
    )
    return cell, params
