"""xLSTM's mLSTM: a matrix memory per head with an exponential input gate.

Beck et al. (2024), "xLSTM: Extended Long Short-Term Memory", the mLSTM cell:

    C_t = f_t C_{t-1} + i_t k_t v_tᵀ        n_t = f_t n_{t-1} + i_t k_t
    h_t = o_t ⊙ (q_tᵀ C_t) / max(|q_tᵀ n_t|, 1)

per head, with ``i_t = exp(ĩ_t)`` and ``f_t = σ(f̃_t)``. ``exp`` overflows, so
the carry holds the stabilised memory of the xlstm package's
``recurrent_step_stabilized_simple``: ``m_t = max(log f_t + m_{t-1}, ĩ_t)``,
``C'_t = e^{-m_t} C_t``, ``n'_t = e^{-m_t} n_t``. ``m_t`` is a gauge: any
choice represents the same ``(C_t, n_t)`` and gives the same ``h_t``.

Derivatives with respect to the carry are taken in the unstabilised units of
``(C_t, n_t)`` (a ``jax.custom_jvp`` on the step): the Jacobian of a step on
the memory is ``f_t`` times the identity, per head, whatever the gauge, and
``m_t`` carries no tangent. Derivatives of the outputs by the params and
inputs are the ordinary ones (``h_t`` does not depend on the gauge).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._checks import check_int, check_key
from ._cell import Cell
from ._linear import LinearScan, check_shared_options

#: Param names, in the order their projections are stacked in ``xw``.
_WIDE = ("q", "k", "v", "o")  # N rows each
_PER_HEAD = ("i", "f")  # one row per head


class MLSTMCarry(NamedTuple):
    """The stabilised matrix memory (``H`` heads of width ``d = N / H``).

    Attributes:
        C: ``(*batch, H, d, d)``, ``e^{-m} C`` with ``C[..., a, b]`` the
            memory of key entry ``a`` and value entry ``b``.
        n: ``(*batch, H, d)``, ``e^{-m} n``, the normaliser.
        m: ``(*batch, H)``, the stabiliser (a log scale).
    """

    C: jax.Array
    n: jax.Array
    m: jax.Array


def mlstm(
    hidden_size: int,
    *,
    heads: int = 4,
    eps: float = 1e-6,
    recurrent_init: str = "torch",
    input_init: str = "torch",
    bias_init: str = "torch",
    gain: float = 1.0,
) -> Cell:
    """xLSTM's mLSTM cell (matrix memory, exponential input gate, stabiliser).

    Per head ``j`` of width ``d = hidden_size / heads`` and step ``t``::

        q, k, v = W_q x + b_q, (W_k x + b_k) / √d, W_v x + b_v   (per head)
        ĩ, f̃ = W_i x + b_i, W_f x + b_f                         (one per head)
        m' = max(log σ(f̃) + m, ĩ)
        C' = e^{log σ(f̃) + m − m'} C + e^{ĩ − m'} k vᵀ
        n' = e^{log σ(f̃) + m − m'} n + e^{ĩ − m'} k
        h = σ(W_o x + b_o) ⊙ (qᵀ C') / (max(|qᵀ n'|, e^{−m'}) + eps · e^{−m'})

    the equations of ``xlstm.blocks.mlstm.backends.recurrent_step_stabilized_simple``
    (xlstm 2.0.6) followed by the paper's output gate ``o``. One difference:
    the reference adds ``eps`` to the stabilised denominator, which makes
    ``h`` depend on the gauge ``m`` by ``O(eps · e^m)``; here ``eps`` is
    scaled with the gauge, so ``h`` is the paper's
    ``(qᵀC)/(max(|qᵀn|, 1) + eps)`` for every ``m`` (relative difference to
    the reference at most ``eps · (1 + e^m)``).

    **The state.** The carry is :class:`MLSTMCarry` ``(C', n', m)``; flattened
    (``ravel_pytree``) it is ``S = H·d² + H·d + H`` numbers: ``C'`` row-major,
    then ``n'``, then ``m``. The Jacobians that the measurements take of it are
    those of the unstabilised recurrence ``(C, n) ↦ (f C + i k vᵀ, f n + i k)``,
    with tangents in the units of ``C = e^{m} C'``: ``∂s_{t+1}/∂s_t`` is
    ``σ(f̃_t)`` times the identity on head ``j``'s ``C`` and ``n`` entries and
    zero on ``m`` (a gauge, no information). So ``‖∂s_T/∂s_t‖ = max_j
    Π_{u=t}^{T−1} σ(f̃_{j,u})`` exactly (``s_t`` the carry entering step
    ``t``), the Lyapunov exponents are the mean ``log σ(f̃)`` per head
    (each ``d² + d`` times) plus ``H`` unresolved ones for ``m``, and at a
    fixed point the eigenvalues are ``σ(f̃)`` and 0. The Jacobians of the
    stabilised carry itself would depend on the gauge: when
    the forget gate dominates, ``m`` absorbs the decay (``m' = log f + m``) and
    ``∂C'_{t+1}/∂C'_t = I``, hiding the vanishing that ``C`` shows. Tangents
    in these units stay finite while ``m`` does not exceed the dtype's exponent
    range (about 88 in float32), as does the unstabilised ``C`` itself.

    ``h_t`` is a readout (no later step reads it), so
    :func:`gradflow.hidden_grad_norms` of an mLSTM is each ``h_t``'s own term
    in the loss (with a warning); ``of="state"`` measures ``‖∂L/∂s_t‖`` of
    the carry (in the units of ``C``: it shrinks by ``σ(f̃)`` per step back),
    and :func:`gradflow.jacobian_norms` the products.
    :func:`gradflow.param_grad_by_step` splits every param's gradient by step
    (derivatives by the params are the ordinary ones); a sweep's
    ``param_grad_by_step``, which records the share of ``W_hh``, refuses the
    mLSTM, as it refuses a ``gain`` other than 1.

    Args:
        hidden_size: ``N``, the width of ``h`` (all heads together).
        heads: ``H``; must divide ``hidden_size``.
        eps: the denominator's guard (the reference's ``1e-6``).
        recurrent_init, input_init, bias_init, gain: only their defaults
            (``"torch"``, ``1.0``), meaning the reference's init below: taken
            so that a config's ``[grid] cell = "mlstm"`` builds it like the
            other kinds; the mLSTM has no ``W_hh`` for another init or a gain.

    Returns:
        A :class:`Cell` of kind ``"mlstm"``. Its params are a dict:
        ``W_q, W_k, W_v, W_o (N, D)``, ``b_q, b_k, b_v, b_o (N,)``,
        ``W_i, W_f (H, D)``, ``b_i, b_f (H,)``. The xlstm package computes the
        gates from ``concat(q, k, v)``: its ``igate.weight (H, 3N)`` maps to
        ``W_i = igate.weight @ concat(W_q, W_k, W_v)`` (and ``b_i`` likewise),
        before ``k``'s ``1/√d``. ``init`` follows its ``mLSTMCell`` and
        ``mLSTMLayer``: ``W_i = W_f = 0``, ``b_i ~ N(0, 0.1²)``, ``b_f``
        evenly spaced from 3 to 6 over the heads, ``W_q, W_k, W_v, W_o ~
        N(0, 2/(5D))`` and zero ``b_q, b_k, b_v, b_o``. ``unroll`` runs it by
        associative scans (``cell._replace(linear=None)`` steps it).
    """
    n = check_int("hidden_size", hidden_size)
    heads = check_int("heads", heads)
    if n % heads:
        raise ValueError(
            f"heads must divide hidden_size={n}, got heads={heads} "
            f"({n} % {heads} = {n % heads})"
        )
    if not isinstance(eps, int | float) or isinstance(eps, bool) or not eps >= 0:
        raise ValueError(f"eps must be a float >= 0, got {eps!r}")
    eps = float(eps)
    check_shared_options(
        "mlstm",
        recurrent_init=recurrent_init,
        input_init=input_init,
        bias_init=bias_init,
        gain=gain,
    )
    d = n // heads

    def init(key: jax.Array, input_size: int, dtype=jnp.float32) -> dict:
        check_key("key", key)
        input_size = check_int("input_size", input_size)
        k_w, k_i = jax.random.split(key)
        std = math.sqrt(2.0 / (5.0 * input_size))
        wide = jax.random.normal(k_w, (4, n, input_size), dtype) * std
        params = {}
        for g, w in zip(_WIDE, wide, strict=True):
            params[f"W_{g}"] = w
            params[f"b_{g}"] = jnp.zeros((n,), dtype)
        params["W_i"] = jnp.zeros((heads, input_size), dtype)
        params["b_i"] = 0.1 * jax.random.normal(k_i, (heads,), dtype)
        params["W_f"] = jnp.zeros((heads, input_size), dtype)
        params["b_f"] = jnp.linspace(3.0, 6.0, heads, dtype=dtype)
        return params

    def initial_carry(batch_shape: tuple[int, ...] = (), dtype=jnp.float32):
        b = tuple(batch_shape)
        return MLSTMCarry(
            jnp.zeros((*b, heads, d, d), dtype),
            jnp.zeros((*b, heads, d), dtype),
            jnp.zeros((*b, heads), dtype),
        )

    def project(params, x):
        w = jnp.concatenate([params[f"W_{g}"] for g in _WIDE + _PER_HEAD])
        b = jnp.concatenate([params[f"b_{g}"] for g in _WIDE + _PER_HEAD])
        y = jnp.einsum("...i,oi->...o", x, w)
        return y + jnp.broadcast_to(b, y.shape)

    def split(xw):
        q, k, v, o, ig, fg = jnp.split(
            xw, [n, 2 * n, 3 * n, 4 * n, 4 * n + heads], axis=-1
        )

        def per_head(a):
            return a.reshape(*a.shape[:-1], heads, d)

        return per_head(q), per_head(k) / math.sqrt(d), per_head(v), o, ig, fg

    def advance(carry, logf, ig, k, v, m1):
        # the update in the gauge m1 (exponents <= 0 for m1 = max(logf + m, ig))
        a = jnp.exp(logf + carry.m - m1)
        b = jnp.exp(ig - m1)
        c = a[..., None, None] * carry.C + b[..., None, None] * _outer(k, v)
        nn = a[..., None] * carry.n + b[..., None] * k
        return c, nn

    def readout(c, nn, m1, q, o):
        num = jnp.einsum("...a,...ab->...b", q, c)
        scale = jnp.exp(-m1)
        den = jnp.maximum(jnp.abs(jnp.sum(q * nn, axis=-1)), scale) + eps * scale
        h = num / den[..., None]
        return jax.nn.sigmoid(o) * h.reshape(*h.shape[:-2], n)

    def plain(carry, xw):
        q, k, v, o, ig, fg = split(xw)
        logf = jax.nn.log_sigmoid(fg)
        m1 = jnp.maximum(logf + carry.m, ig)
        c, nn = advance(carry, logf, ig, k, v, m1)
        return MLSTMCarry(c, nn, m1), readout(c, nn, m1, q, o)

    core = jax.custom_jvp(plain)

    @core.defjvp
    def core_jvp(primals, tangents):
        carry, xw = primals
        dcarry, dxw = tangents
        *_, ig, fg = split(xw)
        logf = jax.nn.log_sigmoid(fg)
        m1 = jnp.maximum(logf + carry.m, ig)

        def update(xw):
            _, k, v, _, ig, fg = split(xw)
            return advance(carry, jax.nn.log_sigmoid(fg), ig, k, v, m1)

        # the inputs' part of the new memory in the gauge m1 (m and m1 held:
        # a gauge change moves no physical state)
        (c, nn), (xc, xn) = jax.jvp(update, (xw,), (dxw,))
        f = jnp.exp(logf)
        # the carry's tangent is in the units of C = e^m C', so in the gauge
        # m1 it arrives scaled by e^{-m1} (times the gate f)
        down = jnp.exp(logf - m1)
        dc = down[..., None, None] * dcarry.C + xc
        dn = down[..., None] * dcarry.n + xn

        def out(c, nn, xw):
            q, _, _, o, _, _ = split(xw)
            return readout(c, nn, m1, q, o)

        h, dh = jax.jvp(out, (c, nn, xw), (dc, dn, dxw))
        up = jnp.exp(m1)
        tangent = MLSTMCarry(
            f[..., None, None] * dcarry.C + up[..., None, None] * xc,
            f[..., None] * dcarry.n + up[..., None] * xn,
            jnp.zeros_like(m1),
        )
        return (MLSTMCarry(c, nn, m1), h), (tangent, dh)

    def recur(params, carry, xw):
        return core(carry, xw)

    def elements(params, carry, xw):
        # the update as a map of the unstabilised memory X ↦ e^A X + e^M S,
        # kept as (A, M, S): A = Σ log f, M a log scale, S = (C, n)-shaped
        _, k, v, _, ig, fg = split(xw)
        logf = jax.nn.log_sigmoid(fg)
        # plain autodiff here: finish reads the stabilised values
        first = plain(carry, xw[0])[0]
        m = ig.at[0].set(first.m)
        s_c = _outer(k, v).at[0].set(first.C)
        s_n = k.at[0].set(first.n)
        return logf, m, s_c, s_n

    def finish(params, scanned, xw):
        _, m, c, nn = scanned
        q, _, _, o, _, _ = split(xw)
        return MLSTMCarry(c, nn, m), readout(c, nn, m, q, o)

    return Cell(
        kind="mlstm",
        hidden_size=n,
        init=init,
        initial_carry=initial_carry,
        project=project,
        recur=recur,
        input_size=lambda params: int(params["W_q"].shape[1]),
        linear=LinearScan(elements, finish, combine=_combine),
    )


def _outer(k: jax.Array, v: jax.Array) -> jax.Array:
    return k[..., :, None] * v[..., None, :]


def _combine(earlier, later):
    """``X ↦ e^{A1} X + e^{M1} S1`` then ``(A2, M2, S2)``, in log scale.

    The result's ``M = max(A2 + M1, M2)`` is the recurrence of the stabiliser
    ``m``, so every exponent below is ``<= 0``.
    """
    a1, m1, c1, n1 = earlier
    a2, m2, c2, n2 = later
    m = jnp.maximum(a2 + m1, m2)
    w1 = jnp.exp(a2 + m1 - m)
    w2 = jnp.exp(m2 - m)
    c = w1[..., None, None] * c1 + w2[..., None, None] * c2
    nn = w1[..., None] * n1 + w2[..., None] * n2
    return a1 + a2, m, c, nn
