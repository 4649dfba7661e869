"""The cell record: a recurrent cell as a small immutable bundle of pure functions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from .._checks import check_choice, check_int, check_key
from ._init import Initializer, gate_blocks, initializer, torch_bias
from ._linear import LinearScan

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
        linear: ``None``, or a :class:`gradflow.cells.LinearScan` for a cell
            linear in its state (``s_t = a_t ⊙ s_{t-1} + b_t``, coefficients
            from the inputs only): :func:`gradflow.unroll` then runs one
            ``jax.lax.associative_scan`` over time instead of ``T`` steps, and
            its ``log_gains`` (when set) gives the Jacobian measurements their
            exact per-unit products. ``recur`` stays the same recurrence one
            step at a time (the measurements that visit every step use it).

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
    linear: LinearScan | None = None

    def step(self, params: Params, carry: Carry, x: jax.Array):
        """One time step: ``x (*batch, D)`` → ``(carry, h (*batch, N))``."""
        return self.recur(params, carry, self.project(params, x))


def state_size(cell: Cell, dtype: Any = jnp.float32) -> int:
    """Length of the flattened carry of one sequence (``2N`` for an LSTM).

    The state whose Jacobians the measurements take (``ravel_pytree`` of the
    carry); any cell, a stack or a custom one included.
    """
    return int(ravel_pytree(cell.initial_carry((), dtype))[0].shape[0])


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
        check_key("key", key)
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


def check_params(cell: Cell, params: Params, input_size: int | None) -> None:
    """Params shaped like ``cell.init(key, input_size)``, checked eagerly.

    Compares the structure (every key, none missing or extra), each leaf's
    shape and that it is floating, and names the first param that differs
    with what was expected, instead of the KeyError or shape error JAX raises
    deep inside a scan. ``input_size`` comes from ``params`` where it can be
    read, else from the inputs (``xs.shape[-1]``); ``None`` checks nothing.
    """
    kinds = {cell.kind, *(layer.kind for layer in cell.layers)}
    # A custom cell's params are whatever its step takes, not what an init
    # draws; every other cell's init builds exactly the params its step reads.
    if "custom" in kinds or input_size is None:
        return
    what = f"a {cell.kind} cell (hidden_size {cell.hidden_size})"
    want = jax.eval_shape(lambda: cell.init(jax.random.key(0), input_size))
    want_leaves, want_def = jax.tree_util.tree_flatten_with_path(want)
    try:
        got_leaves, got_def = jax.tree_util.tree_flatten_with_path(params)
    except (TypeError, ValueError) as err:  # e.g. dict keys that do not sort
        raise TypeError(
            f"params must be a pytree shaped like {what}'s init, "
            f"{_shapes(want)}; got one that cannot be flattened: {err}"
        ) from err
    want_paths = {jax.tree_util.keystr(p): leaf for p, leaf in want_leaves}
    got_paths = {jax.tree_util.keystr(p): leaf for p, leaf in got_leaves}
    missing = [k for k in want_paths if k not in got_paths]
    extra = [k for k in got_paths if k not in want_paths]
    if missing or extra or got_def != want_def:
        parts = [f"missing params{k}" for k in missing[:3]]
        parts += [f"unexpected params{k}" for k in extra[:3]]
        if not parts:
            parts = [f"got {type(params).__name__}"]
        raise TypeError(
            f"params must be shaped like {what}'s init, {_shapes(want)}: "
            + ", ".join(parts)
        )
    for key, leaf in want_paths.items():
        got = got_paths[key]
        shape, dtype = jnp.shape(got), jnp.result_type(got)
        if tuple(shape) != tuple(leaf.shape):
            rows = (shape[0], leaf.shape[0]) if shape and leaf.shape else (0, 0)
            # 4N rows where N are expected: an LSTM's gate blocks, say
            other = min(rows) > 0 and rows[0] != rows[1] and max(rows) % min(rows) == 0
            hint = " (params of another cell kind?)" if other else ""
            raise ValueError(
                f"params{key} must have shape {tuple(leaf.shape)} for {what} "
                f"and input_size {input_size}, got {tuple(shape)}{hint}"
            )
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(f"params{key} must be floating, got dtype {dtype}")


def _shapes(tree: Any) -> str:
    return repr(jax.tree_util.tree_map(lambda a: tuple(a.shape), tree))
