"""Any recurrent model as a cell: a step function and its initial carry.

``custom`` wraps ``step(params, carry, x) -> (carry, h)`` for any pytree carry
and any params pytree, so every gradflow measurement can run on it. The step
may be written for one example (gradflow vmaps it over the batch axes) or for
one leading batch axis (``batched=True``; gradflow folds the batch axes into
it). Its output is checked while it is traced (shapes only, no run-time cost):
a step that returns the wrong structure, or a carry whose shapes or dtypes
change, fails with an error that says what was expected.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_int
from ._cell import Carry, Cell, Params


def custom(
    step: Callable[[Params, Carry, jax.Array], tuple[Carry, jax.Array]],
    initial_carry: Callable[..., Carry] | Carry,
    *,
    hidden_size: int | None = None,
    input_size: int | None = None,
    name: str = "custom",
    batched: bool = False,
    init: Callable[..., Params] | None = None,
) -> Cell:
    """A cell from a step function: any pytree carry, any params pytree.

    Args:
        step: ``step(params, carry, x) -> (carry, h)``. With ``batched=False``
            (default) it sees one example: ``x (D,)``, carry leaves of their
            per-example shapes, and returns ``h (N,)``; gradflow vmaps it over
            every batch axis. With ``batched=True`` it sees one leading batch
            axis: ``x (B, D)``, carry leaves ``(B, ...)``, ``h (B, N)``.
            ``h`` is what the loss sees; the whole carry is the state whose
            Jacobians are taken.
        initial_carry: ``initial_carry(batch_shape=(), dtype=float32) -> carry``
            whose leaves are ``(*batch_shape, ...)`` of ``dtype``; or a
            per-example template pytree (e.g. ``jnp.zeros(64)``), broadcast
            over the batch and cast to the dtype.
        hidden_size: ``N``, the width of ``h``; ``None`` to leave it to the
            step (measurements read it from the step's output). When given,
            the step's ``h`` is checked against it.
        input_size: ``D``; ``None`` accepts any input width.
        name: a label for plots and errors.
        batched: whether ``step`` takes one leading batch axis (see above).
        init: optional ``init(key, input_size, dtype=float32) -> params`` so
            that sweeps can draw params per seed.

    Returns:
        A :class:`Cell` of kind ``"custom"``: ``cell.step(params, carry, x)``
        takes ``x (*batch, D)`` for any batch shape.

    Example:
        >>> def step(p, h, x):                   # an antisymmetric RNN
        ...     a = p["W"] - p["W"].T - 0.1 * jnp.eye(h.shape[-1])
        ...     h = h + 0.1 * jnp.tanh(a @ h + p["V"] @ x)
        ...     return h, h
        >>> cell = gf.cells.custom(step, jnp.zeros(32), input_size=4)
    """
    if not callable(step):
        raise TypeError(
            "step must be a callable step(params, carry, x) -> (carry, h), got "
            f"{type(step).__name__}"
        )
    if hidden_size is not None:
        hidden_size = check_int("hidden_size", hidden_size)
    if input_size is not None:
        input_size = check_int("input_size", input_size)
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got {name!r}")
    if not isinstance(batched, bool):
        raise TypeError(f"batched must be True or False, got {batched!r}")
    if init is not None and not callable(init):
        raise TypeError(
            "init must be a callable init(key, input_size, dtype) -> params or "
            f"None, got {type(init).__name__}"
        )
    make_carry = _carry_maker(initial_carry, name)
    checked = _checked_step(step, name, hidden_size, batched)

    def recur(params: Params, carry: Carry, x: jax.Array):
        rank = jnp.ndim(x) - 1
        _check_batch(carry, x, name)
        if batched:
            return _fold_batch(checked, params, carry, x, rank)
        fn = checked
        for _ in range(rank):
            fn = jax.vmap(fn, in_axes=(None, 0, 0))
        return fn(params, carry, x)

    def no_init(key: jax.Array, input_size: int, dtype=jnp.float32) -> Params:
        raise TypeError(
            f"cell {name!r} has no init (its params come from you); pass "
            "init=callable(key, input_size, dtype) to gf.cells.custom to let a "
            "sweep draw params per seed"
        )

    def locate_h(params: Params, carry: Carry, x: jax.Array) -> int | None:
        # Identity of the traced values inside the user's own step: ``h`` is a
        # leaf of the carry exactly when the step returns that very value
        # (vmap or reshapes around the step would hide it, so probe the raw
        # step on one example, or a batch of one).
        found = []

        def probe(p, c, x):
            new, h = step(p, c, x)
            leaves = jax.tree_util.tree_leaves(new)
            found.append(next((i for i, a in enumerate(leaves) if a is h), None))
            return new, h

        lead = (1,) if batched else ()
        jax.eval_shape(
            probe, _abstract(params), _abstract(carry, lead), _abstract(x, lead)
        )
        return found[0]

    return Cell(
        kind="custom",
        hidden_size=hidden_size,
        init=init if init is not None else no_init,
        initial_carry=make_carry,
        project=_identity,
        recur=recur,
        input_size=lambda params: input_size,
        name=name,
        locate_h=locate_h,
    )


def _abstract(tree: Any, lead: tuple[int, ...] = ()) -> Any:
    """Shape/dtype stand-ins (tracers included), with ``lead`` axes in front."""
    return jax.tree_util.tree_map(
        lambda a: jax.ShapeDtypeStruct((*lead, *jnp.shape(a)), jnp.result_type(a)),
        tree,
    )


def _identity(params: Params, x: jax.Array) -> jax.Array:
    return x


def _shapes(tree: Any) -> Any:
    return jax.tree_util.tree_map(lambda a: tuple(jnp.shape(a)), tree)


def _carry_maker(initial_carry: Any, name: str) -> Callable[..., Carry]:
    """``initial_carry(batch_shape, dtype)`` with the contract checked."""
    if callable(initial_carry):
        user = initial_carry
    else:
        template = initial_carry
        leaves = jax.tree_util.tree_leaves(template)
        if not leaves or not all(
            hasattr(a, "shape") and jnp.issubdtype(jnp.result_type(a), jnp.inexact)
            for a in leaves
        ):
            raise TypeError(
                "initial_carry must be a callable (batch_shape, dtype) -> carry or "
                "a pytree of floating arrays (one example's carry), got "
                f"{_shapes(template) if leaves else type(template).__name__}"
            )

        def user(batch_shape=(), dtype=jnp.float32):
            return jax.tree_util.tree_map(
                lambda a: jnp.broadcast_to(
                    jnp.asarray(a, dtype), (*batch_shape, *jnp.shape(a))
                ),
                template,
            )

    def make(batch_shape: tuple[int, ...] = (), dtype=jnp.float32) -> Carry:
        batch_shape = tuple(batch_shape)
        for i, b in enumerate(batch_shape):
            check_int(f"batch_shape[{i}]", b, minimum=0)
        carry = user(batch_shape, dtype)
        leaves = jax.tree_util.tree_leaves(carry)
        if not leaves or not all(hasattr(a, "shape") for a in leaves):
            raise TypeError(
                f"initial_carry of cell {name!r} must return a pytree of arrays, "
                f"got {type(carry).__name__}"
            )
        bad = [a.dtype for a in leaves if a.dtype != np.dtype(dtype)]
        if bad:
            raise TypeError(
                f"initial_carry of cell {name!r} must return leaves of the dtype "
                f"it is given ({np.dtype(dtype)}), got {bad[0]}"
            )
        if batch_shape:
            one = jax.eval_shape(lambda: user((), dtype))
            want = [(*batch_shape, *a.shape) for a in jax.tree_util.tree_leaves(one)]
            got = [tuple(a.shape) for a in leaves]
            if want != got:
                raise ValueError(
                    f"initial_carry of cell {name!r} must honour batch_shape: "
                    f"initial_carry({batch_shape}) must have leaf shapes {want} "
                    f"(batch_shape + those of initial_carry(())), got {got}"
                )
        return carry

    return make


def _check_batch(carry: Carry, x: jax.Array, name: str) -> None:
    batch = tuple(jnp.shape(x)[:-1])
    for leaf in jax.tree_util.tree_leaves(carry):
        if tuple(jnp.shape(leaf)[: len(batch)]) != batch:
            raise ValueError(
                f"carry of cell {name!r} must have the batch shape {batch} of x "
                f"{tuple(jnp.shape(x))} in front of every leaf, got {_shapes(carry)}"
            )


def _checked_step(step: Callable, name: str, hidden_size: int | None, batched: bool):
    """``step`` with its output's structure, shapes and dtypes checked at trace time."""
    h_rank = 2 if batched else 1
    h_what = "(B, N)" if batched else "(N,)"

    def checked(params, carry, x):
        out = step(params, carry, x)
        if not isinstance(out, tuple) or len(out) != 2:
            raise TypeError(
                f"step of cell {name!r} must return a pair (carry, h), got "
                f"{type(out).__name__}"
                + (f" of length {len(out)}" if isinstance(out, tuple) else "")
            )
        new, h = out
        if jax.tree_util.tree_structure(new) != jax.tree_util.tree_structure(carry):
            raise TypeError(
                f"step of cell {name!r} must return a carry of the structure it "
                f"was given, {_shapes(carry)}, got {_describe(new)}"
            )
        old_leaves = jax.tree_util.tree_leaves(carry)
        new_leaves = jax.tree_util.tree_leaves(new)
        if [jnp.shape(a) for a in new_leaves] != [jnp.shape(a) for a in old_leaves]:
            raise ValueError(
                f"step of cell {name!r} must return a carry of the shapes it was "
                f"given, {_shapes(carry)}, got {_shapes(new)} (the carry's shape "
                "may not change between steps)"
            )
        dtypes = [
            (jnp.result_type(a), jnp.result_type(b))
            for a, b in zip(old_leaves, new_leaves, strict=True)
        ]
        for old, now in dtypes:
            if old != now:
                raise TypeError(
                    f"step of cell {name!r} must keep the carry's dtype {old}, "
                    f"got {now}"
                )
        if not hasattr(h, "shape") or jnp.ndim(h) != h_rank:
            raise ValueError(
                f"step of cell {name!r} must return h of shape {h_what}, got "
                f"{_describe(h)}"
            )
        if batched and jnp.shape(h)[0] != jnp.shape(x)[0]:
            raise ValueError(
                f"step of cell {name!r} (batched=True) must keep the batch axis: "
                f"x has shape {tuple(jnp.shape(x))}, h has {tuple(jnp.shape(h))}"
            )
        if hidden_size is not None and jnp.shape(h)[-1] != hidden_size:
            raise ValueError(
                f"step of cell {name!r} must return h of width hidden_size="
                f"{hidden_size}, got shape {tuple(jnp.shape(h))}"
            )
        return new, h

    return checked


def _describe(tree: Any) -> str:
    try:
        return repr(_shapes(tree))
    except TypeError:
        return type(tree).__name__


def _fold_batch(step: Callable, params: Params, carry: Carry, x: jax.Array, rank):
    """Call a one-batch-axis ``step`` on ``x (*batch, D)`` of any batch rank."""
    batch = tuple(jnp.shape(x)[:rank])
    size = math.prod(batch)

    def fold(a):
        return jnp.reshape(a, (size, *jnp.shape(a)[rank:]))

    new, h = step(params, jax.tree_util.tree_map(fold, carry), fold(x))

    def unfold(a):
        return jnp.reshape(a, (*batch, *jnp.shape(a)[1:]))

    return jax.tree_util.tree_map(unfold, new), unfold(h)
