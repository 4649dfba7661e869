"""Cells a config names as ``"module:function"``: a factory of the user's.

``[grid] cell = ["gru", "mypkg.cells:mgu"]`` names a function
``mgu(hidden_size, **options) -> Cell | (Cell, init)``, with ``init(key,
input_size, dtype=float32) -> params`` (or a ``Cell`` whose own ``init`` draws
params, as :func:`gradflow.cells.custom`'s ``init=`` and
:func:`gradflow.from_equinox`'s ``init=`` make). It receives the keyword
arguments a built-in builder does (``recurrent_init``, ``input_init``,
``bias_init``) only when its signature takes them.

Config validation (no jax) checks the name's form and that its module can be
found; :func:`check` then imports it and builds the cell on shapes only, for
every width in the grid, before a run touches its directory: a wrong return
type, a cell without ``init``, a gain other than 1 for params without a
``W_hh`` to scale, or a ``k`` larger than the cell's state are errors naming
``[grid] cell``.
"""

from __future__ import annotations

import importlib
import inspect
import itertools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from gradflow import _names, _specs, cells

from ._config import ConfigError
from ._inputs import input_size as input_width


def resolve(name: str) -> Callable[..., Any]:
    """The factory a ``"module:function"`` name in a config names, imported.

    Raises:
        ConfigError: naming ``[grid] cell``, the module and what went wrong:
            it cannot be found or imported (a syntax error, an exception or
            ``sys.exit`` while importing), or holds no such callable.
    """
    where = f"[grid] cell {name!r}"
    module, _, function = name.partition(":")
    try:
        imported = importlib.import_module(module)
    except (Exception, SystemExit) as err:
        raise ConfigError(
            f"{where}: importing module {module!r} failed: {_error(err)}"
        ) from err
    factory = getattr(imported, function, None)
    if factory is None:
        raise ConfigError(f"{where}: module {module!r} has no {function!r}")
    if not callable(factory):
        raise ConfigError(
            f"{where}: expected a callable factory, got {type(factory).__name__}"
        )
    return factory


def build(name: str, hidden_size: int, options: Mapping[str, Any]) -> cells.Cell:
    """The cell of factory ``name`` at ``hidden_size``, its ``init`` attached.

    ``options`` are the shared builder keywords; those the factory's signature
    does not take are left out.

    Raises:
        ConfigError: the factory cannot be imported, cannot be called as
            ``factory(hidden_size, **options)``, raises, or returns something
            else than a ``Cell`` or ``(Cell, init)``.
    """
    where = f"[grid] cell {name!r}"
    factory = resolve(name)
    taken = _taken(factory, options)
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # a builtin without one: try the call
        signature = None
    if signature is not None:
        try:
            signature.bind(hidden_size, **taken)
        except TypeError:
            raise ConfigError(
                f"{where}: expected a factory called as {name.partition(':')[2]}"
                f"(hidden_size, **options) -> Cell, but its signature is "
                f"{signature}"
            ) from None
    try:
        made = factory(hidden_size, **taken)
    except (Exception, SystemExit) as err:
        raise ConfigError(
            f"{where}: the factory failed at hidden_size {hidden_size}: {_error(err)}"
        ) from err
    if isinstance(made, cells.Cell):
        return made
    if (
        isinstance(made, tuple)
        and len(made) == 2
        and isinstance(made[0], cells.Cell)
        and callable(made[1])
    ):
        return made[0]._replace(init=made[1])
    raise ConfigError(
        f"{where}: expected the factory to return a gradflow Cell or (Cell, "
        f"init(key, input_size, dtype) -> params), got {_describe(made)}"
    )


def _error(err: BaseException) -> str:
    if isinstance(err, SystemExit):
        return f"it called sys.exit({err.code!r})"
    return f"{type(err).__name__}: {err}"


def takes_init(name: str) -> bool:
    """Whether factory ``name`` takes ``recurrent_init`` (the ``init`` axis)."""
    return "recurrent_init" in _taken(resolve(name), {"recurrent_init": None})


def check(config: Mapping[str, Any]) -> None:
    """Build every user cell of a measurement config on shapes; refuse what cannot run.

    Runs before a sweep touches its directory. Nothing is computed: the cell's
    params and one step are traced with ``jax.eval_shape``.

    Args:
        config: a resolved ``measure`` config.

    Raises:
        ConfigError: naming ``[grid] cell`` and what was expected.
    """
    grid = config["grid"]
    users = [c for c in grid["cell"] if _names.is_factory(c)]
    if not users:
        return
    gains = [g for g in grid["gain"] if g != 1.0]
    sizes = {
        input_width(config, {"input": i, "length": max(grid["length"])})
        for i in grid["input"]
    }
    for name in users:
        where = f"[grid] cell {name!r}"
        if len(grid["init"]) > 1 and not takes_init(name):
            raise ConfigError(
                f"{where}: its factory takes no recurrent_init, so [grid] init "
                f"must have one value, got {grid['init']}"
            )
        for n, input_size in itertools.product(grid["hidden_size"], sorted(sizes)):
            cell = build(name, n, _options(config, grid["init"][0]))
            try:
                params, _, h = traced(cell, input_size)
            except (TypeError, ValueError) as err:
                raise ConfigError(
                    f"{where}: hidden_size {n}, input size {input_size}: {err}"
                ) from err
            if tuple(h.shape) != (n,):
                # The results would record hidden_size n for another width.
                raise ConfigError(
                    f"{where}: asked for hidden_size {n}, the factory built a "
                    f"cell whose h has shape {tuple(h.shape)}; expected ({n},)"
                )
            scalable = cells.has_w_hh(params)
            if gains and not scalable:
                raise ConfigError(
                    f"{where}: [grid] gain scales params['W_hh'], and this cell's "
                    f"params have none; use gain = [1.0] (got {grid['gain']})"
                )
            for m in config["measure"]:
                if _specs.MEASUREMENTS[m].needs_w_hh and not scalable:
                    raise ConfigError(
                        f"{where}: [measure] {m} reads params['W_hh'], and this "
                        "cell's params have none"
                    )
            state = cells.state_size(cell, jnp.float32) * min(grid.get("layers", [1]))
            for m, opts in config["measure"].items():
                if opts.get("k", 0) > state:
                    raise ConfigError(
                        f"{where}: [measure] {m}.k: expected at most the cell's "
                        f"state size {state} (hidden_size {n}), got {opts['k']}"
                    )


def traced(cell: cells.Cell, input_size: int) -> tuple[Any, Any, Any]:
    """``(params, carry, h)`` of one example as shapes, from one traced step."""
    params = jax.eval_shape(lambda k: cell.init(k, input_size), jax.random.key(0))
    x = jax.ShapeDtypeStruct((input_size,), jnp.float32)
    carry = cell.initial_carry((), jnp.float32)
    return params, carry, jax.eval_shape(cell.step, params, carry, x)[1]


def _options(config: Mapping[str, Any], init: str) -> dict[str, Any]:
    return {
        "recurrent_init": init,
        "input_init": config["cell"]["input_init"],
        "bias_init": config["cell"]["bias_init"],
    }


def _taken(factory: Any, options: Mapping[str, Any]) -> dict[str, Any]:
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: pass nothing
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return dict(options)
    names = {p.name for p in params}
    return {k: v for k, v in options.items() if k in names}


def _describe(value: Any) -> str:
    if isinstance(value, tuple):
        return f"a tuple of ({', '.join(type(v).__name__ for v in value)})"
    return type(value).__name__
