"""Optimisers by name (as a config file names them)."""

from __future__ import annotations

from typing import Any

import optax

from .. import _names
from .._checks import check_float

#: The optimisers by name (from the registry, ``gradflow._names.OPTIMIZERS``).
OPTIMIZER_NAMES = tuple(_names.OPTIMIZERS)


def optimizer(
    name: str | optax.GradientTransformation, learning_rate: float = 1e-3
) -> optax.GradientTransformation:
    """Resolve an optimiser name, or pass an optax transform through.

    Args:
        name: one of ``"sgd"``, ``"sgd_momentum"`` (momentum 0.9), ``"nesterov"``,
            ``"adam"``, ``"adamw"``, ``"rmsprop"``, ``"adagrad"``, or an
            ``optax.GradientTransformation`` (then ``learning_rate`` is unused).
        learning_rate: > 0.

    Example:
        >>> opt = gf.train.optimizer("sgd_momentum", 0.01)
    """
    if isinstance(name, optax.GradientTransformation):
        return name
    if not isinstance(name, str) or name not in _names.OPTIMIZERS:
        raise ValueError(
            f"optimizer must be one of {OPTIMIZER_NAMES} or an "
            f"optax.GradientTransformation, got {_show(name)}"
        )
    lr = check_float("learning_rate", learning_rate, minimum=0.0, strict=True)
    factory, options = _names.OPTIMIZERS[name]
    return getattr(optax, factory)(lr, **options)


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else type(value).__name__
