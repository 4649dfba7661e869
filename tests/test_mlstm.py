"""xLSTM's mLSTM cell: the xlstm package as a peer, closed forms of its Jacobians."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import tol
from xlstm.blocks.mlstm.backends import (
    parallel_stabilized_simple,
    recurrent_step_stabilized_simple,
)

import gradflow as gf

N, H, D, T, B = 8, 2, 3, 24, 2
d = N // H


def _setup(dtype=jnp.float32, *, gates=True, steps=T, seed=0, spread=0.5):
    """Params with every weight moved off its init (input-dependent gates)."""
    cell = gf.cells.mlstm(N, heads=H)
    params = cell.init(jax.random.key(seed), D, dtype)
    keys = jax.random.split(jax.random.key(seed + 1), len(params) + 1)
    params = {
        name: (
            p + spread * jax.random.normal(k, p.shape, dtype)
            if gates or name not in ("W_i", "W_f")
            else p
        )
        for (name, p), k in zip(sorted(params.items()), keys[1:], strict=True)
    }
    # input-gate pre-activations up to ~5, so the stabiliser moves
    params["b_i"] = params["b_i"] + jnp.asarray([2.0, -1.0], dtype)
    xs = jax.random.normal(keys[0], (steps, B, D), dtype)
    return cell, params, xs


def _pieces(cell, params, xs):
    """q, k, v, o, ĩ, f̃ as numpy arrays (k before its 1/√d)."""
    xw = np.asarray(cell.project(params, xs))
    return np.split(xw, [N, 2 * N, 3 * N, 4 * N, 4 * N + H], axis=-1)


def _reference(cell, params, xs, eps):
    """xlstm's recurrent step loop and its parallel form, times the output gate."""
    q, k, v, o, ig, fg = _pieces(cell, params, xs)
    steps = xs.shape[0]

    def heads(a):  # (T, B, N) -> (B, H, T, d)
        return torch.tensor(a.reshape(steps, B, H, d).transpose(1, 2, 0, 3))

    Q, K, V = heads(q), heads(k), heads(v)
    i_pre = torch.tensor(ig.transpose(1, 2, 0)[..., None])
    f_pre = torch.tensor(fg.transpose(1, 2, 0)[..., None])
    par = parallel_stabilized_simple(Q, K, V, i_pre, f_pre, eps=eps).numpy()
    c = torch.zeros(B, H, d, d, dtype=Q.dtype)
    n = torch.zeros(B, H, d, 1, dtype=Q.dtype)
    m = torch.zeros(B, H, 1, 1, dtype=Q.dtype)
    rec = []
    for t in range(steps):
        h, (c, n, m) = recurrent_step_stabilized_simple(
            c,
            n,
            m,
            Q[:, :, t : t + 1].clone(),
            K[:, :, t : t + 1].clone(),
            V[:, :, t : t + 1].clone(),
            i_pre[:, :, t : t + 1],
            f_pre[:, :, t : t + 1],
            eps=eps,
        )
        rec.append(h[:, :, 0].numpy())
    gate = 1.0 / (1.0 + np.exp(-o))
    rec = gate * np.stack(rec).reshape(steps, B, N)
    par = gate * par.transpose(2, 0, 1, 3).reshape(steps, B, N)
    state = (c.numpy(), n.numpy()[..., 0], m.numpy()[..., 0, 0])
    return rec, par, state


@pytest.mark.usefixtures("x64")
def test_matches_xlstm_reference_float64():
    """Without the denominator's eps both forms agree to float64 rounding."""
    cell, params, xs = _setup(jnp.float64)
    cell = gf.cells.mlstm(N, heads=H, eps=0.0)
    rec, par, (c_ref, n_ref, m) = _reference(cell, params, xs, eps=0.0)
    assert np.abs(m).max() > 1.0  # the stabiliser was exercised
    run = jax.jit(gf.unroll, static_argnums=0)
    for c in (cell._replace(linear=None), cell):  # sequential, associative scan
        carry, hs = run(c, params, xs)
        np.testing.assert_allclose(hs, rec, rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(hs, par, rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(carry.C, c_ref, rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(carry.n, n_ref, rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(carry.m, m, rtol=1e-12, atol=1e-13)


def test_matches_xlstm_reference_float32():
    """With its eps (scaled with the gauge here) to float32 rounding."""
    cell, params, xs = _setup(jnp.float32)
    rec, par, (c, _, m) = _reference(cell, params, xs, eps=1e-6)
    for seq in (cell._replace(linear=None), cell):
        carry, hs = jax.jit(gf.unroll, static_argnums=0)(seq, params, xs)
        scale = np.abs(rec).max()
        np.testing.assert_allclose(hs, rec, atol=2e-5 * scale)
        np.testing.assert_allclose(hs, par, atol=2e-5 * scale)
        np.testing.assert_allclose(carry.C, c, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(carry.m, m, rtol=1e-6, atol=1e-6)


def test_parallel_scan_matches_sequential():
    """float32, from a carry with m != 0, whole and in remat chunks (float64:
    both against xlstm above)."""
    dtype = jnp.float32
    cell, params, xs = _setup(dtype, steps=37)
    start = gf.unroll(cell, params, xs[:5])[0]  # a carry with m != 0
    seq = cell._replace(linear=None)
    run = jax.jit(gf.unroll, static_argnums=0, static_argnames="remat")
    want_c, want_h = run(seq, params, xs, start)
    assert cell.linear is not None
    for remat in (False, 8):
        got_c, got_h = run(cell, params, xs, start, remat=remat)
        r = 50 * tol(dtype)
        np.testing.assert_allclose(got_h, want_h, rtol=r, atol=r)
        for g, w in zip(got_c, want_c, strict=True):
            np.testing.assert_allclose(g, w, rtol=r, atol=r)


@pytest.mark.usefixtures("x64")
def test_gradients_of_both_scans_agree():
    """The step's custom derivative (state in units of C) gives the same param
    gradient as plain autodiff of the associative scan: h is gauge-free."""
    cell, params, xs = _setup(jnp.float64)

    @partial(jax.jit, static_argnums=1)
    def loss_h(p, linear):
        c = cell if linear else cell._replace(linear=None)
        return jnp.sum(jnp.sin(gf.unroll(c, p, xs)[1]))

    grad = jax.jit(jax.grad(loss_h), static_argnums=1)
    seq, par = grad(params, False), grad(params, True)
    # param_grad_by_step's per-step contributions (one VJP of the step each)
    by_step = gf.param_grad_by_step(cell, params, xs, lambda hs: jnp.sum(jnp.sin(hs)))
    for name in params:
        np.testing.assert_allclose(seq[name], par[name], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(by_step.grad[name], seq[name], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(np.sum(by_step.share[name]), 1.0, rtol=1e-12)
    # and a central finite difference along one direction
    direction = {
        k: jnp.cos(jnp.arange(v.size).reshape(v.shape) + 1.0) for k, v in params.items()
    }
    e = 2e-7
    plus = {k: params[k] + e * direction[k] for k in params}
    minus = {k: params[k] - e * direction[k] for k in params}
    fd = (loss_h(plus, True) - loss_h(minus, True)) / (2 * e)
    an = sum(jnp.vdot(seq[k], direction[k]) for k in params)
    np.testing.assert_allclose(an, fd, rtol=1e-7)


@pytest.mark.usefixtures("x64")
def test_jacobian_norms_are_products_of_forget_gates():
    """∂s_T/∂s_t is σ(f̃) times the identity per head on (C, n), 0 on m."""
    cell, params, xs = _setup(jnp.float64, steps=30)
    f = _pieces(cell, params, xs)[5]  # (T, B, H)
    logf = -np.logaddexp(0.0, -f) / np.log(10.0)
    # sum over steps t..T-1, then the largest head
    tail = np.cumsum(logf[::-1], axis=0)[::-1]
    want = tail.max(axis=-1)
    for method in ("power", "svd"):
        got = gf.jacobian_norms(cell, params, xs, method=method).log10_norms
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    sv = gf.jacobian_singular_values(cell, params, xs, k=2 * (d * d + d) + 1)
    sv = np.asarray(sv.log10_singular_values)
    per_head = np.sort(tail, axis=-1)[..., ::-1]
    np.testing.assert_allclose(sv[..., 0], per_head[..., 0], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(
        sv[..., d * d + d], per_head[..., 1], rtol=1e-9, atol=1e-9
    )
    assert np.all(sv[..., -1] < per_head[..., 1] - 8)  # m's direction: zero


def test_jacobian_norms_float32_long_and_jit():
    """float32, 2,000 steps: the products leave float32's range, log10 stays exact."""
    cell, params, xs = _setup(jnp.float32, steps=2000, spread=0.3)
    params = {**params, "b_f": params["b_f"] - 4.0}  # f ≈ σ(-1..2): fast decay
    f = np.asarray(_pieces(cell, params, xs)[5], np.float64)
    logf = -np.logaddexp(0.0, -f) / np.log(10.0)
    want = np.cumsum(logf[::-1], axis=0)[::-1].max(axis=-1)
    assert want[0].max() < -60  # far below float32's smallest normal, 1e-38
    got = jax.jit(gf.jacobian_norms, static_argnums=0)(cell, params, xs)
    np.testing.assert_allclose(got.log10_norms, want, rtol=1e-4, atol=1e-3)


@pytest.mark.usefixtures("x64")
def test_lyapunov_exponents_are_mean_log_forget_gates():
    """One forget gate for all heads: after one step aligns the frame (m's
    directions die in it) every exponent on (C, n) is log σ(b_f)."""
    cell, params, xs = _setup(jnp.float64, gates=False, steps=40)
    params = {**params, "b_f": jnp.full((H,), 2.5)}
    lyap = gf.lyapunov_spectrum(cell, params, xs, warmup=1)
    size = H * (d * d + d)
    want = np.full((B, size), -np.log1p(np.exp(-2.5)))
    np.testing.assert_allclose(lyap.exponents[:, :size], want, rtol=1e-9)
    assert np.all(lyap.resolved[:, :size]) and not np.any(lyap.resolved[:, size:])


@pytest.mark.usefixtures("x64")
def test_fixed_point_closed_form():
    """Constant input, input-free gates: m* = ĩ, C'* = k vᵀ/(1 − f), λ = f and 0."""
    cell, params, xs = _setup(jnp.float64, gates=False)
    params = {**params, "b_f": jnp.asarray([0.5, 1.5])}
    x = xs[0, 0]
    starts = gf.sample_states(cell, params, xs, 6, key=jax.random.key(3))
    fp = gf.fixed_points(cell, params, x, starts, tol=1e-24)
    assert fp.states.shape[0] == 1
    _, k, v, _, ig, fg = _pieces(cell, params, x)
    f = 1.0 / (1.0 + np.exp(-fg))
    k = k.reshape(H, d) / np.sqrt(d)
    c = k[:, :, None] * v.reshape(H, d)[:, None, :] / (1 - f)[:, None, None]
    np.testing.assert_allclose(fp.carries.C[0], c, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(fp.carries.m[0], ig, rtol=1e-10)
    want = np.sort(np.concatenate([np.repeat(f, d * d + d), np.zeros(H)]))[::-1]
    np.testing.assert_allclose(np.abs(fp.eigenvalues[0]), want, atol=1e-9)


@pytest.mark.usefixtures("x64")
def test_hidden_grad_norms_is_the_direct_term():
    cell, params, xs = _setup(jnp.float64, steps=12)

    def loss(hs):
        return jnp.sum(hs[-1] ** 2) + 0.1 * jnp.sum(hs)

    # h_t is a readout: its total derivative is its own term, and a warning says so
    with pytest.warns(UserWarning, match="no leaf of its carry"):
        prof = gf.hidden_grad_norms(cell, params, xs, loss)
    hs = jax.jit(gf.unroll, static_argnums=0)(cell, params, xs)[1]
    direct = np.linalg.norm(np.asarray(jax.grad(loss)(hs)), axis=-1)
    np.testing.assert_allclose(prof.norms, direct, rtol=1e-9)


@pytest.mark.usefixtures("x64")
def test_state_grad_norms_decay_by_the_forget_gate():
    """``of="state"``: with a loss on the last output only, ``∂L/∂s_t`` (in the
    units of C) shrinks by the forget gate per step back; gates input-free."""
    cell, params, xs = _setup(jnp.float64, gates=False, steps=10)
    params = {**params, "b_f": jnp.asarray([1.0, 1.0])}
    prof = gf.hidden_grad_norms(
        cell, params, xs, lambda hs: jnp.sum(hs[-1] ** 2), of="state", log10=True
    )
    steps_back = np.diff(np.asarray(prof.log10_norms)[:-1], axis=0)
    want = np.log10(1.0 / (1.0 + np.exp(-1.0)))
    np.testing.assert_allclose(-steps_back, want, rtol=1e-9)


def test_vmap_over_params_and_batch():
    cell, params, xs = _setup(jnp.float32, steps=10)
    stacked = jax.tree_util.tree_map(lambda a: jnp.stack([a, 0.5 * a]), params)
    got = jax.jit(jax.vmap(lambda p: gf.unroll(cell, p, xs)[1]))(stacked)
    want = jax.jit(lambda p: jnp.stack([gf.unroll(cell, q, xs)[1] for q in p]))(
        [jax.tree_util.tree_map(lambda a, s=s: s * a, params) for s in (1.0, 0.5)]
    )
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    per_example = jax.jit(
        jax.vmap(lambda x: gf.unroll(cell, params, x)[1], in_axes=1, out_axes=1)
    )(xs)
    np.testing.assert_allclose(per_example, want[0], rtol=1e-5, atol=1e-6)


def test_bad_input():
    with pytest.raises(
        ValueError, match="heads must divide hidden_size=10, got heads=4"
    ):
        gf.cells.mlstm(10, heads=4)
    with pytest.raises(ValueError, match="heads"):
        gf.cells.mlstm(8, heads=0)
    with pytest.raises(ValueError, match="eps"):
        gf.cells.mlstm(8, heads=2, eps=-1.0)
    cell = gf.cells.mlstm(8, heads=2)
    params = cell.init(jax.random.key(0), 3)
    bad = {**params, "W_f": jnp.zeros((4, 3))}
    with pytest.raises(ValueError, match=r"params\['W_f'\] must have shape \(2, 3\)"):
        gf.unroll(cell, bad, jnp.zeros((5, 3)))


def test_init_follows_xlstm():
    cell = gf.cells.mlstm(8, heads=4)
    p = cell.init(jax.random.key(0), 5)
    np.testing.assert_allclose(p["b_f"], [3.0, 4.0, 5.0, 6.0], rtol=1e-6)
    assert not np.any(p["W_f"]) and not np.any(p["W_i"])
    assert p["W_q"].shape == (8, 5) and p["b_i"].shape == (4,)
    carry = cell.initial_carry((3,))
    assert carry.C.shape == (3, 4, 2, 2) and carry.m.shape == (3, 4)


def test_sweep_by_name_closed_form(tmp_path):
    """``[grid] cell = "mlstm"``: at init (W_f = 0, b_f from 3 to 6) the carry's
    Jacobian norm over ``T − t`` steps is ``σ(6)^(T−t)``."""
    from gradflow import results, sweep

    steps = 6
    cfg = sweep.validate(
        {
            "experiment": {"quick": True},
            "grid": {"cell": "mlstm", "hidden_size": 8, "length": steps, "seeds": 2},
            "cell": {"heads": 2},
            "measure": {"jacobian_norms": True},
        }
    )
    sweep.run(cfg, tmp_path, progress="none")
    res = results.load(tmp_path)
    (rec,) = res.records
    arrays = res.arrays(rec["id"])
    log_f = -np.log1p(np.exp(-6.0))
    want = np.arange(steps, 0, -1) * log_f / np.log(10.0)
    # float32 holds σ(6) = 0.9975 to 6e-8, log σ(6) to 2.4e-5 relative
    np.testing.assert_allclose(
        arrays["jacobian_log10_norms"], np.broadcast_to(want, (2, steps)), rtol=1e-4
    )
    assert gf.cells.make("mlstm", 8, heads=2).kind == "mlstm"


def test_sweep_refuses_w_hh_options():
    from gradflow import sweep

    with pytest.raises(ValueError, match=r"\[grid\] gain.*no W_hh"):
        sweep.validate(
            {
                "grid": {"cell": "mlstm", "hidden_size": 8, "gain": [1.0, 2.0]},
                "measure": {"jacobian_norms": True},
            }
        )
    # param_grad_by_step reports the share of the forget gate's weights W_f
    config = sweep.validate(
        {
            "grid": {"cell": "mlstm", "hidden_size": 8},
            "measure": {"param_grad_by_step": True},
        }
    )
    assert "param_grad_by_step" in config["measure"]
    with pytest.raises(ValueError, match=r"\[cell\] heads"):
        sweep.validate({"grid": {"cell": "mlstm"}, "cell": {"heads": 0}})
    with pytest.raises(ValueError, match="recurrent_init must be 'torch' for a mlstm"):
        gf.cells.mlstm(8, heads=2, recurrent_init="orthogonal")
