"""Eager argument checks shared by every layer.

Each check raises a Python ``ValueError``/``TypeError`` that names the argument,
what was expected and what came, before anything is traced.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np


def is_concrete(x: Any) -> bool:
    """True when ``x`` holds values (not a tracer inside ``jit``/``grad``)."""
    try:
        import jax.core

        return not isinstance(x, jax.core.Tracer)
    except ImportError:  # pragma: no cover - jax is a hard dependency
        return True


def check_key(name: str, key: Any) -> None:
    """A ``jax.random`` key: typed (``jax.random.key``) or raw ``uint32 (2,)``."""
    import jax

    dtype = getattr(key, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        return
    if dtype == np.uint32 and tuple(getattr(key, "shape", ())) == (2,):
        return
    shape = getattr(key, "shape", None)
    got = f"{type(key).__name__} {key!r}" if shape is None else f"{dtype}{shape}"
    raise TypeError(f"{name} must be a jax.random.key(seed), got {got}")


def check_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """An integer (not a bool) that is at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return int(value)


def check_float(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    strict: bool = False,
) -> float:
    """A finite real number, optionally bounded below (``strict``: exclusive)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} must be a real number, got {type(value).__name__} {value!r}"
        )
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        bound = ">" if strict else ">="
        raise ValueError(f"{name} must be {bound} {minimum}, got {value}")
    return value


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """One of a fixed set of names."""
    if not isinstance(value, str):
        raise TypeError(
            f"{name} must be one of {choices}, got {type(value).__name__} {value!r}"
        )
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_sequence(name: str, xs: Any, input_size: int | None) -> tuple[int, ...]:
    """A time-major float array ``(T, *batch, input_size)``; returns ``batch``.

    ``input_size=None`` (a custom cell that takes any width) accepts any ``D``.

    NaN or inf in concrete inputs is rejected too: a measurement of a gradient
    through a NaN input is meaningless.
    """
    shape = getattr(xs, "shape", None)
    dtype = getattr(xs, "dtype", None)
    width = "D" if input_size is None else input_size
    if shape is None or dtype is None:
        raise TypeError(
            f"{name} must be an array of shape (T, *batch, {width}), "
            f"got {type(xs).__name__}"
        )
    if not np.issubdtype(np.dtype(dtype), np.floating):
        raise TypeError(f"{name} must have a floating dtype, got {dtype}")
    if len(shape) < 2:
        raise ValueError(
            f"{name} must have shape (T, *batch, {width}) (rank >= 2, "
            f"time-major), got shape {tuple(shape)}"
        )
    if input_size is not None and shape[-1] != input_size:
        raise ValueError(
            f"{name} must have last axis input_size={input_size} "
            f"(shape (T, *batch, {input_size})), got shape {tuple(shape)}"
        )
    if shape[0] < 1:
        raise ValueError(f"{name} must have at least one time step, got T=0")
    if any(n < 1 for n in shape[1:-1]):
        raise ValueError(
            f"{name} must have at least one sequence on every batch axis "
            f"(T, *batch, {width}), got shape {tuple(shape)}"
        )
    if is_concrete(xs) and not bool(np.all(np.isfinite(np.asarray(xs)))):
        bad = np.argwhere(~np.isfinite(np.asarray(xs)))[0]
        raise ValueError(
            f"{name} contains NaN or inf (first at index {tuple(int(i) for i in bad)})"
        )
    return tuple(shape[1:-1])
