"""The Linear Recurrent Unit (Orvieto et al. 2023), as in its JAX reference.

``h_t = λ ⊙ h_{t-1} + γ ⊙ (B x_t)`` with a complex diagonal
``λ = exp(−exp(nu_log) + i·exp(theta_log))`` and ``γ = exp(gamma_log)``,
output ``y_t = Re(C h_t) + D ⊙ x_t``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from .._checks import check_float, check_int, check_key
from ._cell import Cell
from ._linear import LinearScan, affine_elements, check_real_dtype, check_shared_options


class LRUCarry(NamedTuple):
    """The complex state ``h`` as its real and imaginary parts, ``(*batch, S)`` each."""

    re: jax.Array
    im: jax.Array


def lru(
    hidden_size: int,
    *,
    state_size: int | None = None,
    r_min: float = 0.0,
    r_max: float = 1.0,
    max_phase: float = 2 * math.pi,
    recurrent_init: str = "torch",
    input_init: str = "torch",
    bias_init: str = "torch",
    gain: float = 1.0,
) -> Cell:
    """The LRU layer: width ``H`` in and out, a complex diagonal state of size ``S``.

    Params (the names of the paper's JAX reference): ``nu_log (S,)``,
    ``theta_log (S,)``, ``gamma_log (S,)``, ``B_re, B_im (S, H)``,
    ``C_re, C_im (H, S)``, ``D (H,)``. ``init`` draws ``|λ|`` uniformly on
    the ring ``r_min ≤ |λ| ≤ r_max`` (uniform in ``|λ|²``) with phase
    uniform in ``[0, max_phase]``, ``γ = sqrt(1 − |λ|²)``, ``B`` normal with
    variance ``1/(2H)``, ``C`` with variance ``1/S`` and ``D`` standard
    normal, as the reference does.

    The carry is :class:`LRUCarry` ``(re, im)``; the state whose Jacobians
    the measurements take is the real vector ``(Re h, Im h)`` of ``2S``
    entries. Each step's Jacobian is block diagonal with the 2×2 blocks
    ``|λ_j| · rotation(arg λ_j)``, so ``‖∂s_T/∂s_t‖ = max_j |λ_j|^(T−t)``
    without inputs or with them: the Jacobian measurements use that product
    exactly, and :func:`gradflow.unroll` runs an associative scan.

    Args:
        hidden_size: ``H``, the width of the inputs and outputs (an input of
            another width is an error).
        state_size: ``S``, the complex state's size (default ``H``).
        r_min: the smallest ``|λ|`` at init, ``0 ≤ r_min < r_max``.
        r_max: the largest ``|λ|`` at init, at most 1.
        max_phase: the largest phase at init, ``> 0``.
        recurrent_init, input_init, bias_init, gain: the options every cell
            builder takes; only their defaults (the LRU has no ``W_hh``).

    Example:
        >>> cell = gf.cells.lru(64, r_min=0.9, r_max=0.999)
        >>> params = cell.init(jax.random.key(0), input_size=64)
    """
    h = check_int("hidden_size", hidden_size)
    check_shared_options(
        "lru",
        recurrent_init=recurrent_init,
        input_init=input_init,
        bias_init=bias_init,
        gain=gain,
    )
    s = h if state_size is None else check_int("state_size", state_size)
    r_min = check_float("r_min", r_min, minimum=0.0)
    r_max = check_float("r_max", r_max)
    if r_max > 1.0:
        raise ValueError(f"r_max must be <= 1 (a stable λ), got {r_max}")
    if r_min >= r_max:
        raise ValueError(f"r_min must be < r_max, got r_min={r_min} and r_max={r_max}")
    max_phase = check_float("max_phase", max_phase, minimum=0.0, strict=True)

    def init(key, input_size, dtype=jnp.float32):
        check_key("key", key)
        check_int("input_size", input_size)
        if input_size != h:
            raise ValueError(
                f"input_size must equal hidden_size={h} (an LRU layer maps width "
                f"H to H), got input_size={input_size}"
            )
        dt = check_real_dtype(dtype)
        k = jax.random.split(key, 7)
        u1 = jax.random.uniform(k[0], (s,), dt)
        u2 = jax.random.uniform(k[1], (s,), dt)
        nu_log = jnp.log(-0.5 * jnp.log(u1 * (r_max**2 - r_min**2) + r_min**2))
        theta_log = jnp.log(max_phase * u2)
        # 1 − |λ|² = −expm1(−2ν): accurate when |λ| is near 1
        gamma_log = 0.5 * jnp.log(-jnp.expm1(-2.0 * jnp.exp(nu_log)))
        return {
            "nu_log": nu_log,
            "theta_log": theta_log,
            "gamma_log": gamma_log,
            "B_re": jax.random.normal(k[2], (s, h), dt) / math.sqrt(2 * h),
            "B_im": jax.random.normal(k[3], (s, h), dt) / math.sqrt(2 * h),
            "C_re": jax.random.normal(k[4], (h, s), dt) / math.sqrt(s),
            "C_im": jax.random.normal(k[5], (h, s), dt) / math.sqrt(s),
            "D": jax.random.normal(k[6], (h,), dt),
        }

    def project(params, x):
        # γ ⊙ (B x) as its real and imaginary parts, then x itself (for D ⊙ x)
        gamma = jnp.exp(params["gamma_log"])
        bre = jnp.einsum("...i,si->...s", x, params["B_re"])
        bim = jnp.einsum("...i,si->...s", x, params["B_im"])
        gamma = jnp.broadcast_to(gamma, bre.shape)
        bre, bim = bre * gamma, bim * gamma
        return jnp.concatenate([bre, bim, x], axis=-1)

    def lam(params):
        mag = jnp.exp(-jnp.exp(params["nu_log"]))
        phase = jnp.exp(params["theta_log"])
        return mag * jnp.cos(phase), mag * jnp.sin(phase)

    def readout(params, re, im, xw):
        y = jnp.einsum("...s,hs->...h", re, params["C_re"])
        y = y - jnp.einsum("...s,hs->...h", im, params["C_im"])
        x = xw[..., 2 * s :]
        return y + x * jnp.broadcast_to(params["D"], x.shape)

    def recur(params, carry, xw):
        lr, li = (jnp.broadcast_to(v, carry.re.shape) for v in lam(params))
        re = lr * carry.re - li * carry.im + xw[..., :s]
        im = lr * carry.im + li * carry.re + xw[..., s : 2 * s]
        return LRUCarry(re, im), readout(params, re, im, xw)

    def elements(params, carry, xw):
        lr, li = lam(params)
        a = lax.complex(lr, li)
        a = jnp.broadcast_to(a, (xw.shape[0], *(1,) * (xw.ndim - 2), s))
        b = lax.complex(xw[..., :s], xw[..., s : 2 * s])
        return affine_elements(a, b, lax.complex(carry.re, carry.im))

    def finish(params, scanned, xw):
        states = scanned[1]
        re, im = jnp.real(states), jnp.imag(states)
        return LRUCarry(re, im), readout(params, re, im, xw)

    def log_gains(params, xw):
        g = -jnp.exp(params["nu_log"]).astype(xw.dtype)
        return jnp.broadcast_to(jnp.concatenate([g, g]), (*xw.shape[:-1], 2 * s))

    def initial_carry(batch_shape=(), dtype=jnp.float32):
        z = jnp.zeros((*tuple(batch_shape), s), dtype)
        return LRUCarry(z, z)

    return Cell(
        kind="lru",
        hidden_size=h,
        init=init,
        initial_carry=initial_carry,
        project=project,
        recur=recur,
        input_size=lambda params: int(params["B_re"].shape[1]),
        linear=LinearScan(elements, finish, log_gains=log_gains),
    )
