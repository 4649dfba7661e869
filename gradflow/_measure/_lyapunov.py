"""Lyapunov exponents of the state dynamics by Benettin's QR method."""

from __future__ import annotations

import warnings
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_int, check_key
from .._unroll import forward_states
from ..cells import Cell
from ._common import (
    check_k,
    flat,
    flat_step,
    map_batch,
    prepare,
    safe_log,
    state_size,
)


class LyapunovSpectrum(NamedTuple):
    """Lyapunov exponents (natural log per step), largest first.

    Attributes:
        exponents: ``(*batch, k)``, descending.
        running: ``(T − warmup, *batch, k)``: the estimate after each step
            past the warm-up, each row descending (for convergence plots).
        resolved: ``(*batch, k)`` bool, aligned with ``exponents``: False
            where the working precision cannot resolve the exponent, i.e. at
            some averaged step its ``|R_ii|`` lay below the rounding floor
            ``S · eps · max_j |R_jj|`` (further below the leading direction
            than the dtype resolves) or was floored at the smallest normal
            number. Such an exponent is an upper bound (the true one is lower:
            float32 reads −42.8 for a float64 −46.8); rerun in float64 or
            read it as a bound. Also False (and the exponent NaN) where the
            state or its Jacobian was not finite at an averaged step.
    """

    exponents: jax.Array
    running: jax.Array
    resolved: jax.Array

    @property
    def kaplan_yorke(self) -> jax.Array:
        """The Kaplan–Yorke (Lyapunov) dimension, ``(*batch,)``.

        ``D_KY = j + Σ_{i≤j} λ_i / |λ_{j+1}|`` with ``j`` the largest index
        whose partial sum ``Σ_{i≤j} λ_i`` is non-negative (``j = 0``, so
        ``D_KY = 0``, when ``λ_1 < 0``). NaN, with a
        :class:`SpectrumTooShortWarning`, where every partial sum of the ``k``
        exponents computed is non-negative (``λ_{j+1}`` was not computed:
        ask for more exponents); NaN where one of ``λ_1 … λ_{j+1}`` is not
        resolved (see ``resolved``) or NaN.
        """
        lam = self.exponents
        k = lam.shape[-1]
        partial_sums = jnp.cumsum(lam, axis=-1)
        nonneg = partial_sums >= 0
        # partial sums rise while λ_i > 0 and fall after, so the non-negative
        # ones are a prefix: j counts them
        j = jnp.sum(jnp.cumprod(nonneg.astype(jnp.int32), axis=-1), axis=-1)
        short = j >= k
        idx = jnp.minimum(j, k - 1)[..., None]
        nxt = jnp.take_along_axis(lam, idx, axis=-1)[..., 0]
        head = jnp.take_along_axis(
            partial_sums, jnp.maximum(j - 1, 0)[..., None], axis=-1
        )[..., 0]
        head = jnp.where(j > 0, head, 0.0)
        dim = j.astype(lam.dtype) + head / jnp.abs(nxt)
        needed = jnp.arange(k).reshape((1,) * j.ndim + (k,)) <= j[..., None]
        unresolved = jnp.any(needed & ~self.resolved, axis=-1)
        _warn_if(short, "kaplan_yorke", k)
        bad = short | unresolved | jnp.any(jnp.isnan(lam), axis=-1)
        return jnp.where(bad, jnp.nan, dim)

    @property
    def entropy_rate(self) -> jax.Array:
        """The sum of the positive exponents (nats per step), ``(*batch,)``.

        Pesin's identity makes it the Kolmogorov–Sinai entropy rate of the
        dynamics. NaN, with a :class:`SpectrumTooShortWarning`, where the
        last exponent computed is still positive (the next one may be too);
        NaN where a positive exponent is not resolved (an unresolved
        non-positive one is an upper bound, so it stays non-positive) or NaN.
        """
        lam = self.exponents
        k = lam.shape[-1]
        positive = lam > 0
        short = positive[..., -1]
        unresolved = jnp.any(positive & ~self.resolved, axis=-1)
        rate = jnp.sum(jnp.where(positive, lam, 0.0), axis=-1)
        _warn_if(short, "entropy_rate", k)
        bad = short | unresolved | jnp.any(jnp.isnan(lam), axis=-1)
        return jnp.where(bad, jnp.nan, rate)


class SpectrumTooShortWarning(UserWarning):
    """The ``k`` exponents computed do not decide a quantity (compute more)."""


def _warn_if(short: jax.Array, what: str, k: int) -> None:
    def warn(flags: np.ndarray) -> None:
        n = int(np.sum(flags))
        if n:
            warnings.warn(
                f"LyapunovSpectrum.{what}: the {k} exponents computed do not "
                f"decide it for {n} of {max(1, np.size(flags))} sequences (NaN "
                "there); compute more exponents (a larger k)",
                SpectrumTooShortWarning,
                stacklevel=3,
            )

    jax.debug.callback(warn, short)


def lyapunov_spectrum(
    cell: Cell,
    params: Any,
    xs: jax.Array,
    *,
    k: int | None = None,
    warmup: int | None = None,
    carry: Any = None,
    key: jax.Array | None = None,
) -> LyapunovSpectrum:
    """The top-``k`` Lyapunov exponents of ``s_{t+1} = f(s_t, x_t)``.

    Benettin's method: ``k`` orthonormal tangent vectors are pushed through
    the Jacobian of every step (``k`` Jacobian-vector products, no Jacobian
    is formed) and re-orthonormalised by QR; the exponents are the averages of
    ``log |diag R|``. A diagonal entry of ``R`` that is exactly 0 is floored
    at the dtype's smallest normal number, so no estimate is ``-inf``; such an
    exponent, and one further below the leading one than the precision
    resolves, is marked in ``resolved`` (an upper bound, not a value). The
    first ``warmup`` steps align the frame and are not averaged.

    Args:
        cell: a :class:`gradflow.cells.Cell`; the state is its whole carry.
        params: its params.
        xs: ``(T, *batch, input_size)``: the inputs driving the dynamics
            (zeros for the autonomous map).
        k: how many exponents (at most the state size ``S``); ``None`` = all.
        warmup: steps discarded before averaging; ``None`` means ``T // 10``.
        carry: the carry entering step 0; ``None`` means zeros.
        key: a ``jax.random`` key for the initial orthonormal frame; ``None``
            uses a fixed frame (``jax.random.key(0)``), so results repeat.

    Returns:
        A :class:`LyapunovSpectrum`.

    Example:
        >>> lyap = gf.lyapunov_spectrum(cell, params, jnp.zeros((1000, 1, 4)), k=8)
        >>> lyap.exponents          # (1, 8), nats per step
    """
    carry, batch = prepare(cell, params, xs, carry)
    size = state_size(cell, xs.dtype)
    k = size if k is None else check_k(k, size)
    steps = xs.shape[0]
    if warmup is None:
        warmup = steps // 10
    warmup = check_int("warmup", warmup, minimum=0)
    if warmup >= steps:
        raise ValueError(
            f"warmup must be < the number of steps T={steps}, got {warmup}"
        )
    if key is None:
        key = jax.random.key(0)
    check_key("key", key)
    return _benettin(cell, params, xs, carry, key, size, k, batch, warmup)


@partial(jax.jit, static_argnums=(0, 5, 6, 7, 8))
def _benettin(cell, params, xs, carry, key, size, k, batch, warmup):
    dtype = jax.tree_util.tree_leaves(carry)[0].dtype
    # k Haar-random orthonormal columns.
    frame = jnp.linalg.qr(jax.random.normal(key, (size, k), dtype))[0]

    def single(xs1, carry1):
        _, f = flat_step(cell, params, carry1)

        def body(q, inp):
            c_t, xw_t = inp
            # the tangent frame moves with the step's Jacobian at the state
            # entering it; the state itself advances in the shared forward scan
            state = flat(c_t)
            _, lin = jax.linearize(lambda z: f(z, xw_t), state)
            y = jax.vmap(lin, in_axes=1, out_axes=1)(q)
            q, r = jnp.linalg.qr(y)
            diag = jnp.abs(jnp.diagonal(r))
            # Below eps · ‖J‖ (|R_11| estimates it) a diagonal is rounding
            # noise; at or below tiny it was floored: either way not resolved.
            floor = size * jnp.finfo(dtype).eps * jnp.max(diag)
            lost = (diag < floor) | (diag <= jnp.finfo(dtype).tiny)
            # A state or Jacobian that is not finite has no exponent: NaN, and
            # unresolved (a NaN-valued step has a zero Jacobian, floored to a
            # finite log, and NaN compares false with every floor).
            finite = jnp.all(jnp.isfinite(state)) & jnp.all(jnp.isfinite(y))
            logs = jnp.where(finite, safe_log(diag), jnp.nan)
            return q, (logs, lost | ~finite)

        fwd = forward_states(cell, params, xs1, carry1, along=(body, frame))
        logs, lost = (a[warmup:] for a in fwd.along[1])
        count = jnp.arange(1, logs.shape[0] + 1, dtype=logs.dtype)
        running = jnp.cumsum(logs, axis=0) / count[:, None]
        order = jnp.argsort(-running[-1])
        resolved = ~jnp.any(lost, axis=0)[order]
        running = -jnp.sort(-running, axis=-1)
        return LyapunovSpectrum(running[-1], running, resolved)

    return map_batch(single, batch, xs, carry, LyapunovSpectrum(0, 1, 0))
