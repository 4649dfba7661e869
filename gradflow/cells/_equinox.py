"""Equinox recurrent modules as gradflow cells.

equinox is imported only inside :func:`from_equinox` (``pip install
gradflow-jax[equinox]``); the rest of gradflow never needs it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from ._cell import Cell, Params
from ._custom import custom


def from_equinox(
    module: Any,
    *,
    initial_carry: Callable[..., Any] | Any = None,
    hidden: Callable[[Any], jax.Array] | None = None,
    input_size: int | None = None,
    init: Callable[..., Any] | None = None,
    name: str | None = None,
) -> tuple[Cell, Params]:
    """Turn an Equinox recurrent module into a gradflow cell and its params.

    The module is called as Equinox's cells are, ``module(x, carry) -> carry``,
    on one example (gradflow vmaps it over the batch). ``params`` are the
    module's floating arrays (``eqx.partition(module, eqx.is_inexact_array)``:
    a copy of the module with everything else ``None``), so
    :func:`gradflow.param_grad_by_step` reports per-step shares under your own
    field names (``by_step.share.weight_hh``).

    Args:
        module: ``eqx.nn.GRUCell`` (carry ``h (N,)``), ``eqx.nn.LSTMCell``
            (carry ``(h, c)``), or your own ``eqx.Module`` of the same calling
            convention (then ``initial_carry`` is required).
        initial_carry: for your own module: ``initial_carry(batch_shape,
            dtype) -> carry`` or one example's carry as a template (see
            :func:`gradflow.cells.custom`). Built-in cells start from zeros.
        hidden: ``hidden(carry) -> h (N,)``, what the loss sees; default: the
            carry itself when it is an array, else its first element (``h`` of
            an LSTM's ``(h, c)``).
        input_size: ``D`` of your own module (read from Equinox's cells).
        init: ``init(key, input_size, dtype) -> module``, a fresh module of the
            same kind, so that a sweep can draw params per seed.
        name: a label (default: the module's class name).

    Returns:
        ``(cell, params)``.

    Example:
        >>> gru = eqx.nn.GRUCell(8, 64, key=jax.random.key(0))
        >>> cell, params = gf.from_equinox(gru)
        >>> carry, hs = gf.unroll(cell, params, xs)      # xs (T, *batch, 8)
    """
    try:
        import equinox as eqx
    except ImportError as err:  # pragma: no cover - the [test] extra installs it
        raise ImportError(
            "from_equinox needs equinox: pip install 'gradflow-jax[equinox]'"
        ) from err

    if not isinstance(module, eqx.Module):
        raise TypeError(
            "module must be an equinox Module (e.g. eqx.nn.GRUCell), got "
            f"{type(module).__name__}"
        )
    kind = type(module).__name__
    _check_recurrent(module, kind)
    hidden_size = None
    if isinstance(module, eqx.nn.GRUCell | eqx.nn.LSTMCell):
        hidden_size = module.hidden_size
        input_size = module.input_size if input_size is None else input_size
        zeros = jnp.zeros(hidden_size, _dtype(module))
        if initial_carry is None:
            initial_carry = zeros if kind == "GRUCell" else (zeros, zeros)
    elif initial_carry is None:
        raise TypeError(
            f"module of kind {kind} needs initial_carry=: gradflow knows the "
            "carry of eqx.nn.GRUCell and eqx.nn.LSTMCell only; pass "
            "initial_carry=(batch_shape, dtype) -> carry or one example's carry"
        )
    if hidden is not None and not callable(hidden):
        raise TypeError(
            f"hidden must be a callable carry -> h or None, got {type(hidden).__name__}"
        )
    label = name if name is not None else kind
    pick = hidden if hidden is not None else _default_hidden(label)
    params, static = eqx.partition(module, eqx.is_inexact_array)

    def step(p, carry, x):
        new = eqx.combine(p, static)(x, carry)
        return new, pick(new)

    make = None
    if init is not None:
        if not callable(init):
            raise TypeError(
                "init must be a callable (key, input_size, dtype) -> module or "
                f"None, got {type(init).__name__}"
            )

        def make(key, input_size, dtype=jnp.float32):
            fresh = init(key, input_size, dtype)
            if not isinstance(fresh, type(module)):
                raise TypeError(
                    f"init must return a {kind}, got {type(fresh).__name__}"
                )
            return eqx.partition(fresh, eqx.is_inexact_array)[0]

    cell = custom(
        step,
        initial_carry,
        hidden_size=hidden_size,
        input_size=input_size,
        name=label,
        init=make,
    )
    return cell, params


def _check_recurrent(module: Any, kind: str) -> None:
    """Refuse a module that cannot be called as ``module(x, carry)`` now, not later."""
    try:
        signature = inspect.signature(module.__call__)
    except (TypeError, ValueError):  # no signature to read: the call will tell
        return
    try:
        signature.bind(None, None)
    except TypeError:
        empty = inspect.Parameter.empty
        signature = signature.replace(
            parameters=[
                p.replace(annotation=empty) for p in signature.parameters.values()
            ],
            return_annotation=empty,
        )
        raise TypeError(
            f"module must be recurrent, called as module(x, carry) -> carry like "
            f"eqx.nn.GRUCell; {kind} is called as {kind}{signature} (a "
            f"feed-forward layer has no carry to take Jacobians of)"
        ) from None


def _dtype(module: Any):
    leaves = [a for a in jax.tree_util.tree_leaves(module) if hasattr(a, "dtype")]
    return leaves[0].dtype if leaves else jnp.float32


def _default_hidden(name: str) -> Callable[[Any], jax.Array]:
    def pick(carry):
        if isinstance(carry, tuple | list) and carry:
            carry = carry[0]
        if not hasattr(carry, "shape"):
            raise TypeError(
                f"the carry of {name} must be an array or a tuple starting with h; "
                "pass hidden=callable(carry) -> h for another layout"
            )
        return carry

    return pick
