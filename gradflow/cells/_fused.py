"""LSTM and GRU gate math, and whole-sequence recurrences with a fused backward.

``jax.grad`` of a ``lax.scan`` over the step accumulates the recurrent weight
gradient inside the reverse loop: one small ``(G*N, B) @ (B, N)`` product per
step. :func:`lstm_sequence` and :func:`gru_sequence` do what cuDNN's and
PyTorch's fused RNN kernels do instead: their reverse scan carries only
``(dh, dc)`` and emits the gate gradients ``dz_t``; the weight gradient is then
one large product over all steps and the batch, ``dW_hh = Σ_t dz_tᵀ h_{t-1}``,
and the input projection's gradients (``W_ih``, the biases, ``xs``) follow by
ordinary autodiff of the projection outside. The forward pass saves each
step's gate pre-activations (and the LSTM's cell state); the backward pass
recomputes the gates from them and takes every ``tanh``'s derivative as the
exact ``sech²`` of the pre-activation (never ``1 − tanh²``, which cancels to 0
in float32 once a unit saturates), so saturated units keep their small,
finite gradients, as with :func:`gradflow.cells._activations.tanh`.

``jax.custom_vjp`` has no forward-mode rule, so these serve reverse-mode
differentiation of whole sequences (:func:`gradflow.unroll`, training);
``jax.jvp`` through them raises. The per-step ``cell.recur``, which every
Jacobian measurement differentiates (in both modes), does not use them, and a
cell built with ``fused=False`` never does. Nothing here is CPU-specific.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from ._activations import sech2, tanh


def _sigmoid_scale(n: int, gates: str, dtype) -> jax.Array:
    """Per-column factor ``1/2`` for sigmoid gates ("s") and ``1`` for tanh ("t")."""
    return jnp.concatenate(
        [jnp.full((n,), 0.5 if g == "s" else 1.0, dtype) for g in gates]
    )


def lstm_gates(c_prev: jax.Array, pre: jax.Array):
    """One LSTM step from its gate pre-activations ``pre (*batch, 4N)``.

    Returns ``(i, f, g, o, c)``, each ``(*batch, N)``.
    """
    # sigmoid(a) = (1 + tanh(a/2)) / 2, so one tanh over all four gates does
    # every nonlinearity but tanh(c): on CPU, one transcendental over the whole
    # (*batch, 4N) block vectorises far better than four over its slices
    # (the step's elementwise part runs ~4× faster; see benchmarks/README.md).
    scale = _sigmoid_scale(c_prev.shape[-1], "ssts", pre.dtype)
    t = tanh(pre * jnp.broadcast_to(scale, pre.shape))
    t_i, t_f, g, t_o = jnp.split(t, 4, axis=-1)
    i, f, o = 0.5 + 0.5 * t_i, 0.5 + 0.5 * t_f, 0.5 + 0.5 * t_o
    return i, f, g, o, f * c_prev + i * g


def gru_gates(h: jax.Array, xw: jax.Array, gh: jax.Array):
    """One GRU step from ``xw = W_ih x + b_ih`` and ``gh = W_hh h + b_hh``.

    Returns ``(h_new, r, z, a_n, n)``: ``a_n`` is the candidate's
    pre-activation and ``n = tanh(a_n)``.
    """
    n2 = 2 * h.shape[-1]
    # both sigmoids as one tanh over the contiguous (r, z) block (see above)
    rz = 0.5 + 0.5 * tanh(0.5 * (xw[..., :n2] + gh[..., :n2]))
    r, z = jnp.split(rz, 2, axis=-1)
    a_n = xw[..., n2:] + r * gh[..., n2:]
    new = tanh(a_n)
    return (1.0 - z) * new + z * h, r, z, a_n, new


def _shifted(first: jax.Array, seq: jax.Array) -> jax.Array:
    """``(first, seq[0], ..., seq[T-2])``: the value entering each step."""
    return jnp.concatenate([first[None], seq[:-1]], axis=0)


def _forward_weight(w_hh: jax.Array) -> jax.Array:
    """``W_hhᵀ (N, G*N)``, made once before the scan.

    ``h @ W_hhᵀ`` written against ``(G*N, N)`` makes XLA:CPU's dot kernel
    repack the weight at every step; the transposed copy, a loop invariant,
    is already in the layout it wants (the LSTM forward at N=128, batch 32 is
    ~14% faster; see benchmarks/README.md).
    """
    return jnp.transpose(w_hh)


def _lstm_forward(w_hh, h0, c0, xw):
    w_t = _forward_weight(w_hh)

    def body(carry, xw_t):
        h, c = carry
        pre = xw_t + h @ w_t
        *_, o, c = lstm_gates(c, pre)
        h = o * tanh(c)
        return (h, c), (h, c, pre)

    return lax.scan(body, (h0, c0), xw)


@jax.custom_vjp
def lstm_sequence(w_hh, h0, c0, xw):
    """The LSTM recurrence over all steps, with a fused backward pass.

    Args:
        w_hh: ``(4N, N)``, gate order i, f, g, o.
        h0, c0: ``(*batch, N)``, the carry entering step 0.
        xw: ``(T, *batch, 4N)``, the input part of every gate
            (``x_t W_ihᵀ + b_ih + b_hh``).

    Returns:
        ``((h_T, c_T), hs)`` with ``hs (T, *batch, N)``.
    """
    carry, (hs, _, _) = _lstm_forward(w_hh, h0, c0, xw)
    return carry, hs


def _lstm_fwd(w_hh, h0, c0, xw):
    carry, (hs, cs, pres) = _lstm_forward(w_hh, h0, c0, xw)
    return (carry, hs), (w_hh, h0, c0, hs, cs, pres)


def _lstm_bwd(res, cotangents):
    w_hh, h0, c0, hs, cs, pres = res
    (dh_last, dc_last), dhs = cotangents
    scale = _sigmoid_scale(h0.shape[-1], "ssts", pres.dtype)

    def body(carry, inputs):
        dh, dc = carry
        dh_t, c_t, c_p, pre = inputs
        dh = dh + dh_t
        a = pre * jnp.broadcast_to(scale, pre.shape)
        t, s = lax.tanh(a), sech2(a)
        t_i, t_f, g, t_o = jnp.split(t, 4, axis=-1)
        s_i, s_f, s_g, s_o = jnp.split(s, 4, axis=-1)
        i, f, o = 0.5 + 0.5 * t_i, 0.5 + 0.5 * t_f, 0.5 + 0.5 * t_o
        tc, sc = lax.tanh(c_t), sech2(c_t)
        dc = dc + dh * o * sc
        # d sigmoid(a)/da = sech²(a/2) / 4
        d_if = 0.25 * jnp.concatenate([dc * g * s_i, dc * c_p * s_f], axis=-1)
        dz = jnp.concatenate([d_if, dc * i * s_g, 0.25 * dh * tc * s_o], axis=-1)
        dh_prev = jnp.einsum("...g,gn->...n", dz, w_hh)
        return (dh_prev, dc * f), dz

    (dh0, dc0), dz = lax.scan(
        body, (dh_last, dc_last), (dhs, cs, _shifted(c0, cs), pres), reverse=True
    )
    # the recurrent weight gradient as one product over every step and example
    dw_hh = jnp.einsum("t...g,t...n->gn", dz, _shifted(h0, hs))
    return dw_hh, dh0, dc0, dz


lstm_sequence.defvjp(_lstm_fwd, _lstm_bwd)


def _scan_reading_ahead(body, init, xs: jax.Array):
    """``lax.scan(body, init, xs)`` that reads ``xs[t + 1]`` during step ``t``.

    Each step's input reaches ``body`` through the carry, a plain buffer, not
    as a slice of ``xs`` at the loop index. XLA:CPU fuses that dynamic slice
    into the step's elementwise work, and when the fused kernel reads the
    slice at several column offsets (the GRU's ``r, z`` and ``n`` blocks) it
    compiles to scalar code: the GRU forward's gates took ~60 of its ~100 µs
    per step at N=128, batch 32. Read one step early, into a copy of its
    own, the same gates vectorise (same results, bit for bit).

    For forward passes that autodiff does not see (a ``custom_vjp``'s): the
    transpose of the read-ahead would add each step's input cotangent into a
    ``(T, ...)`` buffer carried through the reverse loop (measured on the
    plain, autodiffed scan: LSTM forward+backward 1.25x slower).
    """
    last = xs.shape[0] - 1

    def step(carry, t):
        c, x_t = carry
        x_next = lax.dynamic_index_in_dim(xs, jnp.minimum(t + 1, last), keepdims=False)
        c, y = body(c, x_t)
        return (c, x_next), y

    (c, _), ys = lax.scan(step, (init, xs[0]), jnp.arange(last + 1))
    return c, ys


def _gru_forward(w_hh, b_hh, h0, xw):
    w_t = _forward_weight(w_hh)

    def body(h, xw_t):
        gh = h @ w_t + jnp.broadcast_to(b_hh, xw_t.shape)
        h = gru_gates(h, xw_t, gh)[0]
        return h, (h, gh)

    return _scan_reading_ahead(body, h0, xw)


@jax.custom_vjp
def gru_sequence(w_hh, b_hh, h0, xw):
    """The GRU recurrence over all steps, with a fused backward pass.

    Args:
        w_hh: ``(3N, N)``, gate order r, z, n.
        b_hh: ``(3N,)``.
        h0: ``(*batch, N)``, the carry entering step 0.
        xw: ``(T, *batch, 3N)``, the input part of every gate (``x_t W_ihᵀ + b_ih``).

    Returns:
        ``(h_T, hs)`` with ``hs (T, *batch, N)``.
    """
    h, (hs, _) = _gru_forward(w_hh, b_hh, h0, xw)
    return h, hs


def _gru_fwd(w_hh, b_hh, h0, xw):
    h, (hs, ghs) = _gru_forward(w_hh, b_hh, h0, xw)
    return (h, hs), (w_hh, h0, xw, hs, ghs)


def _gru_bwd(res, cotangents):
    w_hh, h0, xw, hs, ghs = res
    dh_last, dhs = cotangents
    n2 = 2 * h0.shape[-1]
    h_prev = _shifted(h0, hs)

    def body(dh, inputs):
        dh_t, h_p, xw_t, gh = inputs
        dh = dh + dh_t
        a_rz = 0.5 * (xw_t[..., :n2] + gh[..., :n2])
        r, z = jnp.split(0.5 + 0.5 * lax.tanh(a_rz), 2, axis=-1)
        a_n = xw_t[..., n2:] + r * gh[..., n2:]
        new = lax.tanh(a_n)
        da_n = dh * (1.0 - z) * sech2(a_n)
        # d sigmoid(a)/da = sech²(a/2) / 4
        da_rz = jnp.concatenate([da_n * gh[..., n2:], dh * (h_p - new)], axis=-1)
        da_rz = 0.25 * sech2(a_rz) * da_rz
        dgh = jnp.concatenate([da_rz, da_n * r], axis=-1)
        dh_prev = dh * z + jnp.einsum("...g,gn->...n", dgh, w_hh)
        return dh_prev, (dgh, da_n)

    dh0, (dgh, da_n) = lax.scan(body, dh_last, (dhs, h_prev, xw, ghs), reverse=True)
    # the recurrent weight and bias gradients as one reduction over every step
    dw_hh = jnp.einsum("t...g,t...n->gn", dgh, h_prev)
    db_hh = jnp.sum(dgh.reshape(-1, dgh.shape[-1]), axis=0)
    dxw = jnp.concatenate([dgh[..., :n2], da_n], axis=-1)
    return dw_hh, db_hh, dh0, dxw


gru_sequence.defvjp(_gru_fwd, _gru_bwd)
