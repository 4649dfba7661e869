"""The cell record: a recurrent cell as a small immutable bundle of pure functions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .._checks import check_choice, check_int
from ._init import Initializer, gate_blocks, initializer, torch_bias

Params = Any
Carry = Any


class Cell(NamedTuple):
    """A recurrent cell: pure functions over plain-dict params and NamedTuple carries.

    Attributes:
        kind: ``"rnn"``, ``"lstm"``, ``"gru"``, ``"stack"`` or ``"custom"`` (any
            step function, Equinox or Flax module).
        hidden_size: ``N``, the width of ``h`` (``None`` for a custom cell that
            leaves it to its step).
        init: ``init(key, input_size, dtype=float32) -> params``; params use
            PyTorch's names (``W_ih (G*N, D)``, ``W_hh (G*N, N)``, ``b_ih``,
            ``b_hh``) and gate order.
        initial_carry: ``initial_carry(batch_shape=(), dtype=float32) -> carry``,
            all zeros.
        project: ``project(params, x (..., D)) -> (..., G*N)``, the input part of
            every gate, independent of the carry (so :func:`gradflow.unroll` does
            it for all steps in one matrix product).
        recur: ``recur(params, carry, xw) -> (carry, h)``, the rest of the step.
        input_size: ``input_size(params) -> D``.
        layers: the stacked cells, bottom first (empty unless ``kind == "stack"``).
        name: a label (a :func:`gradflow.cells.custom` cell's ``name``; empty
            for the built-in kinds, which their ``kind`` names).
        locate_h: ``locate_h(params, carry, xw) -> int | None`` for a custom
            cell: which leaf of ``tree_leaves(carry)`` the step outputs as
            ``h`` (``None``: ``h`` is not in the carry), given one example's
            carry and input (see :func:`gradflow.cells.output_leaf`); ``None``
            for the built-in kinds, whose carries name it ``h``.
        sequence: ``None``, or ``sequence(params, carry, xw (T, *batch, G*N)) ->
            (carry, hs)``: the same recurrence as ``lax.scan`` of ``recur`` over
            all steps, with a hand-written reverse-mode rule (the LSTM's and
            GRU's fused backward pass). :func:`gradflow.unroll` uses it; the
            per-step functions stay differentiable in both modes.

    ``step(params, carry, x) = recur(params, carry, project(params, x))`` is the
    function ``lax.scan`` wants once ``params`` is bound.
    """

    kind: str
    hidden_size: int
    init: Callable[..., Params]
    initial_carry: Callable[..., Carry]
    project: Callable[[Params, jax.Array], jax.Array]
    recur: Callable[[Params, Carry, jax.Array], tuple[Carry, jax.Array]]
    input_size: Callable[[Params], int]
    layers: tuple[Cell, ...] = ()
    name: str = ""
    locate_h: Callable[[Params, Carry, jax.Array], int | None] | None = None
    sequence: Callable[[Params, Carry, jax.Array], tuple[Carry, jax.Array]] | None = (
        None
    )

    def step(self, params: Params, carry: Carry, x: jax.Array):
        """One time step: ``x (*batch, D)`` → ``(carry, h (*batch, N))``."""
        return self.recur(params, carry, self.project(params, x))


def recurrent_product(h: jax.Array, w_hh: jax.Array) -> jax.Array:
    """``hh = h @ W_hh.T`` for ``h (*batch, N)``: ``(*batch, G*N)``."""
    return jnp.einsum("...n,gn->...g", h, w_hh)


def recur_from_core(core: Callable) -> Callable:
    """``recur(params, carry, xw)`` of a cell whose carry has ``h``."""

    def recur(params, carry, xw):
        return core(params, carry, xw, recurrent_product(carry.h, params["W_hh"]))

    return recur


def add_bias(y: jax.Array, b: jax.Array) -> jax.Array:
    return y + jnp.broadcast_to(b, y.shape)


def affine(x: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    """``x @ w.T + b`` for ``x (..., in)`` with explicit (not implicit) broadcasting."""
    y = jnp.einsum("...i,oi->...o", x, w)
    return y + jnp.broadcast_to(b, y.shape)


def weight_input_size(params: Params) -> int:
    return int(params["W_ih"].shape[1])


def make_init(
    gates: int,
    hidden_size: int,
    *,
    recurrent_init: str | Initializer,
    input_init: str | Initializer,
    bias_init: str,
    gain: float,
    bias_hook: Callable | None = None,
) -> Callable[..., Params]:
    """Build ``init(key, input_size, dtype)`` for a PyTorch-layout gated cell."""
    if callable(recurrent_init) and gain != 1.0:
        raise ValueError(
            "gain applies only when recurrent_init is a name; got a callable "
            f"recurrent_init and gain={gain}"
        )
    rec = initializer(recurrent_init, gain)
    inp = initializer(input_init)
    check_choice("bias_init", bias_init, ("torch", "zeros"))
    n = hidden_size

    def init(key: jax.Array, input_size: int, dtype=jnp.float32) -> Params:
        check_int("input_size", input_size)
        k_ih, k_hh, k_bi, k_bh, k_hook = jax.random.split(key, 5)
        if bias_init == "torch":
            b_ih = torch_bias(k_bi, n, gates, dtype)
            b_hh = torch_bias(k_bh, n, gates, dtype)
        else:
            b_ih = b_hh = jnp.zeros((gates * n,), dtype)
        params = {
            "W_ih": gate_blocks(inp, k_ih, gates, (n, input_size), dtype),
            "W_hh": gate_blocks(rec, k_hh, gates, (n, n), dtype),
            "b_ih": b_ih,
            "b_hh": b_hh,
        }
        if bias_hook is not None:
            params = bias_hook(k_hook, params)
        return params

    return init


def zero_carry(carry_type: type, fields: int, hidden_size: int) -> Callable:
    def initial_carry(batch_shape: tuple[int, ...] = (), dtype=jnp.float32):
        shape = (*tuple(batch_shape), hidden_size)
        return carry_type(*(jnp.zeros(shape, dtype) for _ in range(fields)))

    return initial_carry
