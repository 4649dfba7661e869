"""Weight initialisers for one gate block of a recurrent cell.

An initialiser is ``init(key, shape, dtype) -> array`` for a single block of
shape ``(out, in)`` (one gate's ``W_hh`` is ``(N, N)``). Gated cells apply it to
each gate separately, so an orthogonal LSTM has four orthogonal blocks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import _names
from .._checks import check_float, check_int

Initializer = Callable[[jax.Array, tuple[int, int], jnp.dtype], jax.Array]

INIT_NAMES = _names.INITS


def torch_uniform() -> Initializer:
    """PyTorch's default ``U(-1/sqrt(N), 1/sqrt(N))`` with ``N`` the hidden size."""

    def init(key, shape, dtype):
        bound = 1.0 / jnp.sqrt(shape[0])
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def gaussian(gain: float = 1.0) -> Initializer:
    """``N(0, gain²/fan_in)``: a square block has spectral radius ≈ ``gain``."""
    gain = check_float("gain", gain, minimum=0.0)

    def init(key, shape, dtype):
        # gain times the gain-1 draw, so gain is exactly the scale of W_hh
        # (the sweep scales a gain-1 W_hh by the gain; the bits agree).
        return gain * (1.0 / jnp.sqrt(shape[1]) * jax.random.normal(key, shape, dtype))

    return init


def orthogonal(gain: float = 1.0) -> Initializer:
    """``gain · Q``, ``Q`` Haar-random (semi-)orthogonal: all singular values = gain."""
    gain = check_float("gain", gain, minimum=0.0)

    def init(key, shape, dtype):
        return gain * jax.nn.initializers.orthogonal()(key, shape, dtype)

    return init


def identity(gain: float = 1.0) -> Initializer:
    """``gain · I`` (the IRNN of Le, Jaitly & Hinton 2015 with ``gain=1``)."""
    gain = check_float("gain", gain, minimum=0.0)

    def init(key, shape, dtype):
        del key
        return gain * jnp.eye(shape[0], shape[1], dtype=dtype)

    return init


def sparse(gain: float = 1.0, fan_in: int = 15) -> Initializer:
    """Sparse Gaussian, ``fan_in`` inputs per unit, scaled to spectral radius ``gain``.

    The "smart" initialisation of Pascanu, Mikolov & Bengio (2013) (after
    Sutskever et al. 2013), who used ``gain=0.95``; the default is 1, as for
    every initialiser and ``initializer("sparse")``. Square blocks only.
    """
    gain = check_float("gain", gain, minimum=0.0)
    fan_in = check_int("fan_in", fan_in)

    def init(key, shape, dtype):
        rows, cols = shape
        if rows != cols:
            raise ValueError(f"sparse init needs a square block, got shape {shape}")
        k_val, k_idx = jax.random.split(key)
        scores = jax.random.uniform(k_idx, (rows, cols))
        keep = jnp.argsort(scores, axis=1)[:, : min(fan_in, cols)]
        mask = (
            jnp.zeros((rows, cols), bool).at[jnp.arange(rows)[:, None], keep].set(True)
        )
        w = jnp.where(mask, jax.random.normal(k_val, shape, jnp.float32), 0.0)
        # A general eigensolver exists only on the host (not on GPU, not traceable);
        # a callback keeps init usable under jit/vmap (e.g. one init per seed).
        radius = jax.pure_callback(
            _spectral_radius,
            jax.ShapeDtypeStruct((), jnp.float32),
            w,
            vmap_method="sequential",
        )
        return (gain * (w / radius)).astype(dtype)

    return init


def _spectral_radius(w) -> np.ndarray:
    w = np.asarray(w, np.float64)
    return np.max(np.abs(np.linalg.eigvals(w))).astype(np.float32)


def zeros() -> Initializer:
    """All zeros (for closed-form tests and bias ablations)."""

    def init(key, shape, dtype):
        del key
        return jnp.zeros(shape, dtype)

    return init


def initializer(name: str | Initializer, gain: float = 1.0) -> Initializer:
    """Resolve a name (as written in a config file) or pass a callable through.

    ``gain`` means the same for every name: the block is ``gain`` times the
    block drawn at gain 1 (for ``torch``, PyTorch's uniform draw scaled; for
    ``zeros``, still zeros). So a config's ``gain`` is the scale of ``W_hh``
    whatever the init.

    Args:
        name: one of ``"torch"``, ``"gaussian"``, ``"orthogonal"``, ``"identity"``,
            ``"sparse"``, ``"zeros"``, or an initialiser itself.
        gain: the scale, >= 0.

    Example:
        >>> init = gf.cells.initializer("orthogonal", gain=1.05)
    """
    if callable(name):
        return name
    if not isinstance(name, str) or name not in INIT_NAMES:
        raise ValueError(f"initializer must be one of {INIT_NAMES}, got {name!r}")
    gain = check_float("gain", gain, minimum=0.0)
    if name == "torch":
        return _scaled(torch_uniform(), gain)
    if name == "zeros":
        return zeros()
    return {
        "gaussian": gaussian,
        "orthogonal": orthogonal,
        "identity": identity,
        "sparse": sparse,
    }[name](gain)


def _scaled(init: Initializer, gain: float) -> Initializer:
    if gain == 1.0:
        return init

    def scaled(key, shape, dtype):
        return gain * init(key, shape, dtype)

    return scaled


def gate_blocks(
    init: Initializer, key: jax.Array, gates: int, shape: tuple[int, int], dtype
) -> jax.Array:
    """Stack ``gates`` independent ``shape`` blocks into ``(gates*out, in)``."""
    keys = jax.random.split(key, gates)
    return jnp.concatenate([init(k, shape, dtype) for k in keys], axis=0)


def torch_bias(key: jax.Array, hidden_size: int, gates: int, dtype) -> jax.Array:
    """PyTorch's default bias ``U(-1/sqrt(N), 1/sqrt(N))`` of shape ``(gates*N,)``."""
    bound = 1.0 / jnp.sqrt(hidden_size)
    return jax.random.uniform(key, (gates * hidden_size,), dtype, -bound, bound)


def has_w_hh(params: Any) -> bool:
    """Whether ``params`` have a recurrent matrix ``W_hh`` (a stack's: every layer)."""
    if isinstance(params, tuple):
        return all(has_w_hh(p) for p in params)
    return isinstance(params, Mapping) and "W_hh" in params


def scale_w_hh(params: Any, gain: Any) -> Any:
    """``params`` with ``W_hh`` times ``gain`` (every layer's, for a stack's tuple).

    What ``gain`` means for every initialiser: ``W_hh`` drawn at ``gain`` is
    exactly ``gain`` times ``W_hh`` drawn at 1, so a sweep draws params once at
    gain 1 and scales them. Params without a ``W_hh`` (:func:`has_w_hh`) come
    back as they are. ``gain`` may be traced.
    """
    if not has_w_hh(params):
        return params
    if isinstance(params, tuple):
        return tuple(scale_w_hh(p, gain) for p in params)
    return {**params, "W_hh": gain * params["W_hh"]}
