"""A tanh whose derivative stays exact where ``tanh(x)`` has rounded to ±1.

Autodiff of ``jnp.tanh`` uses ``1 − tanh(x)²``, which cancels to exactly 0 in
float32 once ``|x| > 9`` (``tanh`` rounds to 1), although ``sech²(9) ≈ 6e-8``.
A saturated unit then reports a gradient of exactly 0 — ``log10 = −inf`` —
and the profile of a network with a few saturated units comes back as holes
instead of as the (small, finite) numbers that the maths has. Every
nonlinearity of the cells goes through this ``tanh`` (sigmoids as
``(1 + tanh(x/2)) / 2``), so their Jacobians keep full relative accuracy down
to ``sech²(x) ≈ 1e-38`` (``|x| ≈ 44`` in float32).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax


@jax.custom_jvp
def tanh(x: jax.Array) -> jax.Array:
    """``jnp.tanh`` with derivative ``sech²(x) = 4e / (1 + e)²``, ``e = exp(−2|x|)``."""
    return lax.tanh(x)


def sech2(x: jax.Array) -> jax.Array:
    """``tanh'(x) = sech²(x) = 4e / (1 + e)²``, ``e = exp(−2|x|)``: no cancellation."""
    e = jnp.exp(-2.0 * jnp.abs(x))
    return 4.0 * e / jnp.square(1.0 + e)


@tanh.defjvp
def _tanh_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return lax.tanh(x), dx * sech2(x)
